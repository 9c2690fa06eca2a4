"""Asking for messages to be stopped: what a selection would do, and queueing it as a batch.

Costs the same handful of queries for ten messages or ten thousand.  Messages
that never left Django are stopped right here (:mod:`.withdrawal`); the rest
are marked ``PENDING`` for :mod:`.cancelling` to stop at Clickatell.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from ..models import CancellationBatch, CancelState, OutboundMessage
from ..selections import AT_GATEWAY, CANCELLING, FINAL, REQUESTABLE, SENDING_HERE
from .withdrawal import withdraw

logger = logging.getLogger("django_clickatell.cancellation")


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


def preview_cancellation(queryset: QuerySet[OutboundMessage]) -> CancellationPreview:
    """Count, in one query, what :func:`request_cancellation` would queue and skip."""
    counts = queryset.order_by().aggregate(
        cancellable=Count("pk", filter=REQUESTABLE),
        final=Count("pk", filter=FINAL | Q(cancel_state=CancelState.CANCELLED)),
        in_progress=Count("pk", filter=~FINAL & CANCELLING),
        without_id=Count(
            "pk",
            filter=~FINAL
            & ~CANCELLING
            & ~Q(cancel_state=CancelState.CANCELLED)
            & ~(AT_GATEWAY | SENDING_HERE),
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
        selection.filter(REQUESTABLE).update(
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
