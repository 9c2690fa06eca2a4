"""Handing work on: to a Celery worker when Celery is in use, or doing it right here.

The admin, the Python API and the commands call these functions and never
import Celery themselves, so they all load -- and work -- without it.

With Celery (installed, and ``CLICKATELL["USE_CELERY"]`` not False), work is
published once the current transaction commits: a worker never sees primary
keys of rows it cannot read yet, and a rolled-back request publishes nothing.
A broker outage is reported (``False``) and logged, never raised into a
request; the rows wait and the ``requeue_stalled_work`` task picks them up.

Without Celery the work runs in this process, after the transaction commits.
The limits: the caller waits for it (a large cancellation in a web request
takes as long as its requests to Clickatell), and nothing retries a transient
failure by itself -- run ``manage.py clickatell_requeue`` from cron for that.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from django.db import transaction

from .conf import app_settings

logger = logging.getLogger("django_clickatell.dispatch")

#: Publishing happens inside a web request: give up on the broker quickly.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def celery_in_use() -> bool:
    """Whether work goes to Celery workers (Celery installed and not switched off)."""
    return app_settings.use_celery and importlib.util.find_spec("celery") is not None


def enqueue_sending(message_pks: Iterable[int], *, via: str = "task") -> bool:
    """Send recorded messages: queue the task, or send here (see the module docstring)."""
    return _hand_on(list(message_pks), "send_messages", via=via, actor=None)


def enqueue_cancellation(
    message_pks: Iterable[int], *, via: str = "task", actor: Any = None, using: str | None = None
) -> bool:
    """Stop the messages a cancellation request queued (``PENDING``)."""
    return _hand_on(list(message_pks), "cancel_messages", via=via, actor=actor, using=using)


def enqueue_batch(batch_id: int, *, via: str = "task", actor: Any = None) -> bool:
    """Prepare and carry out a cancellation batch: one task message carrying its id.

    The task message is the same size for ten messages or a hundred thousand;
    the worker reads the selection from the database (:mod:`.services.cancel_batches`).
    """
    return _hand_on([batch_id], "cancel_batch", via=via, actor=actor)


def enqueue_refresh(message_pks: Iterable[int], *, via: str = "task", actor: Any = None) -> bool:
    """Ask Clickatell for the status of these messages (``querymsg``)."""
    return _hand_on(list(message_pks), "refresh_messages", via=via, actor=actor)


def requeue_stalled(*, via: str = "task") -> dict[str, int]:
    """Hand on again the sends, checks and cancellations nobody is working on any more.

    Lost work: a broker outage when it was queued, a purged queue, a task out of
    its retries while its messages still wait, a worker that died holding a
    lease that has since expired.  Work merely waiting for its retry is left
    alone until it is overdue (``CLAIM_TIMEOUT`` + ``TASK_RETRY_BACKOFF_MAX``).
    Work that waited for its account (not in the settings) is handed on as soon
    as the account is back (:func:`.services.waiting.resume`), and the work that
    still waits is logged as an error.
    The beat task ``requeue_stalled_work`` and ``manage.py clickatell_requeue``
    both call this.
    """
    from .services.cancel_batches import stalled_batches
    from .services.cancelling import stalled_cancellations
    from .services.release import held_messages_overdue
    from .services.send_recovery import stalled_sends
    from .services.waiting import resume

    sends, cancels = stalled_sends(hand_on=True), stalled_cancellations(hand_on=True)
    # Work that waited for its account (removed from the settings, now back): once each.
    resumed = resume()
    sends = sorted({*sends, *resumed.sends})
    cancels = sorted({*cancels, *resumed.stops})
    batches = stalled_batches(hand_on=True)
    overdue = held_messages_overdue()
    if overdue:
        # Not handed on from here: releasing is the release loop's job, and a project
        # that runs only this would otherwise never notice its loop is missing.
        logger.warning(
            "%d held messages are past their release time: is a release loop running "
            "(beat task release_due_messages, or manage.py clickatell_release)?",
            overdue,
        )
    if sends:
        logger.warning("Handing on %d stalled sends", len(sends))
        enqueue_sending(sends, via=via)
    if cancels:
        logger.warning("Handing on %d stalled cancellations", len(cancels))
        enqueue_cancellation(cancels, via=via)
    for batch_id in batches:
        logger.warning("Handing on cancellation batch %s, whose preparation stalled", batch_id)
        enqueue_batch(batch_id, via=via)
    result = {"sends": len(sends), "cancellations": len(cancels)}
    if batches:
        result["batches"] = len(batches)
    return result


def release_held(*, via: str = "task", max_batches: int = 20) -> dict[str, int]:
    """Hand the held messages that are due to the send path (see ``services/release.py``).

    Releases batch after batch (at most *max_batches*, so one call stays
    bounded) and queues each batch for sending like any new message: to Celery,
    or sent here when Celery is not in use.  The beat task
    ``release_due_messages`` and ``manage.py clickatell_release`` call this.  A
    batch released but not queued (the broker down, this process killed) is
    ordinary queued work: ``requeue_stalled_work`` picks it up.
    """
    from .services.release import release_due

    released = rescheduled = 0
    for _batch in range(max_batches):
        report = release_due()
        if report.released:
            enqueue_sending(report.released, via=via)
        released += len(report.released)
        rescheduled += len(report.rescheduled)
        if not report.more:
            break
    return {"released": released, "rescheduled": rescheduled}


def _hand_on(pks: list[int], job: str, *, via: str, actor: Any, using: str | None = None) -> bool:
    if not pks:
        return True
    work: Callable[[], bool]
    if celery_in_use():
        work = partial(_publish, job, pks)
    else:
        work = partial(_run_here, job, pks, via, actor)
    if transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(work, using=using)
        return True
    return work()


def _chunks(pks: list[int], size: int) -> list[list[int]]:
    return [pks[start : start + size] for start in range(0, len(pks), size)]


def _publish(job: str, pks: list[int]) -> bool:
    from . import tasks  # Celery is imported only when it is in use

    task = getattr(tasks, job)
    # Sends go in task-sized chunks; cancellations fan out inside the task itself.
    chunks = _chunks(pks, app_settings.task_chunk_size) if job == "send_messages" else [pks]
    published = True
    for chunk in chunks:
        # A batch travels as its id alone; every other job as its list of keys.
        args = (chunk[0],) if job == "cancel_batch" else (chunk,)
        try:
            task.apply_async(args, retry=True, retry_policy=PUBLISH_RETRY)
        except Exception:
            logger.exception(
                "Could not queue %s for %d messages (task queue unreachable); "
                "requeue_stalled_work picks them up once it is back",
                job,
                len(chunk),
            )
            published = False
    return published


def _run_here(job: str, pks: list[int], via: str, actor: Any) -> bool:
    from .services import cancel_batches, cancelling, refreshing, sending

    if job == "cancel_batch":

        def stop_chunk(batch_id: int, first: int, last: int) -> None:
            pks = cancel_batches.chunk_messages(batch_id, first, last)
            cancelling.cancel_messages(pks, via=via, actor=actor)

        cancel_batches.prepare_batch(pks[0], stop_chunk)
    elif job == "send_messages":
        sending.send_messages(pks, via=via, actor=actor)
    elif job == "cancel_messages":
        cancelling.cancel_messages(pks, via=via, actor=actor)
    else:
        refreshing.refresh_statuses(pks, via=via, actor=actor)
    return True
