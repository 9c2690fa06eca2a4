"""Asking for messages to be stopped: what a selection would do, and queueing it as a batch.

Costs the same handful of queries for ten messages or ten thousand.  What is
taken on is :data:`~django_clickatell.selections.STOPPABLE` ("cancellable
now"); every other selected message is skipped for one reason of
:data:`SKIP_REASONS`, counted and listed for the confirmation pages.  Messages
that never left Django are stopped right here (:mod:`.withdrawal`); the rest
are marked ``PENDING`` for :mod:`.cancelling` to stop at Clickatell.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import Case, CharField, Count, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone

from ..models import CancellationBatch, CancelState, OutboundMessage
from ..selections import CANCELLING, FINAL, HANDED_ON, STOPPABLE, STOPPED
from .withdrawal import withdraw

logger = logging.getLogger("django_clickatell.cancellation")


#: Why a selected message is not taken on, first match wins.  Everything a request
#: takes on is :data:`~django_clickatell.selections.STOPPABLE`; the rest is one of these.
SKIP_REASONS: tuple[tuple[str, Q], ...] = (
    # Delivered, failed, expired or cancelled at Clickatell, or stopped here before sending.
    ("final", FINAL | STOPPED),
    # A stop is queued or running: the new request leaves it to that one.
    ("in_progress", CANCELLING),
    # Handed on to the network (003): delmsg stops only what is still scheduled or queued.
    ("too_late", HANDED_ON),
    # Never reached Clickatell (rejected, withdrawn) or no id to name it by.
    ("without_id", Q()),
)
_TAKEN = "cancellable"


def _reason_case() -> Case:
    """The reason each message of a selection gets: taken on, or why it is skipped."""
    whens = [When(STOPPABLE, then=Value(_TAKEN))]
    whens += [When(rule, then=Value(key)) for key, rule in SKIP_REASONS if rule]
    return Case(*whens, default=Value(SKIP_REASONS[-1][0]), output_field=CharField())


def _rank_case() -> Case:
    """Skipped rows sorted by reason, in the order :data:`SKIP_REASONS` gives them."""
    whens = [When(skip_reason=key, then=Value(rank)) for rank, (key, _) in enumerate(SKIP_REASONS)]
    return Case(*whens, default=Value(len(SKIP_REASONS)), output_field=IntegerField())


@dataclass(frozen=True)
class CancellationPreview:
    """What a cancellation of a selection would do, for a confirmation page.

    ``cancellable`` are taken on; the others are skipped, each for one reason.
    """

    cancellable: int = 0
    final: int = 0
    in_progress: int = 0
    too_late: int = 0
    without_id: int = 0

    @property
    def skipped(self) -> int:
        return self.final + self.in_progress + self.too_late + self.without_id

    @property
    def total(self) -> int:
        return self.cancellable + self.skipped


@dataclass(frozen=True)
class CancellationRequest:
    batch: CancellationBatch
    message_pks: list[int]
    preview: CancellationPreview


@dataclass(frozen=True)
class PreviewRows:
    """The first rows of each side of a preview: ``skipped`` rows carry ``skip_reason``.

    A confirmation page lists these; when a side has more rows than were read,
    the preview's counts (per reason) say how many more.
    """

    to_stop: list[OutboundMessage]
    skipped: list[OutboundMessage]


def preview_cancellation(queryset: QuerySet[OutboundMessage]) -> CancellationPreview:
    """Count, in one query, what :func:`request_cancellation` would queue and skip, and why."""
    rows = (
        queryset.order_by()
        .annotate(skip_reason=_reason_case())
        .values("skip_reason")
        .annotate(n=Count("pk"))
        .values_list("skip_reason", "n")
    )
    return CancellationPreview(**dict(rows))


def preview_rows(queryset: QuerySet[OutboundMessage], *, limit: int) -> PreviewRows:
    """Up to *limit* messages that would be taken on and *limit* skipped ones (two queries).

    The skipped ones come sorted by reason and carry it as ``skip_reason`` (a key
    of :data:`SKIP_REASONS`), so a page can say why each one is left alone.
    """
    to_stop = list(queryset.filter(STOPPABLE).order_by("scheduled_for", "pk")[:limit])
    skipped: list[OutboundMessage] = list(
        queryset.filter(~STOPPABLE)
        .annotate(skip_reason=_reason_case())
        .annotate(skip_rank=_rank_case())
        .order_by("skip_rank", "scheduled_for", "pk")[:limit]
    )
    return PreviewRows(to_stop=to_stop, skipped=skipped)


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
            requested_by_id=actor_id,
            via=via,
            total=preview.cancellable,
            skipped=preview.skipped,
            prepared_at=timezone.now(),  # its messages are marked right here
        )
        selection = OutboundMessage.objects.filter(pk__in=queryset.order_by().values("pk"))
        selection.filter(STOPPABLE).update(
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
