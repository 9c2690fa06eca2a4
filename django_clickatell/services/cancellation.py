"""Stopping scheduled messages at Clickatell, exactly once each, with every answer kept.

Two steps, so that a request is cheap however large the selection:

1. :func:`request_cancellation` marks the selected messages ``PENDING`` in a
   constant number of queries and returns their primary keys for a worker.
2. :func:`cancel_messages` claims messages atomically (one conditional
   ``UPDATE``), sends one ``delmsg`` per claimed message, and records the reply
   with an exchange-log row.  Two callers racing for the same message cannot
   both claim it; a redelivered task (same claim token) takes back what it held.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count, F, Q, QuerySet
from django.utils import timezone

from ..conf import app_settings
from ..exceptions import ClickatellError, ProtocolError
from ..gateway.client import ClickatellClient
from ..models import (
    ACTIVE_CANCEL_STATES,
    OPEN_SEND_STATES,
    CancellationBatch,
    CancelState,
    GatewayExchange,
    OutboundMessage,
    SendState,
)
from ..protocol.codes import CANCELLED_STATUS, FINAL_STATUSES, describe_status
from ..protocol.lifecycle import supersedes
from ..protocol.replies import MessageStatusReply
from ..signals import message_cancelled, message_status_changed
from . import claims, recording
from .recording import OutcomeWriter, outcome_writer
from .reports import Report
from .status import status_updates
from .withdrawal import withdraw

logger = logging.getLogger("django_clickatell.cancellation")

#: Clickatell can be asked to stop it: it was handed over (or may have been), and has an id.
_AT_GATEWAY = Q(send_state__in=[SendState.NOT_SENT_HERE, SendState.SENT, SendState.UNKNOWN]) & (
    Q(apimsgid__isnull=False) | ~Q(climsgid="")
)
#: Being handed over right now, or waiting to be: stopped locally or once it is sent.
_SENDING_HERE = Q(send_state__in=[*OPEN_SEND_STATES, SendState.FAILED])
_HAS_GATEWAY_ID = _AT_GATEWAY | _SENDING_HERE
#: What a new request may (re)queue: not final, not already queued or running.
_REQUESTABLE = (
    ~Q(status__in=FINAL_STATUSES)
    & ~Q(cancel_state__in=[*ACTIVE_CANCEL_STATES, CancelState.CANCELLED])
    & _HAS_GATEWAY_ID
)
#: What a worker may take without a new request.  Settled outcomes (too late,
#: refused, gave up) need an explicit new request, so a second caller racing
#: with the first can never send a second ``delmsg``.  (An in-flight one is
#: free only once its run's lease expired: see :mod:`.claims`.)
_CLAIMABLE_STATES = (
    CancelState.NOT_REQUESTED,
    CancelState.PENDING,
    CancelState.RETRYING,
    CancelState.IN_FLIGHT,
)
_CLAIMABLE = ~Q(status__in=FINAL_STATUSES) & _AT_GATEWAY & Q(cancel_state__in=_CLAIMABLE_STATES)

_MESSAGE_FIELDS = (
    "pk",
    "apimsgid",
    "climsgid",
    "status",
    "status_changed_at",
    "cancel_requested_by_id",
)


@dataclass(frozen=True)
class CancellationPreview:
    """What a cancellation of a selection would do, for a confirmation page."""

    cancellable: int
    final: int
    in_progress: int
    without_id: int

    @property
    def skipped(self) -> int:
        return self.final + self.in_progress + self.without_id

    @property
    def total(self) -> int:
        return self.cancellable + self.skipped


@dataclass(frozen=True)
class CancellationRequest:
    batch: CancellationBatch
    message_pks: list[int]
    preview: CancellationPreview


@dataclass
class CancelReport(Report):
    """What one :func:`cancel_messages` call did, by message primary key."""

    cancelled: list[int] = field(default_factory=list)
    too_late: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)
    not_claimed: list[int] = field(default_factory=list)
    #: Claimed by another run whose lease is still alive: it is working on them, or it died
    #: and they can be taken once the lease expires in ``retry_after`` seconds.
    held_elsewhere: list[int] = field(default_factory=list)
    retry_after: float = 0.0
    #: Messages that turned final before a worker reached them: no request made.
    skipped: int = 0
    #: Never handed to Clickatell: stopped here, no request made.
    withdrawn: list[int] = field(default_factory=list)
    transient_error: str = ""


def preview_cancellation(queryset: QuerySet[OutboundMessage]) -> CancellationPreview:
    """Count, in one query, what :func:`request_cancellation` would queue and skip."""
    counts = queryset.order_by().aggregate(
        cancellable=Count("pk", filter=_REQUESTABLE),
        final=Count(
            "pk", filter=Q(status__in=FINAL_STATUSES) | Q(cancel_state=CancelState.CANCELLED)
        ),
        in_progress=Count(
            "pk",
            filter=~Q(status__in=FINAL_STATUSES) & Q(cancel_state__in=ACTIVE_CANCEL_STATES),
        ),
        without_id=Count(
            "pk",
            filter=~Q(status__in=FINAL_STATUSES)
            & ~Q(cancel_state__in=[*ACTIVE_CANCEL_STATES, CancelState.CANCELLED])
            & ~_HAS_GATEWAY_ID,
        ),
    )
    return CancellationPreview(**counts)


def request_cancellation(
    queryset: QuerySet[OutboundMessage], *, via: str, actor: Any = None
) -> CancellationRequest:
    """Queue the cancellable messages of *queryset* as one batch; skip the rest.

    Costs the same handful of queries for ten messages or ten thousand.  The
    caller hands ``message_pks`` to a worker (after the transaction commits) or
    to :func:`cancel_messages` directly.
    """
    actor_id = getattr(actor, "pk", None)
    preview = preview_cancellation(queryset)
    with transaction.atomic():
        batch = CancellationBatch.objects.create(
            requested_by_id=actor_id, via=via, total=preview.cancellable, skipped=preview.skipped
        )
        selection = OutboundMessage.objects.filter(pk__in=queryset.order_by().values("pk"))
        selection.filter(_REQUESTABLE).update(
            cancel_state=CancelState.PENDING,
            batch=batch,
            cancel_requested_at=timezone.now(),
            cancel_requested_by_id=actor_id,
            cancel_error="",
            updated_at=timezone.now(),
        )
        # Never handed to Clickatell: stopped here and now, no request needed.
        stopped_here = withdraw(Q(batch=batch), via=via)
        pks = list(
            OutboundMessage.objects.filter(batch=batch, cancel_state=CancelState.PENDING)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        taken = len(pks) + len(stopped_here)
        if taken != batch.total:
            # The selection changed since the preview (another operator, a callback).
            batch.total, batch.skipped = taken, preview.total - taken
            batch.save(update_fields=["total", "skipped"])
    logger.info("Cancellation batch %s queued %d messages via %s", batch.pk, len(pks), via)
    return CancellationRequest(batch=batch, message_pks=pks, preview=preview)


def cancel_messages(
    message_pks: Iterable[int],
    *,
    via: str,
    actor: Any = None,
    task_id: str = "",
    claim_token: str | None = None,
    give_up: bool = False,
    client: ClickatellClient | None = None,
) -> CancelReport:
    """Send ``delmsg`` for each claimable message and record every answer.

    Final messages are skipped without a request.  A transient failure (gateway
    unreachable, timeout, 5xx, unreadable reply) stops the run: the failed and
    the untried messages are released and listed in ``report.retry`` so the
    caller can try again later -- or, with ``give_up=True``, marked
    ``GAVE_UP`` with the reason.

    Each run claims with a token of its own (pass ``claim_token`` only to resume
    a run known to be dead), so a duplicate delivery of a task still running
    cannot take its messages; the lease is extended as the run goes and expires
    ``CLAIM_TIMEOUT`` seconds after a run dies.
    """
    pks = sorted(set(message_pks))
    report = CancelReport()
    actor_id = getattr(actor, "pk", None)
    report.skipped = _skip_final(pks)
    report.withdrawn = withdraw(Q(pk__in=pks), via=via)
    report.cancelled.extend(report.withdrawn)
    claim = claims.acquire(
        pks,
        claim_token or claims.new_token(),
        eligible=_CLAIMABLE,
        updates={"cancel_state": CancelState.IN_FLIGHT},
        fields=_MESSAGE_FIELDS,
    )
    report.held_elsewhere, report.retry_after = claim.held_elsewhere, claim.retry_after
    _wait_for_sends(pks, claim, report)
    claimed = _finish_from_log(claim.messages, report)
    claimed_pks = {m.pk for m in claim.messages}
    report.not_claimed = [pk for pk in pks if pk not in claimed_pks and pk not in report.withdrawn]
    if not claimed:
        return report
    client = client or ClickatellClient()
    writer = outcome_writer()
    keeper = claims.LeaseKeeper(claim.token)
    try:
        for index, message in enumerate(claimed):
            writer.check()
            keeper.keep_alive()
            error = _cancel_one(
                client,
                message,
                via=via,
                actor_id=actor_id,
                task_id=task_id,
                give_up=give_up,
                report=report,
                writer=writer,
            )
            if error is not None:
                untried = [m.pk for m in claimed[index + 1 :]]
                break
        else:
            untried, error = [], None
    finally:
        writer.close()
    if error is not None:
        _release(untried, claim.token, give_up, error, report)
    return report


def stalled_cancellations() -> list[int]:
    """Messages whose cancellation nobody is working on any more.

    Queued or retrying but untouched for longer than a claim plus the longest
    retry delay, or claimed by a worker whose claim has expired.
    """
    now = timezone.now()
    overdue = now - timedelta(
        seconds=app_settings.claim_timeout + app_settings.task_retry_backoff_max
    )
    return list(
        OutboundMessage.objects.filter(
            Q(cancel_state__in=[CancelState.PENDING, CancelState.RETRYING], updated_at__lt=overdue)
            | Q(cancel_state=CancelState.IN_FLIGHT, claim_expires_at__lt=now)
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def cancel_message(message: OutboundMessage | int, *, via: str, actor: Any = None) -> CancelReport:
    """Cancel one message now (synchronously); see :func:`cancel_messages`."""
    pk = message.pk if isinstance(message, OutboundMessage) else message
    return cancel_messages([pk], via=via, actor=actor)


def _skip_final(pks: Sequence[int]) -> int:
    """Queued cancellations of messages that turned final meanwhile: nothing to ask."""
    return OutboundMessage.objects.filter(
        pk__in=pks,
        cancel_state__in=[CancelState.PENDING, CancelState.RETRYING],
        status__in=FINAL_STATUSES,
    ).update(cancel_state=CancelState.SKIPPED, updated_at=timezone.now(), **claims.RELEASED)


def _wait_for_sends(pks: Sequence[int], claim: claims.Claim, report: CancelReport) -> None:
    """Requested stops of messages still being sent here wait for the send to settle."""
    taken = {m.pk for m in claim.messages} | set(claim.held_elsewhere)
    waiting = [
        pk
        for pk in OutboundMessage.objects.filter(
            pk__in=pks,
            send_state__in=[*OPEN_SEND_STATES],
            cancel_state__in=[CancelState.PENDING, CancelState.RETRYING],
        ).values_list("pk", flat=True)
        if pk not in taken
    ]
    if waiting:
        report.held_elsewhere = sorted({*report.held_elsewhere, *waiting})
        report.retry_after = max(report.retry_after, app_settings.task_retry_backoff)


def _finish_from_log(claimed: list[OutboundMessage], report: CancelReport) -> list[OutboundMessage]:
    """Messages whose 006 is already in the exchange log are finished without a request.

    That happens when a run died between logging a reply and updating the message:
    asking Clickatell again would be a second ``delmsg`` after a recorded 006.
    """
    if not claimed:
        return claimed
    recorded = set(
        GatewayExchange.objects.filter(
            message_id__in=[m.pk for m in claimed], command="delmsg", status=CANCELLED_STATUS
        ).values_list("message_id", flat=True)
    )
    if not recorded:
        return claimed
    now = timezone.now()
    OutboundMessage.objects.filter(pk__in=recorded).update(
        status=CANCELLED_STATUS,
        status_changed_at=now,
        cancel_state=CancelState.CANCELLED,
        cancel_completed_at=now,
        cancel_error="",
        updated_at=now,
        **claims.RELEASED,
    )
    report.cancelled.extend(sorted(recorded))
    logger.info("Finished %d cancellations from the exchange log", len(recorded))
    return [m for m in claimed if m.pk not in recorded]


def _cancel_one(
    client: ClickatellClient,
    message: OutboundMessage,
    *,
    via: str,
    actor_id: int | None,
    task_id: str,
    give_up: bool,
    report: CancelReport,
    writer: OutcomeWriter,
) -> ClickatellError | None:
    """Returns the transient error that should stop the run, if any."""
    exchange = recording.new_exchange(
        message.pk,
        "delmsg",
        via=via,
        actor_id=actor_id or message.cancel_requested_by_id,
        task_id=task_id,
    )
    try:
        if message.apimsgid:
            reply = client.delmsg(apimsgid=message.apimsgid)
        else:
            reply = client.delmsg(climsgid=message.climsgid)
        if message.apimsgid and reply.apimsgid != message.apimsgid:
            raise ProtocolError("delmsg", "reply names another message", reply.apimsgid)
    except ValueError as exc:
        # An id that cannot be valid: refused before any request was made.
        _settle(writer, message, CancelState.REFUSED, str(exc), report.refused)
        return None
    except ClickatellError as exc:
        recording.failed(exchange, exc)
        if exc.retryable:  # includes CommandNotSent: never the gateway's answer
            return _transient(writer, message, exchange, exc, give_up, report)
        _settle(writer, message, CancelState.REFUSED, str(exc), report.refused, exchange)
        return None
    _record_reply(writer, message, reply, recording.answered(exchange, reply.status), via, report)
    return None


def _record_reply(
    writer: OutcomeWriter,
    message: OutboundMessage,
    reply: MessageStatusReply,
    exchange: GatewayExchange,
    via: str,
    report: CancelReport,
) -> None:
    cancelled = reply.status == CANCELLED_STATUS
    updates: dict[str, Any] = {
        # Through the lifecycle rule: a final status recorded by a callback while this
        # request was in flight is not replaced by the reply's older news.
        **status_updates(reply.status, None),
        "cancel_state": CancelState.CANCELLED if cancelled else CancelState.TOO_LATE,
        "cancel_completed_at": timezone.now(),
        "cancel_attempts": F("cancel_attempts") + 1,
        "cancel_error": "" if cancelled else _too_late_reason(reply.status),
        **claims.RELEASED,
    }
    old_status = message.status
    changed = supersedes(reply.status, timezone.now(), old_status, message.status_changed_at)
    if not message.apimsgid:
        updates["apimsgid"] = reply.apimsgid
    if changed:
        message.status = reply.status
    message.cancel_state = updates["cancel_state"]

    def notify() -> None:
        if changed:
            message_status_changed.send(
                sender=OutboundMessage,
                message=message,
                old_status=old_status,
                new_status=reply.status,
                via=via,
            )
        if cancelled:
            message_cancelled.send(sender=OutboundMessage, message=message, via=via)

    writer.write(message.pk, updates, exchange, after=notify)
    (report.cancelled if cancelled else report.too_late).append(message.pk)


def _settle(
    writer: OutcomeWriter,
    message: OutboundMessage,
    state: str,
    reason: str,
    bucket: list[int],
    exchange: GatewayExchange | None = None,
) -> None:
    updates: dict[str, Any] = {
        "cancel_state": state,
        "cancel_error": recording.clean_text(reason),
        "cancel_attempts": F("cancel_attempts") + (1 if exchange else 0),
        "cancel_completed_at": timezone.now(),
        **claims.RELEASED,
    }
    writer.write(message.pk, updates, exchange)
    bucket.append(message.pk)


def _transient(
    writer: OutcomeWriter,
    message: OutboundMessage,
    exchange: GatewayExchange,
    exc: ClickatellError,
    give_up: bool,
    report: CancelReport,
) -> ClickatellError:
    state = CancelState.GAVE_UP if give_up else CancelState.RETRYING
    reason = recording.describe(exc)
    logger.warning("Could not cancel message %s: %s", message.pk, reason)
    _settle(writer, message, state, reason, report.gave_up if give_up else report.retry, exchange)
    report.transient_error = reason
    return exc


def _release(
    pks: list[int], token: str, give_up: bool, error: ClickatellError, report: CancelReport
) -> None:
    """Hand back messages not tried because the gateway just failed."""
    if not pks:
        return
    if give_up:
        claims.release(
            pks,
            token,
            cancel_state=CancelState.GAVE_UP,
            cancel_error=recording.clean_text(f"Not attempted: {error}"),
            cancel_completed_at=timezone.now(),
        )
        report.gave_up.extend(pks)
    else:
        claims.release(pks, token, cancel_state=CancelState.PENDING)
        report.retry.extend(pks)


def _too_late_reason(status: str) -> str:
    return f"Clickatell reported status {status} ({describe_status(status).label})"
