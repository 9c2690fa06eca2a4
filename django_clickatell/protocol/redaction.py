"""Keep passwords and session ids out of text that may be logged, raised or stored.

Secrets are wrapped in :class:`Secret` as soon as they are read, so an
accidental ``repr`` or log call shows asterisks.  Text that comes from the
gateway -- ``ERR`` descriptions, excerpts of unreadable replies -- goes through
:func:`clean` before it reaches a reply object or an exception: a gateway or a
proxy that echoes the request would otherwise carry the password and session id
into the exchange log, the admin, the cache and tracebacks.

Every pattern here is built so that matching is linear in the length of the
text (no nested or adjacent quantifiers that can trade characters between each
other): the text is hostile and may be large.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable

REDACTED = "[redacted]"
ELLIPSIS = "…"

# Values of credential-like fields, whatever the value: an ``auth``/``ping`` reply
# (``OK: <session id>``), form, query and JSON fields a server might echo back,
# HTTP authorisation headers and passwords in URLs.  Each alternative has a
# ``prefix`` that stays readable and a value that is replaced.
_NAMES = r"(?:password|passwd|pwd|session[_-]?id|api[_-]?key|token|secret)"
_SECRET_SHAPES = re.compile(
    r"""
    (?P<p_auth>\b(?:proxy-)?authorization["']?\s*[=:]\s*["']?
        (?:(?:basic|bearer|digest|negotiate|token)\s+)?)
    (?P<v_auth>[^\s,;"'<>&]+)
    |
    (?P<p_scheme>\b(?:basic|bearer)\s+)(?P<v_scheme>[A-Za-z0-9._~+/=-]+)
    |
    # ``://user:password@host``: the password runs to the last ``@`` before the path.
    (?P<p_url>://[^\s/@:]{0,256}:)(?P<v_url>[^\s/]{0,256})(?=@)
    |
    (?P<p_ok>\bOK:\s*)(?P<v_ok>[^\s&"'<>]+)
    |
    # A field whose name ends with a credential name (``password``, ``client_secret``,
    # ``"api_key"``...), in form, query, header or JSON syntax.  Starting only where a
    # name can start keeps the scan over a run of word characters linear.
    (?P<p_field>(?<![\w.-])["']?[\w.-]*?"""
    + _NAMES
    + r"""["']?\s*(?:=>?|:)\s*)
    (?P<v_field>"(?:[^"\\]|\\.)*"?|'(?:[^'\\]|\\.)*'?|[^\s&"'<>,;]+)
    """,
    re.IGNORECASE | re.VERBOSE | re.DOTALL,
)

#: How far past its start a shape's prefix and a URL password reach (see ``clean``).
_SHAPE_REACH = 1024
#: The longest echo of one character: four percent-encoded UTF-8 bytes (``%F0%9F%98%80``).
_ECHO_REACH = 12

# How a character of a known secret may be echoed besides itself: HTML entities and
# JSON/JavaScript escapes (percent-encoding and numeric entities are built per character).
_EXTRA_FORMS: dict[str, tuple[str, ...]] = {
    " ": (r"\+",),
    "&": ("&amp;",),
    "<": ("&lt;",),
    ">": ("&gt;",),
    '"': ("&quot;", r'\\"'),
    "'": ("&apos;", r"\\'"),
    "\\": (r"\\\\",),
    "/": (r"\\/",),
}


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


def clean(text: str, secrets: Iterable[str | Secret | None] = (), limit: int = 255) -> str:
    """Gateway text made safe to store, log, raise and show.

    Whitespace runs collapse to one space; characters that are not printable
    (NUL, which PostgreSQL refuses in text columns, other control characters,
    bidirectional overrides, lone surrogates) are escaped as ``\\xNN``/``\\uNNNN``;
    every known secret in any common encoding and every credential-shaped value
    is redacted; the result is cut to *limit* characters, ending with an ellipsis
    when cut.

    Linear in ``len(text)``: only whitespace is collapsed over the whole text;
    escaping and redaction work on a window long enough that every match
    starting inside the first *limit* characters ends inside it.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    values = _secret_values(secrets)
    window = limit + _SHAPE_REACH + _ECHO_REACH * max(map(len, values), default=0)
    collapsed = " ".join(text.split())[:window]
    return _truncate(_redact(_escape_unprintable(collapsed)[:window], values), limit)


def redact(text: str, secrets: Iterable[str | Secret | None] = ()) -> str:
    """Replace every known secret and every secret-shaped value in *text*.

    Known secrets are matched whatever mix of their forms an echo uses: the
    character itself, percent-encoded (either case), ``+`` for a space, HTML
    entities and JSON escapes.  Secrets are redacted in one pass, longest first,
    so one secret inside another cannot leave a fragment behind.
    """
    return _redact(text, _secret_values(secrets))


def excerpt(body: str, secrets: Iterable[str | Secret | None] = (), limit: int = 120) -> str:
    """A short, printable, redacted excerpt of a reply body for errors and logs."""
    return clean(body, secrets, limit)


def _redact(text: str, values: tuple[str, ...]) -> str:
    if values:
        text = _known_secrets(values).sub(REDACTED, text)
    return _SECRET_SHAPES.sub(_redact_shape, text)


@functools.lru_cache(maxsize=16)
def _known_secrets(values: tuple[str, ...]) -> re.Pattern[str]:
    """One pattern for a set of secrets, built once: a reply may have thousands of lines."""
    return re.compile("|".join(_secret_pattern(value) for value in values))


def _printable(text: str) -> str:
    return _escape_unprintable(" ".join(text.split()))


def _escape_unprintable(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - 1] + ELLIPSIS


def _secret_values(secrets: Iterable[str | Secret | None]) -> tuple[str, ...]:
    """Each secret as given and as :func:`_printable` renders it, longest first."""
    values: set[str] = set()
    for secret in secrets:
        value = secret.reveal() if isinstance(secret, Secret) else secret
        if not value:
            continue
        values.update(form for form in (value, _printable(value)) if form)
    return tuple(sorted(values, key=lambda value: (-len(value), value)))


def _secret_pattern(value: str) -> str:
    return "".join(_char_pattern(ch) for ch in value)


def _char_pattern(ch: str) -> str:
    code = ord(ch)
    forms = [
        re.escape(ch),
        "".join("%" + _hex_pattern(f"{byte:02x}") for byte in ch.encode("utf-8", "surrogatepass")),
        f"&#{code};",
        f"&#[xX]{_hex_pattern(f'{code:x}')};",
        *_EXTRA_FORMS.get(ch, ()),
    ]
    if code <= 0xFFFF:
        forms.append(r"\\u" + _hex_pattern(f"{code:04x}"))
    return "(?:" + "|".join(forms) + ")"


def _hex_pattern(digits: str) -> str:
    """Hex digits matched in either case (``%2f`` and ``%2F`` are the same byte)."""
    return "".join(f"[{d}{d.upper()}]" if d.isalpha() else d for d in digits)


def _redact_shape(match: re.Match[str]) -> str:
    group = match.lastgroup or ""
    return match.group("p" + group[1:]) + REDACTED


# -- callback paths in request logs ----------------------------------------------------------

#: ``one-api/<alias>/`` of a One API callback path, and after it, up to a space, a quote,
#: ``?`` or ``#``, the secret (with any ``/`` a malformed one has).  Linear: two runs of
#: disjoint classes around one ``/``.
_CALLBACK_PATH = re.compile(r"(one-api/[^/\s\"']{0,256}/)[^\s\"'?#]+")
CALLBACK_SECRET_SHOWN = "[secret]"  # noqa: S105 (what is shown, not a secret)


def redact_callback_paths(text: str) -> str:
    """*text* with the secret of every One API callback path in it replaced."""
    if "one-api/" not in text:
        return text
    return _CALLBACK_PATH.sub(rf"\1{CALLBACK_SECRET_SHOWN}", text)


class RedactCallbackSecrets(logging.Filter):
    """Writes ``[secret]`` in place of the secret of a One API callback path in a record.

    The callback views answer without Django's request log, but an access log
    writes every request line -- ``runserver``'s (``django.server``) for every
    answer, a 200 included.  The app puts this filter on ``django.server`` and
    ``django.request`` when it starts; add it to your own access log (gunicorn's
    ``logconfig_dict``: it imports no Django code, so it loads before Django does).
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError, KeyError):
            return True  # not ours to mend: the handler reports a broken record
        redacted = redact_callback_paths(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
