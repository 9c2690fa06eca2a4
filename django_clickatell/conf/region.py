"""``DEFAULT_REGION``: the country national phone numbers are written in, if any.

Checked on every read (and so by the system checks at start-up) against the
regions the phone number rules know (:func:`~django_clickatell.protocol.msisdn.is_region`).
"""

from __future__ import annotations

from ..protocol.msisdn import is_region
from .errors import Malformed, describe
from .values import Kind, _string


def _region(key: str, value: object) -> str:
    code = _string(key, value).strip().upper()
    if code and not is_region(code):
        raise Malformed(
            f"{describe(key)} must be a two-letter region code (ISO 3166-1 alpha-2, e.g. "
            f'"ZA") or "" for none, got {str(value)[:20]!r}.'
        )
    return code


REGION = Kind(
    _region,
    "str, region code",
    'a two-letter ISO 3166-1 region code (any case), or ``""``',
)
