"""Celery tasks: thin faces over the services.

Arguments are primary keys only -- never credentials, session ids or message
text -- so nothing secret reaches the broker.  Tasks are ``acks_late`` and
``reject_on_worker_lost``: a worker killed mid-task gets its work redelivered,
and the claim token (the task id) lets the redelivery take back exactly the
messages it held without sending a second ``delmsg`` for one already recorded.

Beat schedule (keeps the shared session alive; Clickatell drops it after 15
idle minutes)::

    CELERY_BEAT_SCHEDULE = {
        "clickatell-ping": {"task": "django_clickatell.ping", "schedule": 600.0},
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
from .services import cancellation

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


@shared_task(name="django_clickatell.ping", bind=True, ignore_result=True)
def ping(self: Task[Any, Any]) -> None:
    """Keep the shared Clickatell session alive; schedule every ~10 minutes with beat."""
    ClickatellClient().ping()


def enqueue_cancellation(message_pks: Iterable[int], *, using: str | None = None) -> None:
    """Queue :func:`cancel_messages` once the current transaction commits.

    A worker never sees primary keys of rows it cannot read yet, and a rolled
    back request queues nothing.
    """
    pks = list(message_pks)
    if pks:
        transaction.on_commit(partial(cancel_messages.delay, pks), using=using)


def retry_delay(retries: int) -> float:
    """Exponential backoff with jitter, so retrying workers spread out instead of stampeding."""
    ceiling = min(app_settings.task_retry_backoff_max, app_settings.task_retry_backoff * 2**retries)
    return random.uniform(ceiling / 2, ceiling)  # noqa: S311 (not cryptographic)


def _cancel(task: Task[Any, Any], pks: list[int]) -> dict[str, Any]:
    retries = task.request.retries
    give_up = retries >= app_settings.task_max_retries
    report = cancellation.cancel_messages(
        pks, via=Via.TASK, claim_token=task.request.id, give_up=give_up
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
            args=(report.retry,), countdown=countdown, max_retries=app_settings.task_max_retries
        )
    return report.as_dict()
