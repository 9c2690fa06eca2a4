"""Typed replies to Clickatell's commands: one parser per command.

Each parser reads a reply with :mod:`~django_clickatell.protocol.grammar`,
checks every value it keeps, and returns a typed reply, raises the
:class:`~django_clickatell.exceptions.GatewayError` an ``ERR`` line stands
for, or raises a :class:`~django_clickatell.exceptions.ProtocolError` with a
redacted excerpt.  Gateway text is cleaned and redacted here, before it can
reach an exception, a log or the database; an id or number that carries a
secret is refused rather than redacted, since a redacted one matches nothing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from .codes import describe_status, normalize_status
from .errors import GatewayError, ProtocolError, error_for_code
from .grammar import Malformed, fields, lines, require, split_error, text_of
from .msisdn import is_msisdn
from .redaction import Secret, clean, excerpt, redact

Secrets = Iterable[str | Secret | None]

# Anchored (``fullmatch``) and bounded: a few dozen steps at most, whatever the reply.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_CLIENT_MESSAGE_ID = re.compile(r"[A-Za-z0-9]{1,32}")
_SESSION_ID = re.compile(r"[A-Za-z0-9]{8,64}")
# Plain decimal notation, as Clickatell writes credit and charges; bounded so a reply
# cannot hand the caller a number with thousands of digits or an absurd exponent.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,18}(?:\.[0-9]{0,18})?|\.[0-9]{1,18})")


@dataclass(frozen=True)
class ErrorReply:
    """One ``ERR:`` line; ``to`` is set on multi-recipient ``sendmsg`` replies.

    ``code`` is the gateway's own error code, kept for the record (the exchange
    log, the message's ``send_error``).  ``table`` names the API whose error
    table it belongs to: ``"legacy"`` (the HTTP and REST APIs) or ``"one_api"``,
    whose numbers mean other things (26: opted out) and are never read through
    the legacy table.
    """

    code: int | None
    description: str
    to: str | None = None
    table: str = "legacy"

    def as_exception(self, command: str | None = None) -> GatewayError:
        if self.table != "legacy":
            # A refusal of this one message, in another API's numbers: never a session
            # error or a "please retry" of the legacy table.
            return GatewayError(
                self.code, self.description, command=command, to=self.to, table=self.table
            )
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
    """``delmsg`` and ``querymsg``: ``ID: <apimsgid> Status: <NNN>``.

    ``status`` is always the package's code (the legacy table).  ``gateway_status``
    is the API's own name for it where the API has a table of its own (the One
    API's ``SENT_TO_SUPPLIER``), kept for the exchange log; empty for the legacy API.
    ``reported_at`` is when the status happened, where the API says so (the One
    API's millisecond ``timestamp``): statuses are ordered by it, not by when the
    reply arrived.  None where the reply carries no time (``querymsg``, REST):
    then the time the reply arrived stands in.
    """

    apimsgid: str
    status: str
    gateway_status: str = ""
    reported_at: datetime | None = None

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


def is_message_id(value: str) -> bool:
    """Whether *value* can be a Clickatell ``apimsgid`` (checked before any request)."""
    return bool(_MESSAGE_ID.fullmatch(value))


def is_client_message_id(value: str) -> bool:
    """Whether *value* is a valid ``climsgid``: up to 32 letters and digits."""
    return bool(_CLIENT_MESSAGE_ID.fullmatch(value))


# -- one parser per command ----------------------------------------------------------------


def parse_auth(body: str | bytes, secrets: Secrets = ()) -> SessionReply:
    text, secrets = text_of(body), tuple(secrets)
    with _reading("auth", text, secrets):
        found = _single_line_fields("auth", text, secrets)
        require(found, "ok")
        if not _SESSION_ID.fullmatch(found["ok"]):
            raise Malformed("unreadable session id")
        return SessionReply(found["ok"])


def parse_ping(body: str | bytes, secrets: Secrets = ()) -> PingReply:
    text, secrets = text_of(body), tuple(secrets)
    with _reading("ping", text, secrets):
        found = _single_line_fields("ping", text, secrets)
        require(found, optional=("ok",))
        if "ok" not in found:
            raise Malformed("missing ok")
        return PingReply()


def parse_message_status(
    body: str | bytes, command: str = "delmsg", secrets: Secrets = ()
) -> MessageStatusReply:
    """``delmsg`` and ``querymsg`` share the reply ``ID: <apimsgid> Status: <NNN>``."""
    text, secrets = text_of(body), tuple(secrets)
    with _reading(command, text, secrets):
        found = _single_line_fields(command, text, secrets)
        require(found, "id", "status")
        return MessageStatusReply(_message_id(found["id"], secrets), _status(found["status"]))


def parse_balance(body: str | bytes, secrets: Secrets = ()) -> BalanceReply:
    text, secrets = text_of(body), tuple(secrets)
    with _reading("getbalance", text, secrets):
        found = _single_line_fields("getbalance", text, secrets)
        require(found, "credit")
        return BalanceReply(_decimal(found["credit"]))


def parse_charge(body: str | bytes, secrets: Secrets = ()) -> ChargeReply:
    text, secrets = text_of(body), tuple(secrets)
    with _reading("getmsgcharge", text, secrets):
        found = _single_line_fields("getmsgcharge", text, secrets)
        require(found, "apimsgid", "charge", "status")
        return ChargeReply(
            _message_id(found["apimsgid"], secrets),
            _decimal(found["charge"]),
            _status(found["status"]),
        )


def parse_send(body: str | bytes, secrets: Secrets = ()) -> list[SentMessageReply | ErrorReply]:
    """``sendmsg``: one line per recipient, ``ID:`` lines mixed with ``ERR:`` lines.

    A single ``ERR`` line without a recipient concerns the whole request and is
    raised; per-recipient ``ERR … To:`` lines are returned for the caller to
    record against the matching recipient.
    """
    text, secrets = text_of(body), tuple(secrets)
    with _reading("sendmsg", text, secrets):
        results = [_send_line(line, secrets) for line in _some_lines(text)]
        if len(results) > 1 and any(reply.to is None for reply in results):
            raise Malformed("several lines without recipients")
    if len(results) == 1 and isinstance(results[0], ErrorReply) and results[0].to is None:
        raise results[0].as_exception("sendmsg")
    return results


def _send_line(line: str, secrets: Secrets) -> SentMessageReply | ErrorReply:
    if line.startswith("ERR:"):
        return _parse_error(line, secrets)
    found = fields(line)
    require(found, "id", optional=("to",))
    to = _recipient(found.get("to") or None, secrets)
    return SentMessageReply(_message_id(found["id"], secrets), to)


# -- reading a reply -----------------------------------------------------------------------


@contextmanager
def _reading(command: str, text: str, secrets: Secrets) -> Iterator[None]:
    """Inside the block, a :class:`Malformed` reply is *command*'s :class:`ProtocolError`."""
    try:
        yield
    except Malformed as exc:
        raise _protocol_error(command, str(exc), text, secrets) from None


def _protocol_error(command: str, reason: str, text: str, secrets: Secrets) -> ProtocolError:
    """A :class:`ProtocolError` whose reason and excerpt are both cleaned.

    Reasons quote the reply (``unexpected field 'x'``), so they are gateway text too.
    """
    return ProtocolError(command, clean(reason, secrets, limit=80), excerpt(text, secrets))


def _some_lines(text: str) -> list[str]:
    found = lines(text)
    if not found:
        raise Malformed("empty reply")
    return found


def _single_line_fields(command: str, text: str, secrets: Secrets) -> dict[str, str]:
    """The fields of a one-line reply; an ``ERR`` line is raised as the command's error."""
    found = lines(text)
    if len(found) != 1:
        raise Malformed("empty reply" if not found else f"expected one line, got {len(found)}")
    line = found[0]
    if line.startswith("ERR:"):
        error = _parse_error(line, secrets)
        if error.to is not None:
            raise Malformed("unexpected recipient")
        raise error.as_exception(command)
    return fields(line)


def _parse_error(line: str, secrets: Secrets) -> ErrorReply:
    """An ``ERR`` line with its description cleaned and its recipient checked."""
    code, description, to = split_error(line)
    to = _recipient(to, secrets)
    return ErrorReply(code, clean(description, secrets), to)


# -- values --------------------------------------------------------------------------------


def _carries_secret(value: str, secrets: Secrets) -> bool:
    """Whether *value* contains a secret (a session id echoed as a message id, say)."""
    return redact(value, secrets) != value


def _message_id(value: str, secrets: Secrets) -> str:
    """A message id as Clickatell writes it; one that carries a secret is refused.

    Message ids look like session ids (32 hex digits), so they are never
    redacted by shape -- but storing the session id as an ``apimsgid`` would
    put it in the database.
    """
    if not _MESSAGE_ID.fullmatch(value) or _carries_secret(value, secrets):
        raise Malformed("unreadable message id")
    return value


def _recipient(value: str | None, secrets: Secrets) -> str | None:
    """The ``To:`` of a multi-recipient line; one that carries a secret is refused."""
    if value is not None and (not is_msisdn(value) or _carries_secret(value, secrets)):
        raise Malformed("unreadable recipient")
    return value


def _status(value: str) -> str:
    try:
        return normalize_status(value)
    except ValueError:
        raise Malformed("unreadable status code") from None


def _decimal(value: str) -> Decimal:
    if not _DECIMAL.fullmatch(value):
        raise Malformed("unreadable number")
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        raise Malformed("unreadable number") from None
