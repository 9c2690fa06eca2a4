"""The Celery app benchmark workers run; counts every database query each process makes."""

from __future__ import annotations

import itertools
import os
import threading
from typing import Any

import django
from celery import Celery
from celery.signals import task_postrun, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")
django.setup()

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.db.backends.signals import connection_created  # noqa: E402

app = Celery("django_clickatell_bench")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_clickatell"])

COUNTER_KEY = "bench:worker-queries"
_counter = itertools.count()
_flushed = 0
_lock = threading.Lock()


def _count(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    next(_counter)  # atomic under the GIL: the writer thread counts too
    return execute(sql, params, many, context)


def _wrap(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Every connection of every thread (the cancel service writes on a second thread)."""
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


@worker_process_init.connect
def _install_counter(**kwargs: Any) -> None:
    connection_created.connect(_wrap, weak=False)


@task_postrun.connect
def _flush_counter(**kwargs: Any) -> None:
    global _flushed
    with _lock:
        total = next(_counter)  # itself one more than the queries counted
        counted = total - _flushed
        _flushed = total + 1
    if counted:
        redis.Redis.from_url(settings.CELERY_BROKER_URL).incrby(COUNTER_KEY, counted)
