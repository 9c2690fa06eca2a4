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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .errors import (
    AuthenticationError,
    GatewayError,
    GatewayHTTPError,
    InvalidCallback,
    ProtocolError,
)
from .msisdn import is_msisdn
from .redaction import Secret, clean, excerpt
from .replies import is_client_message_id, is_message_id

#: Replies and callbacks larger than this are refused unread (a reply for 200 messages
#: is a few tens of kilobytes).
MAX_BODY = 1_000_000
#: Messages per send request the API accepts.
MAX_BATCH = 200

Secrets = Iterable[str | Secret | None]


@dataclass(frozen=True)
class OneApiStatus:
    """One row of the One API's own status table (``stopped``: a user stopped it)."""

    name: str
    code: int | None
    final: bool
    stopped: bool = False
    known: bool = True


STATUSES: dict[str, OneApiStatus] = {
    status.name: status
    for status in (
        OneApiStatus("UNKNOWN", 1, final=False),
        OneApiStatus("QUEUED", 2, final=False),
        OneApiStatus("SCHEDULED", 3, final=False),
        OneApiStatus("SENT_TO_SUPPLIER", 4, final=False),
        # The name a third-party callback definition uses for code 4 (unverified).
        OneApiStatus("DELIVERED_TO_GATEWAY", 4, final=False),
        OneApiStatus("DEVICE_ACK", 5, final=True),
        OneApiStatus("READ", 6, final=True),
        OneApiStatus("EXPIRED", 20, final=True),
        OneApiStatus("STOPPED_BY_USER", 21, final=True, stopped=True),
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


@dataclass(frozen=True)
class StatusEvent:
    """One status report about a message (a status reply or a callback event)."""

    apimsgid: str
    climsgid: str
    status: OneApiStatus
    reported_at: datetime | None


def parse_send(status_code: int, body: str | bytes, secrets: Secrets = ()) -> list[Submission]:
    """``POST /v1/message``: ``202``/``207`` give one result per message; anything else raises.

    Request-level errors map to the same typed errors as the legacy API:
    ``401`` refused credentials, ``400``/``402``/``404`` the request's fault
    (not retried), ``429`` and ``5xx`` transient.
    """
    secrets = tuple(secrets)
    if status_code not in (202, 207):
        raise error_for_status("sendmsg", status_code, body, secrets)
    document = _json_object("sendmsg", body, secrets)
    entries = document.get("messages")
    if not isinstance(entries, list) or not entries or len(entries) > MAX_BATCH:
        raise ProtocolError("sendmsg", "no message results", excerpt(_text(body), secrets))
    return [_submission(entry, body, secrets) for entry in entries]


def parse_status(body: str | bytes, apimsgid: str, secrets: Secrets = ()) -> StatusEvent:
    """``GET /v1/message/{id}``: ``{"sms": {"status": "QUEUED", "timestamp": <ms>}}``."""
    secrets = tuple(secrets)
    document = _json_object("querymsg", body, secrets)
    sms = document.get("sms", document)
    if not isinstance(sms, Mapping):
        raise ProtocolError("querymsg", "no status", excerpt(_text(body), secrets))
    try:
        status = describe_status(sms.get("status"), sms.get("statusCode"))
        when = milliseconds(sms.get("timestamp"))
    except ValueError as exc:
        raise ProtocolError("querymsg", str(exc), excerpt(_text(body), secrets)) from None
    return StatusEvent(apimsgid, "", status, when)


def parse_callback(body: str | bytes) -> list[StatusEvent]:
    """A status callback (JSON POST); raises :class:`InvalidCallback` with a safe reason.

    Accepts the One API envelope (``{"event": {"messageStatusUpdate": [...]}}``)
    and the older Platform callback (one flat object).  Duplicates and
    out-of-order events are normal: the caller applies each through the
    lifecycle rule.
    """
    try:
        document = _json_object("callback", body, ())
    except ProtocolError as exc:
        raise InvalidCallback(exc.reason) from None
    event = document.get("event")
    updates = event.get("messageStatusUpdate") if isinstance(event, Mapping) else [document]
    if not isinstance(updates, list) or not updates or len(updates) > MAX_BATCH:
        raise InvalidCallback("no status updates")
    return [_event(update) for update in updates]


def milliseconds(value: object) -> datetime | None:
    """A One API timestamp (milliseconds since the epoch) as an aware UTC datetime."""
    if value is None or value == "":
        return None
    number = _as_int(value)
    if number is None or not 946_684_800_000 <= number <= 4_102_444_800_000:
        raise ValueError("timestamp out of range")
    return datetime.fromtimestamp(number / 1000, tz=timezone.utc)


def error_for_status(
    command: str, status_code: int, body: str | bytes, secrets: Secrets = ()
) -> Exception:
    """The typed error for a request-level HTTP answer of the One API (or the REST API)."""
    code, description = _error_detail(body, tuple(secrets))
    if status_code == 401:
        return AuthenticationError(code, description or "Unauthorized", command=command)
    if status_code in (400, 402, 404, 405, 410):
        return GatewayError(code, description or f"HTTP {status_code}", command=command)
    return GatewayHTTPError(command, status_code)  # 429, 5xx: transient, asked again later


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
    code, description = _error_fields(entry.get("error"), secrets)
    return Submission(to.removeprefix("+"), accepted, apimsgid, code, description)


def _event(update: object) -> StatusEvent:
    if not isinstance(update, Mapping):
        raise InvalidCallback("unreadable status update")
    apimsgid = update.get("messageId") or update.get("apiMessageId")
    climsgid = update.get("clientMessageId") or ""
    if not isinstance(apimsgid, str) or not is_message_id(apimsgid):
        raise InvalidCallback("missing or malformed messageId")
    if not isinstance(climsgid, str) or (climsgid and not is_client_message_id(climsgid)):
        raise InvalidCallback("malformed clientMessageId")
    try:
        status = describe_status(update.get("status"), update.get("statusCode"))
        when = milliseconds(update.get("timestamp"))
    except ValueError as exc:
        raise InvalidCallback(str(exc)) from None
    return StatusEvent(apimsgid, climsgid, status, when)


def _error_detail(body: str | bytes, secrets: tuple[Any, ...]) -> tuple[int | None, str]:
    try:
        document = json.loads(_text(body)) if len(body) <= MAX_BODY else None
    except ValueError:
        return None, ""
    if not isinstance(document, Mapping):
        return None, ""
    return _error_fields(document.get("error"), secrets)


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
