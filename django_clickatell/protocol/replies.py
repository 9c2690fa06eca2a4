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
from typing import NoReturn

from ..exceptions import GatewayError, ProtocolError, error_for_code
from .codes import describe_status, normalize_status
from .redaction import Secret, excerpt

Secrets = Iterable[str | Secret | None]

_KEY = re.compile(r"[A-Za-z][A-Za-z_]{0,31}")
_ERR = re.compile(
    r"""^ERR:[ \t]*
        (?:(?P<code>\d{1,6})(?![\d.])[ \t]*,?)?      # code, maybe unpadded, maybe absent
        [ \t]*(?P<description>.*?)
        (?:[ \t]+To:[ \t]*(?P<to>\S+))?            # multi-recipient sendmsg
        [ \t]*$""",
    re.VERBOSE,
)
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SESSION_ID = re.compile(r"[A-Za-z0-9]{8,64}")
_MSISDN = re.compile(r"\+?[0-9]{3,20}")


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


def _parse_error(line: str) -> ErrorReply:
    match = _ERR.match(line)
    if match is None:
        raise _Malformed("unreadable ERR line")
    code = match.group("code")
    description = match.group("description").strip().lstrip(",").strip()
    to = match.group("to")
    if to is not None and not _MSISDN.fullmatch(to):
        raise _Malformed("unreadable recipient")
    return ErrorReply(int(code) if code is not None else None, description, to)


def _require(fields: dict[str, str], *keys: str, optional: tuple[str, ...] = ()) -> None:
    missing = [key for key in keys if not fields.get(key)]
    if missing:
        raise _Malformed(f"missing {', '.join(missing)}")
    unexpected = set(fields) - set(keys) - set(optional)
    if unexpected:
        raise _Malformed(f"unexpected field {sorted(unexpected)[0]!r}")


def _message_id(value: str) -> str:
    if not _MESSAGE_ID.fullmatch(value):
        raise _Malformed("unreadable message id")
    return value


def _status(value: str) -> str:
    try:
        return normalize_status(value)
    except ValueError:
        raise _Malformed("unreadable status code") from None


def _decimal(value: str) -> Decimal:
    try:
        number = Decimal(value)
    except InvalidOperation:
        raise _Malformed("unreadable number") from None
    if not number.is_finite():
        raise _Malformed("unreadable number")
    return number


def _single_line(command: str, body: str | bytes, secrets: Secrets) -> tuple[str, str]:
    text = _text(body)
    lines = _lines(text)
    if len(lines) != 1:
        reason = "empty reply" if not lines else f"expected one line, got {len(lines)}"
        raise ProtocolError(command, reason, excerpt(text, secrets))
    line = lines[0]
    if line.startswith("ERR:"):
        try:
            error = _parse_error(line)
        except _Malformed as exc:
            raise ProtocolError(command, str(exc), excerpt(text, secrets)) from None
        if error.to is not None:
            raise ProtocolError(command, "unexpected recipient", excerpt(text, secrets))
        raise error.as_exception(command)
    return text, line


def _parse_single(command: str, body: str | bytes, secrets: Secrets) -> dict[str, str]:
    text, line = _single_line(command, body, secrets)
    try:
        return _fields(line)
    except _Malformed as exc:
        raise ProtocolError(command, str(exc), excerpt(text, secrets)) from None


def _protocol_error(command: str, body: str | bytes, exc: Exception, secrets: Secrets) -> NoReturn:
    raise ProtocolError(command, str(exc), excerpt(_text(body), secrets)) from None


def parse_auth(body: str | bytes, secrets: Secrets = ()) -> SessionReply:
    fields = _parse_single("auth", body, secrets)
    try:
        _require(fields, "ok")
        if not _SESSION_ID.fullmatch(fields["ok"]):
            raise _Malformed("unreadable session id")
    except _Malformed as exc:
        _protocol_error("auth", body, exc, secrets)
    return SessionReply(fields["ok"])


def parse_ping(body: str | bytes, secrets: Secrets = ()) -> PingReply:
    fields = _parse_single("ping", body, secrets)
    try:
        _require(fields, optional=("ok",))
        if "ok" not in fields:
            raise _Malformed("missing ok")
    except _Malformed as exc:
        _protocol_error("ping", body, exc, secrets)
    return PingReply()


def parse_message_status(
    body: str | bytes, command: str = "delmsg", secrets: Secrets = ()
) -> MessageStatusReply:
    """``delmsg`` and ``querymsg`` share the reply ``ID: <apimsgid> Status: <NNN>``."""
    fields = _parse_single(command, body, secrets)
    try:
        _require(fields, "id", "status")
        return MessageStatusReply(_message_id(fields["id"]), _status(fields["status"]))
    except _Malformed as exc:
        _protocol_error(command, body, exc, secrets)


def parse_balance(body: str | bytes, secrets: Secrets = ()) -> BalanceReply:
    fields = _parse_single("getbalance", body, secrets)
    try:
        _require(fields, "credit")
        return BalanceReply(_decimal(fields["credit"]))
    except _Malformed as exc:
        _protocol_error("getbalance", body, exc, secrets)


def parse_charge(body: str | bytes, secrets: Secrets = ()) -> ChargeReply:
    fields = _parse_single("getmsgcharge", body, secrets)
    try:
        _require(fields, "apimsgid", "charge", "status")
        return ChargeReply(
            _message_id(fields["apimsgid"]), _decimal(fields["charge"]), _status(fields["status"])
        )
    except _Malformed as exc:
        _protocol_error("getmsgcharge", body, exc, secrets)


def parse_send(body: str | bytes, secrets: Secrets = ()) -> list[SentMessageReply | ErrorReply]:
    """``sendmsg``: one line per recipient, ``ID:`` lines mixed with ``ERR:`` lines.

    A single ``ERR`` line without a recipient concerns the whole request and is
    raised; per-recipient ``ERR … To:`` lines are returned for the caller to
    record against the matching recipient.
    """
    text = _text(body)
    lines = _lines(text)
    if not lines:
        raise ProtocolError("sendmsg", "empty reply", excerpt(text, secrets))
    results: list[SentMessageReply | ErrorReply] = []
    try:
        for line in lines:
            if line.startswith("ERR:"):
                results.append(_parse_error(line))
                continue
            fields = _fields(line)
            _require(fields, "id", optional=("to",))
            to = fields.get("to") or None
            if to is not None and not _MSISDN.fullmatch(to):
                raise _Malformed("unreadable recipient")
            results.append(SentMessageReply(_message_id(fields["id"]), to))
    except _Malformed as exc:
        raise ProtocolError("sendmsg", str(exc), excerpt(text, secrets)) from None
    if len(results) == 1 and isinstance(results[0], ErrorReply) and results[0].to is None:
        raise results[0].as_exception("sendmsg")
    if len(results) > 1 and any(reply.to is None for reply in results):
        raise ProtocolError("sendmsg", "several lines without recipients", excerpt(text, secrets))
    return results


_CLIENT_MESSAGE_ID = re.compile(r"[A-Za-z0-9]{1,32}")


def is_message_id(value: str) -> bool:
    """Whether *value* can be a Clickatell ``apimsgid`` (checked before any request)."""
    return bool(_MESSAGE_ID.fullmatch(value))


def is_client_message_id(value: str) -> bool:
    """Whether *value* is a valid ``climsgid``: up to 32 letters and digits."""
    return bool(_CLIENT_MESSAGE_ID.fullmatch(value))
