"""Parse Clickatell's plain-text replies into typed results.

Replies are lines of ``Key: value`` tokens (``ID: abc Status: 006``) or
``ERR: <code>, <description>``.  Formatting varies in the wild (unpadded codes,
missing codes, lower-case keys, ``OK:`` with or without a value), so the
grammar is liberal in what it reads and strict in what it returns: a typed
reply, a :class:`~django_clickatell.exceptions.GatewayError`, or a
:class:`~django_clickatell.exceptions.ProtocolError` with a redacted excerpt.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

from .codes import describe_status, normalize_status
from .errors import GatewayError, ProtocolError, error_for_code
from .redaction import Secret, clean, excerpt, redact

Secrets = Iterable[str | Secret | None]

# Every pattern is anchored (``fullmatch``) and bounded, so matching costs at most
# a few dozen steps whatever the reply; ``ERR`` lines are split, not matched.
_KEY = re.compile(r"[A-Za-z][A-Za-z_]{0,31}")
_ERROR_CODE_DIGITS = 6
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SESSION_ID = re.compile(r"[A-Za-z0-9]{8,64}")
_MSISDN = re.compile(r"\+?[0-9]{3,20}")
# Plain decimal notation, as Clickatell writes credit and charges; bounded so a reply
# cannot hand the caller a number with thousands of digits or an absurd exponent.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,18}(?:\.[0-9]{0,18})?|\.[0-9]{1,18})")


@dataclass(frozen=True)
class ErrorReply:
    """One ``ERR:`` line; ``to`` is set on multi-recipient ``sendmsg`` replies."""

    code: int | None
    description: str
    to: str | None = None

    def as_exception(self, command: str | None = None) -> GatewayError:
        return error_for_code(self.code, self.description, command=command, to=self.to)


@dataclass(frozen=True)
class SessionReply:
    """``auth`` answered ``OK: <session id>``."""

    session_id: str = field(repr=False)


@dataclass(frozen=True)
class PingReply:
    """``ping`` answered ``OK:``, ``OK: `` or ``OK: <session id>``."""


@dataclass(frozen=True)
class MessageStatusReply:
    """``delmsg`` and ``querymsg``: ``ID: <apimsgid> Status: <NNN>``."""

    apimsgid: str
    status: str

    @property
    def description(self) -> str:
        return str(describe_status(self.status).label)

    @property
    def final(self) -> bool:
        return describe_status(self.status).final


@dataclass(frozen=True)
class SentMessageReply:
    """One accepted recipient of ``sendmsg``: ``ID: <apimsgid>`` (``To: <msisdn>`` if several)."""

    apimsgid: str
    to: str | None = None


@dataclass(frozen=True)
class BalanceReply:
    """``getbalance``: ``Credit: <decimal>``."""

    credit: Decimal


@dataclass(frozen=True)
class ChargeReply:
    """``getmsgcharge``: ``apiMsgId: <id> charge: <decimal> status: <NNN>``."""

    apimsgid: str
    charge: Decimal
    status: str


class _Malformed(Exception):
    pass


def _text(body: str | bytes) -> str:
    if isinstance(body, bytes):
        return body.decode("utf-8", errors="replace")
    return body


def _lines(body: str) -> list[str]:
    return [line.strip() for line in body.replace("\r\n", "\n").split("\n") if line.strip()]


def _fields(line: str) -> dict[str, str]:
    """``"ID: abc Status: 006"`` -> ``{"id": "abc", "status": "006"}`` (keys lower-cased)."""
    fields: dict[str, str] = {}
    last_key: str | None = None
    for token in line.split():
        key, colon, rest = token.partition(":")
        if colon and _KEY.fullmatch(key):
            lowered = key.lower()
            if lowered in fields:
                raise _Malformed(f"repeated field {key!r}")
            fields[lowered] = rest
            last_key = lowered if not rest else None
        elif last_key is not None:
            fields[last_key] = token
            last_key = None
        else:
            raise _Malformed("text outside a field")
    return fields


def _parse_error(line: str, secrets: Secrets) -> ErrorReply:
    """``ERR: <code>, <description>[ To: <msisdn>]``, read by splitting, never backtracking.

    The description is gateway text: it is cleaned and redacted here, before it
    can reach an exception, a log or the database.  A recipient that carries a
    secret is refused rather than redacted: a redacted number matches nobody.
    """
    code, rest = _split_error_code(line.removeprefix("ERR:"))
    description, to = _split_recipient(rest)
    if to is not None and (not _MSISDN.fullmatch(to) or _carries_secret(to, secrets)):
        raise _Malformed("unreadable recipient")
    description = description.strip().lstrip(",").strip()
    return ErrorReply(code, clean(description, secrets), to)


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


def _carries_secret(value: str, secrets: Secrets) -> bool:
    """Whether *value* contains a secret (a session id echoed as a message id, say)."""
    return redact(value, secrets) != value


def _require(fields: dict[str, str], *keys: str, optional: tuple[str, ...] = ()) -> None:
    missing = [key for key in keys if not fields.get(key)]
    if missing:
        raise _Malformed(f"missing {', '.join(missing)}")
    unexpected = set(fields) - set(keys) - set(optional)
    if unexpected:
        raise _Malformed(f"unexpected field {sorted(unexpected)[0]!r}")


def _message_id(value: str, secrets: Secrets) -> str:
    """A message id as Clickatell writes it; one that carries a secret is refused.

    Message ids look like session ids (32 hex digits), so they are never
    redacted by shape -- but storing the session id as an ``apimsgid`` would
    put it in the database.
    """
    if not _MESSAGE_ID.fullmatch(value) or _carries_secret(value, secrets):
        raise _Malformed("unreadable message id")
    return value


def _status(value: str) -> str:
    try:
        return normalize_status(value)
    except ValueError:
        raise _Malformed("unreadable status code") from None


def _decimal(value: str) -> Decimal:
    if not _DECIMAL.fullmatch(value):
        raise _Malformed("unreadable number")
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        raise _Malformed("unreadable number") from None


def _protocol_error(command: str, reason: str, text: str, secrets: Secrets) -> ProtocolError:
    """A :class:`ProtocolError` whose reason and excerpt are both cleaned.

    Reasons quote the reply (``unexpected field 'x'``), so they are gateway text too.
    """
    return ProtocolError(command, clean(reason, secrets, limit=80), excerpt(text, secrets))


def _single_line(command: str, text: str, secrets: Secrets) -> str:
    lines = _lines(text)
    if len(lines) != 1:
        reason = "empty reply" if not lines else f"expected one line, got {len(lines)}"
        raise _protocol_error(command, reason, text, secrets)
    line = lines[0]
    if line.startswith("ERR:"):
        try:
            error = _parse_error(line, secrets)
        except _Malformed as exc:
            raise _protocol_error(command, str(exc), text, secrets) from None
        if error.to is not None:
            raise _protocol_error(command, "unexpected recipient", text, secrets)
        raise error.as_exception(command)
    return line


def _parse_single(command: str, text: str, secrets: Secrets) -> dict[str, str]:
    line = _single_line(command, text, secrets)
    try:
        return _fields(line)
    except _Malformed as exc:
        raise _protocol_error(command, str(exc), text, secrets) from None


def parse_auth(body: str | bytes, secrets: Secrets = ()) -> SessionReply:
    text, secrets = _text(body), tuple(secrets)
    fields = _parse_single("auth", text, secrets)
    try:
        _require(fields, "ok")
        if not _SESSION_ID.fullmatch(fields["ok"]):
            raise _Malformed("unreadable session id")
    except _Malformed as exc:
        raise _protocol_error("auth", str(exc), text, secrets) from None
    return SessionReply(fields["ok"])


def parse_ping(body: str | bytes, secrets: Secrets = ()) -> PingReply:
    text, secrets = _text(body), tuple(secrets)
    fields = _parse_single("ping", text, secrets)
    try:
        _require(fields, optional=("ok",))
        if "ok" not in fields:
            raise _Malformed("missing ok")
    except _Malformed as exc:
        raise _protocol_error("ping", str(exc), text, secrets) from None
    return PingReply()


def parse_message_status(
    body: str | bytes, command: str = "delmsg", secrets: Secrets = ()
) -> MessageStatusReply:
    """``delmsg`` and ``querymsg`` share the reply ``ID: <apimsgid> Status: <NNN>``."""
    text, secrets = _text(body), tuple(secrets)
    fields = _parse_single(command, text, secrets)
    try:
        _require(fields, "id", "status")
        return MessageStatusReply(_message_id(fields["id"], secrets), _status(fields["status"]))
    except _Malformed as exc:
        raise _protocol_error(command, str(exc), text, secrets) from None


def parse_balance(body: str | bytes, secrets: Secrets = ()) -> BalanceReply:
    text, secrets = _text(body), tuple(secrets)
    fields = _parse_single("getbalance", text, secrets)
    try:
        _require(fields, "credit")
        return BalanceReply(_decimal(fields["credit"]))
    except _Malformed as exc:
        raise _protocol_error("getbalance", str(exc), text, secrets) from None


def parse_charge(body: str | bytes, secrets: Secrets = ()) -> ChargeReply:
    text, secrets = _text(body), tuple(secrets)
    fields = _parse_single("getmsgcharge", text, secrets)
    try:
        _require(fields, "apimsgid", "charge", "status")
        return ChargeReply(
            _message_id(fields["apimsgid"], secrets),
            _decimal(fields["charge"]),
            _status(fields["status"]),
        )
    except _Malformed as exc:
        raise _protocol_error("getmsgcharge", str(exc), text, secrets) from None


def parse_send(body: str | bytes, secrets: Secrets = ()) -> list[SentMessageReply | ErrorReply]:
    """``sendmsg``: one line per recipient, ``ID:`` lines mixed with ``ERR:`` lines.

    A single ``ERR`` line without a recipient concerns the whole request and is
    raised; per-recipient ``ERR … To:`` lines are returned for the caller to
    record against the matching recipient.
    """
    text, secrets = _text(body), tuple(secrets)
    lines = _lines(text)
    if not lines:
        raise _protocol_error("sendmsg", "empty reply", text, secrets)
    try:
        results = [_parse_send_line(line, secrets) for line in lines]
    except _Malformed as exc:
        raise _protocol_error("sendmsg", str(exc), text, secrets) from None
    if len(results) == 1 and isinstance(results[0], ErrorReply) and results[0].to is None:
        raise results[0].as_exception("sendmsg")
    if len(results) > 1 and any(reply.to is None for reply in results):
        raise _protocol_error("sendmsg", "several lines without recipients", text, secrets)
    return results


def _parse_send_line(line: str, secrets: Secrets) -> SentMessageReply | ErrorReply:
    if line.startswith("ERR:"):
        return _parse_error(line, secrets)
    fields = _fields(line)
    _require(fields, "id", optional=("to",))
    to = fields.get("to") or None
    if to is not None and (not _MSISDN.fullmatch(to) or _carries_secret(to, secrets)):
        raise _Malformed("unreadable recipient")
    return SentMessageReply(_message_id(fields["id"], secrets), to)


_CLIENT_MESSAGE_ID = re.compile(r"[A-Za-z0-9]{1,32}")


def is_message_id(value: str) -> bool:
    """Whether *value* can be a Clickatell ``apimsgid`` (checked before any request)."""
    return bool(_MESSAGE_ID.fullmatch(value))


def is_client_message_id(value: str) -> bool:
    """Whether *value* is a valid ``climsgid``: up to 32 letters and digits."""
    return bool(_CLIENT_MESSAGE_ID.fullmatch(value))
