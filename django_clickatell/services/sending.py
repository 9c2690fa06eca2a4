"""Sending SMS (``sendmsg``), now or scheduled, one record per recipient.

Records are written first (``QUEUED``), so nothing is sent that is not in the
database, then sent in requests of up to ``SEND_BATCH_SIZE`` recipients.  A
request that fails in transit is never simply repeated, because Clickatell may
have accepted it: a single-recipient request carries the record's unique
``climsgid`` and is checked with ``querymsg`` first (resent only on ERR 104,
"unknown client message id"); a multi-recipient request cannot be checked
that way, so its records are marked ``UNKNOWN`` for an operator to decide.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from django.utils import timezone

from ..conf import app_settings
from ..exceptions import ClickatellError, GatewayError, UnknownMessage
from ..gateway.client import ClickatellClient
from ..models import GatewayExchange, OutboundMessage, SendState
from ..protocol.encoding import encode_text
from ..protocol.replies import ErrorReply, SentMessageReply, is_client_message_id
from .reports import Report
from .status import apply_status, match_unmatched_callbacks, record_failure

logger = logging.getLogger("django_clickatell.sending")

_MSISDN = re.compile(r"[0-9]{6,20}")
MIN_DELAY_MINUTES = 10
MAX_AHEAD = timedelta(days=7)


class InvalidMessage(ValueError):
    """The message cannot be sent as asked; nothing was recorded or sent."""


@dataclass
class SendReport(Report):
    sent: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    transient_error: str = ""


def normalize_recipient(number: str) -> str:
    digits = number.strip().removeprefix("+").replace(" ", "")
    if not _MSISDN.fullmatch(digits):
        raise InvalidMessage(f"Not an international phone number: {number[:32]!r}")
    return digits


def create_messages(
    recipients: str | Sequence[str],
    text: str,
    *,
    sender: str = "",
    climsgid: str | None = None,
    deliver_in_minutes: int | None = None,
    scheduled_at: datetime | None = None,
    callback: int | None = None,
    concat: int | None = None,
    validity_minutes: int | None = None,
) -> list[OutboundMessage]:
    """Validate and record one ``QUEUED`` message per recipient; send nothing yet."""
    numbers = [recipients] if isinstance(recipients, str) else list(recipients)
    normalized = [normalize_recipient(n) for n in numbers]
    if not normalized:
        raise InvalidMessage("No recipients.")
    if len(set(normalized)) != len(normalized):
        raise InvalidMessage("A recipient is listed twice.")
    if not text:
        raise InvalidMessage("Empty message.")
    if climsgid is not None:
        if len(normalized) > 1:
            raise InvalidMessage("A climsgid names one message: give it for one recipient only.")
        if not is_client_message_id(climsgid):
            raise InvalidMessage("climsgid must be 1 to 32 letters and digits.")
        if OutboundMessage.objects.filter(climsgid=climsgid).exists():
            raise InvalidMessage("climsgid is already used by another message.")
    if sender and not re.fullmatch(r"[0-9]{1,16}|[A-Za-z0-9 ]{1,11}", sender):
        raise InvalidMessage("Sender must be up to 16 digits or 11 letters and digits.")
    options: dict[str, Any] = {}
    now = timezone.now()
    scheduled_for = None
    if deliver_in_minutes is not None and scheduled_at is not None:
        raise InvalidMessage("Give deliver_in_minutes or scheduled_at, not both.")
    if deliver_in_minutes is not None:
        if not MIN_DELAY_MINUTES <= deliver_in_minutes <= MAX_AHEAD.total_seconds() // 60:
            raise InvalidMessage("deliver_in_minutes must be between 10 and 10080 (7 days).")
        options["deliv_time"] = deliver_in_minutes
        scheduled_for = now + timedelta(minutes=deliver_in_minutes)
    if scheduled_at is not None:
        if timezone.is_naive(scheduled_at):
            raise InvalidMessage("scheduled_at must be timezone-aware.")
        if not now < scheduled_at <= now + MAX_AHEAD:
            raise InvalidMessage("scheduled_at must be in the future and at most 7 days ahead.")
        options["scheduled_time"] = int(scheduled_at.timestamp())
        scheduled_for = scheduled_at
    for name, value, low, high in (
        ("callback", callback, 0, 7),
        ("concat", concat, 1, 35),
        ("validity", validity_minutes, 1, 10080),
    ):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidMessage(f"{name} must be an integer from {low} to {high}.")
            options[name] = value
    return OutboundMessage.objects.bulk_create(
        OutboundMessage(
            recipient=number,
            sender=sender,
            text=text,
            climsgid=climsgid or uuid.uuid4().hex,
            scheduled_for=scheduled_for,
            send_state=SendState.QUEUED,
            send_options=options,
        )
        for number in normalized
    )


def send_messages(
    message_pks: Iterable[int],
    *,
    via: str,
    actor: Any = None,
    client: ClickatellClient | None = None,
) -> SendReport:
    """Send (or verify) the given ``QUEUED``/``VERIFYING`` messages; see the module docstring."""
    pks = sorted(set(message_pks))
    report = SendReport()
    OutboundMessage.objects.filter(pk__in=pks, send_state=SendState.QUEUED).update(
        send_state=SendState.SENDING
    )
    client = client or ClickatellClient()
    actor_id = getattr(actor, "pk", None)
    for message in OutboundMessage.objects.filter(pk__in=pks, send_state=SendState.VERIFYING):
        if not _verify(client, message, via, actor_id, report):
            return _stop(report, pks)
    messages = list(
        OutboundMessage.objects.filter(pk__in=pks, send_state=SendState.SENDING).order_by("pk")
    )

    def content(m: OutboundMessage) -> tuple[str, str, str]:
        return (m.text, m.sender, repr(sorted(m.send_options.items())))

    size = app_settings.send_batch_size
    for _, group in groupby(sorted(messages, key=content), key=content):
        members = list(group)
        for start in range(0, len(members), size):
            if not _send_batch(client, members[start : start + size], via, actor_id, report):
                return _stop(report, pks)
    return report


def give_up(message_pks: Iterable[int], reason: str) -> int:
    """After the last retry: what could not be verified is UNKNOWN (never resent blindly)."""
    return OutboundMessage.objects.filter(
        pk__in=list(message_pks), send_state=SendState.VERIFYING
    ).update(send_state=SendState.UNKNOWN, send_error=f"Gave up checking: {reason}"[:255])


def _stop(report: SendReport, pks: list[int]) -> SendReport:
    """Hand the unsent messages back for a later retry."""
    OutboundMessage.objects.filter(pk__in=pks, send_state=SendState.SENDING).update(
        send_state=SendState.QUEUED
    )
    report.retry = sorted(
        OutboundMessage.objects.filter(
            pk__in=pks, send_state__in=[SendState.QUEUED, SendState.VERIFYING]
        ).values_list("pk", flat=True)
    )
    return report


def _fields(batch: list[OutboundMessage]) -> dict[str, str]:
    first = batch[0]
    fields = {"to": ",".join(m.recipient for m in batch), **encode_text(first.text).fields()}
    if first.sender:
        fields["from"] = first.sender
    if len(batch) == 1:
        fields["climsgid"] = first.climsgid
    for key, value in first.send_options.items():
        fields[key] = str(value)
    return fields


def _send_batch(
    client: ClickatellClient,
    batch: list[OutboundMessage],
    via: str,
    actor_id: int | None,
    report: SendReport,
) -> bool:
    """Returns False when the gateway could not be reached (stop and retry later)."""
    started = time.perf_counter()
    try:
        replies = client.sendmsg(_fields(batch))
    except GatewayError as exc:
        if exc.retryable:
            return _in_doubt(batch, exc, via, actor_id, started, report)
        for message in batch:
            _log(message, via, actor_id, started, error=exc)
            _set(message, SendState.REJECTED, str(exc))
            report.rejected.append(message.pk)
        return True
    except ClickatellError as exc:
        return _in_doubt(batch, exc, via, actor_id, started, report)
    by_recipient = {m.recipient: m for m in batch}
    answered: set[int] = set()
    for reply in replies:
        match = batch[0] if len(batch) == 1 else by_recipient.get((reply.to or "").lstrip("+"))
        if match is None or match.pk in answered:
            continue
        message = match
        answered.add(message.pk)
        if isinstance(reply, SentMessageReply):
            _accepted(message, reply.apimsgid, via, actor_id, started, report)
        else:
            _rejected(message, reply, via, actor_id, started, report)
    for message in batch:
        if message.pk not in answered:
            _set(message, SendState.UNKNOWN, "Clickatell's reply did not mention this recipient")
            report.unknown.append(message.pk)
    return True


def _in_doubt(
    batch: list[OutboundMessage],
    exc: ClickatellError,
    via: str,
    actor_id: int | None,
    started: float,
    report: SendReport,
) -> bool:
    """The request may or may not have reached Clickatell: never just send it again."""
    for message in batch:
        exchange = GatewayExchange(message=message, command="sendmsg", via=via, actor_id=actor_id)
        record_failure(exchange, exc, started)
    report.transient_error = str(exc)
    if len(batch) == 1:
        _set(batch[0], SendState.VERIFYING, f"Checking after: {exc}")
        return False
    for message in batch:
        _set(message, SendState.UNKNOWN, f"Not resent (may have been accepted): {exc}")
        report.unknown.append(message.pk)
    return False


def _verify(
    client: ClickatellClient,
    message: OutboundMessage,
    via: str,
    actor_id: int | None,
    report: SendReport,
) -> bool:
    """Ask by ``climsgid`` whether an earlier attempt got through; resend only if not."""
    started = time.perf_counter()
    exchange = GatewayExchange(message=message, command="querymsg", via=via, actor_id=actor_id)
    try:
        reply = client.querymsg(climsgid=message.climsgid)
    except UnknownMessage as exc:
        record_failure(exchange, exc, started)
        _set(message, SendState.SENDING, "")
        return True
    except ClickatellError as exc:
        record_failure(exchange, exc, started)
        report.transient_error = str(exc)
        return not exc.retryable
    exchange.outcome, exchange.status = GatewayExchange.Outcome.STATUS, reply.status
    exchange.duration_ms = round((time.perf_counter() - started) * 1000)
    exchange.save(force_insert=True)
    _accepted(message, reply.apimsgid, via, actor_id, None, report, status=reply.status)
    return True


def _accepted(
    message: OutboundMessage,
    apimsgid: str,
    via: str,
    actor_id: int | None,
    started: float | None,
    report: SendReport,
    status: str | None = None,
) -> None:
    if started is not None:
        _log(message, via, actor_id, started)
    updates: dict[str, Any] = {"apimsgid": apimsgid, "send_state": SendState.SENT, "send_error": ""}
    if not app_settings.keep_text:
        updates["text"] = ""
    OutboundMessage.objects.filter(pk=message.pk).update(**updates)
    message.apimsgid, message.send_state = apimsgid, SendState.SENT
    if status:
        apply_status(message, status, reported_at=None, via=via)
    match_unmatched_callbacks(message)
    report.sent.append(message.pk)


def _rejected(
    message: OutboundMessage,
    reply: ErrorReply,
    via: str,
    actor_id: int | None,
    started: float,
    report: SendReport,
) -> None:
    error = reply.as_exception("sendmsg")
    _log(message, via, actor_id, started, error=error)
    _set(message, SendState.REJECTED, str(error))
    report.rejected.append(message.pk)


def _log(
    message: OutboundMessage,
    via: str,
    actor_id: int | None,
    started: float,
    error: GatewayError | None = None,
) -> None:
    exchange = GatewayExchange(
        message=message,
        command="sendmsg",
        via=via,
        actor_id=actor_id,
        outcome=GatewayExchange.Outcome.STATUS,
        duration_ms=round((time.perf_counter() - started) * 1000),
    )
    if error is not None:
        exchange.outcome = GatewayExchange.Outcome.GATEWAY_ERROR
        exchange.error_code = error.code
        exchange.error_description = error.description[:255]
    exchange.save(force_insert=True)


def _set(message: OutboundMessage, state: str, error: str) -> None:
    OutboundMessage.objects.filter(pk=message.pk).update(send_state=state, send_error=error[:255])
    message.send_state = state
