"""Asking for messages to be stopped: what a selection would do, and queueing it as a batch.

Costs the same handful of queries for ten messages or ten thousand.  What is
taken on is :func:`~django_clickatell.selections.stoppable_q` ("cancellable
now", decided per message from its account's capabilities); every other
selected message is skipped for one reason of :func:`skip_reasons`, counted and
listed for the confirmation pages.  Messages
that never left Django are stopped right here (:mod:`.withdrawal`); the rest
are marked ``PENDING`` for :mod:`.cancelling` to stop at Clickatell.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction
from django.db.models import Case, CharField, Count, IntegerField, Q, QuerySet, Value, When
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..models import CancellationBatch, CancelState, OutboundMessage
from ..selections import (
    CANCELLING,
    FINAL,
    HANDED_ON,
    STOP_AFTER_SEND,
    STOP_HERE,
    STOPPED,
    StopReach,
    stop_reach,
)
from .withdrawal import withdraw

logger = logging.getLogger("django_clickatell.cancellation")


#: What becomes of a message taken on, first match wins (the rest of what is taken on is
#: asked at Clickatell): stopped here at once, or once its send has settled.
TAKEN_OUTCOMES: tuple[tuple[str, Q], ...] = (
    ("stop_here", STOP_HERE),
    ("after_send", STOP_AFTER_SEND),
)
_AT_CLICKATELL = "at_clickatell"
#: Why a selected message is not taken on, in this order; the last one is the default.
SKIP_KEYS = (
    "final",
    "in_progress",
    "too_late",
    "api_cannot_stop",
    "account_not_configured",
    "without_id",
)


#: Each reason in the operator's words (the confirmation page, the banner, the command).
SKIP_LABELS: dict[str, Any] = {
    "final": _("already final or stopped (delivered, failed, expired or cancelled)"),
    "in_progress": _("already being stopped"),
    "too_late": _("handed on to the network (003): too late to stop"),
    "api_cannot_stop": _("too late: this account's API cannot stop a submitted message"),
    "account_not_configured": _(
        "handed over through an account that is not configured: nothing can be asked"
    ),
    "without_id": _("never reached Clickatell (rejected, or no id to name it by)"),
}


def skip_reasons(reach: StopReach) -> tuple[tuple[str, Q | None], ...]:
    """Why a selected message is not taken on, first match wins (``None``: matches nothing).

    Everything a request takes on is ``reach.stoppable`` (:func:`~..selections.stoppable_q`);
    the rest is one of these.
    """
    return (
        # Delivered, failed, expired or cancelled at Clickatell, or stopped here before sending.
        ("final", FINAL | STOPPED),
        # A stop is queued or running: the new request leaves it to that one.
        ("in_progress", CANCELLING),
        # Handed on to the network (003): delmsg stops only what is still scheduled or queued.
        ("too_late", HANDED_ON),
        # Handed over through an account whose API has no stop call (the One API).
        ("api_cannot_stop", reach.api_cannot_stop),
        # Handed over through an account the settings no longer define: nothing can be asked.
        ("account_not_configured", reach.account_not_configured),
        # Never reached Clickatell (rejected, withdrawn) or no id to name it by.
        ("without_id", None),
    )


def outcome_case(reach: StopReach | None = None) -> Case:
    """What a request would do to each message of a selection: one key of
    :class:`CancellationPreview` (an outcome if taken on, the reason if skipped)."""
    reach = reach or stop_reach()
    whens = [When(rule, then=Value(key)) for key, rule in TAKEN_OUTCOMES]
    whens.append(When(reach.stoppable, then=Value(_AT_CLICKATELL)))
    whens += [When(rule, then=Value(key)) for key, rule in skip_reasons(reach) if rule is not None]
    return Case(*whens, default=Value(SKIP_KEYS[-1]), output_field=CharField())


def _rank_case() -> Case:
    """Skipped rows sorted by reason, in the order :data:`SKIP_KEYS` gives them."""
    whens = [When(skip_reason=key, then=Value(rank)) for rank, key in enumerate(SKIP_KEYS)]
    return Case(*whens, default=Value(len(SKIP_KEYS)), output_field=IntegerField())


@dataclass(frozen=True)
class CancellationPreview:
    """What a cancellation of a selection would do, for a confirmation page and a report.

    Taken on (``cancellable``): ``stop_here`` (never handed over: stopped here, no
    request), ``after_send`` (being sent: stopped once the send has settled) and
    ``at_clickatell`` (asked at Clickatell).  The others are skipped, each for one
    reason: ``final``, ``in_progress``, ``too_late`` (handed on, 003),
    ``api_cannot_stop`` (handed over through an account whose API cannot stop a
    submitted message), ``account_not_configured`` (its account is no longer in the
    settings) or ``without_id``.
    """

    stop_here: int = 0
    after_send: int = 0
    at_clickatell: int = 0
    final: int = 0
    in_progress: int = 0
    too_late: int = 0
    api_cannot_stop: int = 0
    account_not_configured: int = 0
    without_id: int = 0

    @property
    def cancellable(self) -> int:
        return self.stop_here + self.after_send + self.at_clickatell

    @property
    def queued(self) -> int:
        """Taken on and left to a worker: asked at Clickatell, or once its send has settled."""
        return self.after_send + self.at_clickatell

    @property
    def skipped(self) -> int:
        return sum(getattr(self, key) for key in SKIP_KEYS)

    @property
    def total(self) -> int:
        return self.cancellable + self.skipped

    def skipped_by_reason(self) -> list[tuple[str, int]]:
        """``(reason, count)`` for each reason that skips a message, in :data:`SKIP_KEYS` order."""
        return [(key, getattr(self, key)) for key in SKIP_KEYS if getattr(self, key)]

    def describe_skipped(self) -> str:
        """ "3 too late: this account's API cannot stop …, 1 already being stopped"."""
        return ", ".join(f"{count} {SKIP_LABELS[key]}" for key, count in self.skipped_by_reason())


@dataclass(frozen=True)
class CancellationRequest:
    """What a request did: the batch, the messages left to a worker and those stopped here.

    ``message_pks`` are the messages a worker asks Clickatell to stop (or stops once
    their send has settled); ``stopped_here`` the ones stopped right away, never handed
    over; ``preview`` counts what was selected, by outcome and by reason skipped.
    """

    batch: CancellationBatch
    message_pks: list[int]
    preview: CancellationPreview
    stopped_here: list[int] = field(default_factory=list)

    @property
    def skipped(self) -> int:
        """Selected but not taken on (final, too late, in progress, …): ``batch.skipped``."""
        return int(self.batch.skipped)


@dataclass(frozen=True)
class PreviewRows:
    """The first rows of each side of a preview: every row carries ``skip_reason``.

    Taken rows carry their outcome key (``stop_here``, ``after_send``, ``at_clickatell``),
    skipped rows the reason (a key of :data:`SKIP_KEYS`).  A confirmation page lists
    these; when a side has more rows than were read, the preview's counts say how many more.
    """

    to_stop: list[OutboundMessage]
    skipped: list[OutboundMessage]


def preview_cancellation(
    queryset: QuerySet[OutboundMessage], reach: StopReach | None = None
) -> CancellationPreview:
    """Count, in one query, what :func:`request_cancellation` would do and skip, and why."""
    rows = (
        queryset.order_by()
        .annotate(skip_reason=outcome_case(reach))
        .values("skip_reason")
        .annotate(n=Count("pk"))
        .values_list("skip_reason", "n")
    )
    return CancellationPreview(**dict(rows))


def preview_rows(queryset: QuerySet[OutboundMessage], *, limit: int) -> PreviewRows:
    """Up to *limit* messages that would be taken on and *limit* skipped ones (two queries).

    Each carries what becomes of it as ``skip_reason`` (its outcome, or why it is
    skipped), so a page can say it for each row; the skipped ones come sorted by reason.
    """
    reach = stop_reach()
    stoppable = reach.stoppable
    to_stop: list[OutboundMessage] = list(
        queryset.filter(stoppable)
        .annotate(skip_reason=outcome_case(reach))
        .order_by("scheduled_for", "pk")[:limit]
    )
    skipped: list[OutboundMessage] = list(
        queryset.filter(~stoppable)
        .annotate(skip_reason=outcome_case(reach))
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
    reach = stop_reach()
    preview = preview_cancellation(queryset, reach)
    with transaction.atomic():
        batch = CancellationBatch.objects.create(
            requested_by_id=actor_id,
            via=via,
            total=preview.cancellable,
            skipped=preview.skipped,
            prepared_at=timezone.now(),  # its messages are marked right here
        )
        selection = OutboundMessage.objects.filter(pk__in=queryset.order_by().values("pk"))
        selection.filter(reach.stoppable).update(
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
    return CancellationRequest(
        batch=batch, message_pks=pks, preview=preview, stopped_here=stopped_here
    )
