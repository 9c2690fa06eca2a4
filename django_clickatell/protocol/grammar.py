"""How a Clickatell reply is cut into pieces: lines, ``Key: value`` fields and ``ERR`` lines.

Syntax only: the pieces come back as the raw strings the gateway wrote, and
:mod:`~django_clickatell.protocol.replies` decides what each value may be and
which command may answer what.  A line that cannot be cut raises
:class:`Malformed`, which the parsers turn into a
:class:`~django_clickatell.exceptions.ProtocolError` quoting a redacted excerpt.

Liberal in what it reads -- codes with or without padding or at all,
lower-case keys, ``Key:value`` without the space -- and linear in the input:
every pattern is anchored (``fullmatch``) and bounded, and ``ERR`` lines are
split, never matched with backtracking.
"""

from __future__ import annotations

import re

_KEY = re.compile(r"[A-Za-z][A-Za-z_]{0,31}")
_ERROR_CODE_DIGITS = 6


class Malformed(Exception):
    """A reply that does not follow the grammar; the message is a short reason."""


def text_of(body: str | bytes) -> str:
    """The reply as text (served as text/html without a charset; the protocol is ASCII)."""
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return body


def lines(body: str) -> list[str]:
    """The reply's non-blank lines, stripped (``\\r\\n`` and ``\\n`` both end a line)."""
    return [line.strip() for line in body.replace("\r\n", "\n").split("\n") if line.strip()]


def fields(line: str) -> dict[str, str]:
    """``"ID: abc Status: 006"`` -> ``{"id": "abc", "status": "006"}`` (keys lower-cased)."""
    found: dict[str, str] = {}
    last_key: str | None = None
    for token in line.split():
        key, colon, rest = token.partition(":")
        if colon and _KEY.fullmatch(key):
            lowered = key.lower()
            if lowered in found:
                raise Malformed(f"repeated field {key!r}")
            found[lowered] = rest
            last_key = lowered if not rest else None
        elif last_key is not None:
            found[last_key] = token
            last_key = None
        else:
            raise Malformed("text outside a field")
    return found


def require(found: dict[str, str], *keys: str, optional: tuple[str, ...] = ()) -> None:
    """*keys* are present and not empty, and nothing but *keys* and *optional* is."""
    missing = [key for key in keys if not found.get(key)]
    if missing:
        raise Malformed(f"missing {', '.join(missing)}")
    unexpected = set(found) - set(keys) - set(optional)
    if unexpected:
        raise Malformed(f"unexpected field {sorted(unexpected)[0]!r}")


def split_error(line: str) -> tuple[int | None, str, str | None]:
    """``ERR: <code>, <description>[ To: <msisdn>]`` -> code, description, recipient.

    The description and the recipient are the gateway's text, unchecked: the
    caller cleans the one and validates the other before either goes anywhere.
    """
    code, rest = _split_error_code(line.removeprefix("ERR:"))
    description, to = _split_recipient(rest)
    return code, description.strip().lstrip(",").strip(), to


def _split_error_code(text: str) -> tuple[int | None, str]:
    """``" 001, Authentication failed"`` -> ``(1, " Authentication failed")``.

    The code is optional and may be unpadded; a run of more than six digits or
    a number with a decimal point is part of the description, not a code.  The
    whitespace before the description is kept: it tells :func:`_split_recipient`
    whether a leading ``To:`` is a word of its own.
    """
    stripped = text.lstrip()
    digits = len(stripped) - len(stripped.lstrip("0123456789"))
    if not 1 <= digits <= _ERROR_CODE_DIGITS or stripped[digits : digits + 1] == ".":
        return None, text
    rest = stripped[digits:]
    if rest.lstrip().startswith(","):
        rest = rest.lstrip()[1:]
    return int(stripped[:digits]), rest


def _split_recipient(text: str) -> tuple[str, str | None]:
    """Split off a trailing ``To: <msisdn>`` (or ``To:<msisdn>``) of a multi-recipient error.

    ``To:`` counts only as a word after whitespace, as in ``ERR: 105, To: 2799…``;
    ``ERR: 105,To: 2799…`` is a description.
    """
    words = text.rsplit(None, 2)
    first_word_counts = text[:1].isspace()
    last = words[-1] if words else ""
    if last.startswith("To:") and len(last) > len("To:") and (len(words) > 1 or first_word_counts):
        return (text.rsplit(None, 1)[0] if len(words) > 1 else ""), last[len("To:") :]
    if len(words) >= 2 and words[-2] == "To:" and (len(words) > 2 or first_word_counts):
        return (words[0] if len(words) == 3 else ""), last
    return text, None
