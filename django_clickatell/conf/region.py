"""``DEFAULT_REGION``: the country national phone numbers are written in, if any.

Checked on every read (and so by the system checks at start-up) against the
regions the phone number rules know (:func:`~django_clickatell.protocol.msisdn.is_region`).
"""

from __future__ import annotations

from ..protocol.msisdn import is_calling_code, is_region
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


#: Most entries in ``GUARD_ALLOWED_DESTINATIONS``: every country has one calling code.
MAX_DESTINATIONS = 300


def _destinations(key: str, value: object) -> tuple[int | str, ...]:
    """Calling codes (``27``, ``"+27"``) and region codes (``"ZA"``); () for no guard."""
    if isinstance(value, str) or not isinstance(value, list | tuple | set | frozenset):
        raise Malformed(
            f'{describe(key)} must be a list of calling codes (27, "+27") or region codes '
            f'("ZA"), got {type(value).__name__}.'
        )
    if len(value) > MAX_DESTINATIONS:
        raise Malformed(f"{describe(key)} may hold at most {MAX_DESTINATIONS} entries.")
    found: list[int | str] = []
    for entry in value:
        found.append(_destination(key, entry))
    return tuple(dict.fromkeys(found))


def _destination(key: str, entry: object) -> int | str:
    if isinstance(entry, int) and not isinstance(entry, bool):
        code = entry
    elif isinstance(entry, str) and entry.strip().lstrip("+").isdigit():
        code = int(entry.strip().lstrip("+"))
    elif isinstance(entry, str) and is_region(entry.strip().upper()):
        return entry.strip().upper()
    else:
        raise Malformed(
            f'{describe(key)}: {str(entry)[:20]!r} is neither a calling code (27, "+27") '
            'nor a two-letter region code ("ZA").'
        )
    if not is_calling_code(code):
        raise Malformed(f"{describe(key)}: {code} is not a country calling code in use.")
    return code


DESTINATIONS = Kind(
    _destinations,
    'list of calling codes (int or ``"+27"``) and region codes',
    f"at most {MAX_DESTINATIONS}; calling codes in use, regions ISO 3166-1 alpha-2; "
    "``[]``: every destination",
)
