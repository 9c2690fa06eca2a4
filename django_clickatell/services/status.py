"""Keeping each message's status current: ``querymsg`` refreshes and status callbacks.

Every report goes through :func:`apply_status`, which enforces the ordering
rules: a final status is never replaced, an older report arriving late never
overwrites a newer one, and a repeated report changes nothing.  Callbacks are
retried by Clickatell for days, so duplicates and reordering are normal.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Q
from django.utils import timezone

from ..exceptions import ClickatellError, GatewayError, ProtocolError, TransportError
from ..gateway.client import ClickatellClient
from ..models import CancelState, GatewayExchange, OutboundMessage, UnmatchedCallback, Via
from ..protocol.callbacks import StatusCallback
from ..protocol.codes import CANCELLED_STATUS, FINAL_STATUSES
from ..signals import message_cancelled, message_status_changed
from .reports import Report

logger = logging.getLogger("django_clickatell.status")


def apply_status(
    message: OutboundMessage,
    status: str,
    *,
    reported_at: datetime | None,
    via: str,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Record *status* unless the recorded one is final or newer; True if it changed.

    One conditional ``UPDATE``, so two callbacks racing cannot both win.
    """
    when = reported_at or timezone.now()
    old_status = message.status
    updates: dict[str, Any] = {"status": status, "status_changed_at": when, **(extra or {})}
    cancelled = status == CANCELLED_STATUS
    if cancelled:
        updates["cancel_state"] = CancelState.CANCELLED
        updates["cancel_completed_at"] = timezone.now()
    changed = (
        OutboundMessage.objects.filter(pk=message.pk)
        .exclude(status__in=FINAL_STATUSES)
        .exclude(status=status)
        .filter(Q(status_changed_at__isnull=True) | Q(status_changed_at__lte=when))
        .update(**updates)
    )
    if not changed:
        if extra:
            OutboundMessage.objects.filter(pk=message.pk).update(**extra)
        return False
    message.status, message.status_changed_at = status, when
    message_status_changed.send(
        sender=OutboundMessage, message=message, old_status=old_status, new_status=status, via=via
    )
    if cancelled:
        message.cancel_state = CancelState.CANCELLED
        message_cancelled.send(sender=OutboundMessage, message=message, via=via)
    return True


# -- querymsg ----------------------------------------------------------------------------


@dataclass
class RefreshReport(Report):
    changed: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    transient_error: str = ""


_HAS_ID = Q(apimsgid__isnull=False) | ~Q(climsgid="")


def refreshable_messages() -> list[int]:
    """Messages whose status may still change and that Clickatell can be asked about."""
    return list(
        OutboundMessage.objects.filter(_HAS_ID)
        .exclude(status__in=FINAL_STATUSES)
        .exclude(send_state__in=["queued", "sending", "verifying", "rejected", "unknown"])
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def refresh_statuses(
    message_pks: Iterable[int],
    *,
    via: str,
    actor: Any = None,
    client: ClickatellClient | None = None,
) -> RefreshReport:
    """Ask Clickatell (``querymsg``) for the status of each message and record it."""
    report = RefreshReport()
    messages = list(
        OutboundMessage.objects.filter(pk__in=list(message_pks))
        .filter(_HAS_ID)
        .exclude(status__in=FINAL_STATUSES)
        .order_by("pk")
    )
    client = client or ClickatellClient()
    actor_id = getattr(actor, "pk", None)
    for index, message in enumerate(messages):
        exchange = GatewayExchange(message=message, command="querymsg", via=via, actor_id=actor_id)
        started = time.perf_counter()
        try:
            if message.apimsgid:
                reply = client.querymsg(apimsgid=message.apimsgid)
            else:
                reply = client.querymsg(climsgid=message.climsgid)
        except ValueError as exc:
            logger.warning("Message %s has an invalid id: %s", message.pk, exc)
            report.failed.append(message.pk)
            continue
        except ClickatellError as exc:
            record_failure(exchange, exc, started)
            if exc.retryable:
                report.retry.extend(m.pk for m in messages[index:])
                report.transient_error = str(exc)
                break
            report.failed.append(message.pk)
            continue
        exchange.duration_ms = round((time.perf_counter() - started) * 1000)
        exchange.outcome = GatewayExchange.Outcome.STATUS
        exchange.status = reply.status
        exchange.save(force_insert=True)
        extra = {} if message.apimsgid else {"apimsgid": reply.apimsgid}
        if apply_status(message, reply.status, reported_at=None, via=via, extra=extra):
            report.changed.append(message.pk)
        else:
            report.unchanged.append(message.pk)
    return report


def record_failure(exchange: GatewayExchange, exc: ClickatellError, started: float) -> None:
    """Log a failed request in the exchange log, with the code or the reason."""
    exchange.duration_ms = round((time.perf_counter() - started) * 1000)
    if isinstance(exc, GatewayError):
        exchange.outcome = GatewayExchange.Outcome.GATEWAY_ERROR
        exchange.error_code = exc.code
        exchange.error_description = exc.description[:255]
    elif isinstance(exc, ProtocolError):
        exchange.outcome = GatewayExchange.Outcome.PROTOCOL_ERROR
        exchange.detail = f"{exc.reason}: {exc.excerpt}"[:255]
    else:
        exchange.outcome = GatewayExchange.Outcome.TRANSPORT_ERROR
        exchange.detail = (exc.detail if isinstance(exc, TransportError) else str(exc))[:255]
    exchange.save(force_insert=True)


# -- callbacks ---------------------------------------------------------------------------


class CallbackOutcome:
    APPLIED = "applied"
    IGNORED = "ignored"  # duplicate, stale, or after a final status
    UNMATCHED = "unmatched"


def record_callback(callback: StatusCallback) -> str:
    """Apply a status callback to its message, or keep it for later matching."""
    message = OutboundMessage.objects.filter(apimsgid=callback.apimsgid).first()
    extra: dict[str, Any] = {}
    if message is None and callback.climsgid:
        message = OutboundMessage.objects.filter(
            climsgid=callback.climsgid, apimsgid__isnull=True
        ).first()
        extra["apimsgid"] = callback.apimsgid
    if message is None:
        UnmatchedCallback.objects.create(
            apimsgid=callback.apimsgid,
            climsgid=callback.climsgid,
            recipient=callback.to,
            sender=callback.sender,
            status=callback.status,
            reported_at=callback.reported_at,
            charge=callback.charge,
        )
        logger.info("Status callback for unknown message %s kept for matching", callback.apimsgid)
        return CallbackOutcome.UNMATCHED
    if callback.charge is not None:
        extra["charge"] = callback.charge
    applied = _apply_callback(message, callback.status, callback.reported_at, extra=extra)
    return CallbackOutcome.APPLIED if applied else CallbackOutcome.IGNORED


def _apply_callback(
    message: OutboundMessage,
    status: str,
    reported_at: datetime | None,
    *,
    extra: dict[str, Any] | None = None,
    note: str = "",
) -> bool:
    """Apply a callback's status and log it in the exchange log, applied or not."""
    applied = apply_status(message, status, reported_at=reported_at, via=Via.CALLBACK, extra=extra)
    GatewayExchange.objects.create(
        message=message,
        command="callback",
        via=Via.CALLBACK,
        outcome=GatewayExchange.Outcome.STATUS,
        status=status,
        detail=note
        if applied
        else "not applied: duplicate, older than the recorded status, or after a final one",
    )
    return applied


def match_unmatched_callbacks(message: OutboundMessage) -> int:
    """Apply callbacks that arrived before *message* knew its ``apimsgid``."""
    if not message.apimsgid:
        return 0
    pending = list(
        UnmatchedCallback.objects.filter(
            apimsgid=message.apimsgid, matched_message__isnull=True
        ).order_by("reported_at", "pk")
    )
    for callback in pending:
        _apply_callback(
            message, callback.status, callback.reported_at, note="matched after arrival"
        )
    if pending:
        UnmatchedCallback.objects.filter(pk__in=[c.pk for c in pending]).update(
            matched_message=message
        )
    return len(pending)
