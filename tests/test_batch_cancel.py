"""The admin's cancel action as a batch: O(1) in time, queries and broker bytes (issue 15, item 4).

The action records the selection in the database and publishes the batch id;
a worker prepares the batch (marks its messages, fans out chunk tasks carrying
bounds) and chunk tasks stop each message exactly once.
"""

from __future__ import annotations

import os
import signal
import time
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from kombu import serialization
from kombu.messaging import Producer

from django_clickatell import dispatch
from django_clickatell.models import (
    CancellationBatch,
    CancelState,
    OutboundMessage,
    SendState,
)
from django_clickatell.services import cancel_batches
from django_clickatell.services.cancel_batches import selection_size
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import WorkerProcess, wait_until
from tests.factories import scheduled_messages
from tests.faults import pid_of_client

CHANGELIST = reverse("admin:django_clickatell_outboundmessage_changelist")
SETTLED = [CancelState.CANCELLED, CancelState.TOO_LATE, CancelState.REFUSED, CancelState.GAVE_UP]


class ProcessDied(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no ``except Exception`` catches it."""


def confirm_all(client: Client) -> Any:
    """The confirmed action over every message ("select across"), as the admin posts it."""
    first_page = list(OutboundMessage.objects.order_by("-pk").values_list("pk", flat=True)[:10])
    return client.post(
        CHANGELIST,
        {
            "action": "cancel_delivery",
            "index": "0",
            "select_across": "1",
            "post": "yes",
            "_selected_action": [str(pk) for pk in first_page],
        },
    )


def many_messages(n: int) -> None:
    """*n* scheduled messages in one statement (the factory's per-row path is slow at 10k)."""
    OutboundMessage.objects.bulk_create(
        [
            OutboundMessage(apimsgid=f"{k:032x}", recipient=f"2799{k:08d}", status="011")
            for k in range(1, n + 1)
        ],
        batch_size=5000,
    )


def published_bodies(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bytes]]:
    """Every task message the action publishes, serialised as it goes on the wire (not sent)."""
    bodies: list[tuple[str, bytes]] = []

    def capture(self: Producer, body: Any, **kwargs: Any) -> None:
        _content_type, _encoding, data = serialization.dumps(body, serializer="json")
        name = kwargs.get("headers", {}).get("task", "")
        bodies.append((name, data if isinstance(data, bytes) else data.encode()))

    monkeypatch.setattr(Producer, "publish", capture)
    return bodies


def measure_action(
    client: Client, n: int, monkeypatch: pytest.MonkeyPatch, callbacks: Any
) -> tuple[int, int, float]:
    OutboundMessage.objects.all().delete()
    many_messages(n)
    bodies = published_bodies(monkeypatch)
    with callbacks(execute=True), CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        response = confirm_all(client)
        elapsed = time.perf_counter() - started
    assert response.status_code == 302
    [(name, body)] = bodies
    assert name == "django_clickatell.cancel_batch"
    batch = CancellationBatch.objects.latest("pk")
    assert selection_size(batch.pk) == n
    return len(queries.captured_queries), len(body), elapsed


@pytest.mark.django_db
def test_action_same_queries_and_task_bytes_at_10_and_10000(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    measure_action(admin_client, 10, monkeypatch, django_capture_on_commit_callbacks)  # warm
    small = measure_action(admin_client, 10, monkeypatch, django_capture_on_commit_callbacks)
    large = measure_action(admin_client, 10_000, monkeypatch, django_capture_on_commit_callbacks)
    assert small[0] == large[0], (small, large)  # queries
    # The same body but for the batch id's digits: a batch id, not a list of keys.
    assert abs(small[1] - large[1]) <= 3, (small, large)
    assert large[1] < 1024
    assert large[2] < 1.0, f"the action took {large[2]:.2f} s at 10,000"


@pytest.mark.django_db
def test_never_sent_messages_are_stopped_by_the_action_itself(admin_client: Client) -> None:
    [queued] = scheduled_messages(None, 1, send_state=SendState.QUEUED, apimsgid="")
    scheduled_messages(None, 2)
    confirm_all(admin_client)
    queued.refresh_from_db()
    assert (queued.send_state, queued.cancel_state) == (SendState.WITHDRAWN, CancelState.CANCELLED)
    batch = CancellationBatch.objects.get()
    assert queued.batch_id == batch.pk
    cancel_batches.prepare_batch(batch.pk, lambda *chunk: None)
    batch.refresh_from_db()
    assert (batch.total, batch.skipped) == (3, 0)
    assert (
        OutboundMessage.objects.filter(batch=batch, cancel_state=CancelState.PENDING).count() == 2
    )


@pytest.mark.django_db
def test_totals_stay_truthful_when_the_selection_changes_before_preparing(
    admin_client: Client,
) -> None:
    messages = scheduled_messages(None, 5)
    confirm_all(admin_client)
    batch = CancellationBatch.objects.get()
    assert (batch.total, batch.skipped) == (5, 0)
    OutboundMessage.objects.filter(pk=messages[0].pk).update(status="004")  # delivered meanwhile
    chunks: list[tuple[int, int, int]] = []
    cancel_batches.prepare_batch(batch.pk, lambda *chunk: chunks.append(chunk))
    batch.refresh_from_db()
    assert (batch.total, batch.skipped) == (4, 1)
    assert chunks == [(batch.pk, messages[0].pk, messages[-1].pk)]  # bounds, never key lists


@pytest.mark.django_db
def test_chunks_carry_bounds_of_cancel_chunk_size(admin_client: Client, settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "CANCEL_CHUNK_SIZE": 50}
    many_messages(120)
    confirm_all(admin_client)
    batch = CancellationBatch.objects.get()
    chunks: list[tuple[int, int, int]] = []
    cancel_batches.prepare_batch(batch.pk, lambda *chunk: chunks.append(chunk))
    sizes = [len(cancel_batches.chunk_messages(*chunk)) for chunk in chunks]
    assert sizes == [50, 50, 20]
    assert cancel_batches.prepare_batch(batch.pk, lambda *chunk: chunks.append(chunk)) == 0


@pytest.mark.django_db(transaction=True)
def test_a_batch_whose_preparation_died_is_recovered_by_requeue(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """The preparer dies after its first page (marked, chunks never published): requeue finishes.

    Every message is stopped exactly once: the first page's messages wait ``PENDING``
    (requeued as stalled cancellations), the rest is resumed from ``prepared_through``.
    """
    settings.CLICKATELL = {**settings.CLICKATELL, "CANCEL_CHUNK_SIZE": 5, "USE_CELERY": False}
    scheduled_messages(simulator, 240)  # more than one page of 5 x PAGE_CHUNKS
    request = cancel_batches.request_batch_cancellation(OutboundMessage.objects.all(), via="admin")
    batch = request.batch

    def dies(*chunk: Any) -> None:
        raise ProcessDied  # after the first page's marks committed, before any chunk left

    with pytest.raises(ProcessDied):
        cancel_batches.prepare_batch(batch.pk, dies)
    batch.refresh_from_db()
    assert batch.prepared_at is None
    assert batch.prepared_through > 0
    assert cancel_batches.stalled_batches() == []  # not overdue yet: maybe still alive
    long_ago = timezone.now() - timedelta(days=1)
    CancellationBatch.objects.filter(pk=batch.pk).update(prepare_touched_at=long_ago)
    OutboundMessage.objects.filter(cancel_state=CancelState.PENDING).update(updated_at=long_ago)

    handed_on = dispatch.requeue_stalled()

    assert handed_on["batches"] == 1
    assert OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count() == 240
    assert simulator.executed["delmsg"] == 240  # each exactly once
    batch.refresh_from_db()
    assert batch.prepared_at is not None
    assert (batch.total, batch.skipped) == (240, 0)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_worker_stops_a_2000_message_batch_exactly_once(
    simulator: ClickatellSimulator,
    celery_worker_process: WorkerProcess,
    admin_client: Client,
) -> None:
    scheduled_messages(simulator, 2000)
    response = confirm_all(admin_client)
    assert response.status_code == 302
    settled = OutboundMessage.objects.filter(cancel_state__in=SETTLED)
    assert wait_until(lambda: settled.count() >= 2000, timeout=240), settled.count()
    assert OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count() == 2000
    assert simulator.executed["delmsg"] == 2000  # every message stopped exactly once
    assert simulator.counts["auth"] == 1
    batch = CancellationBatch.objects.get()
    assert batch.prepared_at is not None
    assert (batch.total, batch.skipped) == (2000, 0)


def blocked_worker_port(conn: psycopg.Connection[Any]) -> int | None:
    """The client port of a backend waiting for a row lock while updating messages."""
    row = conn.execute(
        "SELECT client_port FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
        "AND query LIKE 'UPDATE \"django_clickatell_outboundmessage\"%'"
    ).fetchone()
    return int(row[0]) if row else None


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_expansion_worker_killed_mid_way_is_recovered(
    simulator: ClickatellSimulator,
    celery_worker_process: WorkerProcess,
    admin_client: Client,
) -> None:
    """SIGKILL the worker child preparing a batch, while its second page waits for a row lock.

    The first page's chunks are out; the rest of the selection is unmarked.  The
    task comes back (``acks_late``, ``reject_on_worker_lost``; else ``requeue_stalled``
    hands the overdue batch on) and resumes from ``prepared_through``: every
    message is stopped exactly once.
    """
    messages = scheduled_messages(simulator, 2500)  # three pages of 50 x PAGE_CHUNKS
    db = connection.settings_dict
    params = {"host": db["HOST"], "port": db["PORT"], "user": db["USER"], "dbname": db["NAME"]}
    # pg_stat_activity is a snapshot per transaction: the watcher polls in autocommit.
    with psycopg.connect(**params) as blocker, psycopg.connect(**params, autocommit=True) as watch:
        blocker.execute(
            "SELECT id FROM django_clickatell_outboundmessage WHERE id = %s FOR UPDATE",
            [messages[1500].pk],
        )
        assert confirm_all(admin_client).status_code == 302
        port = wait_until(lambda: blocked_worker_port(watch), timeout=60)
        assert port, "the preparer never reached the second page"
        victim = pid_of_client(port, int(db["PORT"]), celery_worker_process.child_pids())
        assert victim is not None
        os.kill(victim, signal.SIGKILL)
        blocker.rollback()
    batch = CancellationBatch.objects.get()
    if not wait_until(lambda: CancellationBatch.objects.get().prepared_at, timeout=60):
        long_ago = timezone.now() - timedelta(days=1)
        CancellationBatch.objects.filter(pk=batch.pk).update(prepare_touched_at=long_ago)
        OutboundMessage.objects.filter(cancel_state=CancelState.PENDING).update(updated_at=long_ago)
        dispatch.requeue_stalled()
    settled = OutboundMessage.objects.filter(cancel_state__in=SETTLED)
    assert wait_until(lambda: settled.count() >= 2500, timeout=240), settled.count()
    assert OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count() == 2500
    assert simulator.executed["delmsg"] == 2500  # exactly once, across the kill
    batch.refresh_from_db()
    assert batch.prepared_at is not None
    assert (batch.total, batch.skipped) == (2500, 0)
