"""Real Celery worker processes on a real broker, cancelling against the simulator: Redis,
and again RabbitMQ in ``make test`` (``CLICKATELL_TEST_BROKER``; see tests/brokers.py)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from django_clickatell import dispatch, tasks
from django_clickatell.models import CancelState, GatewayExchange, OutboundMessage, Via
from django_clickatell.services.cancel_requests import request_cancellation
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import WorkerProcess, wait_until
from tests.factories import scheduled_messages

SETTLED = [
    CancelState.CANCELLED,
    CancelState.TOO_LATE,
    CancelState.REFUSED,
    CancelState.GAVE_UP,
    CancelState.SKIPPED,
]

pytestmark = [pytest.mark.worker, pytest.mark.broker, pytest.mark.django_db(transaction=True)]


def settled(count: int) -> bool:
    return OutboundMessage.objects.filter(cancel_state__in=SETTLED).count() >= count


def test_worker_cancels_a_selection(
    simulator: ClickatellSimulator, celery_worker_process: WorkerProcess
) -> None:
    messages = scheduled_messages(simulator, 120)
    simulator.messages[str(messages[0].apimsgid)].status = "004"  # delivered meanwhile
    result = request_cancellation(OutboundMessage.objects.all(), via=Via.API)
    dispatch.enqueue_cancellation(result.message_pks)  # fans out into chunks of 50
    assert wait_until(lambda: settled(120), timeout=60)
    assert OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count() == 119
    assert OutboundMessage.objects.get(pk=messages[0].pk).cancel_state == CancelState.TOO_LATE
    assert simulator.executed["delmsg"] == 120  # exactly one per message
    assert simulator.counts["auth"] == 1  # two worker processes, one shared session
    exchange = GatewayExchange.objects.first()
    assert exchange is not None
    assert exchange.via == "task"
    assert exchange.task_id


def test_transient_errors_are_retried_with_backoff(
    simulator: ClickatellSimulator, celery_worker_process: WorkerProcess
) -> None:
    messages = scheduled_messages(simulator, 10)
    simulator.inject("http_502", command="delmsg", times=2)
    simulator.inject("reset", command="delmsg")
    tasks.cancel_messages.delay([m.pk for m in messages])
    assert wait_until(lambda: settled(10), timeout=60)
    assert OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count() == 10
    outcomes = sorted(GatewayExchange.objects.values_list("outcome", flat=True))
    assert outcomes.count("transport_error") == 3
    assert outcomes.count("status") == 10


def test_single_message_task(
    simulator: ClickatellSimulator, celery_worker_process: WorkerProcess
) -> None:
    [message] = scheduled_messages(simulator, 1)
    tasks.cancel_message.delay(message.pk)
    assert wait_until(lambda: settled(1), timeout=30)
    message.refresh_from_db()
    assert message.status == "006"


def test_broker_carries_primary_keys_only() -> None:
    """What a producer puts on the broker (Redis or RabbitMQ): task name and integers,
    nothing secret, in the message's headers, properties and body alike."""
    from kombu import Queue

    app = tasks.cancel_messages.app
    with app.connection_for_write() as conn:
        probe = Queue("django_clickatell_probe").bind(conn.default_channel)
        probe.declare()
        probe.purge()
        tasks.cancel_messages.apply_async(
            ([1, 2, 3],), queue="django_clickatell_probe", connection=conn
        )
        message = wait_until(lambda: probe.get(no_ack=True), timeout=5)
        probe.delete()
    assert message is not None
    raw = message.body  # bytes from Redis, str from py-amqp
    body_text = raw.decode() if isinstance(raw, bytes) else str(raw)
    text = json.dumps([message.headers, message.properties], default=str) + body_text
    assert message.headers["task"] == "django_clickatell.cancel_messages"
    assert "demo-password" not in text
    body = json.loads(body_text)
    assert body[0] == [[1, 2, 3]]


def test_stalled_cancellations_are_requeued(
    simulator: ClickatellSimulator, celery_worker_process: WorkerProcess
) -> None:
    """A batch whose task was lost (broker outage, purged queue) is picked up again."""
    from datetime import timedelta

    from django.utils import timezone

    messages = scheduled_messages(simulator, 4)
    long_ago = timezone.now() - timedelta(hours=1)
    OutboundMessage.objects.filter(pk__in=[m.pk for m in messages[:2]]).update(
        cancel_state=CancelState.PENDING, updated_at=long_ago
    )
    OutboundMessage.objects.filter(pk=messages[2].pk).update(
        cancel_state=CancelState.IN_FLIGHT, claim_token="dead", claim_expires_at=long_ago
    )
    # Recently queued: its task may still be on its way, so it is left alone.
    OutboundMessage.objects.filter(pk=messages[3].pk).update(cancel_state=CancelState.PENDING)
    assert sum(tasks.requeue_stalled_work().values()) == 3
    assert wait_until(lambda: settled(3), timeout=30)
    assert OutboundMessage.objects.get(pk=messages[3].pk).cancel_state == CancelState.PENDING
    assert simulator.executed["delmsg"] == 3


def test_send_task_and_status_refresh_through_the_worker(
    simulator: ClickatellSimulator, celery_worker_process: WorkerProcess
) -> None:
    from django_clickatell.api import send_sms
    from django_clickatell.models import SendState

    messages = send_sms(["27999000001", "27999000002"], "Grüße", deliver_in_minutes=30)
    pks = [m.pk for m in messages]
    assert wait_until(
        lambda: OutboundMessage.objects.filter(pk__in=pks, send_state=SendState.SENT).count() == 2,
        timeout=30,
    )
    for message in OutboundMessage.objects.filter(pk__in=pks):
        simulator.messages[str(message.apimsgid)].status = "003"
    assert tasks.refresh_statuses() == 2
    assert wait_until(
        lambda: OutboundMessage.objects.filter(pk__in=pks, status="003").count() == 2, timeout=30
    )
    assert {m.text for m in simulator.messages.values()} == {"Grüße"}


def test_two_operators_and_duplicate_deliveries_send_one_delmsg_each(
    simulator: ClickatellSimulator, celery_worker_process: WorkerProcess, admin_user: Any
) -> None:
    """Two admins confirm the same 1,000 messages at once, and the same task is delivered
    twice (same id): the gateway still carries out exactly one delmsg per message."""
    import threading

    from django.db import connection
    from django.test import Client

    messages = scheduled_messages(simulator, 1000)
    pks = [m.pk for m in messages]
    other = type(admin_user).objects.create_superuser("second-operator", "o@example.com", "pw")
    barrier = threading.Barrier(2)
    codes: list[int] = []

    def operator(user: Any) -> None:
        client = Client()
        client.force_login(user)
        barrier.wait()
        try:
            response = client.post(
                "/admin/django_clickatell/outboundmessage/",
                {
                    "action": "cancel_delivery",
                    "index": "0",
                    "select_across": "1",
                    "post": "yes",
                    "_selected_action": [str(pks[0])],
                },
            )
            codes.append(response.status_code)
        finally:
            connection.close()

    with simulator.latency_of(0.002):
        threads = [threading.Thread(target=operator, args=(u,)) for u in (admin_user, other)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        # And a task delivered twice under one id, as a broker may after a lost ack.
        duplicate = tasks.cancel_messages.apply_async((pks[:200],), task_id="dup-1")
        tasks.cancel_messages.apply_async((pks[:200],), task_id=duplicate.id)
        assert codes == [302, 302]
        assert wait_until(lambda: settled(1000), timeout=120)
    assert simulator.executed["delmsg"] == 1000
    assert OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count() == 1000
    # One answered delmsg each (a request that met ERR 003 on a renewed session is logged too).
    answered = GatewayExchange.objects.filter(command="delmsg").exclude(error_code=3)
    assert answered.count() == 1000
