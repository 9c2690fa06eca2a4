"""Ways out for sends that did not end "sent": give up, send again, ask again, requeue.

None of these sends anything blindly.  Giving up (after the last retry) fails
what never left and marks "unknown" what is in doubt; an operator then sends
again what Clickatell rejected or never received, or has Clickatell asked again
about what is unknown (verified before any send); stalled sends are found for
the requeue task.
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Q, QuerySet
from django.utils import timezone

from ..models import OPEN_SEND_STATES, CancelState, OutboundMessage, SendState
from . import claims, recording


def give_up(message_pks: Iterable[int], reason: str) -> int:
    """After the last retry: never-sent messages fail, messages in doubt become unknown.

    Neither is resent automatically; the operator resends (:func:`resend`) or
    asks Clickatell again (:func:`recheck`).
    """
    now = timezone.now()
    mine = OutboundMessage.objects.filter(
        Q(pk__in=list(message_pks), waiting_for="") & claims.free_for("", now)
    )
    failed = mine.filter(send_state=SendState.QUEUED, cancel_state=CancelState.NOT_REQUESTED)
    count = failed.update(
        send_state=SendState.FAILED,
        send_error=recording.reason("Gave up sending", reason),
        updated_at=now,
        **claims.RELEASED,
    )
    return count + mine.filter(send_state=SendState.VERIFYING).update(
        send_state=SendState.UNKNOWN,
        send_error=recording.reason("Gave up checking", reason),
        updated_at=now,
        **claims.RELEASED,
    )


def resend(selection: QuerySet[OutboundMessage]) -> list[int]:
    """Queue again the messages Clickatell rejected or never received; returns their keys.

    Safe to send without asking first: "rejected" is only recorded for a
    definitive refusal (an ambiguous answer such as ERR 901 is verified
    instead), and "failed" only for requests that never reached Clickatell.
    They keep their ``climsgid``.  Messages someone asked to stop are left alone.
    """
    stop_not_asked = Q(cancel_state=CancelState.NOT_REQUESTED)
    return _move(
        selection.filter(stop_not_asked), [SendState.REJECTED, SendState.FAILED], SendState.QUEUED
    )


def recheck(selection: QuerySet[OutboundMessage]) -> list[int]:
    """Ask Clickatell again about messages whose sending is unknown; returns their keys."""
    return _move(selection, [SendState.UNKNOWN], SendState.VERIFYING)


def stalled_sends(*, hand_on: bool = False) -> list[int]:
    """Sends nobody is working on any more: queued or in doubt and untouched for too long
    (a task lost to a broker outage), or claimed by a run whose lease expired.

    With ``hand_on`` the caller is about to queue them again: their overdue
    clock restarts, so the next requeue does not queue them a second time.
    """
    now = timezone.now()
    waiting = Q(
        send_state__in=[SendState.QUEUED, SendState.VERIFYING],
        claim_token="",
        updated_at__lt=claims.overdue_cutoff(now),
        waiting_for="",  # waiting for a reason, not lost: services/waiting.resume hands it on
    )
    # A dead run's claim: in doubt (sending, verifying), or not yet tried (still queued).
    orphaned = Q(send_state__in=OPEN_SEND_STATES, claim_expires_at__lt=now)
    stop_asked = Q(send_state=SendState.QUEUED, cancel_state__gt="")  # withdrawn, not sent
    pks = list(
        OutboundMessage.objects.filter((waiting | orphaned) & ~stop_asked)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    if hand_on:
        claims.restart_overdue_clock(pks)
    return pks


def _move(selection: QuerySet[OutboundMessage], states: list[str], to: str) -> list[int]:
    now = timezone.now()
    eligible = Q(send_state__in=states) & claims.free_for("", now)
    pks = list(
        selection.filter(eligible)
        .exclude(cancel_state=CancelState.CANCELLED)
        .values_list("pk", flat=True)
    )
    OutboundMessage.objects.filter(Q(pk__in=pks) & eligible).update(
        send_state=to, send_error="", updated_at=now
    )
    return sorted(
        OutboundMessage.objects.filter(pk__in=pks, send_state=to).values_list("pk", flat=True)
    )
