"""Keep passwords and session ids out of text that may be logged, raised or stored.

Secrets are wrapped in :class:`Secret` as soon as they are read, so an
accidental ``repr`` or log call shows asterisks; :func:`redact` scrubs free
text (reply excerpts) before it leaves the client.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[redacted]"

# Shapes that carry a secret whatever its value: an ``auth``/``ping`` reply
# (``OK: <session id>``) and form fields a misbehaving server might echo back.
_SECRET_SHAPES = re.compile(
    r"(?P<prefix>\bOK:[ \t]*|\b(?:session_id|password|pwd)[=:][ \t]*)(?P<secret>[^\s&\"'<>]+)",
    re.IGNORECASE,
)


class Secret:
    """A string that never shows itself by accident (``repr``, ``str``, f-strings, logs)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The real value, for the one place that must send it."""
        return self._value

    def __bool__(self) -> bool:
        return bool(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError("Secret values must not be pickled (they would reach a broker or cache)")


def redact(text: str, secrets: Iterable[str | Secret | None] = ()) -> str:
    """Replace every known secret and every secret-shaped value in *text*."""
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if value and len(value) >= 4:
            text = text.replace(value, REDACTED)
    return _SECRET_SHAPES.sub(lambda m: m.group("prefix") + REDACTED, text)


def excerpt(body: str, secrets: Iterable[str | Secret | None] = (), limit: int = 120) -> str:
    """A short, printable, redacted excerpt of a reply body for errors and logs."""
    clean = redact(body, secrets)
    printable = "".join(ch if ch.isprintable() else f"\\x{ord(ch) % 256:02x}" for ch in clean)
    if len(printable) > limit:
        return printable[: limit - 1] + "…"
    return printable
