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
from typing import Any

from celery import Task, shared_task
from django.db import InterfaceError, OperationalError

from . import dispatch
from .conf import app_settings
from .gateway.client import ClickatellClient
from .models import Via
from .services import cancelling, refreshing, send_recovery, sending
from .services.cleanup import delete_old_history

logger = logging.getLogger("django_clickatell.tasks")

_DATABASE_ERRORS = (OperationalError, InterfaceError)
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
        send_recovery.give_up(waiting, report.transient_error or "no answer after the last retry")
    return report.as_dict()


@shared_task(name="django_clickatell.refresh_messages", **_TASK_OPTIONS)
def refresh_messages(self: Task[Any, Any], message_pks: list[int]) -> dict[str, Any]:
    """Ask Clickatell for the status of these messages (``querymsg``) and record it."""
    report = refreshing.refresh_statuses([int(pk) for pk in message_pks], via=Via.TASK)
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
    pks = refreshing.refreshable_messages()
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

    Schedule it with beat every few minutes; see :func:`.dispatch.requeue_stalled`.
    """
    return dispatch.requeue_stalled(via=Via.TASK)


@shared_task(name="django_clickatell.cleanup", ignore_result=True)
def cleanup(days: int = 90) -> dict[str, int]:
    """Delete exchanges and unmatched callbacks older than *days* (schedule daily with beat)."""
    return delete_old_history(int(days))


@shared_task(name="django_clickatell.requeue_stalled_cancellations", ignore_result=True)
def requeue_stalled_cancellations() -> int:
    """Kept for existing beat schedules: use ``requeue_stalled_work``, which does this too."""
    return sum(requeue_stalled_work().values())


def retry_delay(retries: int) -> float:
    """Exponential backoff with jitter, so retrying workers spread out instead of stampeding."""
    ceiling = min(app_settings.task_retry_backoff_max, app_settings.task_retry_backoff * 2**retries)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (not cryptographic)


def _cancel(task: Task[Any, Any], pks: list[int]) -> dict[str, Any]:
    retries = task.request.retries
    give_up = retries >= app_settings.task_max_retries
    report = cancelling.cancel_messages(
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
