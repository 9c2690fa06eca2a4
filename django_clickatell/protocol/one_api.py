"""Clickatell's One API (Platform accounts) in pure functions: statuses, replies, callbacks.

A first step towards the One API backend (issue 14): what the API says, parsed
into typed results or typed errors, with no I/O.  The formats are summarised in
``shared/clickatell-rest-and-one-api.md``; items marked *unverified* there are
accepted liberally here and easy to adjust.

**Its status values are not the legacy codes**: ``4`` is "sent to the
network" here and "delivered to gateway" in the legacy API.  They live in a
table of their own (:data:`STATUSES`), keyed by name; never compare them with
the legacy numbers.  Unknown names are kept, not rejected.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from .codes import STATUSES as LEGACY_STATUSES
from .errors import (
    AuthenticationError,
    ClickatellError,
    GatewayError,
    InvalidCallback,
    ProtocolError,
    UnknownMessage,
    http_error,
)
from .msisdn import is_msisdn
from .redaction import Secret, clean, excerpt
from .replies import BalanceReply, MessageStatusReply, is_client_message_id, is_message_id

#: Replies and callbacks larger than this are refused unread (a reply for 200 messages
#: is a few tens of kilobytes).
MAX_BODY = 1_000_000
#: Messages per send request the API accepts.
MAX_BATCH = 200
#: The longest wait a ``Retry-After`` may ask for; a longer one is cut to this.

Secrets = Iterable[str | Secret | None]

_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,18}(?:\.[0-9]{0,18})?|\.[0-9]{1,18})")


#: The package's status for a One API status it does not know: ``001``, "message
#: unknown".  It ranks lowest in :mod:`.lifecycle`, so it never replaces any status
#: already recorded (only "nothing yet"), and it is not final: a later report still counts.
UNKNOWN_MEANING = "001"


@dataclass(frozen=True)
class OneApiStatus:
    """One row of the One API's own status table (``stopped``: a user stopped it).

    ``meaning`` is the package's status code (the legacy table, ``protocol.codes``)
    this status means -- translated by meaning, never by number.
    """

    name: str
    code: int | None
    final: bool
    stopped: bool = False
    known: bool = True
    meaning: str = UNKNOWN_MEANING


def _row(name: str, code: int, meaning: str, *, final: bool = True) -> OneApiStatus:
    return OneApiStatus(name, code, final=final, stopped=meaning == "006", meaning=meaning)


#: The One API's status table (docs.clickatell.com "one-api-message-status-table") and
#: what each status means in the package's own vocabulary, the legacy codes:
#:
#: ======================================  ====  ======================================
#: One API status (code)                   ours  why
#: ======================================  ====  ======================================
#: UNKNOWN (1)                             001   "message not found": message unknown
#: QUEUED (2)                              008   accepted, queued at Clickatell, not yet
#:                                               with the network: *before* SENT_TO_SUPPLIER.
#:                                               Not legacy 002 ("awaiting redelivery"),
#:                                               which alternates with 003 at the same
#:                                               stage: a QUEUED read that way replaced a
#:                                               recorded SENT_TO_SUPPLIER (issue 19)
#: SCHEDULED (3)                           011   queued for later delivery
#: SENT_TO_SUPPLIER (4)                    003   handed to the network ("delivered to
#: DELIVERED_TO_GATEWAY (4, older name)          gateway" in legacy terms; not final)
#: DEVICE_ACK (5), READ (6)                004   received by the recipient
#: EXPIRED (20)                            010   expired
#: STOPPED_BY_USER (21)                    006   stopped: the only One API report that
#:                                               records a message stopped remotely
#: STOPPED_BY_ADMIN (22)                   007   stopped by Clickatell, not by us: a
#:                                               failure, never "cancelled"
#: DELIVERY_FAILURE (23), EMULATED (24),   007   not delivered
#: RECIPIENT_DOES_NOT_EXIST (29)
#: INSUFFICIENT_ACCOUNT_BALANCE (25)       012   out of credit
#: VOLUME_LIMIT(_DAILY/_MONTHLY) (26-28)   014   maximum MT limit exceeded
#: ENCRYPTION_* (60, 61), MEDIA_* (80-85)  005   error with the message
#: ROUTING_ERROR (100)                     009   routing error
#: anything else                           001   unknown: kept in ``gateway_status``,
#:                                               never replaces a recorded status
#: ======================================  ====  ======================================
STATUSES: dict[str, OneApiStatus] = {
    status.name: status
    for status in (
        _row("UNKNOWN", 1, "001", final=False),
        _row("QUEUED", 2, "008", final=False),
        _row("SCHEDULED", 3, "011", final=False),
        _row("SENT_TO_SUPPLIER", 4, "003", final=False),
        # The name a third-party callback definition uses for code 4 (unverified).
        _row("DELIVERED_TO_GATEWAY", 4, "003", final=False),
        _row("DEVICE_ACK", 5, "004"),
        _row("READ", 6, "004"),
        _row("EXPIRED", 20, "010"),
        _row("STOPPED_BY_USER", 21, "006"),
        _row("STOPPED_BY_ADMIN", 22, "007"),
        _row("DELIVERY_FAILURE", 23, "007"),
        _row("EMULATED", 24, "007"),
        _row("INSUFFICIENT_ACCOUNT_BALANCE", 25, "012"),
        _row("VOLUME_LIMIT", 26, "014"),
        _row("VOLUME_LIMIT_DAILY", 27, "014"),
        _row("VOLUME_LIMIT_MONTHLY", 28, "014"),
        _row("RECIPIENT_DOES_NOT_EXIST", 29, "007"),
        _row("ENCRYPTION_ACCESS_DENIED", 60, "005"),
        _row("ENCRYPTION_CONTENT_ERROR", 61, "005"),
        _row("MEDIA_NOT_FOUND", 80, "005"),
        _row("MEDIA_SIZE_ERROR", 81, "005"),
        _row("MEDIA_CHECKSUM_FAILURE", 82, "005"),
        _row("MEDIA_REJECTED_BY_SUPPLIER", 83, "005"),
        _row("MEDIA_METADATA_ERROR", 84, "005"),
        _row("MEDIA_ACCESS_ERROR", 85, "005"),
        _row("ROUTING_ERROR", 100, "009"),
    )
}
_BY_CODE: dict[int, OneApiStatus] = {}
for _status in STATUSES.values():
    if _status.code is not None:
        _BY_CODE.setdefault(_status.code, _status)


def describe_status(name: object = None, code: object = None) -> OneApiStatus:
    """The row for a status given by name, by number, or both; unknown ones are kept."""
    number = _as_int(code)
    if isinstance(name, str) and name.strip():
        key = name.strip().upper()[:32]
        if key in STATUSES:
            return STATUSES[key]
        return OneApiStatus(key, number, final=False, known=False)
    if number is not None and number in _BY_CODE:
        return _BY_CODE[number]
    if number is not None:
        return OneApiStatus(f"CODE_{number}", number, final=False, known=False)
    raise ValueError("a status needs a name or a number")


@dataclass(frozen=True)
class Submission:
    """What the One API said about one message of a send request."""

    to: str
    accepted: bool
    apimsgid: str | None = None
    error_code: int | None = None
    error_description: str = ""
    #: The ``clientMessageId`` the result names, if it names one (the documented reply
    #: may; what names the message surely when a request carries several).
    climsgid: str = ""


@dataclass(frozen=True)
class StatusEvent:
    """One status report about a message (a status reply or a callback event)."""

    apimsgid: str
    climsgid: str
    status: OneApiStatus
    reported_at: datetime | None


def status_reply(event: StatusEvent) -> MessageStatusReply:
    """A status report in the package's terms: the meaning as ``status``, the name and
    the time the status happened kept (the reply is ordered by that time, not by when it
    arrived)."""
    return MessageStatusReply(
        event.apimsgid, event.status.meaning, event.status.name, event.reported_at
    )


def parse_send(
    status_code: int,
    body: str | bytes,
    secrets: Secrets = (),
    *,
    retry_after: float | None = None,
) -> list[Submission]:
    """``POST /v1/message``: ``202``/``207`` give one result per message; anything else raises.

    Request-level errors map to the same typed errors as the legacy API:
    ``401`` refused credentials, ``400``/``402``/``404`` the request's fault
    (not retried), ``429`` and ``5xx`` transient.
    """
    secrets = tuple(secrets)
    if status_code not in (202, 207):
        raise error_for_status("sendmsg", status_code, body, secrets, retry_after=retry_after)
    document = _json_object("sendmsg", body, secrets)
    entries = document.get("messages")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_BATCH:
        raise ProtocolError("sendmsg", "no message results", excerpt(_text(body), secrets))
    return [_submission(entry, body, secrets) for entry in entries]


def parse_status(body: str | bytes, apimsgid: str, secrets: Secrets = ()) -> StatusEvent:
    """``GET /v1/message/{id}``: ``{"sms": {"status": "QUEUED", "timestamp": <ms>}}``."""
    secrets = tuple(secrets)
    document = _json_object("querymsg", body, secrets)
    named = document.get("messageId", document.get("apiMessageId"))
    if named is not None and named != apimsgid:
        raise ProtocolError(
            "querymsg", "a status of another message", excerpt(_text(body), secrets)
        )
    sms = document.get("sms", document)
    if not isinstance(sms, Mapping):
        raise ProtocolError("querymsg", "no status", excerpt(_text(body), secrets))
    try:
        status = describe_status(sms.get("status"), sms.get("statusCode"))
        when = milliseconds(sms.get("timestamp"))
    except ValueError as exc:
        raise ProtocolError("querymsg", str(exc), excerpt(_text(body), secrets)) from None
    return StatusEvent(apimsgid, "", status, when)


def parse_balance(body: str | bytes, secrets: Secrets = ()) -> BalanceReply:
    """``GET /v1/balance``: ``{"currency": "ZAR", "balance": 123.45}`` (*unverified*)."""
    secrets = tuple(secrets)
    document = _json_object("getbalance", body, secrets)
    value = document.get("balance")
    if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
        return BalanceReply(Decimal(value.strip()))
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) < 10**18:
        return BalanceReply(Decimal(value))
    if isinstance(value, float) and math.isfinite(value) and abs(value) < 1e18:
        return BalanceReply(Decimal(repr(value)))
    raise ProtocolError("getbalance", "unreadable balance", excerpt(_text(body), secrets))


def parse_callback(body: str | bytes) -> list[StatusEvent]:
    """A status callback (JSON POST); raises :class:`InvalidCallback` with a safe reason.

    Accepts the One API envelope (``{"event": {"messageStatusUpdate": [...]}}``)
    and the older Platform callback (one flat object).  Duplicates and
    out-of-order events are normal: the caller applies each through the
    lifecycle rule.
    """
    events = []
    for event in parse_callback_events(body):
        if isinstance(event, InvalidCallback):
            raise event
        events.append(event)
    return events


def parse_callback_events(body: str | bytes) -> list[StatusEvent | InvalidCallback]:
    """A status callback's events, each parsed on its own: an event, or why it is unreadable.

    Raises :class:`InvalidCallback` only for a body that is not a callback (not
    JSON, no list of updates, more than :data:`MAX_BATCH`).  One malformed event
    among 200 must not cost the other 199: the caller records the readable ones
    and reports the others.
    """
    try:
        document = _json_object("callback", body, ())
    except ProtocolError as exc:
        raise InvalidCallback(exc.reason) from None
    event = document.get("event")
    flat = not isinstance(event, Mapping)
    updates = event.get("messageStatusUpdate") if isinstance(event, Mapping) else [document]
    if not isinstance(updates, list) or not updates or len(updates) > MAX_BATCH:
        raise InvalidCallback("no status updates")
    parsed: list[StatusEvent | InvalidCallback] = []
    for update in updates:
        try:
            parsed.append(_event(update, flat=flat))
        except InvalidCallback as exc:
            parsed.append(exc)
    return parsed


#: The timestamps a report may carry (2000-01-01 to 2100-01-01, in milliseconds): anything
#: outside is nonsense, refused rather than guessed at.  A time in the future within the
#: range is kept here and clamped to "now" where it is compared (``lifecycle.clamp``).
EARLIEST_MS = 946_684_800_000
LATEST_MS = 4_102_444_800_000
_MS_DIGITS = re.compile(r"[0-9]{1,16}")
#: How the legacy HTTP API's plain-text replies begin ("ERR: 005, Missing session ID").
_LEGACY_HTTP_REPLY = re.compile(r"(?:ERR|OK|ID|Credit): ")


def is_legacy_http_reply(text: str) -> bool:
    """*text* (a reply's start) is the legacy HTTP API's: ``BASE_URL`` points at ``…/http/``."""
    return _LEGACY_HTTP_REPLY.match(text) is not None


def milliseconds(value: object) -> datetime | None:
    """A One API timestamp (milliseconds since the epoch) as an aware UTC datetime.

    Absent (``None``, ``""``) is None: the caller stands in the time the report
    arrived.  A JSON integer, an integral number written as a float
    (``1506607698000.0``) or a string of digits is read; anything else -- a
    boolean, a fraction, text, NaN, a number outside :data:`EARLIEST_MS` ..
    :data:`LATEST_MS` -- raises ``ValueError`` (the callers' typed errors).  A
    string is matched against a bounded pattern before it is converted: linear,
    whatever its length.
    """
    if value is None or value == "":
        return None
    number = _as_int(value)
    if number is None and isinstance(value, float) and math.isfinite(value):
        number = int(value) if value.is_integer() and abs(value) < 1e17 else None
    if number is None and isinstance(value, str) and _MS_DIGITS.fullmatch(value.strip()):
        number = int(value.strip())
    if number is None:
        raise ValueError("unreadable timestamp")
    if not EARLIEST_MS <= number <= LATEST_MS:
        raise ValueError("timestamp out of range")
    return datetime.fromtimestamp(number / 1000, tz=timezone.utc)


def error_for_status(
    command: str,
    status_code: int,
    body: str | bytes,
    secrets: Secrets = (),
    *,
    retry_after: float | None = None,
) -> ClickatellError:
    """The typed error for a request-level HTTP answer of the One API (or the REST API).

    ``404`` to a status query is :class:`UnknownMessage` (code 103, "unknown API
    message id"); *retry_after* (see :func:`.retry_after.retry_after`) travels with a
    transient error.
    """
    code, description = _error_detail(body, tuple(secrets))
    if status_code == 401:
        return AuthenticationError(code, description or "Unauthorized", command=command)
    if status_code == 404 and command in ("querymsg", "delmsg"):
        return UnknownMessage(103, description or "Unknown API message ID", command=command)
    if status_code in (400, 402, 404, 405, 410):
        return GatewayError(
            code, description or f"HTTP {status_code}", command=command, table="one_api"
        )
    # 429, 5xx: transient, asked again later
    return http_error(command, status_code, retry_after=retry_after)


def _submission(entry: object, body: str | bytes, secrets: tuple[Any, ...]) -> Submission:
    def unreadable() -> ProtocolError:
        return ProtocolError("sendmsg", "unreadable message result", excerpt(_text(body), secrets))

    if not isinstance(entry, Mapping):
        raise unreadable()
    to, accepted = entry.get("to"), entry.get("accepted")
    apimsgid = entry.get("apiMessageId") or None
    if not isinstance(to, str) or not is_msisdn(to) or not isinstance(accepted, bool):
        raise unreadable()
    if apimsgid is not None and not (isinstance(apimsgid, str) and is_message_id(apimsgid)):
        raise unreadable()
    if accepted and apimsgid is None:
        raise unreadable()  # accepted, but under no id we could ask about
    climsgid = entry.get("clientMessageId") or ""
    if not isinstance(climsgid, str) or (climsgid and not is_client_message_id(climsgid)):
        raise unreadable()  # it names a message, but not as any message is named
    code, description = _any_error(entry, secrets)
    return Submission(to.removeprefix("+"), accepted, apimsgid, code, description, climsgid)


def _platform_status(name: object, code: object) -> OneApiStatus:
    """A status of the older Platform callback, whose ``statusCode`` 1-14 are legacy codes.

    A name the One API table knows wins (names do not collide); a number in the
    legacy range means what the legacy table says (6: user cancelled, not the One
    API's READ), or "unknown" if that table does not list it; a larger number can
    only be the One API's.
    """
    number = _as_int(code)
    key = name.strip().upper()[:32] if isinstance(name, str) else ""
    if key in STATUSES or number is None or not 1 <= number <= 14:
        return describe_status(name, code)
    legacy = f"{number:03d}"
    label = key or f"PLATFORM_{number}"
    if legacy not in LEGACY_STATUSES:
        return OneApiStatus(label, number, final=False, known=False)
    final = LEGACY_STATUSES[legacy].final
    return OneApiStatus(label, number, final=final, stopped=legacy == "006", meaning=legacy)


def _event(update: object, *, flat: bool = False) -> StatusEvent:
    if not isinstance(update, Mapping):
        raise InvalidCallback("unreadable status update")
    apimsgid = update.get("messageId") or update.get("apiMessageId")
    climsgid = update.get("clientMessageId") or ""
    if not isinstance(apimsgid, str) or not is_message_id(apimsgid):
        raise InvalidCallback("missing or malformed messageId")
    if not isinstance(climsgid, str) or (climsgid and not is_client_message_id(climsgid)):
        raise InvalidCallback("malformed clientMessageId")
    try:
        read = _platform_status if flat else describe_status
        status = read(update.get("status"), update.get("statusCode"))
        when = milliseconds(update.get("timestamp"))
    except ValueError as exc:
        raise InvalidCallback(str(exc)) from None
    return StatusEvent(apimsgid, climsgid, status, when)


def _error_detail(body: str | bytes, secrets: tuple[Any, ...]) -> tuple[int | None, str]:
    """The error code and description of a request-level answer, wherever the body puts them.

    Read defensively, in this order: the documented ``{"error": {"code",
    "description"}}``; the flat ``errorCode`` / ``errorDescription`` (or an
    ``error`` string) of the Platform API's replies; then the messages' own
    errors (``messages[].error``), which a ``400`` about a single message may be
    the only place to carry -- kept when every message refused carries the same.
    """
    try:
        document = json.loads(_text(body)) if len(body) <= MAX_BODY else None
    except (ValueError, RecursionError):
        return None, ""
    if not isinstance(document, Mapping):
        return None, ""
    code, description = _any_error(document, secrets)
    if code is None and not description:
        code, description = _messages_error(document.get("messages"), secrets)
    return code, description


def _any_error(holder: Mapping[str, Any], secrets: tuple[Any, ...]) -> tuple[int | None, str]:
    """``error: {code, description}``, else the flat ``errorCode`` / ``errorDescription``."""
    code, description = _error_fields(holder.get("error"), secrets)
    if code is not None or description:
        return code, description
    flat = {"code": holder.get("errorCode"), "description": holder.get("errorDescription")}
    if not isinstance(flat["description"], str) and isinstance(holder.get("error"), str):
        flat["description"] = holder["error"]
    return _error_fields(flat, secrets)


def _messages_error(entries: object, secrets: tuple[Any, ...]) -> tuple[int | None, str]:
    """The one error the refused messages of a request-level answer share, if they share one."""
    if not isinstance(entries, list) or not 0 < len(entries) <= MAX_BATCH:
        return None, ""
    errors = {_any_error(entry, secrets) for entry in entries if isinstance(entry, Mapping)} - {
        (None, "")
    }
    return errors.pop() if len(errors) == 1 else (None, "")


def _error_fields(error: object, secrets: tuple[Any, ...]) -> tuple[int | None, str]:
    if not isinstance(error, Mapping):
        return None, ""
    code = error.get("code")
    if isinstance(code, str) and code.isascii() and code.isdigit() and len(code) < 7:
        code = int(code)
    number = _as_int(code)
    description = error.get("description")
    return (
        number if number is not None and 0 <= number < 10**6 else None,
        clean(description, secrets) if isinstance(description, str) else "",
    )


def _json_object(command: str, body: str | bytes, secrets: tuple[Any, ...]) -> Mapping[str, Any]:
    if len(body) > MAX_BODY:
        raise ProtocolError(command, "reply too large", "")
    text = _text(body)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError(command, "not JSON", excerpt(text, secrets)) from None
    if not isinstance(document, Mapping):
        raise ProtocolError(command, "not a JSON object", excerpt(text, secrets))
    return document


def _text(body: str | bytes) -> str:
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body


def _as_int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
