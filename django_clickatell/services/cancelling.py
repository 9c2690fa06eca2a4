"""Stopping scheduled messages at Clickatell, exactly once each, with every answer kept.

A run claims its messages with the one lease mechanism (:mod:`.claims`), sends
one ``delmsg`` per claimed message, and records each reply with an exchange-log
row (:mod:`.recording`).  Two runs racing for the same message cannot both
claim it; a run that died leaves its messages leased until the lease expires,
and the next run finishes from the exchange log what the dead one had already
been told.  A message is recorded as cancelled only when Clickatell answered
``006``; never-sent ones are stopped here without a request.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone

from ..conf import app_settings
from ..exceptions import ClickatellError
from ..gateway.backends import Backend
from ..models import (
    OPEN_SEND_STATES,
    CancelState,
    GatewayExchange,
    OutboundMessage,
)
from ..protocol.codes import CANCELLED_STATUS, FINAL_STATUSES
from ..selections import AT_GATEWAY, FINAL
from ..signals import message_cancelled
from . import claims, pipeline, recording, waiting
from .account import BackendPool
from .cancel_run import CancelReport, CancelRun
from .recording import outcome_writer
from .status import status_updates
from .withdrawal import withdraw

logger = logging.getLogger("django_clickatell.cancellation")

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
_CLAIMABLE = ~FINAL & AT_GATEWAY & Q(cancel_state__in=_CLAIMABLE_STATES)

_MESSAGE_FIELDS = (
    "pk",
    "apimsgid",
    "climsgid",
    "account",
    "send_state",
    "status",
    "status_changed_at",
    "cancel_requested_by_id",
)


def cancel_messages(
    message_pks: Iterable[int],
    *,
    via: str,
    actor: Any = None,
    task_id: str = "",
    claim_token: str | None = None,
    give_up: bool = False,
    backend: Backend | None = None,
) -> CancelReport:
    """Send ``delmsg`` for each claimable message and record every answer.

    Each message goes through its account's backend (*backend*, if given, for
    all); one whose API cannot stop a submitted message is "too late" at once.

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
    claim, claimed = _prepare(pks, claim_token or claims.new_token(), via, report)
    if not claimed:
        return report
    run = CancelRun(
        BackendPool(backend),
        outcome_writer(claim.token),
        report,
        via=via,
        actor_id=getattr(actor, "pk", None),
        task_id=task_id,
        give_up=give_up,
    )
    stopped = _work_through(run, claims.LeaseKeeper(claim.token, [m.pk for m in claimed]), claimed)
    for untried, error in stopped:
        _release(untried, claim.token, give_up, error, report)
    return report


def _prepare(
    pks: list[int], token: str, via: str, report: CancelReport
) -> tuple[claims.Claim, list[OutboundMessage]]:
    """Settle what needs no request, claim the rest; returns the messages to ask about."""
    report.skipped = _skip_final(pks)
    report.withdrawn = withdraw(Q(pk__in=pks), via=via)
    report.cancelled.extend(report.withdrawn)
    claim = claims.acquire(
        pks,
        token,
        eligible=_CLAIMABLE,
        updates={"cancel_state": CancelState.IN_FLIGHT},
        fields=_MESSAGE_FIELDS,
    )
    report.held_elsewhere, report.retry_after = claim.held_elsewhere, claim.retry_after
    _wait_for_sends(pks, claim, report)
    claimed = _finish_from_log(claim.messages, report, via)
    claimed_pks = {m.pk for m in claim.messages}
    report.not_claimed = [pk for pk in pks if pk not in claimed_pks and pk not in report.withdrawn]
    return claim, claimed


#: Per account whose run a transient error stopped: its untried messages, and that error.
Stopped = list[tuple[list[int], ClickatellError]]


def _work_through(
    run: CancelRun, keeper: claims.LeaseKeeper, claimed: list[OutboundMessage]
) -> Stopped:
    """One ``delmsg`` per message until done; returns what is untried, by stopped account.

    A transient error stops the requests of its message's account only: a selection
    holds several accounts, and one API's outage must neither hold back nor give up
    the stops of another (they were never tried)."""
    try:
        stopped = pipeline.run(
            claimed,
            width=app_settings.max_in_flight,
            attempt=run.attempt,
            record=run.record,
            # Taken over after our lease lapsed: the other run decides it.
            admit=lambda message: keeper.holds(message.pk),
            check=run.writer.check,
            name="delmsg",
            group=lambda message: message.account,
        )
        return [([m.pk for m in untried], error) for untried, error in stopped.values()]
    finally:
        try:
            run.writer.close()
        finally:
            _announce(run)


def _announce(run: CancelRun) -> None:
    """Signals for what was written, even when a later write failed (the run stops anyway)."""
    try:
        run.announce()
    except DatabaseError:
        logger.exception("Could not read back the outcomes to announce them")


def stalled_cancellations(*, hand_on: bool = False) -> list[int]:
    """Messages whose cancellation nobody is working on any more.

    Queued or retrying but untouched for longer than a claim plus the longest
    retry delay, or claimed by a worker whose claim has expired.  With
    ``hand_on``, see :func:`.send_recovery.stalled_sends`.
    """
    now = timezone.now()
    pks = list(
        OutboundMessage.objects.filter(
            Q(
                cancel_state__in=[CancelState.PENDING, CancelState.RETRYING],
                updated_at__lt=claims.overdue_cutoff(now),
                waiting_for="",  # waiting, not lost: services/waiting.resume hands it on
            )
            | Q(cancel_state=CancelState.IN_FLIGHT, claim_expires_at__lt=now)
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if hand_on:
        claims.restart_overdue_clock(pks)
    return pks


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


def _finish_from_log(
    claimed: list[OutboundMessage], report: CancelReport, via: str
) -> list[OutboundMessage]:
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
        **status_updates(CANCELLED_STATUS, None),  # the one rule, as for every status
        cancel_state=CancelState.CANCELLED,
        cancel_completed_at=now,
        cancel_error="",
        updated_at=now,
        **claims.RELEASED,
    )
    for message in OutboundMessage.objects.filter(
        pk__in=recorded, cancel_state=CancelState.CANCELLED
    ):
        message_cancelled.send(sender=OutboundMessage, message=message, via=via)
    report.cancelled.extend(sorted(recorded))
    logger.info("Finished %d cancellations from the exchange log", len(recorded))
    return [m for m in claimed if m.pk not in recorded]


def _release(
    pks: list[int], token: str, give_up: bool, error: ClickatellError, report: CancelReport
) -> None:
    """Hand back messages not tried because the gateway just failed."""
    if not pks:
        return
    if give_up:
        rest = waiting.stops_set_aside(pks, token)  # their account is missing: they wait
        kept = set(rest)
        report.waiting.extend(pk for pk in pks if pk not in kept)
        pks = rest
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
