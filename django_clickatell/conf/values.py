"""What each key accepts: a parser, and the type and bounds the settings reference shows.

A :class:`Kind` keeps the words next to the code that enforces them, so the
reference (generated from the options, see ``docs/reference.py``) cannot claim a
bound the parser does not check.  Parsers raise the :mod:`~.errors` class of the
problem; a message names the key and echoes a value only when it is not secret.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..protocol.redaction import Secret
from .errors import Malformed, OutOfRange, WrongType, describe

T = TypeVar("T")

# Clickatell drops a session after 15 minutes idle; stay safely inside that.
MAX_SESSION_TTL = 14 * 60
MAX_CONNECT_TIMEOUT = 60.0
MAX_READ_TIMEOUT = 300.0
#: Most pairs in ``CALLBACK_BASIC_AUTH``: a rotation needs two, a few accounts a few more.
MAX_CALLBACK_CREDENTIALS = 5


@dataclass(frozen=True)
class Kind(Generic[T]):
    """How one key's value is read and how the reference describes it."""

    parse: Callable[[str, object], T]
    type: str
    bounds: str = ""

    def __call__(self, key: str, value: object) -> T:
        return self.parse(key, value)


# -- text ----------------------------------------------------------------------------------


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise WrongType(f"{describe(key)} must be a string, not {type(value).__name__}.")
    return value


def _non_empty_string(key: str, value: object) -> str:
    text = _string(key, value)
    if not text.strip():
        raise Malformed(f"{describe(key)} must not be empty.")
    return text


def _api_id(key: str, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _non_empty_string(key, value)
    if not text.isdigit():
        raise Malformed(f"{describe(key)} must be the numeric API id, got {text!r}.")
    return text


def _basic_user(key: str, value: object, part: str = "") -> str:
    user = _string(key, value)
    if ":" in user:
        # HTTP Basic splits user and password at the first colon: this user never matches.
        raise Malformed(f"{describe(key)}{part} must not contain ':' (HTTP Basic user).")
    return user


def _boolean(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise WrongType(f"{describe(key)} must be True or False, got {value!r}.")
    return value


TEXT = Kind(_non_empty_string, "str", "not empty")
API_ID = Kind(_api_id, "str of digits")
BOOLEAN = Kind(_boolean, "bool")
SECRET = Kind(lambda key, value: Secret(_non_empty_string(key, value)), "str, secret", "not empty")
SECRET_OR_EMPTY = Kind(lambda key, value: Secret(_string(key, value)), "str, secret")
BASIC_USER = Kind(_basic_user, "str", "no ``:``")


# -- numbers -------------------------------------------------------------------------------


def _range(maximum: float, zero: bool, whole: bool) -> str:
    if zero:
        return f"0 to {maximum:g}"
    return f"1 to {maximum:g}" if whole else f"above 0, at most {maximum:g}"


def _in_seconds(
    key: str, value: object, maximum: float, *, zero: bool = False, part: str = ""
) -> float:
    kind = "non-negative" if zero else "positive"
    message = (
        f"{describe(key)}{part} must be a {kind} number of seconds, at most "
        f"{maximum:g}, got {value!r}."
    )
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise WrongType(message)
    if not math.isfinite(value) or not (value >= 0 if zero else value > 0) or value > maximum:
        raise OutOfRange(message)
    return float(value)


def seconds(maximum: float, *, zero: bool = False) -> Kind[float]:
    """A finite number of seconds, positive (or zero if *zero*), at most *maximum*."""
    return Kind(
        lambda key, value: _in_seconds(key, value, maximum, zero=zero),
        "float seconds",
        _range(maximum, zero, whole=False),
    )


def count(maximum: int, *, zero: bool = False, unit: str = "", of: str = "") -> Kind[int]:
    """A whole number, positive (or zero if *zero*), at most *maximum*.

    *unit* explains the maximum in messages; *of* names what is counted in the
    reference (``"seconds"``).
    """
    kind = "non-negative" if zero else "positive"
    why = f" {unit}" if unit else ""

    def parse(key: str, value: object) -> int:
        message = (
            f"{describe(key)} must be a {kind} integer, at most {maximum}{why}, got {value!r}."
        )
        if isinstance(value, bool) or not isinstance(value, int):
            raise WrongType(message)
        if value < (0 if zero else 1) or value > maximum:
            raise OutOfRange(message)
        return value

    return Kind(parse, f"int {of}" if of else "int", _range(maximum, zero, whole=True))


def _timeout(key: str, value: object) -> tuple[float, float]:
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise WrongType(
                f"{describe(key)} must be a number or a (connect, read) pair, got {value!r}."
            )
        connect, read = value
        return (
            _in_seconds(key, connect, MAX_CONNECT_TIMEOUT, part=" connect timeout"),
            _in_seconds(key, read, MAX_READ_TIMEOUT, part=" read timeout"),
        )
    return (
        _in_seconds(key, value, MAX_CONNECT_TIMEOUT, part=" (connect and read)"),
        _in_seconds(key, value, MAX_READ_TIMEOUT, part=" (connect and read)"),
    )


def _session_ttl(key: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_SESSION_TTL:
        raise OutOfRange(
            f"{describe(key)} must be at most {MAX_SESSION_TTL} seconds: Clickatell expires "
            f"a session after 900 seconds of inactivity, got {value}."
        )
    return count(MAX_SESSION_TTL)(key, value)


TIMEOUT = Kind(
    _timeout,
    "seconds: float or (connect, read) pair",
    f"connect above 0, at most {MAX_CONNECT_TIMEOUT:g}; read above 0, at most {MAX_READ_TIMEOUT:g}",
)
SESSION_TTL = Kind(_session_ttl, "int seconds", f"1 to {MAX_SESSION_TTL}")


# -- callback credentials ------------------------------------------------------------------


def _credential_pairs(key: str, value: object) -> tuple[tuple[str, Secret], ...]:
    """(user, password) pairs; no message echoes a value (they hold passwords)."""
    if not isinstance(value, list | tuple):
        raise WrongType(
            f"{describe(key)} must be a list of (user, password) pairs, not {type(value).__name__}."
        )
    if len(value) > MAX_CALLBACK_CREDENTIALS:
        raise OutOfRange(
            f"{describe(key)} may hold at most {MAX_CALLBACK_CREDENTIALS} pairs, got {len(value)}."
        )
    return tuple(_credential_pair(key, number, pair) for number, pair in enumerate(value, 1))


def _credential_pair(key: str, number: int, pair: object) -> tuple[str, Secret]:
    part = f" pair {number}"
    if not isinstance(pair, list | tuple) or len(pair) != 2:
        raise WrongType(f"{describe(key)}{part} must be a (user, password) pair.")
    user, password = pair
    if not isinstance(user, str) or not isinstance(password, str):
        raise WrongType(f"{describe(key)}{part} must hold two strings.")
    if not user or not password:
        raise Malformed(f"{describe(key)}{part} has an empty user or password.")
    return _basic_user(key, user, part), Secret(password)


CREDENTIAL_PAIRS = Kind(
    _credential_pairs,
    "list of (user, password) pairs, passwords secret",
    f"at most {MAX_CALLBACK_CREDENTIALS} pairs, none empty, users without ``:``",
)


# -- the callback secret -------------------------------------------------------------------

#: Longest ``CALLBACK_SECRET``: ``secrets.token_urlsafe(96)``; longer only makes URLs unwieldy.
MAX_CALLBACK_SECRET = 128
#: Shorter is weak (warning ``W008``): ``secrets.token_urlsafe(32)`` gives 43 characters.
MIN_CALLBACK_SECRET = 32
#: Fewer different characters is weak too (``"a" * 40``, a word repeated); ``W008``.
MIN_CALLBACK_SECRET_VARIETY = 10
#: What a callback secret may hold: the characters of ``secrets.token_urlsafe``, which
#: stand in a URL path segment as they are.
_URL_SAFE = re.compile(r"[A-Za-z0-9_-]*")


def _callback_secret(key: str, value: object) -> Secret:
    """A secret that fits the callback URL as it is; no message echoes any of it."""
    text = _string(key, value)
    if len(text) > MAX_CALLBACK_SECRET:
        raise OutOfRange(
            f"{describe(key)} must be at most {MAX_CALLBACK_SECRET} characters, got "
            f"{len(text)}: Clickatell must be able to call the URL that carries it."
        )
    if not _URL_SAFE.fullmatch(text):
        raise Malformed(
            f"{describe(key)} may hold only letters, digits, '-' and '_': it is a segment of "
            "the callback URL, where '/', '+' or '=' (of ordinary base64) or a space would "
            "make the URL answer 404. Generate one with secrets.token_urlsafe(32)."
        )
    return Secret(text)


def weak_callback_secret(secret: str) -> str:
    """Why *secret* is guessable ("" if it is not, or unset): for check ``W008``."""
    if not secret:
        return ""
    if len(secret) < MIN_CALLBACK_SECRET:
        return f"shorter than {MIN_CALLBACK_SECRET} characters"
    if len(set(secret)) < MIN_CALLBACK_SECRET_VARIETY:
        return f"made of fewer than {MIN_CALLBACK_SECRET_VARIETY} different characters"
    return ""


CALLBACK_SECRET = Kind(
    _callback_secret,
    "str, secret",
    f"empty (unset), or at most {MAX_CALLBACK_SECRET} letters, digits, ``-`` or ``_``; "
    f"under {MIN_CALLBACK_SECRET} characters or {MIN_CALLBACK_SECRET_VARIETY} different "
    "ones is weak (``W008``)",
)
