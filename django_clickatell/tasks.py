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
    }
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable
from functools import partial
from typing import Any

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError, transaction

from .conf import app_settings
from .gateway.client import ClickatellClient
from .models import Via
from .services import cancellation, sending, status

logger = logging.getLogger("django_clickatell.tasks")

_DATABASE_ERRORS = (OperationalError, InterfaceError)
#: Publishing happens inside a web request: give up on the broker quickly.
_PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.2, "interval_max": 0.5}
_TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    # The database briefly unavailable: Celery retries with backoff; the claim
    # token (the task id) survives retries, so nothing is cancelled twice.
    "autoretry_for": _DATABASE_ERRORS,
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
    "max_retries": 30,
}


@shared_task(name="django_clickatell.cancel_message", **_TASK_OPTIONS)
def cancel_message(self: Task[Any, Any], message_pk: int) -> dict[str, Any]:
    """Stop one message's delivery at Clickatell."""
    return _cancel(self, [message_pk])


@shared_task(name="django_clickatell.cancel_messages", **_TASK_OPTIONS)
def cancel_messages(self: Task[Any, Any], message_pks: list[int]) -> dict[str, Any]:
    """Stop many messages; selections larger than ``TASK_CHUNK_SIZE`` fan out into chunks.

    Chunks run in parallel on as many workers as there are; each chunk sends
    its ``delmsg`` requests one after the other over one kept-alive connection.
    """
    pks = [int(pk) for pk in message_pks]
    size = app_settings.task_chunk_size
    if len(pks) > size:
        for start in range(0, len(pks), size):
            cancel_messages.apply_async((pks[start : start + size],))
        return {"chunks": -(-len(pks) // size), "messages": len(pks)}
    return _cancel(self, pks)


@shared_task(name="django_clickatell.send_messages", **_TASK_OPTIONS)
def send_messages(self: Task[Any, Any], message_pks: list[int]) -> dict[str, Any]:
    """Send recorded messages, each at most once; a send in doubt is checked before any resend.

    A duplicate or redelivered task finds the messages leased by the run that
    holds them: it waits for that lease, then finds them sent -- or, if that run
    died, in doubt, and asks Clickatell before sending anything.
    """
    retries = self.request.retries
    report = sending.send_messages(
        [int(pk) for pk in message_pks], via=Via.TASK, task_id=self.request.id or ""
    )
    waiting = report.retry + report.held_elsewhere
    if waiting:
        if retries < app_settings.task_max_retries:
            countdown = retry_delay(retries) if report.retry else 0.0
            raise self.retry(
                args=(waiting,),
                countdown=max(countdown, report.retry_after),
                max_retries=app_settings.task_max_retries,
            )
        # Never sent ones fail, unverifiable ones become unknown: neither is resent blindly.
        sending.give_up(waiting, report.transient_error or "no answer after the last retry")
    return report.as_dict()


@shared_task(name="django_clickatell.refresh_messages", **_TASK_OPTIONS)
def refresh_messages(self: Task[Any, Any], message_pks: list[int]) -> dict[str, Any]:
    """Ask Clickatell for the status of these messages (``querymsg``) and record it."""
    report = status.refresh_statuses([int(pk) for pk in message_pks], via=Via.TASK)
    if report.retry and self.request.retries < app_settings.task_max_retries:
        raise self.retry(
            args=(report.retry,),
            countdown=retry_delay(self.request.retries),
            max_retries=app_settings.task_max_retries,
        )
    return report.as_dict()


@shared_task(name="django_clickatell.refresh_statuses", ignore_result=True)
def refresh_statuses() -> int:
    """Refresh every message whose status may still change, in chunks (schedule with beat)."""
    pks = status.refreshable_messages()
    size = app_settings.refresh_chunk_size
    for start in range(0, len(pks), size):
        refresh_messages.apply_async((pks[start : start + size],))
    return len(pks)


@shared_task(name="django_clickatell.ping", bind=True, ignore_result=True)
def ping(self: Task[Any, Any]) -> None:
    """Keep the shared Clickatell session alive; schedule every ~10 minutes with beat."""
    ClickatellClient().ping()


@shared_task(name="django_clickatell.requeue_stalled_work", ignore_result=True)
def requeue_stalled_work() -> dict[str, int]:
    """Queue again the sends, checks and cancellations whose task was lost.

    Lost means: a broker outage when the work was queued, a purged queue, a task
    out of its retries while its messages still wait, or a worker that died
    holding a lease that has since expired.  Schedule it with beat every few
    minutes; work that is merely waiting for its retry is left alone until it
    is overdue (``CLAIM_TIMEOUT`` + ``TASK_RETRY_BACKOFF_MAX``).
    """
    sends = sending.stalled_sends()
    cancels = cancellation.stalled_cancellations()
    if sends:
        logger.warning("Requeueing %d stalled sends", len(sends))
        for chunk in _chunks(sends, app_settings.task_chunk_size):
            send_messages.delay(chunk)
    if cancels:
        logger.warning("Requeueing %d stalled cancellations", len(cancels))
        cancel_messages.delay(cancels)
    return {"sends": len(sends), "cancellations": len(cancels)}


@shared_task(name="django_clickatell.requeue_stalled_cancellations", ignore_result=True)
def requeue_stalled_cancellations() -> int:
    """Kept for existing beat schedules: use ``requeue_stalled_work``, which does this too."""
    return sum(requeue_stalled_work().values())


def enqueue_cancellation(message_pks: Iterable[int], *, using: str | None = None) -> bool:
    """Queue :func:`cancel_messages` once the current transaction commits.

    A worker never sees primary keys of rows it cannot read yet, and a rolled
    back request queues nothing.  Returns False when called outside a
    transaction and the broker could not be reached: the messages stay
    ``PENDING`` and :func:`requeue_stalled_cancellations` picks them up later.
    """
    pks = list(message_pks)
    if not pks:
        return True
    connection = transaction.get_connection(using)
    if connection.in_atomic_block:
        transaction.on_commit(partial(publish_cancellation, pks), using=using)
        return True
    return publish_cancellation(pks)


def publish_cancellation(message_pks: list[int]) -> bool:
    """Send the task; a broker outage is logged, never raised into a request."""
    return _publish(cancel_messages, message_pks, "cancellation")


def enqueue_sending(message_pks: Iterable[int]) -> bool:
    """Queue :func:`send_messages` (on commit inside a transaction, else now).

    Returns False when the broker could not be reached right now: the messages
    stay ``QUEUED`` and :func:`requeue_stalled_work` sends them later.
    """
    pks = list(message_pks)
    if not pks:
        return True
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(partial(_publish_sending, pks))
        return True
    return _publish_sending(pks)


def _publish_sending(pks: list[int]) -> bool:
    ok = True
    for chunk in _chunks(pks, app_settings.task_chunk_size):
        ok = _publish(send_messages, chunk, "sending") and ok
    if not ok:
        logger.error(
            "Messages were recorded but not queued for sending; "
            "requeue_stalled_work will send them once the task queue is back"
        )
    return ok


def _chunks(pks: list[int], size: int) -> list[list[int]]:
    return [pks[start : start + size] for start in range(0, len(pks), size)]


def enqueue_refresh(message_pks: Iterable[int]) -> bool:
    """Queue :func:`refresh_messages` (now, or on commit inside a transaction)."""
    pks = list(message_pks)
    if not pks:
        return True
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(partial(_publish, refresh_messages, pks, "status refresh"))
        return True
    return _publish(refresh_messages, pks, "status refresh")


def _publish(task: Task[Any, Any], message_pks: list[int], what: str) -> bool:
    try:
        task.apply_async((message_pks,), retry=True, retry_policy=_PUBLISH_RETRY)
    except Exception:
        logger.exception(
            "Could not queue the %s of %d messages (task queue unreachable)", what, len(message_pks)
        )
        return False
    return True


def retry_delay(retries: int) -> float:
    """Exponential backoff with jitter, so retrying workers spread out instead of stampeding."""
    ceiling = min(app_settings.task_retry_backoff_max, app_settings.task_retry_backoff * 2**retries)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (not cryptographic)


def _cancel(task: Task[Any, Any], pks: list[int]) -> dict[str, Any]:
    retries = task.request.retries
    give_up = retries >= app_settings.task_max_retries
    report = cancellation.cancel_messages(
        pks, via=Via.TASK, task_id=task.request.id or "", give_up=give_up
    )
    if report.held_elsewhere and not report.retry and retries < app_settings.task_max_retries:
        # Another run holds them: it finishes them, or its lease expires (it died, e.g. a
        # worker killed before this redelivery) and this retry takes them over.
        raise task.retry(
            args=(report.held_elsewhere,),
            countdown=report.retry_after,
            max_retries=app_settings.task_max_retries,
        )
    if report.retry:
        countdown = retry_delay(retries)
        logger.info(
            "Retrying %d cancellations in %.1fs (attempt %d of %d): %s",
            len(report.retry),
            countdown,
            retries + 1,
            app_settings.task_max_retries,
            report.transient_error,
        )
        raise task.retry(
            args=(report.retry + report.held_elsewhere,),
            countdown=max(countdown, report.retry_after),
            max_retries=app_settings.task_max_retries,
        )
    return report.as_dict()
