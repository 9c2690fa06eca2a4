"""Handing work on: to a Celery worker when Celery is in use, or doing it right here.

The admin, the Python API and the commands call these functions and never
import Celery themselves, so they all load -- and work -- without it.

Each kind of work has one typed description (:class:`Work`): what it carries,
how it is split into task-sized pieces, which task runs it (by name), and how
it runs in this process.  The send, release and cancel paths all hand work on
through :func:`hand_on`.

With Celery (installed, and ``CLICKATELL["USE_CELERY"]`` not False), work is
published once the current transaction commits: a worker never sees primary
keys of rows it cannot read yet, and a rolled-back request publishes nothing.
Publishing is done by the task module, which registers itself here when it is
loaded (:func:`publish_with`; the app config loads it when Celery is in use):
this module never imports the tasks, nor Celery.  A broker outage is reported
(``False``) and logged, never raised into a request; the rows wait and the
``requeue_stalled_work`` task picks them up.

Without Celery the work runs in this process, after the transaction commits.
The limits: the caller waits for it (a large cancellation in a web request
takes as long as its requests to Clickatell), and nothing retries a transient
failure by itself -- run ``manage.py clickatell_requeue`` from cron for that.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, ClassVar

from django.db import transaction

from .conf import app_settings

logger = logging.getLogger("django_clickatell.dispatch")

#: Publishing happens inside a web request: give up on the broker quickly.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}


def celery_in_use() -> bool:
    """Whether work goes to Celery workers (Celery installed and not switched off)."""
    return app_settings.use_celery and importlib.util.find_spec("celery") is not None


# -- the kinds of work ------------------------------------------------------------------------


@dataclass(frozen=True)
class Work:
    """One piece of work to hand on: to the task named :attr:`task`, or run here.

    Subclasses say what they carry (primary keys, or a batch id: never
    credentials or text, so nothing secret reaches the broker), how they split
    into task-sized pieces (:meth:`pieces`), the task arguments of one piece
    (:meth:`task_args`), and how they run in this process (:meth:`run_here`).
    """

    #: The name of the Celery task that carries this kind of work out.
    task: ClassVar[str]

    def pieces(self) -> Iterator[Work]:
        """Task-sized pieces, each published as one task (the whole, by default)."""
        yield self

    def task_args(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def run_here(self, *, via: str, actor: Any) -> None:
        """Carry the work out in this process (Celery not in use)."""
        raise NotImplementedError

    def size(self) -> int:
        """How many messages (or batches) the work names, for the logs."""
        return 1


@dataclass(frozen=True)
class MessageWork(Work):
    """Work on a list of messages, carried as their primary keys."""

    pks: tuple[int, ...]

    def task_args(self) -> tuple[Any, ...]:
        return (list(self.pks),)

    def size(self) -> int:
        return len(self.pks)

    def split(self, size: int) -> Iterator[Work]:
        """Pieces of at most *size* keys, in order, as even as can be (sizes differ by one
        at most: no straggler keeps one worker busy while the others idle)."""
        count = max(1, -(-len(self.pks) // size))
        small, extra = divmod(len(self.pks), count)
        start = 0
        for index in range(count):
            end = start + small + (1 if index < extra else 0)
            yield type(self)(self.pks[start:end])
            start = end


@dataclass(frozen=True)
class SendWork(MessageWork):
    """Send recorded messages (or verify those in doubt first): ``send_messages``."""

    task: ClassVar[str] = "django_clickatell.send_messages"

    def pieces(self) -> Iterator[Work]:
        return self.split(app_settings.task_chunk_size)

    def run_here(self, *, via: str, actor: Any) -> None:
        from .services.sending import send_messages

        send_messages(self.pks, via=via, actor=actor)


@dataclass(frozen=True)
class CancelWork(MessageWork):
    """Stop messages whose stop was asked for: ``cancel_messages``, in chunks of
    ``CANCEL_CHUNK_SIZE`` that run in parallel on as many workers as there are."""

    task: ClassVar[str] = "django_clickatell.cancel_messages"

    def pieces(self) -> Iterator[Work]:
        return self.split(app_settings.cancel_chunk_size)

    def run_here(self, *, via: str, actor: Any) -> None:
        from .services.cancelling import cancel_messages

        cancel_messages(self.pks, via=via, actor=actor)


@dataclass(frozen=True)
class RefreshWork(MessageWork):
    """Ask Clickatell for the status of messages (``querymsg``): ``refresh_messages``."""

    task: ClassVar[str] = "django_clickatell.refresh_messages"

    def run_here(self, *, via: str, actor: Any) -> None:
        from .services.refreshing import refresh_statuses

        refresh_statuses(self.pks, via=via, actor=actor)


@dataclass(frozen=True)
class CancelBatchWork(Work):
    """Prepare and carry out a cancellation batch: ``cancel_batch``, carrying its id alone.

    The task message is the same size for ten messages or a hundred thousand;
    the worker reads the selection from the database (:mod:`.services.cancel_batches`)
    and fans out its chunks itself.
    """

    task: ClassVar[str] = "django_clickatell.cancel_batch"
    batch_id: int

    def task_args(self) -> tuple[Any, ...]:
        return (self.batch_id,)

    def run_here(self, *, via: str, actor: Any) -> None:
        from .services import cancel_batches, cancelling

        def stop_chunk(batch_id: int, first: int, last: int) -> None:
            pks = cancel_batches.chunk_messages(batch_id, first, last)
            cancelling.cancel_messages(pks, via=via, actor=actor)

        cancel_batches.prepare_batch(self.batch_id, stop_chunk)


@dataclass(frozen=True)
class ReleaseWork(Work):
    """Another bounded pass of the release loop: ``release_due_messages``.

    Carries nothing: whoever runs it reads and claims the due rows (two passes at
    once release each message once).  Handed on by a pass that left more due, so
    a large release goes on at once on the next free worker, not a beat later.
    """

    task: ClassVar[str] = "django_clickatell.release_due_messages"

    def task_args(self) -> tuple[Any, ...]:
        return ()

    def run_here(self, *, via: str, actor: Any) -> None:
        release_held(via=via)


#: Every kind of work, for the task module to check that it runs each one.
WORK_KINDS: tuple[type[Work], ...] = (
    SendWork,
    CancelWork,
    RefreshWork,
    CancelBatchWork,
    ReleaseWork,
)


# -- handing work on --------------------------------------------------------------------------

#: Publishes one piece of work to its task; installed by the task module (:func:`publish_with`).
Publisher = Callable[[Work], None]
_publisher: list[Publisher] = []


def publish_with(publisher: Publisher) -> None:
    """Install the function that publishes work to Celery (the task module calls this)."""
    _publisher[:] = [publisher]


def hand_on(work: Work, *, via: str = "task", actor: Any = None, using: str | None = None) -> bool:
    """Hand *work* on once the current transaction commits (now, outside one).

    To Celery when it is in use (``False`` if the broker could not take it: the
    rows wait for ``requeue_stalled_work``), else carried out here.
    """
    if not work.size():
        return True
    job: Callable[[], bool] = (
        partial(_publish, work) if celery_in_use() else partial(_run_here, work, via, actor)
    )
    if transaction.get_connection(using).in_atomic_block:
        transaction.on_commit(job, using=using)
        return True
    return job()


def enqueue_sending(message_pks: Iterable[int], *, via: str = "task") -> bool:
    """Send recorded messages: queue the task, or send here (see the module docstring)."""
    return hand_on(SendWork(tuple(message_pks)), via=via)


def enqueue_cancellation(
    message_pks: Iterable[int], *, via: str = "task", actor: Any = None, using: str | None = None
) -> bool:
    """Stop the messages a cancellation request queued (``PENDING``)."""
    return hand_on(CancelWork(tuple(message_pks)), via=via, actor=actor, using=using)


def enqueue_batch(batch_id: int, *, via: str = "task", actor: Any = None) -> bool:
    """Prepare and carry out a cancellation batch: one task message carrying its id."""
    return hand_on(CancelBatchWork(batch_id), via=via, actor=actor)


def enqueue_refresh(message_pks: Iterable[int], *, via: str = "task", actor: Any = None) -> bool:
    """Ask Clickatell for the status of these messages (``querymsg``)."""
    return hand_on(RefreshWork(tuple(message_pks)), via=via, actor=actor)


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


def release_held(
    *, via: str = "task", max_batches: int = 20, batch: int | None = None
) -> dict[str, int]:
    """Hand the held messages that are due to the send path (see ``services/release.py``).

    Releases batch after batch (at most *max_batches* of *batch* rows, so one call
    stays bounded) and queues each batch for sending like any new message: to
    Celery, in chunks spread over the workers, or sent here when Celery is not in
    use.  With Celery, a call that stops at its bound with more still due hands on
    a :class:`ReleaseWork`: the release goes on at once on a worker, instead of
    waiting for the next beat (10,000 rows a beat would make 100,000 due at 09:00
    take five minutes to hand over).  Without Celery the caller's next pass goes on
    (``clickatell_release``).  The beat task ``release_due_messages`` and
    ``manage.py clickatell_release`` call this.  A batch released but not queued
    (the broker down, this process killed) is ordinary queued work:
    ``requeue_stalled_work`` picks it up.
    """
    from .services.release import DEFAULT_BATCH, release_due

    released = rescheduled = 0
    more = False
    for _batch in range(max_batches):
        report = release_due(limit=batch or DEFAULT_BATCH)
        if report.released:
            enqueue_sending(report.released, via=via)
        released += len(report.released)
        rescheduled += len(report.rescheduled)
        more = report.more
        if not more:
            break
    result = {"released": released, "rescheduled": rescheduled}
    if more and celery_in_use():
        result["continued"] = int(hand_on(ReleaseWork(), via=via))
    return result


def _publish(work: Work) -> bool:
    if not _publisher:
        logger.error(
            "Could not queue %s for %d messages: the task module django_clickatell.tasks "
            "is not loaded (is django_clickatell in INSTALLED_APPS?); requeue_stalled_work "
            "picks them up once it is",
            work.task,
            work.size(),
        )
        return False
    [publish] = _publisher
    published = True
    for piece in work.pieces():
        try:
            publish(piece)
        except Exception:
            logger.exception(
                "Could not queue %s for %d messages (task queue unreachable); "
                "requeue_stalled_work picks them up once it is back",
                piece.task,
                piece.size(),
            )
            published = False
    return published


def _run_here(work: Work, via: str, actor: Any) -> bool:
    work.run_here(via=via, actor=actor)
    return True
