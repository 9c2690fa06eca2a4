"""The fault matrix: a 1,000-message bulk cancellation through real Celery workers on Redis
(and again on RabbitMQ in ``make test``; see tests/brokers.py), against the simulator, while
one thing at a time goes wrong.

Afterwards, for every case: nothing is left in progress; every message is in the state the
gateway says (cancelled exactly where it answered 006, its real status or error code otherwise,
or "gave up" with the reason); every request the gateway received is in the exchange log
(except replies that died with a killed process or could not be written while the database
was down); retries are bounded; and no message got a delmsg after a 006 was recorded.
"""

from __future__ import annotations

import os
import signal
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from django_clickatell import dispatch, tasks
from django_clickatell.models import CancelState, GatewayExchange, OutboundMessage, Via
from django_clickatell.services.cancel_requests import request_cancellation
from django_clickatell.simulator import ClickatellSimulator, Fault
from tests import brokers
from tests.conftest import wait_until
from tests.factories import scheduled_messages
from tests.faults import (
    AUTH_LOCK_TIMEOUT,
    AUTH_WAIT_TIMEOUT,
    CLAIM_TIMEOUT,
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    FaultEnv,
    fault_environment,
    loss_window,
)

pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

N = 1000
MAX_RETRIES = 8  # TASK_MAX_RETRIES default
ACTIVE = [CancelState.PENDING, CancelState.IN_FLIGHT, CancelState.RETRYING]


@pytest.fixture(scope="module")
def faults(
    django_db_setup: Any, django_db_blocker: Any, gateway: ClickatellSimulator
) -> Iterator[FaultEnv]:
    with fault_environment(gateway.base_url, django_db_blocker, "faults") as env:
        yield env


@pytest.fixture(autouse=True)
def _fresh_worker_cache(faults: FaultEnv) -> None:
    """The workers' session cache is the private Redis: start each case from empty."""
    redis.Redis(port=faults.cache.port).flushall()


def start_batch(simulator: ClickatellSimulator) -> list[OutboundMessage]:
    messages = scheduled_messages(simulator, N)
    result = request_cancellation(OutboundMessage.objects.all(), via=Via.API)
    assert dispatch.enqueue_cancellation(result.message_pks)
    return messages


def settled_count() -> int:
    return OutboundMessage.objects.exclude(cancel_state__in=ACTIVE).count()


def run_until_settled(during: Callable[[], None] | None = None, timeout: float = 90) -> None:
    if during is not None:
        during()
    assert wait_until(lambda: settled_count() == N, timeout=timeout, interval=0.2), (
        f"{N - settled_count()} messages still in progress: "
        f"{dict(OutboundMessage.objects.values_list('cancel_state').annotate())}"
    )


def check_invariants(simulator: ClickatellSimulator, *, lost_replies: int = 0) -> dict[str, int]:
    messages = list(OutboundMessage.objects.all())
    assert not [m.pk for m in messages if m.cancel_state in ACTIVE]
    delmsgs: dict[int, list[GatewayExchange]] = defaultdict(list)
    for exchange in GatewayExchange.objects.filter(command="delmsg").order_by("occurred_at", "pk"):
        delmsgs[exchange.message_id].append(exchange)
    states: dict[str, int] = defaultdict(int)
    for message in messages:
        states[message.cancel_state] += 1
        at_gateway = simulator.status_of(str(message.apimsgid))
        rows = delmsgs[message.pk]
        if message.cancel_state == CancelState.CANCELLED:
            assert (message.status, at_gateway) == ("006", "006"), message.pk
            assert any(row.status == "006" for row in rows), message.pk
        if at_gateway == "006":  # whatever Clickatell stopped is known to be stopped
            assert message.cancel_state == CancelState.CANCELLED, (message.pk, message.cancel_state)
        if message.cancel_state == CancelState.REFUSED:
            assert rows[-1].error_code is not None, message.pk
            assert f"ERR {rows[-1].error_code:03d}" in message.cancel_error
        if message.cancel_state == CancelState.GAVE_UP:
            assert message.cancel_error, message.pk
        first_006 = next((i for i, row in enumerate(rows) if row.status == "006"), None)
        if first_006 is not None:  # no delmsg after a recorded 006
            assert first_006 == len(rows) - 1, (message.pk, [r.status for r in rows])
        # Bounded retries: requests made (a "not sent" row made none) ...
        made = [row for row in rows if row.outcome != GatewayExchange.Outcome.NOT_SENT]
        assert len(made) <= MAX_RETRIES + 2, (message.pk, len(made))
        assert len(rows) <= 2 * (MAX_RETRIES + 2), (message.pk, len(rows))
    logged = sum(len(rows) for rows in delmsgs.values())
    # Requests the gateway acted on: carried out, or answered with an injected fault. (An
    # ERR 003 for a stale session executes nothing; the client renews and repeats it.)
    received = simulator.executed["delmsg"] + simulator.counts["faults"]
    reached = sum(
        1
        for rows in delmsgs.values()
        for row in rows
        if row.outcome != GatewayExchange.Outcome.NOT_SENT  # never left this process
    )
    assert received - lost_replies <= reached <= logged, (received, reached, logged)
    return dict(states)


def after(count: int, action: Callable[[], None]) -> Callable[[], None]:
    """Run *action* once *count* messages have settled: a fault in the middle of the batch."""

    def during() -> None:
        assert wait_until(lambda: settled_count() >= count, timeout=60, interval=0.05)
        action()

    return during


@pytest.mark.parametrize(
    ("fault", "times"),
    [
        ("delay", 6),
        # Retries with a countdown, held unacknowledged by the worker until due.
        pytest.param("reset", 6, marks=pytest.mark.broker),
        ("http_500", 5),
        ("http_502", 5),
        ("malformed", 5),
    ],
)
def test_transient_gateway_faults(
    faults: FaultEnv, simulator: ClickatellSimulator, fault: str, times: int
) -> None:
    start_batch(simulator)
    run_until_settled(
        after(100, lambda: simulator.inject(Fault(fault, command="delmsg", times=times, delay=1.0)))
    )
    states = check_invariants(simulator)
    assert states == {CancelState.CANCELLED: N}
    assert simulator.counts["faults"] == times
    assert simulator.counts["auth"] == 1
    outcomes = GatewayExchange.objects.exclude(outcome="status").count()
    assert outcomes == times  # each failed attempt is logged, then retried to success


def test_session_expiry_mid_batch(faults: FaultEnv, simulator: ClickatellSimulator) -> None:
    start_batch(simulator)
    run_until_settled(after(300, simulator.expire_sessions))
    assert check_invariants(simulator) == {CancelState.CANCELLED: N}
    assert simulator.counts["auth"] == 2  # one renewal, shared by all workers


def test_credentials_revoked_mid_batch(faults: FaultEnv, simulator: ClickatellSimulator) -> None:
    """Once the password is refused no delmsg leaves: "not sent", retried, then given up --
    never "refused by Clickatell", which would be final and untrue."""
    start_batch(simulator)
    run_until_settled(after(300, lambda: simulator.change_password("rotated")))
    states = check_invariants(simulator)
    assert set(states) == {CancelState.CANCELLED, CancelState.GAVE_UP}
    assert states[CancelState.CANCELLED] >= 300
    gave_up = OutboundMessage.objects.filter(cancel_state=CancelState.GAVE_UP)
    assert all(
        "Nothing was carried out" in m.cancel_error or "Not attempted" in m.cancel_error
        for m in gave_up
    )
    assert all(simulator.status_of(str(m.apimsgid)) == "011" for m in gave_up)  # still live
    not_sent = GatewayExchange.objects.filter(outcome=GatewayExchange.Outcome.NOT_SENT)
    assert set(not_sent.values_list("error_code", flat=True)) == {1}
    assert simulator.counts["auth"] <= 3  # the refusal is remembered, not retried per message


@pytest.mark.broker
def test_worker_killed_mid_batch(faults: FaultEnv, simulator: ClickatellSimulator) -> None:
    start_batch(simulator)

    def kill_one_child() -> None:
        [victim, *_] = faults.worker.child_pids()
        os.kill(victim, signal.SIGKILL)

    with simulator.latency_of(0.005):
        run_until_settled(after(300, kill_one_child))
    # The killed process loses at most the outcome group it had not written and the
    # requests it had in flight; those were asked again after the redelivery.
    assert check_invariants(simulator, lost_replies=loss_window()) == {CancelState.CANCELLED: N}


def test_cache_unreachable_for_a_while(faults: FaultEnv, simulator: ClickatellSimulator) -> None:
    start_batch(simulator)

    def outage() -> None:
        faults.cache.stop()
        time.sleep(2)
        faults.cache.start()

    with simulator.latency_of(0.01):
        run_until_settled(after(200, outage))
    assert check_invariants(simulator) == {CancelState.CANCELLED: N}
    felt = GatewayExchange.objects.filter(detail__startswith="The session cache is unreachable")
    assert felt.exists()  # the outage hit the run, which stopped and retried
    # The restarted cache is empty: one more auth, shared by every worker.
    assert simulator.counts["auth"] == 2


def test_database_briefly_unavailable(faults: FaultEnv, simulator: ClickatellSimulator) -> None:
    start_batch(simulator)

    def outage() -> None:
        faults.database.cut()
        time.sleep(2)
        faults.database.restore()

    with simulator.latency_of(0.005):
        run_until_settled(after(300, outage))
    # Replies received as the database was cut could not be written (per worker process:
    # the group whose write failed, and the requests in flight); those messages were asked
    # again after the outage and recorded.
    lost = loss_window(processes=4)
    assert check_invariants(simulator, lost_replies=lost) == {CancelState.CANCELLED: N}


def requeue_when_stalled(timeout: float = 120) -> int:
    """Run the requeue task as beat would, whenever the batch has made no progress for longer
    than a lease and a retry (the work left is stranded); returns how many it handed on."""
    requeued = 0
    deadline = time.monotonic() + timeout
    last, still_since = settled_count(), time.monotonic()
    while settled_count() < N and time.monotonic() < deadline:
        time.sleep(0.5)
        if (now := settled_count()) != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > CLAIM_TIMEOUT + 3:
            requeued += tasks.requeue_stalled_work()["cancellations"]
            still_since = time.monotonic()
    return requeued


@pytest.mark.broker
def test_whole_worker_killed_mid_batch(
    faults: FaultEnv, simulator: ClickatellSimulator, settings: Any
) -> None:
    """The whole worker -- main process and children -- SIGKILLed mid-batch, as when its
    machine dies, and a new one started.  Where the messages it held go is the broker's
    business: RabbitMQ puts them back in the queue as the connection drops; Redis keeps
    them in its unacked hash until ``visibility_timeout`` (an hour), so there only the
    requeue task (beat, run here as beat would) finds that work.  Either way every message
    ends as the gateway says, and nothing is asked twice blindly."""
    # The requeue task runs here: it must judge leases by the workers' settings.
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "TIMEOUT": (CONNECT_TIMEOUT, READ_TIMEOUT),
        "AUTH_LOCK_TIMEOUT": AUTH_LOCK_TIMEOUT,
        "AUTH_WAIT_TIMEOUT": AUTH_WAIT_TIMEOUT,
        "CLAIM_TIMEOUT": CLAIM_TIMEOUT,
    }
    start_batch(simulator)
    held: dict[str, int] = {}

    def kill_and_replace() -> None:
        held["waiting"] = brokers.waiting("faults")
        faults.kill_worker()
        if brokers.is_amqp():  # the broker sees the connection drop, and requeues
            wait_until(lambda: brokers.waiting("faults") > held["waiting"], timeout=5)
        held["back"] = brokers.waiting("faults") - held["waiting"]
        if not brokers.is_amqp():
            held["unacked"] = int(redis.Redis.from_url(brokers.url()).hlen("unacked"))
        faults.replace_worker()

    with simulator.latency_of(0.005):
        after(300, kill_and_replace)()
        requeued = requeue_when_stalled()
    run_until_settled(timeout=5)
    print(f"\nwhole worker killed on {brokers.name()}: {held}, requeued {requeued}")  # pytest -s
    # Each of the 4 killed processes lost at most its unwritten outcome group and its
    # requests in flight; those were asked again and recorded.
    assert check_invariants(simulator, lost_replies=loss_window(processes=4)) == {
        CancelState.CANCELLED: N
    }
    if brokers.is_amqp():
        assert held["back"] > 0, held  # the dead worker's tasks were back in the queue at once
    else:
        assert held["unacked"] > 0  # stranded as unacked, out of every worker's reach ...
        assert requeued > 0  # ... until the requeue task handed that work on again
