"""Shared pieces of the every-backend acceptance tests (tests/test_every_backend*.py).

Each of the three real APIs is configured as a project would configure it, against the
one simulator that serves them all; a Celery worker for a backend or for several
accounts is told its settings through ``CLICKATELL_TEST_EXTRA_SETTINGS`` (see
tests/settings.py).  :func:`assert_no_false_stop` is the issue's promise, checked at
the end of every test: a message is recorded stopped only when the gateway said so
(006, or the One API's STOPPED_BY_USER, which is recorded as 006) or it never left
Django.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connection

from django_clickatell.models import CancelState, GatewayExchange, OutboundMessage, SendState
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import WorkerProcess, flush_broker

BACKENDS = ["legacy_http", "rest", "one_api"]
#: The first path segment each backend's requests use at the simulator.
API_OF = {"legacy_http": "http", "rest": "rest", "one_api": "v1"}
#: Settled cancellation states: the worker is done with these.
SETTLED = (
    CancelState.CANCELLED,
    CancelState.TOO_LATE,
    CancelState.REFUSED,
    CancelState.GAVE_UP,
    CancelState.SKIPPED,
)


def backend_settings(simulator: ClickatellSimulator, backend: str) -> dict[str, Any]:
    """The account settings a project would write for *backend*, pointing at *simulator*."""
    if backend == "legacy_http":
        return simulator.settings()
    if backend == "rest":
        return simulator.rest_settings()
    return simulator.one_api_settings()


def secret_of(simulator: ClickatellSimulator, backend: str) -> str:
    """The credential that must never show anywhere for *backend*."""
    if backend == "legacy_http":
        return simulator.password
    if backend == "rest":
        return simulator.api_token
    return simulator.one_api.api_key


def assert_no_false_stop() -> None:
    """No message is recorded stopped unless a 006 reply was logged or it never left Django."""
    for message in OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED):
        said_006 = GatewayExchange.objects.filter(message=message, status="006").exists()
        assert said_006 or message.send_state == SendState.WITHDRAWN, (
            f"message {message.pk} ({message.account}) recorded stopped with no 006 and "
            f"send_state={message.send_state!r}"
        )


def settled(pks: list[int]) -> bool:
    return OutboundMessage.objects.filter(pk__in=pks, cancel_state__in=SETTLED).count() == len(pks)


@contextmanager
def worker_on_own_queue(
    simulator: ClickatellSimulator,
    django_db_blocker: Any,
    name: str,
    extra_settings: dict[str, Any],
) -> Iterator[WorkerProcess]:
    """A real worker with *extra_settings* merged into CLICKATELL, consuming a queue of its
    own (a session-wide legacy worker may be consuming the default queue meanwhile)."""
    from django.conf import settings

    from django_clickatell import tasks

    queue = f"{settings.CELERY_TASK_DEFAULT_QUEUE}-{name}"
    with django_db_blocker.unblock():
        flush_broker()
        worker = WorkerProcess(
            simulator.base_url,
            concurrency=2,
            name=queue,
            extra_env={
                "CLICKATELL_TEST_QUEUE": queue,
                "CLICKATELL_TEST_EXTRA_SETTINGS": json.dumps(extra_settings),
            },
        )
    app = tasks.cancel_messages.app
    default_queue, app.conf.task_default_queue = app.conf.task_default_queue, queue
    try:
        yield worker
    finally:
        app.conf.task_default_queue = default_queue
        worker.stop()


def rows_containing(secret: str) -> dict[str, int]:
    """Rows of the package's tables whose text (every column, as PostgreSQL prints the whole
    row) contains *secret*, by table."""
    from django.apps import apps

    found: dict[str, int] = {}
    models = apps.get_app_config("django_clickatell").get_models()
    if connection.vendor != "postgresql":  # (CLICKATELL_TEST_DB=sqlite) column by column
        from django.db.models import Q, TextField
        from django.db.models.functions import Cast

        for model in models:
            columns = [f.name for f in model._meta.concrete_fields]
            casts = {f"_{name}": Cast(name, TextField()) for name in columns}
            matches = Q()
            for name in columns:
                matches |= Q(**{f"_{name}__contains": secret})
            count = model._default_manager.annotate(**casts).filter(matches).count()
            if count:
                found[model._meta.db_table] = count
        return found
    with connection.cursor() as cursor:
        for model in models:
            table = connection.ops.quote_name(model._meta.db_table)
            whole_rows = f"SELECT count(*) FROM {table} AS t WHERE t::text LIKE %s"  # noqa: S608
            cursor.execute(whole_rows, [f"%{secret}%"])
            (count,) = cursor.fetchone()
            if count:
                found[model._meta.db_table] = count
    return found
