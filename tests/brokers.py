"""The test suite's Celery broker, Redis or RabbitMQ, behind the few operations tests need.

``CLICKATELL_TEST_BROKER`` picks it (``redis://...`` or ``amqp://...``): ``make test`` runs
the whole suite on Redis, then the worker and fault suites again on RabbitMQ, so every
broker-dependent helper lives here instead of speaking Redis commands in each test.

Redis keeps a Celery queue as a list named after it and the messages workers hold
(prefetched, running, or waiting for a retry's ETA) in one ``unacked`` hash; RabbitMQ
counts ready messages per queue, and only the worker knows what it holds, so that is
asked of the worker itself (``celery inspect``).
"""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import suppress
from typing import Any

import redis
from django.conf import settings


def url() -> str:
    return str(settings.CELERY_BROKER_URL)


def is_amqp() -> bool:
    """RabbitMQ (``amqp://`` / ``pyamqp://``), else Redis."""
    return url().split("://", 1)[0] in ("amqp", "pyamqp")


def name() -> str:
    return "RabbitMQ" if is_amqp() else "Redis"


def _app() -> Any:
    from tests.celery_app import app

    return app


def _redis() -> redis.Redis:
    return redis.Redis.from_url(url())


def check_reachable() -> None:
    """Fail loudly (never skip) when the broker does not answer: ``make services`` starts it."""
    with _app().connection_for_write() as conn:
        try:
            conn.ensure_connection(max_retries=2, interval_start=0.5, interval_step=0.5)
        except Exception as exc:  # kombu raises OperationalError; say which broker, no password
            raise RuntimeError(
                f"The test broker {conn.as_uri()} ({name()}) is unreachable: {exc}. "
                "Run `make services` (scripts/ensure-services.sh) or set CLICKATELL_TEST_BROKER."
            ) from exc


def flush(queues: Iterable[str]) -> None:
    """Start from an empty broker: Redis' whole database (queues and the unacked hash), or
    every message waiting in *queues* on RabbitMQ (what a worker held went back to its queue
    when that worker's connection closed)."""
    check_reachable()
    if not is_amqp():
        _redis().flushdb()
        return
    for queue in queues:
        purge(queue)


def purge(queue: str) -> int:
    """Drop the messages waiting in *queue* (not those a worker holds), as an operator's
    ``celery purge`` or a broker losing its queue would; returns how many there were."""
    if not is_amqp():
        client = _redis()
        waiting = int(client.llen(queue))
        client.delete(queue)
        return waiting
    with _app().connection_for_write() as conn:
        channel = conn.channel()
        try:
            return int(channel.queue_purge(queue) or 0)
        except conn.channel_errors:  # NOT_FOUND: never declared, nothing waits
            return 0
        finally:
            _close(channel)


def waiting(queue: str) -> int:
    """Messages ready in *queue*, not yet delivered to a worker."""
    if not is_amqp():
        return int(_redis().llen(queue))
    with _app().connection_for_write() as conn:
        channel = conn.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).message_count)
        except conn.channel_errors:
            return 0
        finally:
            _close(channel)


def held_by(worker_hostname: str) -> int:
    """Messages delivered to the worker and not yet acknowledged: prefetched, running, or
    held until a retry's ETA.  -1 when the worker did not answer (busy or gone)."""
    if not is_amqp():
        return int(_redis().hlen("unacked"))
    inspect = _app().control.inspect(destination=[worker_hostname], timeout=2.0, limit=1)
    held = 0
    for ask in (inspect.active, inspect.reserved, inspect.scheduled):
        replies = ask() or {}
        if worker_hostname not in replies:
            return -1
        held += len(replies[worker_hostname])
    return held


def idle(queue: str, worker_hostname: str) -> bool:
    """No task waiting in *queue*, and none held by the worker."""
    return not waiting(queue) and held_by(worker_hostname) == 0


def _close(channel: Any) -> None:
    with suppress(Exception):  # a channel the broker closed after NOT_FOUND is already gone
        channel.close()
