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
from datetime import datetime
from typing import Any

from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from ..models import (
    CancelState,
    OutboundMessage,
)
from ..protocol.codes import CANCELLED_STATUS
from ..protocol.lifecycle import (
    FINAL_RANK,
    clamp,
    known_codes,
    lifecycle_rank,
    ranks_below,
    ranks_equal,
)
from ..signals import message_cancelled, message_status_changed

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
