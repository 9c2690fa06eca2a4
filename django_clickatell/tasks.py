"""Celery tasks: thin faces over the services.

Arguments are primary keys only -- never credentials, session ids or message
text -- so nothing secret reaches the broker.  Tasks are ``acks_late`` and
``reject_on_worker_lost``: a worker killed mid-task gets its work redelivered.
The redelivery finds the dead run's messages still leased and retries once the
lease (``CLAIM_TIMEOUT``) expires, then takes them over; a duplicate delivery
of a run that is still alive waits the same way and finds them done.

Beat schedule (keeps the shared session alive; Clickatell drops it after 15
idle minutes)::

    CELERY_BEAT_SCHEDULE = {
        "clickatell-ping": {"task": "django_clickatell.ping", "schedule": 600.0},
        "clickatell-requeue": {
            "task": "django_clickatell.requeue_stalled_work",
            "schedule": 300.0,
        },
        "clickatell-refresh": {"task": "django_clickatell.refresh_statuses", "schedule": 900.0},
        # Hands held messages (scheduled beyond HOLD_LEAD_TIME) to Clickatell when due;
        # a message released when due goes out at most one interval late.
        "clickatell-release": {
            "task": "django_clickatell.release_due_messages",
            "schedule": 30.0,
        },
    }
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from celery import Task, current_app, shared_task
from django.db import InterfaceError, OperationalError

from . import dispatch
from .conf import app_settings
from .models import Via
from .services import cancel_batches, cancelling, refreshing, send_recovery, sending
from .services.account import keep_session_alive
from .services.cleanup import delete_old_history

logger = logging.getLogger("django_clickatell.tasks")

_DATABASE_ERRORS = (OperationalError, InterfaceError)
_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    # Budgets are counted per kind of failure (see Budgets), not by Celery's one counter.
    "max_retries": None,
}


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before retry number *attempt* of one kind of failure, and how often."""

    kind: str
    first: Callable[[], float]
    longest: Callable[[], float]
    attempts: Callable[[], int]

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so retrying workers spread out instead of stampeding."""
        ceiling = min(self.longest(), self.first() * 2**attempt)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (not cryptographic)


#: Clickatell unreachable, slow or unreadable; a run holding the messages; no session.
GATEWAY = RetryPolicy(
    "gateway",
    first=lambda: app_settings.task_retry_backoff,
    longest=lambda: app_settings.task_retry_backoff_max,
    attempts=lambda: app_settings.task_max_retries,
)
#: The database briefly unavailable.  Its own budget, so a database outage does not use
#: up the retries a gateway outage needs (and the other way round).  Nothing is sent
#: twice because of it: leases and the verification before any resend see to that.
DATABASE = RetryPolicy("database", first=lambda: 2.0, longest=lambda: 120.0, attempts=lambda: 30)


@dataclass(frozen=True)
class Budgets:
    """Retries used so far, per kind; travels in the task's keyword arguments."""

    gateway: int = 0
    database: int = 0

    def spent(self, policy: RetryPolicy) -> int:
        return self.gateway if policy is GATEWAY else self.database

    def exhausted(self, policy: RetryPolicy) -> bool:
        return self.spent(policy) >= policy.attempts()

    def after(self, policy: RetryPolicy) -> Budgets:
        if policy is GATEWAY:
            return Budgets(self.gateway + 1, self.database)
        return Budgets(self.gateway, self.database + 1)


def _retry(
    task: Task[Any, Any],
    pks: list[int],
    budgets: Budgets,
    policy: RetryPolicy,
    *,
    at_least: float = 0.0,
    exc: Exception | None = None,
    args: tuple[Any, ...] | None = None,
) -> Exception:
    countdown = max(policy.delay(budgets.spent(policy)), at_least)
    logger.info(
        "Retrying %s of %d messages in %.1fs (%s retry %d of %d)",
        task.name,
        len(pks),
        countdown,
        policy.kind,
        budgets.spent(policy) + 1,
        policy.attempts(),
    )
    following = budgets.after(policy)
    # cancel_message takes one key; every other task a list of them.
    if args is None:
        args = (pks[0],) if task.name == cancel_message.name else (pks,)
    return task.retry(
        args=args,
        kwargs={"gateway_retries": following.gateway, "database_retries": following.database},
        countdown=countdown,
        exc=exc,
    )


def _with_database_retries(
    task: Task[Any, Any],
    pks: list[int],
    budgets: Budgets,
    work: Callable[[], dict[str, Any]],
    args: tuple[Any, ...] | None = None,
) -> dict[str, Any]:
    try:
        return work()
    except _DATABASE_ERRORS as exc:
        if budgets.exhausted(DATABASE):
            raise
        raise _retry(task, pks, budgets, DATABASE, exc=exc, args=args) from exc


@shared_task(name="django_clickatell.cancel_message", **_TASK_OPTIONS)
def cancel_message(
    self: Task[Any, Any], message_pk: int, gateway_retries: int = 0, database_retries: int = 0
) -> dict[str, Any]:
    """Stop one message's delivery at Clickatell."""
    pks = [int(message_pk)]
    budgets = Budgets(gateway_retries, database_retries)
    return _with_database_retries(self, pks, budgets, lambda: _cancel(self, pks, budgets))


@shared_task(name="django_clickatell.cancel_messages", **_TASK_OPTIONS)
def cancel_messages(
    self: Task[Any, Any],
    message_pks: list[int],
    gateway_retries: int = 0,
    database_retries: int = 0,
) -> dict[str, Any]:
    """Stop many messages; selections larger than ``CANCEL_CHUNK_SIZE`` fan out into chunks.

    Chunks run in parallel on as many workers as there are; each chunk sends
    up to ``MAX_IN_FLIGHT`` ``delmsg`` requests at once over the kept-alive connections.
    """
    pks = [int(pk) for pk in message_pks]
    size = app_settings.cancel_chunk_size
    if len(pks) > size:
        for start in range(0, len(pks), size):
            cancel_messages.apply_async((pks[start : start + size],))
        return {"chunks": -(-len(pks) // size), "messages": len(pks)}
    budgets = Budgets(gateway_retries, database_retries)
    return _with_database_retries(self, pks, budgets, lambda: _cancel(self, pks, budgets))


@shared_task(name="django_clickatell.cancel_batch", **_TASK_OPTIONS)
def cancel_batch(
    self: Task[Any, Any], batch_id: int, gateway_retries: int = 0, database_retries: int = 0
) -> dict[str, Any]:
    """Prepare a cancellation batch: mark its selected messages and fan out chunk tasks.

    The message carries the batch id only, whatever the batch's size; each
    chunk task carries ``(batch_id, first_pk, last_pk)``.  Redelivered or
    handed on again by ``requeue_stalled_work``, it resumes where the last
    preparer got to (see :mod:`.services.cancel_batches`).
    """
    batch = int(batch_id)
    budgets = Budgets(gateway_retries, database_retries)

    def hand_on(batch_id: int, first: int, last: int) -> None:
        cancel_batch_chunk.apply_async((batch_id, first, last))

    def work() -> dict[str, Any]:
        return {"batch": batch, "marked": cancel_batches.prepare_batch(batch, hand_on)}

    return _with_database_retries(self, [], budgets, work, args=(batch,))


@shared_task(name="django_clickatell.cancel_batch_chunk", **_TASK_OPTIONS)
def cancel_batch_chunk(
    self: Task[Any, Any],
    batch_id: int,
    first_pk: int,
    last_pk: int,
    gateway_retries: int = 0,
    database_retries: int = 0,
) -> dict[str, Any]:
    """Stop the messages of one chunk of a batch (at most ``CANCEL_CHUNK_SIZE``), claimed here.

    Retries carry the same bounds: the chunk's messages that still wait are
    read again from the database.
    """
    args = (int(batch_id), int(first_pk), int(last_pk))
    budgets = Budgets(gateway_retries, database_retries)

    def work() -> dict[str, Any]:
        pks = cancel_batches.chunk_messages(*args)
        return _cancel(self, pks, budgets, args=args)

    return _with_database_retries(self, [], budgets, work, args=args)


@shared_task(name="django_clickatell.send_messages", **_TASK_OPTIONS)
def send_messages(
    self: Task[Any, Any],
    message_pks: list[int],
    gateway_retries: int = 0,
    database_retries: int = 0,
) -> dict[str, Any]:
    """Send recorded messages, each at most once; a send in doubt is checked before any resend.

    A duplicate or redelivered task finds the messages leased by the run that
    holds them: it waits for that lease, then finds them sent -- or, if that run
    died, in doubt, and asks Clickatell before sending anything.
    """
    pks = [int(pk) for pk in message_pks]
    budgets = Budgets(gateway_retries, database_retries)
    return _with_database_retries(self, pks, budgets, lambda: _send(self, pks, budgets))


@shared_task(name="django_clickatell.refresh_messages", **_TASK_OPTIONS)
def refresh_messages(
    self: Task[Any, Any],
    message_pks: list[int],
    gateway_retries: int = 0,
    database_retries: int = 0,
) -> dict[str, Any]:
    """Ask Clickatell for the status of these messages (``querymsg``) and record it."""
    pks = [int(pk) for pk in message_pks]
    budgets = Budgets(gateway_retries, database_retries)

    def work() -> dict[str, Any]:
        report = refreshing.refresh_statuses(pks, via=Via.TASK)
        if report.retry and not budgets.exhausted(GATEWAY):
            raise _retry(self, report.retry, budgets, GATEWAY)
        return report.as_dict()

    return _with_database_retries(self, pks, budgets, work)


@shared_task(name="django_clickatell.refresh_statuses", ignore_result=True)
def refresh_statuses() -> int:
    """Refresh every message whose status may still change, in chunks (schedule with beat)."""
    pks = refreshing.refreshable_messages()
    size = app_settings.refresh_chunk_size
    for start in range(0, len(pks), size):
        refresh_messages.apply_async((pks[start : start + size],))
    return len(pks)


@shared_task(name="django_clickatell.ping", bind=True, ignore_result=True)
def ping(self: Task[Any, Any]) -> None:
    """Keep the shared Clickatell session alive; schedule every ~10 minutes with beat."""
    keep_session_alive()


@shared_task(name="django_clickatell.requeue_stalled_work", ignore_result=True)
def requeue_stalled_work() -> dict[str, int]:
    """Queue again the sends, checks and cancellations whose task was lost.

    Schedule it with beat every few minutes; see :func:`.dispatch.requeue_stalled`.
    """
    return dispatch.requeue_stalled(via=Via.TASK)


@shared_task(name="django_clickatell.release_due_messages", ignore_result=True)
def release_due_messages() -> dict[str, int]:
    """Hand the held messages that are due to the send path; schedule every ~30 s with beat.

    Each run claims due rows under a lease (two beats, or a beat and
    ``clickatell_release``, release each message once) and queues them as
    ordinary ``send_messages`` tasks; see :func:`.dispatch.release_held`.  This
    replaces long-ETA tasks, which a Redis broker redelivers after its
    visibility timeout.
    """
    return dispatch.release_held(via=Via.TASK)


def beat_schedule() -> Any:
    """The beat schedule of this process's Celery app (what ``celery beat`` would run).

    Read by the release-loop system check (:mod:`.release_loop`), which may not import
    Celery itself.  Reading ``conf`` loads the app's configuration (for a Django project,
    its ``CELERY_*`` settings); it connects to nothing.
    """
    return current_app.conf.beat_schedule


@shared_task(name="django_clickatell.cleanup", ignore_result=True)
def cleanup(days: int = 90) -> dict[str, int]:
    """Delete exchanges and unmatched callbacks older than *days* (schedule daily with beat)."""
    return delete_old_history(int(days))


#: The task that carries out each kind of work, by the name the work kind gives.  (Keyed
#: by those names, not ``task.name``: reading a shared task's attributes at import would
#: bind it to whichever Celery app is current then, before the project's own exists.)
_RUNS: dict[str, Task[Any, Any]] = {
    dispatch.SendWork.task: send_messages,
    dispatch.CancelWork.task: cancel_messages,
    dispatch.CancelBatchWork.task: cancel_batch,
    dispatch.RefreshWork.task: refresh_messages,
    dispatch.ReleaseWork.task: release_due_messages,
}


def publish(work: dispatch.Work) -> None:
    """Queue one piece of *work* for its task (retrying the broker briefly, see dispatch)."""
    _RUNS[work.task].apply_async(work.task_args(), retry=True, retry_policy=dispatch.PUBLISH_RETRY)


dispatch.publish_with(publish)


def _send(task: Task[Any, Any], pks: list[int], budgets: Budgets) -> dict[str, Any]:
    report = sending.send_messages(pks, via=Via.TASK, task_id=task.request.id or "")
    waiting = report.retry + report.held_elsewhere
    if waiting:
        if not budgets.exhausted(GATEWAY):
            at_least = report.retry_after if report.held_elsewhere else 0.0
            at_least = max(at_least, report.gateway_retry_after)  # the gateway's Retry-After
            raise _retry(task, waiting, budgets, GATEWAY, at_least=at_least)
        # Never sent ones fail, unverifiable ones become unknown: neither is resent blindly.
        # Each with the failure of its own account (a run holds several accounts' messages).
        fallback = report.transient_error or "no answer after the last retry"
        by_reason: dict[str, list[int]] = {}
        for pk in waiting:
            by_reason.setdefault(report.retry_reasons.get(pk) or fallback, []).append(pk)
        for reason, group in by_reason.items():
            send_recovery.give_up(group, reason)
    return report.as_dict()


def _cancel(
    task: Task[Any, Any], pks: list[int], budgets: Budgets, args: tuple[Any, ...] | None = None
) -> dict[str, Any]:
    report = cancelling.cancel_messages(
        pks,
        via=Via.TASK,
        task_id=task.request.id or "",
        give_up=budgets.exhausted(GATEWAY),
    )
    waiting = report.retry + report.held_elsewhere
    if waiting and not budgets.exhausted(GATEWAY):
        # Held elsewhere: another run finishes them, or its lease expires (it died, e.g. a
        # worker killed before this redelivery) and this retry takes them over.
        at_least = max(report.retry_after, report.gateway_retry_after)  # and its Retry-After
        raise _retry(task, waiting, budgets, GATEWAY, at_least=at_least, args=args)
    return report.as_dict()
