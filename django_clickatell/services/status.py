"""Keeping each message's status current: ``querymsg`` refreshes and status callbacks.

Every status, whatever its source -- a ``delmsg`` or ``querymsg`` reply, a
callback -- is written through :func:`supersedes_q` / :func:`status_updates`,
the database form of the one ordering rule in
:mod:`django_clickatell.protocol.lifecycle`: a final status is never replaced,
a later stage of the lifecycle wins whatever the clocks say, and a report from
the future cannot freeze a message.  Callbacks are retried by Clickatell for
days, so duplicates and reordering are normal.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from ..exceptions import ClickatellError
from ..gateway.client import ClickatellClient
from ..models import (
    CancelState,
    OutboundMessage,
    SendState,
    UnmatchedCallback,
    Via,
)
from ..protocol.callbacks import StatusCallback
from ..protocol.codes import CANCELLED_STATUS, FINAL_STATUSES
from ..protocol.lifecycle import (
    FINAL_RANK,
    clamp,
    known_codes,
    lifecycle_rank,
    ranks_below,
    ranks_equal,
)
from ..signals import message_cancelled, message_status_changed
from . import recording
from .reports import Report

logger = logging.getLogger("django_clickatell.status")


def supersedes_q(new: str, when: datetime) -> Q:
    """Messages whose recorded status a report of *new* at *when* replaces.

    The same ranks as :func:`~django_clickatell.protocol.lifecycle.supersedes`,
    as a filter, so the decision and the write are one atomic ``UPDATE``.
    *when* must be clamped already.
    """
    rank = lifecycle_rank(new)
    unknown = ~Q(status__in=known_codes())
    below_known, below_unknown = ranks_below(rank)
    earlier = Q(status__in=below_known)
    if below_unknown:
        earlier |= unknown
    if rank == FINAL_RANK:
        return earlier  # a final status replaces anything not final, and nothing final
    equal_known, equal_unknown = ranks_equal(rank)
    same_stage = Q(status__in=equal_known - {new})
    if equal_unknown:
        same_stage |= unknown & ~Q(status=new)
    newer = Q(status_changed_at__isnull=True) | Q(status_changed_at__lte=when)
    return earlier | (same_stage & newer)


def status_updates(new: str, reported_at: datetime | None) -> dict[str, Any]:
    """``UPDATE`` values that record *new* only where the rule lets it replace the old."""
    when = clamp(reported_at, timezone.now())
    applies = supersedes_q(new, when)
    return {
        "status": Case(When(applies, then=Value(new)), default=F("status")),
        "status_changed_at": Case(When(applies, then=Value(when)), default=F("status_changed_at")),
    }


def apply_status(
    message: OutboundMessage,
    status: str,
    *,
    reported_at: datetime | None,
    via: str,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Record *status* if the lifecycle rule lets it replace the recorded one; True if it did.

    One conditional ``UPDATE``, so two reports racing cannot both win.
    """
    now = timezone.now()
    when = clamp(reported_at, now)
    old_status = message.status
    updates: dict[str, Any] = {
        "status": status,
        "status_changed_at": when,
        "updated_at": now,
        **(extra or {}),
    }
    cancelled = status == CANCELLED_STATUS
    if cancelled:
        updates["cancel_state"] = CancelState.CANCELLED
        updates["cancel_completed_at"] = now
    changed = (
        OutboundMessage.objects.filter(pk=message.pk)
        .filter(supersedes_q(status, when))
        .update(**updates)
    )
    if not changed:
        if extra:
            OutboundMessage.objects.filter(pk=message.pk).update(**extra, updated_at=now)
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
        .filter(send_state__in=[SendState.NOT_SENT_HERE, SendState.SENT])
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
        .filter(send_state__in=[SendState.NOT_SENT_HERE, SendState.SENT])
        .exclude(status__in=FINAL_STATUSES)
        .order_by("pk")
    )
    client = client or ClickatellClient()
    actor_id = getattr(actor, "pk", None)
    for index, message in enumerate(messages):
        exchange = recording.new_exchange(message.pk, "querymsg", via=via, actor_id=actor_id)
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
            recording.save(recording.failed(exchange, exc))
            if exc.retryable:
                report.retry.extend(m.pk for m in messages[index:])
                report.transient_error = recording.describe(exc)
                break
            report.failed.append(message.pk)
            continue
        recording.save(recording.answered(exchange, reply.status))
        extra = {} if message.apimsgid else {"apimsgid": reply.apimsgid}
        if apply_status(message, reply.status, reported_at=None, via=via, extra=extra):
            report.changed.append(message.pk)
        else:
            report.unchanged.append(message.pk)
    return report


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
    exchange = recording.answered(
        recording.new_exchange(message.pk, "callback", via=Via.CALLBACK), status
    )
    exchange.duration_ms = None
    exchange.detail = (
        note
        if applied
        else "not applied: duplicate, earlier in the lifecycle than the recorded status, "
        "or after a final one"
    )
    recording.save(exchange)
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
