"""The one rule for a phone number (MSISDN): what a recipient looks like, everywhere.

International format, digits only, 6 to 20 of them, optionally written with a
leading ``+`` (and, where a person typed it, spaces).  Messages are recorded by
it, and the ``To:`` of a reply and the ``to`` of a callback are checked by it.
"""

from __future__ import annotations

import re

MIN_DIGITS = 6
MAX_DIGITS = 20
_DIGITS = re.compile(rf"[0-9]{{{MIN_DIGITS},{MAX_DIGITS}}}")


def is_msisdn(value: str) -> bool:
    """Whether *value* is a number as it travels: digits, optionally after one ``+``."""
    return bool(_DIGITS.fullmatch(value.removeprefix("+")))


def normalize_msisdn(value: str) -> str | None:
    """The digits of a number a person wrote (``+27 83 123 4567``), or ``None``."""
    digits = value.strip().removeprefix("+").replace(" ", "")
    return digits if _DIGITS.fullmatch(digits) else None
