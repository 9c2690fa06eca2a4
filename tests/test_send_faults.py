"""The send fault matrix: 1,000 messages through real Celery workers (on Redis, and again on
RabbitMQ in ``make test``: see tests/brokers.py), against the
simulator, while one thing at a time goes wrong -- the same matrix cancelling has.

Each case records 1,000 messages with ``create_messages``, queues them with
``tasks.send_messages`` in chunks to a real 4-process prefork worker on a queue of its own,
breaks one thing mid-run (requests in flight), then runs ``tasks.requeue_stalled_work``
until nothing is left in progress.  The simulator is the truth about what went out.
For every message:

- the gateway sent no SMS twice (no ``climsgid``, and no recipient+text, accepted twice);
- ``send_state`` is "sent" exactly when the gateway has its ``climsgid``, with the same
  ``apimsgid`` recorded; a message the gateway never got is never "sent";
- nothing is left queued, sending or verifying; every "unknown" says why (``send_error``);
- the number of ``sendmsg`` requests naming its recipient is bounded.

The gateway answers ``querymsg`` throughout, so every case must end with all 1,000 sent.

The workers keep ``MAX_IN_FLIGHT`` (8) requests in flight each, so every fault strikes with
requests on the wire.  A killed worker leaves at most one outcome group and its window in
doubt (``send_run.doubt_bound()``: below ``GROUP_SIZE + MAX_IN_FLIGHT``), whatever the chunk
size; only those are asked about (``querymsg``) before the rest are sent.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from django_clickatell import tasks
from django_clickatell.models import OutboundMessage
from django_clickatell.services.callbacks import receive_json_callback
from django_clickatell.services.composing import create_messages
from django_clickatell.services.send_run import doubt_bound
from django_clickatell.simulator import ClickatellSimulator, Fault
from tests import brokers
from tests.conftest import wait_until
from tests.faults import (
    AUTH_LOCK_TIMEOUT,
    AUTH_WAIT_TIMEOUT,
    CLAIM_TIMEOUT,
    CONNECT_TIMEOUT,
    MAX_IN_FLIGHT,
    READ_TIMEOUT,
    FaultEnv,
    fault_environment,
    loss_window,
    pid_of_client,
)

pytestmark = [pytest.mark.slow, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

N = 1000
CHUNK = 50
TEXT = "Your code is 4711"
QUEUE = "sendfaults"
MAX_RETRIES = 8  # TASK_MAX_RETRIES default
#: Per message: the first try, one repeat after a renewed session, resends after ERR 104.
MAX_SENDMSG_PER_MESSAGE = MAX_RETRIES + 2
#: Over the whole batch: a few dozen extra requests at most (no resend storm).
MAX_EXTRA_SENDMSG = 50
UNSETTLED = ("queued", "sending", "verifying")


#: The One API account of the batch case, and its messages per request.
PLATFORM = "platform"
BATCH = 25


def platform_account(gateway: ClickatellSimulator) -> dict[str, Any]:
    """A One API account with the same (short) timeouts as the default one."""
    return {
        PLATFORM: {
            **gateway.one_api_settings(),
            "SEND_BATCH_SIZE": BATCH,
            "TIMEOUT": [CONNECT_TIMEOUT, READ_TIMEOUT],
            "AUTH_LOCK_TIMEOUT": AUTH_LOCK_TIMEOUT,
            "AUTH_WAIT_TIMEOUT": AUTH_WAIT_TIMEOUT,
        }
    }


@pytest.fixture(scope="module")
def send_faults(
    django_db_setup: Any, django_db_blocker: Any, gateway: ClickatellSimulator
) -> Iterator[FaultEnv]:
    extra = {"ACCOUNTS": platform_account(gateway)}
    with fault_environment(gateway.base_url, django_db_blocker, QUEUE, extra_settings=extra) as env:
        yield env


@pytest.fixture(autouse=True)
def _same_settings_as_the_workers(
    send_faults: FaultEnv, simulator: ClickatellSimulator, settings: Any
) -> None:
    """The requeue task runs here: it must judge leases by the workers' timeouts."""
    redis.Redis(port=send_faults.cache.port).flushall()
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "TIMEOUT": (CONNECT_TIMEOUT, READ_TIMEOUT),
        "AUTH_LOCK_TIMEOUT": AUTH_LOCK_TIMEOUT,
        "AUTH_WAIT_TIMEOUT": AUTH_WAIT_TIMEOUT,
        "CLAIM_TIMEOUT": CLAIM_TIMEOUT,
        "ACCOUNTS": platform_account(simulator),
    }


# -- driving a batch -------------------------------------------------------------------------


def create_batch(account: str = "default") -> list[int]:
    """1,000 queued messages, one recipient each, recorded 100 recipients per call."""
    recipients = [f"2799910{n:05d}" for n in range(N)]
    pks: list[int] = []
    for start in range(0, N, 100):
        chunk = recipients[start : start + 100]
        pks += [m.pk for m in create_messages(chunk, TEXT, account=account)]
    return pks


def chunks(pks: list[int], size: int = CHUNK) -> list[list[int]]:
    return [pks[start : start + size] for start in range(0, len(pks), size)]


def publish(
    pks: list[int], *, copies: int = 1, same_task_id: bool = False, size: int = CHUNK
) -> None:
    """Queue every chunk *copies* times, back to back (as one task id, or as separate tasks)."""
    for chunk in chunks(pks, size):
        task_id = str(uuid.uuid4())
        for _ in range(copies):
            if same_task_id:
                tasks.send_messages.apply_async((chunk,), task_id=task_id)
            else:
                tasks.send_messages.delay(chunk)


def accepted(simulator: ClickatellSimulator) -> int:
    return len(simulator.accepted_sends())


def unsettled() -> int:
    return OutboundMessage.objects.filter(send_state__in=UNSETTLED).count()


def broker_idle() -> bool:
    """No task waiting in the queue, and none held by the worker (running or awaiting a retry)."""
    return brokers.idle(QUEUE, f"{QUEUE}@{socket.gethostname()}")


def states() -> dict[str, int]:
    return dict(Counter(OutboundMessage.objects.values_list("send_state", flat=True)))


def after(simulator: ClickatellSimulator, count: int, action: Callable[[], None]) -> None:
    """Run *action* once the gateway has accepted *count* SMS: a fault in mid-batch."""
    assert wait_until(lambda: accepted(simulator) >= count, timeout=60, interval=0.02), (
        f"the gateway accepted only {accepted(simulator)} SMS; states: {states()}"
    )
    action()


def wait_for_the_workers(timeout: float = 40) -> None:
    """Until every message has left the in-progress states and no task is left, or
    nothing has changed for longer than a lease and a retry (the work is stranded)."""
    deadline = time.monotonic() + timeout
    last, still_since = states(), time.monotonic()
    while time.monotonic() < deadline:
        if not unsettled() and broker_idle():
            return
        time.sleep(0.2)
        now = states()
        if now != last:
            last, still_since = now, time.monotonic()
        elif time.monotonic() - still_since > CLAIM_TIMEOUT + 3 and broker_idle():
            return


def requeue_until_settled(rounds: int = 8) -> int:
    """Run the beat task synchronously (as beat would) until nothing is left in progress;
    returns how many sends it requeued."""
    requeued = 0
    for _ in range(rounds):
        requeued += tasks.requeue_stalled_work()["sends"]
        wait_for_the_workers(timeout=CLAIM_TIMEOUT + 10)
        if not unsettled():
            break
        time.sleep(1)  # let leases run out before the next round
    return requeued


def assert_no_duplicate_sms(simulator: ClickatellSimulator) -> None:
    duplicates = simulator.duplicate_sends()
    assert not duplicates, (
        f"{len(duplicates)} SMS went out more than once (states: {states()}); "
        f"first ones: {duplicates[:3]}"
    )


def check_invariants(
    simulator: ClickatellSimulator, pks: list[int], *, expected: dict[str, int] | None = None
) -> dict[str, int]:
    """Every message against the gateway's truth; fails listing each kind of breach found,
    how often, and the first few messages it hit."""
    problems: dict[str, list[str]] = defaultdict(list)
    duplicates = simulator.duplicate_sends()
    for duplicate in duplicates:
        problems["an SMS went out more than once"].append(str(duplicate))
    sends = simulator.accepted_sends()
    at_gateway = {m.climsgid: m for m in sends if m.climsgid}
    by_recipient = {m.to: m for m in sends if m.text == TEXT}
    requests = simulator.sendmsg_requests_by_recipient()
    messages = list(OutboundMessage.objects.filter(pk__in=pks))
    assert len(messages) == N
    ours = {m.climsgid for m in messages}
    for climsgid in at_gateway.keys() - ours:
        problems["the gateway sent an SMS under no message's climsgid"].append(climsgid)
    for send in sends:
        if not send.climsgid:
            problems["the gateway sent an SMS with no climsgid"].append(send.to)
    if sum(requests.values()) > N + MAX_EXTRA_SENDMSG:
        problems["too many sendmsg requests in all"].append(str(sum(requests.values())))
    for message in messages:
        where = f"message {message.pk} ({message.recipient}, climsgid {message.climsgid})"
        gateway_copy = at_gateway.get(message.climsgid)
        state = message.send_state
        if state in UNSETTLED:
            problems[f"left {state!r}"].append(where)
        if state == "sent" and gateway_copy is None:
            problems["recorded sent, the gateway has no SMS with its climsgid"].append(where)
        if state == "sent" and gateway_copy and gateway_copy.apimsgid != str(message.apimsgid):
            problems["recorded an apimsgid the gateway did not give it"].append(where)
        if (gateway_copy or message.recipient in by_recipient) and state != "sent":
            problems["at the gateway but not recorded sent"].append(f"{where}: {state!r}")
        if state == "unknown" and not message.send_error:
            problems["unknown with no reason"].append(where)
        if requests.get(message.recipient, 0) > MAX_SENDMSG_PER_MESSAGE:
            problems["too many sendmsg requests"].append(f"{where}: {requests[message.recipient]}")
    found = dict(Counter(m.send_state for m in messages))
    if expected is not None and found != expected:
        problems["states differ from the expected ones"].append(f"{found}, not {expected}")
    assert not problems, "\n".join(
        f"{len(hits)} x {kind}: " + "; ".join(hits[:3]) for kind, hits in problems.items()
    )
    return found


def sendmsg_requests(simulator: ClickatellSimulator) -> int:
    return sum(simulator.sendmsg_requests_by_recipient().values())


def run_case(
    simulator: ClickatellSimulator,
    *,
    during: Callable[[list[int]], None] | None = None,
    copies: int = 1,
    same_task_id: bool = False,
    chunk: int = CHUNK,
) -> list[int]:
    """Record, queue, break something, let the workers and the requeue task finish, check."""
    started = time.monotonic()
    pks = create_batch()
    publish(pks, copies=copies, same_task_id=same_task_id, size=chunk)
    if during is not None:
        during(pks)
    wait_for_the_workers()
    assert_no_duplicate_sms(simulator)  # a duplicate SMS cannot be undone: fail at once
    requeued = requeue_until_settled()
    # A request the gateway still holds may yet be carried out: judge only once it has finished.
    assert wait_until(lambda: simulator.in_flight == 0, timeout=30, interval=0.1)
    check_invariants(simulator, pks, expected={"sent": N})
    print(  # the figures behind each case, for the report (pytest -s)
        f"\n{os.environ.get('PYTEST_CURRENT_TEST', '').split(' ')[0]}: "
        f"{time.monotonic() - started:.1f}s, sendmsg {sendmsg_requests(simulator)}, "
        f"querymsg {simulator.counts['querymsg']}, auth {simulator.counts['auth']}, "
        f"faults {simulator.counts['faults']}, requeued {requeued}"
    )
    return pks


# -- the cases ---------------------------------------------------------------------------------


@pytest.mark.broker
def test_worker_killed_after_its_sendmsg_was_carried_out(
    send_faults: FaultEnv, simulator: ClickatellSimulator
) -> None:
    """SIGKILL the child whose sendmsg the gateway has carried out, before it hears back.

    Chunks of 250, so the killed run holds far more messages than it can leave in doubt:
    the untried ones are still queued (sent by the next run without asking), and only the
    few it may have sent -- its unwritten outcomes and its window -- are asked about.
    """
    held = Fault("delay_after", command="sendmsg", delay=READ_TIMEOUT * 0.8)
    killed: list[int] = []

    def kill_the_sender() -> None:
        simulator.inject(held)
        assert wait_until(lambda: held.hits, timeout=10, interval=0.005)
        time.sleep(0.05)  # the gateway carries it out, then holds the answer
        victim = pid_of_client(held.hits[0][1], simulator.port, send_faults.worker.child_pids())
        assert victim is not None, "no worker child holds the held sendmsg's connection"
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    with simulator.latency_of(0.002):
        run_case(simulator, during=lambda pks: after(simulator, 300, kill_the_sender), chunk=250)
    assert killed
    # The killed run's message was asked about, found, and not sent again.
    assert simulator.counts["querymsg"] >= 1
    # The documented bound: one killed process leaves at most one outcome group and its
    # requests in flight in doubt -- each asked about once, nothing else.
    assert simulator.counts["querymsg"] <= loss_window(1) == 50 + MAX_IN_FLIGHT


@pytest.mark.broker
def test_same_task_delivered_twice(send_faults: FaultEnv, simulator: ClickatellSimulator) -> None:
    """Every chunk's task delivered twice (one task id), then once more after it finished."""
    pks = run_case(simulator, copies=2, same_task_id=True)
    sent_before = accepted(simulator)
    publish(pks, same_task_id=True)  # a late redelivery of work already done
    wait_for_the_workers()
    assert accepted(simulator) == sent_before
    check_invariants(simulator, pks, expected={"sent": N})


@pytest.mark.broker
def test_two_runs_of_each_chunk_at_once(
    send_faults: FaultEnv, simulator: ClickatellSimulator
) -> None:
    """Two separate tasks for every chunk, picked up side by side by the 4 processes."""
    with simulator.latency_of(0.002):
        run_case(simulator, copies=2)


def test_database_cut_mid_run(send_faults: FaultEnv, simulator: ClickatellSimulator) -> None:
    """The workers' PostgreSQL connections cut for 2 s while sendmsg requests are in flight."""

    def outage() -> None:
        send_faults.database.cut()
        time.sleep(2)
        send_faults.database.restore()

    with simulator.latency_of(0.005):
        run_case(simulator, during=lambda pks: after(simulator, 300, outage))
    # Requests whose answers could not be written were checked, not resent blindly.
    assert simulator.counts["querymsg"] >= 1


@pytest.mark.parametrize(
    ("kind", "delay", "carried_out"),
    [
        ("drop_reply", 0.0, True),  # carried out, the answer lost (connection reset)
        ("delay_after", READ_TIMEOUT * 2, True),  # carried out, answered after the timeout
        ("delay", READ_TIMEOUT * 2, False),  # never carried out, no answer (read timeout)
        ("http_500", 0.0, False),
        ("http_502", 0.0, False),
    ],
)
def test_gateway_faults_on_sendmsg(
    send_faults: FaultEnv,
    simulator: ClickatellSimulator,
    kind: str,
    delay: float,
    carried_out: bool,
) -> None:
    """Five sendmsg requests fail; each is checked by querymsg and resent only if unknown."""
    fault = Fault(kind, command="sendmsg", times=5, delay=delay)
    run_case(simulator, during=lambda pks: after(simulator, 100, lambda: simulator.inject(fault)))
    assert len(fault.hits) == 5
    assert simulator.counts["querymsg"] >= 5  # every failed one was asked about
    # Found (carried out): never sent again.  ERR 104 (not carried out): sent once more.
    assert sendmsg_requests(simulator) == N + (0 if carried_out else 5)


@pytest.mark.parametrize("kind", ["http_429", "http_503"])
def test_rate_limited_with_retry_after(
    send_faults: FaultEnv, simulator: ClickatellSimulator, kind: str
) -> None:
    """Five sendmsg refused (429, or 503 with ``Retry-After: 1``) while other requests are
    in flight: nothing was carried out, and each is sent exactly once more.  (Waiting out
    ``Retry-After`` is shown on the APIs whose transport reads it: test_retry_after.py.)"""
    fault = Fault(kind, command="sendmsg", times=5, body="1")
    run_case(simulator, during=lambda pks: after(simulator, 100, lambda: simulator.inject(fault)))
    assert len(fault.hits) == 5
    if kind == "http_429":
        assert simulator.counts["querymsg"] == 0  # refused for now: never in doubt
    else:
        # The legacy transport does not read Retry-After, so its 503 is a failure that may
        # have been carried out: in doubt, asked about first (ERR 104), never resent blindly.
        # (A message found absent by a run that another 503 then stopped is asked again by
        # the retry: once more at most per refused send.)
        assert 5 <= simulator.counts["querymsg"] <= 10
    assert sendmsg_requests(simulator) == N + 5


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="known limit: ERR 104 only says Clickatell has not carried the request out YET",
)
def test_sendmsg_carried_out_after_the_check(
    send_faults: FaultEnv, simulator: ClickatellSimulator
) -> None:
    """Five sendmsg requests held up on their way for 6 s (a proxy's queue): each client times
    out, the message is checked after its lease, querymsg answers ERR 104, it is sent again --
    and then the held request is carried out too.  Two SMS each, unless a resend after an
    ambiguous failure waits out how long a request can be in flight (or is not made at all).
    """
    fault = Fault("execute_late", command="sendmsg", times=5, delay=2 * CLAIM_TIMEOUT)
    run_case(simulator, during=lambda pks: after(simulator, 100, lambda: simulator.inject(fault)))


def test_reply_trickled_past_the_lease(
    send_faults: FaultEnv, simulator: ClickatellSimulator
) -> None:
    """One sendmsg is carried out and its reply trickled a byte per 40 ms (~7 s, each read well
    inside the read timeout), so its run outlives its lease.  The requeue task, run as beat
    would once the lease expired, hands the rest of that chunk to a new run, which checks
    (ERR 104) and sends them.  The first run must not send them again when its reply is in.
    """
    fault = Fault("trickle", command="sendmsg", delay=0.04)

    def trickle_then_beat() -> None:
        simulator.inject(fault)
        time.sleep(CLAIM_TIMEOUT + 1.5)
        tasks.requeue_stalled_work()

    run_case(simulator, during=lambda pks: after(simulator, 800, trickle_then_beat))


def test_session_expiry_mid_run(send_faults: FaultEnv, simulator: ClickatellSimulator) -> None:
    run_case(simulator, during=lambda pks: after(simulator, 300, simulator.expire_sessions))
    assert simulator.counts["auth"] == 2  # one renewal, shared by every worker
    # ERR 003 means nothing was carried out: each worker repeats the requests it had on the
    # wire (at most MAX_IN_FLIGHT each), no more.
    assert N < sendmsg_requests(simulator) <= N + 4 * MAX_IN_FLIGHT


@pytest.mark.broker
def test_queued_tasks_lost_mid_run(send_faults: FaultEnv, simulator: ClickatellSimulator) -> None:
    """The broker loses the waiting tasks (a purged queue): only the requeue task finds them."""
    lost: list[int] = []

    def purge() -> None:
        lost.append(brokers.purge(QUEUE))

    with simulator.latency_of(0.002):
        run_case(simulator, during=lambda pks: after(simulator, 200, purge))
    assert lost[0] > 0  # tasks were waiting, and were lost
    assert sendmsg_requests(simulator) == N


# -- the One API: batches whose sends in doubt cannot be asked about ---------------------------


def settle_by_callbacks(simulator: ClickatellSimulator, pks: list[int]) -> int:
    """Deliver what Clickatell pushes for every SMS it accepted: a status callback carrying
    the ``clientMessageId`` (here straight into the service the callback view calls).
    Returns how many messages in doubt it settled."""
    doubtful = dict(
        OutboundMessage.objects.filter(pk__in=pks, send_state="unknown").values_list(
            "climsgid", "pk"
        )
    )
    events = [
        {
            "channel": "sms",
            "messageId": sent.apimsgid,
            "clientMessageId": sent.climsgid,
            "status": "RECEIVED_BY_RECIPIENT",
            "timestamp": 1_700_000_000_000,
        }
        for sent in simulator.accepted_sends()
        if sent.climsgid in doubtful
    ]
    for start in range(0, len(events), 100):
        body = json.dumps({"event": {"messageStatusUpdate": events[start : start + 100]}})
        receive_json_callback(PLATFORM, body.encode())
    return len(events)


@pytest.mark.broker
def test_one_api_batches_with_a_lost_reply_and_a_killed_worker(
    send_faults: FaultEnv, simulator: ClickatellSimulator
) -> None:
    """1,000 One API messages in chunks of 250, 25 per ``POST /v1/message``: one request is
    carried out and its reply lost, later the worker child holding another is SIGKILLed.

    The One API cannot be asked by ``clientMessageId``, so what is in doubt is never sent
    again: it is shown unknown, and the status callbacks (which carry the
    ``clientMessageId``) settle each one the gateway has as sent.  In doubt, at most: the
    lost request's batch, plus what one killed run may leave (``doubt_bound(BATCH)``,
    never more than its chunk).  No SMS twice, no row left in progress; what ends unknown
    after the callbacks was never at the gateway (it was marked, never sent).
    """
    held = Fault("delay_after", command="sendmsg", delay=READ_TIMEOUT * 0.8)
    killed: list[int] = []

    def lose_a_reply_then_kill_a_sender() -> None:
        simulator.inject(Fault("drop_reply", command="sendmsg"))
        assert wait_until(lambda: accepted(simulator) >= 500, timeout=60, interval=0.02)
        simulator.inject(held)
        assert wait_until(lambda: held.hits, timeout=10, interval=0.005)
        time.sleep(0.05)  # the gateway carries it out, then holds the answer
        victim = pid_of_client(held.hits[0][1], simulator.port, send_faults.worker.child_pids())
        assert victim is not None, "no worker child holds the held request's connection"
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)

    started = time.monotonic()
    pks = create_batch(PLATFORM)
    with simulator.latency_of(0.005):
        publish(pks, size=250)
        after(simulator, 200, lose_a_reply_then_kill_a_sender)
        wait_for_the_workers()
        assert_no_duplicate_sms(simulator)
        requeue_until_settled()
    assert killed
    assert wait_until(lambda: simulator.in_flight == 0, timeout=30, interval=0.1)
    in_doubt = OutboundMessage.objects.filter(pk__in=pks, send_state="unknown").count()
    bound = BATCH + min(250, doubt_bound(BATCH))
    assert 1 <= in_doubt <= bound, (in_doubt, bound, states())
    assert simulator.counts["querymsg"] == 0  # nothing to ask: unknown, never resent
    settled = settle_by_callbacks(simulator, pks)
    assert settled >= BATCH  # the lost request's messages at least
    found = check_invariants(simulator, pks)
    assert found.get("sent", 0) == len(simulator.accepted_sends()) == N - found.get("unknown", 0)
    print(
        f"\none_api batches: {time.monotonic() - started:.1f}s, "
        f"POSTs {simulator.counts['sendmsg']}, in doubt {in_doubt} (bound {bound}), "
        f"settled by callbacks {settled}, states {found}"
    )
