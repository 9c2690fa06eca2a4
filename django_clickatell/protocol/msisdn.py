"""The one rule for a phone number (MSISDN): what a recipient looks like, everywhere.

A recipient is read with Google's libphonenumber rules (the ``phonenumbers``
package, which django-phonenumber-field uses too), and kept in one form: the
E.164 number without its ``+`` -- country code and national number, digits only
(``27831234567``).  That is the form every Clickatell API documents for ``to``
(the legacy HTTP ``to``, the REST ``to`` list and the One API ``to``) and the
form their replies and callbacks name a recipient in, so the stored number is
the number sent and the number matched; :func:`e164` adds the ``+`` for people.

What :func:`parse_recipient` accepts:

* an international number: ``+27 83 123 4567``, ``0027831234567`` (``00`` as the
  international prefix) or ``27831234567`` (country code first, no prefix), with
  spaces, dashes, dots and parentheses anywhere (``+27 (0)83-123.4567``);
* a national number (``083 123 4567``) only with a default region (the
  ``DEFAULT_REGION`` setting, passed in by the services): digits without ``+`` or
  ``00`` are then that region's numbers, as libphonenumber reads them, and
  numbers of other countries need their ``+`` or ``00``.  Without one, a national
  number is refused: its country cannot be known, and sending ``0831234567``
  as it stands reaches no one, or someone else.

The number must be possible for its country: a real country code, and a length
that country's numbering plan allows.  Whether the range is allocated to an
operator is not checked -- that table changes every month, a stale copy would
refuse real numbers, and Clickatell refuses (and records) an unroutable one.
Letters, extensions and anything over :data:`MAX_INPUT` characters are refused.

:func:`is_msisdn` is the looser check of a number as a gateway writes it (the
``To:`` of a reply, the ``to`` of a callback): digits, optionally after a ``+``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers
from phonenumbers import NumberParseException, ValidationResult

from .errors import InvalidMessage

MIN_DIGITS = 6
MAX_DIGITS = 20
#: Longest recipient accepted as typed, separators included (E.164 has at most 15 digits).
MAX_INPUT = 40
_DIGITS = re.compile(rf"[0-9]{{{MIN_DIGITS},{MAX_DIGITS}}}")
_TYPED = re.compile(r"\+?[0-9 ().\-]+")
_SEPARATORS = re.compile(r"[ ().\-]")
_REGION = re.compile(r"[A-Z]{2}")

_PROBLEMS = {
    ValidationResult.INVALID_COUNTRY_CODE: "no such country code",
    ValidationResult.TOO_SHORT: "too short",
    ValidationResult.TOO_LONG: "too long",
    ValidationResult.INVALID_LENGTH: "a length no number there has",
}


@dataclass(frozen=True)
class Destination:
    """Where a number goes: its country calling code and, where one region owns the
    number, that region (ISO 3166-1 alpha-2, ``"ZA"``); ``None`` for a non-geographic
    number (``+800``) or one the numbering plan cannot place."""

    calling_code: int
    region: str | None


def is_msisdn(value: str) -> bool:
    """Whether *value* is a number as it travels: digits, optionally after one ``+``."""
    return bool(_DIGITS.fullmatch(value.removeprefix("+")))


def is_region(code: str) -> bool:
    """Whether *code* is a region libphonenumber knows (``"ZA"``, ``"GB"``, ``"US"``)."""
    return bool(_REGION.fullmatch(code)) and code in phonenumbers.SUPPORTED_REGIONS


def is_calling_code(code: int) -> bool:
    """Whether *code* is a country calling code in use (``27``, ``44``, ``1``, ``882``)."""
    return code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE


def parse_recipient(value: object, region: str | None = None) -> str:
    """The stored and sent form of a recipient (``27831234567``), or :class:`InvalidMessage`.

    *region* reads digits without ``+`` or ``00`` as that region's numbers
    (``DEFAULT_REGION``); without it they must start with the country code.
    The message names the number and what is wrong with it.
    """
    if not isinstance(value, str):
        raise InvalidMessage(f"A phone number must be a string, not {type(value).__name__}.")
    shown = repr(value[:MAX_INPUT])
    typed = value.strip()
    if len(typed) > MAX_INPUT or not _TYPED.fullmatch(typed) or not any(c.isdigit() for c in typed):
        raise InvalidMessage(
            f"Not a phone number: {shown}. Write it in international form, e.g. "
            "+27 83 123 4567 (digits, with spaces, dashes, dots or parentheses if you like)."
        )
    compact = _SEPARATORS.sub("", typed)
    if compact.startswith("00"):
        compact = "+" + compact[2:]
    national = not compact.startswith("+")
    if national and region is None:
        if compact.startswith("0"):
            raise InvalidMessage(
                f"{shown} is a national number (it starts with 0 and has no country code): "
                "write it in international form, e.g. +27 83 123 4567, or set "
                "CLICKATELL['DEFAULT_REGION'] to the country national numbers are written in."
            )
        compact = "+" + compact
    try:
        number = phonenumbers.parse(compact, region if national else None)
    except NumberParseException as exc:
        raise InvalidMessage(f"Not a phone number: {shown} ({_parse_problem(exc)}).") from None
    reason = phonenumbers.is_possible_number_with_reason(number)
    if reason != ValidationResult.IS_POSSIBLE:
        where = f"+{number.country_code}"
        hint = (
            f" (read as a number of {region}, DEFAULT_REGION: write numbers of other "
            "countries with + or 00)"
            if national and region
            else ""
        )
        raise InvalidMessage(
            f"Not a possible phone number: {shown} is {_PROBLEMS.get(reason, 'not possible')} "
            f"for {where}{hint}."
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)[1:]


def e164(number: str) -> str:
    """A stored recipient as people write it: ``+27831234567``."""
    return number if number.startswith("+") else "+" + number


def destination(number: str) -> Destination:
    """The calling code and region of a recipient (as :func:`parse_recipient` returns it).

    For rules that key on the country a message goes to (allowed destinations,
    per-country caps); raises :class:`InvalidMessage` for what is no number.
    """
    try:
        parsed = phonenumbers.parse(e164(number), None)
    except NumberParseException as exc:
        problem = _parse_problem(exc)
        raise InvalidMessage(f"Not a phone number: {number[:MAX_INPUT]!r} ({problem}).") from None
    region = phonenumbers.region_code_for_number(parsed)
    geographic = region if region and _REGION.fullmatch(region) else None
    return Destination(int(parsed.country_code or 0), geographic)


def _parse_problem(exc: NumberParseException) -> str:
    return {
        NumberParseException.INVALID_COUNTRY_CODE: "no such country code",
        NumberParseException.TOO_SHORT_NSN: "too short",
        NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        NumberParseException.TOO_LONG: "too long",
    }.get(exc.error_type, "not a number")
