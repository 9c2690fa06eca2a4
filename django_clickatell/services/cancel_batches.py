"""A cancellation batch of any size, confirmed in constant time and handed on by id.

Confirming "cancel" over 100,000 selected messages used to mark every row
``PENDING`` in the request (one ``UPDATE`` of 100,000 wide rows: 7--8 s) and to
put every primary key into one task message (689 KB).  Here the request does
a fixed amount of work whatever the size, and the broker carries a batch id:

1. :func:`request_batch_cancellation` (the admin action): the batch row, and one
   ``INSERT ... SELECT`` that stores the keys of the stoppable messages of the
   selection -- the admin queryset, "select across" filters or an explicit
   page -- as runs of consecutive keys in :class:`BatchSelection`, inside the
   database (a campaign recorded together is a handful of rows); one grouped
   count of the skipped part, by reason, for the report.  Messages that never
   left Django are stopped right away (:mod:`.withdrawal`): nothing may send
   them meanwhile.  The task
   ``django_clickatell.cancel_batch(batch_id)`` is published once this commits.

   The selection is stored as integers in a table written in the same
   transaction, not as a serialised query: nothing in it is executable, nothing
   is unpickled, and what the worker reads is exactly what was confirmed -- even
   if the filters would match other rows by then.

   A campaign stop (:mod:`.campaigns`) stores even less: the batch row with its
   filter (account, tag, highest key).  The worker records its selection from
   the filter first (:func:`record_campaign`, once, under a lock on the batch
   row), then prepares it like any other.

2. :func:`prepare_batch` (that task): reads the selection in key order, a page
   of ``CANCEL_CHUNK_SIZE x PAGE_CHUNKS`` keys at a time; marks the page's
   still-stoppable messages ``PENDING`` in this batch (one conditional
   ``UPDATE``), records how far it got, commits, and hands on one chunk task per
   ``CANCEL_CHUNK_SIZE`` keys, carrying ``(batch_id, first_pk, last_pk)`` -- never
   a list of keys.  When the selection is exhausted the batch is *prepared*
   and its totals are recounted from its messages (a message that turned final
   or was taken by another request meanwhile is counted as skipped).

3. :func:`chunk_messages` (each chunk task): the batch's messages in those
   bounds that still wait; :func:`~.cancelling.cancel_messages` claims them with
   the one lease mechanism (:mod:`.claims`) and stops each exactly once.

Crash safety.  Preparing is idempotent: the ``UPDATE`` only marks messages
that are still stoppable and not already in this batch's hands, so a second
preparer (a redelivered task, or :func:`stalled_batches` handing on one whose
worker died) re-marks nothing; it may publish a chunk task twice, and the
duplicate finds the messages claimed or settled -- a ``delmsg`` is never sent
twice, because sending is decided by the claim, not by the task.  A preparer
that dies after committing a page but before publishing its chunks leaves
those messages ``PENDING``, where :func:`~.cancelling.stalled_cancellations`
finds them like any other lost work; the rest of the selection is resumed
from ``prepared_through`` once the batch is overdue (``prepare_touched_at``
older than a lease plus the longest backoff).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import (
    BigIntegerField,
    Exists,
    ExpressionWrapper,
    F,
    OuterRef,
    Q,
    QuerySet,
    Sum,
)
from django.utils import timezone

from ..conf import app_settings
from ..models import BatchSelection, CancellationBatch, CancelState, OutboundMessage
from ..selections import stoppable_q
from . import claims
from .campaigns import Campaign
from .cancel_requests import CancellationPreview, preview_cancellation
from .withdrawal import NEVER_SENT_STATES, withdraw

logger = logging.getLogger("django_clickatell.cancellation")

#: Chunks prepared per round trip: one read of the selection and one UPDATE per page.
PAGE_CHUNKS = 20

#: Waiting for a chunk task (the states :func:`~.cancelling.cancel_messages` may claim in).
_WAITING = (CancelState.PENDING, CancelState.RETRYING, CancelState.IN_FLIGHT)

#: Hands one chunk on: (batch id, first message key, last message key).
HandOn = Callable[[int, int, int], Any]


@dataclass(frozen=True)
class BatchRequest:
    """What the action recorded: the batch (its totals), and the counts for the report.

    ``preview`` counts the skipped part by reason (the taken part is ``batch.total``:
    ``stopped_here`` of them stopped right away, the rest ``queued`` for a worker).
    """

    batch: CancellationBatch
    preview: CancellationPreview
    #: Stopped here and now: they never left Django.
    stopped_here: int

    @property
    def queued(self) -> int:
        """Messages a worker will ask Clickatell to stop (some once their send has settled)."""
        return self.batch.total - self.stopped_here


def request_batch_cancellation(
    queryset: QuerySet[OutboundMessage], *, via: str, actor: Any = None
) -> BatchRequest:
    """Record a batch of the stoppable messages of *queryset*; the same queries at any size.

    Call inside ``transaction.atomic()`` and hand the batch on with
    :func:`~django_clickatell.dispatch.enqueue_batch` (published on commit).
    """
    actor_id = getattr(actor, "pk", None)
    batch = CancellationBatch.objects.create(
        requested_by_id=actor_id, via=via, prepare_touched_at=timezone.now()
    )
    return _take(batch, queryset, via=via)


def _take(
    batch: CancellationBatch, queryset: QuerySet[OutboundMessage], *, via: str
) -> BatchRequest:
    """Store the stoppable keys of *queryset* as *batch*'s selection, count the skipped
    part, and stop at once what never left Django."""
    stoppable = stoppable_q()  # read once: the stored selection and the counts agree
    selected = _record_selection(batch, queryset.filter(stoppable))
    # Only the skipped part is grouped by reason: the taken part was just counted.
    preview = preview_cancellation(queryset.filter(~stoppable))
    batch.total, batch.skipped = selected, preview.skipped
    batch.save(update_fields=["total", "skipped"])
    # Never sent: stopped now, before a send run could pick them up (they join the batch).
    never_sent = _selected(batch.pk) & Q(send_state__in=NEVER_SENT_STATES)
    OutboundMessage.objects.filter(never_sent).update(batch=batch)
    # The scope must not repeat the send state: withdraw() reads back, by this scope, the
    # messages it has just turned WITHDRAWN (with the state in it, it counted none).
    stopped_here = len(withdraw(_selected(batch.pk) & Q(batch=batch), via=via))
    logger.info("Cancellation batch %s recorded %d messages via %s", batch.pk, selected, via)
    return BatchRequest(batch=batch, preview=preview, stopped_here=stopped_here)


def record_campaign(batch_id: int) -> BatchRequest | None:
    """A campaign batch's selection, recorded from its stored filter by the worker (once).

    The request stored only the filter (:func:`.campaigns.request_campaign_stop`);
    here, under a lock on the batch row (a duplicate task or a second preparer
    waits, then finds it done), the stoppable messages of the campaign are stored
    as the selection -- the same ``INSERT ... SELECT`` as for a selection in the
    admin -- and those never sent are stopped at once.  Returns ``None`` when
    there was nothing to record (not a campaign batch, or already recorded).
    """
    with transaction.atomic():
        batch = (
            CancellationBatch.objects.select_for_update()
            .filter(pk=batch_id, selection_pending=True)
            .first()
        )
        if batch is None:
            return None
        target = Campaign(
            account=batch.campaign_account or None,
            tag=batch.campaign_tag or None,
            through=batch.campaign_through,
        )
        result = _take(batch, target.messages(), via=batch.via)
        batch.selection_pending = False
        batch.prepare_touched_at = timezone.now()
        batch.save(update_fields=["selection_pending", "prepare_touched_at"])
    return result


def _record_selection(batch: CancellationBatch, queryset: QuerySet[OutboundMessage]) -> int:
    """The keys of *queryset* (its stoppable part), stored as runs of consecutive keys;
    returns how many.

    ``key - ROW_NUMBER() OVER (ORDER BY key)`` is constant along a run of
    consecutive keys ("gaps and islands"), so grouping by it gives each run's
    first and last key: one statement, inside the database, whatever the size.
    """
    keys = queryset.order_by().values("pk")
    sql, params = keys.query.sql_with_params()
    table = connection.ops.quote_name(BatchSelection._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (batch_id, first_id, last_id) "  # noqa: S608 (names, not input)
            "SELECT %s, MIN(k), MAX(k) FROM ("
            "  SELECT k, k - ROW_NUMBER() OVER (ORDER BY k) AS island"
            f"  FROM (SELECT selected.pk AS k FROM ({sql}) selected) keys"
            ") islands GROUP BY island",
            [batch.pk, *params],
        )
    return selection_size(batch.pk)


def selection_size(batch_id: int) -> int:
    """How many message keys the batch's selection holds (one query over its runs)."""
    size = ExpressionWrapper(F("last_id") - F("first_id") + 1, output_field=BigIntegerField())
    counted = BatchSelection.objects.filter(batch_id=batch_id).aggregate(n=Sum(size))["n"]
    return int(counted or 0)


def _selected(batch_id: int) -> Q:
    """Messages whose key lies in one of the batch's runs."""
    runs = BatchSelection.objects.filter(
        batch_id=batch_id, first_id__lte=OuterRef("pk"), last_id__gte=OuterRef("pk")
    )
    return Q(Exists(runs))


def prepare_batch(batch_id: int, hand_on: HandOn) -> int:
    """Mark the batch's selected messages ``PENDING`` page by page and hand chunks on.

    *hand_on* is called for each chunk after the page's marks are committed.
    Returns how many messages this call marked (0 for a batch already prepared).
    """
    batch = CancellationBatch.objects.filter(pk=batch_id).first()
    if batch is None or batch.prepared_at is not None:
        return 0
    if batch.selection_pending:  # a campaign stop: its selection is recorded here first
        record_campaign(batch_id)
        batch.refresh_from_db()
    size = app_settings.cancel_chunk_size
    marked = 0
    after = batch.prepared_through
    while chunks := _next_chunks(batch_id, after, size, size * PAGE_CHUNKS):
        first, last = chunks[0][0], chunks[-1][1]
        with transaction.atomic():
            marked += _mark_page(batch, first, last)
            CancellationBatch.objects.filter(pk=batch_id).update(
                prepared_through=last, prepare_touched_at=timezone.now()
            )
        for chunk_first, chunk_last in chunks:
            hand_on(batch_id, chunk_first, chunk_last)
        after = last
    _finish(batch)
    return marked


def _next_chunks(batch_id: int, after: int, size: int, page: int) -> list[tuple[int, int]]:
    """Bounds of the next chunks of at most *size* selected keys each, after key *after*.

    Up to *page* keys in all, read as runs (one query) and cut arithmetically:
    no key is listed one by one.  A chunk may span several runs; the keys
    between them are not the batch's, and chunk tasks take only the batch's.
    """
    runs = (
        BatchSelection.objects.filter(batch_id=batch_id, last_id__gt=after)
        .order_by("last_id")
        .values_list("first_id", "last_id")[:page]
    )
    chunks: list[tuple[int, int]] = []
    start: int | None = None
    in_chunk = taken = 0
    end = after
    for run_first, run_last in runs:
        first = max(run_first, after + 1)
        while first <= run_last and taken < page:
            start = first if start is None else start
            count = min(run_last - first + 1, size - in_chunk, page - taken)
            end = first + count - 1
            in_chunk, taken = in_chunk + count, taken + count
            if in_chunk == size:
                chunks.append((start, end))
                start, in_chunk = None, 0
            first = end + 1
        if taken >= page:
            break
    if start is not None:
        chunks.append((start, end))
    return chunks


def _mark_page(batch: CancellationBatch, first: int, last: int) -> int:
    now = timezone.now()
    return OutboundMessage.objects.filter(
        Q(pk__gte=first, pk__lte=last) & _selected(batch.pk) & stoppable_q()
    ).update(
        cancel_state=CancelState.PENDING,
        batch=batch,
        cancel_requested_at=batch.created_at,
        cancel_requested_by_id=batch.requested_by_id,
        cancel_error="",
        updated_at=now,
    )


def _finish(batch: CancellationBatch) -> None:
    """Prepared: the totals are what the batch's messages say (truthful, not the estimate)."""
    taken = OutboundMessage.objects.filter(batch=batch).count()
    selected = batch.total + batch.skipped
    CancellationBatch.objects.filter(pk=batch.pk, prepared_at__isnull=True).update(
        prepared_at=timezone.now(), total=taken, skipped=max(selected - taken, 0)
    )
    logger.info("Cancellation batch %s prepared: %d messages", batch.pk, taken)


def chunk_messages(batch_id: int, first: int, last: int) -> list[int]:
    """The batch's messages between *first* and *last* (keys) still waiting to be stopped."""
    return list(
        OutboundMessage.objects.filter(
            batch_id=batch_id, pk__gte=first, pk__lte=last, cancel_state__in=_WAITING
        )
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def stalled_batches(*, hand_on: bool = False) -> list[int]:
    """Batches whose preparation nobody is doing any more (its worker died, its task was lost).

    With *hand_on*, their clock restarts, so the next requeue does not hand them on again
    before another full period.
    """
    now = timezone.now()
    overdue = CancellationBatch.objects.filter(
        prepared_at__isnull=True, prepare_touched_at__lt=claims.overdue_cutoff(now)
    )
    ids = list(overdue.order_by("pk").values_list("pk", flat=True))
    if hand_on and ids:
        CancellationBatch.objects.filter(pk__in=ids).update(prepare_touched_at=now)
    return ids
