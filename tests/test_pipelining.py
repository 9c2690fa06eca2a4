"""Many ``delmsg`` requests in flight per run, outcomes written in groups: every guarantee holds.

These run in autocommit (``transaction=True``): inside a caller's transaction a
run makes one request at a time on the caller's thread, so the pipeline is
exercised only here and in the worker suites.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.backends.signals import connection_created
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_clickatell.gateway.backends import Backend
from django_clickatell.models import CancelState, GatewayExchange, OutboundMessage, Via
from django_clickatell.protocol.replies import MessageStatusReply
from django_clickatell.services import claims, recording
from django_clickatell.services.cancel_run import CancelRun
from django_clickatell.services.cancelling import cancel_messages
from django_clickatell.signals import message_cancelled
from django_clickatell.simulator import ClickatellSimulator, Fault
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db(transaction=True)

N = 500
WIDTH = 8


@pytest.fixture
def in_flight_8(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "MAX_IN_FLIGHT": WIDTH}


class Requests:
    """Wraps ``CancelRun.stop_request``: counts requests, the peak in flight, and can act
    just before the Nth one leaves (a fault, an expiry, a takeover)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.made = 0
        self.now = 0
        self.peak = 0
        self.per_message: Counter[int] = Counter()
        self.threads: set[str] = set()
        self.before: dict[int, Callable[[], None]] = {}

    @contextmanager
    def watching(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Requests]:
        real = CancelRun.stop_request

        def stop_request(
            run: CancelRun, backend: Backend, message: OutboundMessage
        ) -> MessageStatusReply:
            with self.lock:
                self.made += 1
                action = self.before.get(self.made)
                self.now += 1
                self.peak = max(self.peak, self.now)
                self.per_message[message.pk] += 1
                self.threads.add(threading.current_thread().name)
            try:
                if action is not None:
                    action()
                return real(run, backend, message)
            finally:
                with self.lock:
                    self.now -= 1

        monkeypatch.setattr(CancelRun, "stop_request", stop_request)
        yield self


def delmsg_rows() -> Counter[int]:
    return Counter(
        GatewayExchange.objects.filter(command="delmsg").values_list("message_id", flat=True)
    )


def test_500_messages_8_in_flight_one_delmsg_each_recorded_once(
    simulator: ClickatellSimulator, in_flight_8: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = scheduled_messages(simulator, N)
    pks = [m.pk for m in messages]
    heard: list[tuple[int, str]] = []

    def on_cancelled(sender: Any, message: OutboundMessage, **kwargs: Any) -> None:
        heard.append((message.pk, threading.current_thread().name))

    message_cancelled.connect(on_cancelled)
    try:
        with Requests().watching(monkeypatch) as requests, simulator.latency_of(0.01):
            report = cancel_messages(pks, via=Via.TASK, task_id="t-1")
    finally:
        message_cancelled.disconnect(on_cancelled)
    assert sorted(report.cancelled) == pks
    # Every stop announced once, on the run's own thread, after it was recorded.
    assert sorted(heard) == [(pk, threading.current_thread().name) for pk in pks]
    assert simulator.executed["delmsg"] == simulator.counts["delmsg"] == N
    assert set(requests.per_message.values()) == {1}
    assert 1 < requests.peak <= WIDTH  # really pipelined, never wider than the setting
    assert all(name.startswith("clickatell-delmsg") for name in requests.threads)
    rows = delmsg_rows()
    assert set(rows) == set(pks)
    assert set(rows.values()) == {1}  # each reply recorded once
    assert set(OutboundMessage.objects.values_list("cancel_state", "status", "claim_token")) == {
        (CancelState.CANCELLED, "006", "")
    }
    assert set(OutboundMessage.objects.values_list("cancel_attempts", flat=True)) == {1}
    assert simulator.counts["auth"] == 1


def test_pipelined_run_costs_at_most_a_fifth_of_a_query_per_message(
    simulator: ClickatellSimulator, in_flight_8: None
) -> None:
    messages = scheduled_messages(simulator, N)
    with CaptureQueriesContext(connection) as queries, simulator.latency_of(0.002):
        report = cancel_messages([m.pk for m in messages], via=Via.TASK)
    assert len(report.cancelled) == N
    assert len(queries.captured_queries) / N <= 0.2, len(queries.captured_queries)


def test_outcomes_are_written_in_groups_exchanges_first(
    simulator: ClickatellSimulator, in_flight_8: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss window: a run holds at most one group of received, unwritten replies."""
    writes: list[int] = []
    real = recording.write_outcomes

    def counted(outcomes: Any, token: str, **options: Any) -> int:
        writes.append(len(outcomes))
        with CaptureQueriesContext(connection) as queries:
            written = real(outcomes, token, **options)
        # One INSERT of every exchange first, then one UPDATE for the group (all answered
        # 006).  Transaction control is left out: Django 5.2's bulk_create wraps its one
        # batch in BEGIN/COMMIT, Django 6's does not.
        statements = [q["sql"].split()[0] for q in queries.captured_queries]
        control = {"BEGIN", "COMMIT", "SAVEPOINT", "RELEASE"}
        assert [s for s in statements if s not in control] == ["INSERT", "UPDATE"]
        return written

    monkeypatch.setattr(recording, "write_outcomes", counted)
    messages = scheduled_messages(simulator, 120)
    cancel_messages([m.pk for m in messages], via=Via.TASK)
    # The first outcome alone (write_outcome), then full groups, then the rest.
    assert writes == [recording.GROUP_SIZE, recording.GROUP_SIZE, 119 - 2 * recording.GROUP_SIZE]


@pytest.mark.parametrize("fault", ["http_502", "reset"])
def test_transient_fault_mid_run_stops_it_records_in_flight_releases_the_rest(
    simulator: ClickatellSimulator,
    in_flight_8: None,
    monkeypatch: pytest.MonkeyPatch,
    fault: str,
) -> None:
    messages = scheduled_messages(simulator, N)
    pks = [m.pk for m in messages]
    requests = Requests()
    requests.before[100] = lambda: simulator.inject(Fault(fault, command="delmsg"))
    with requests.watching(monkeypatch), simulator.latency_of(0.01):
        report = cancel_messages(pks, via=Via.TASK, task_id="t-1")
    assert report.transient_error
    [failed] = report.retry[:1]
    # The run stopped: no request after the failure was seen beyond those already in flight.
    assert 100 <= requests.made < 100 + WIDTH
    assert len(report.cancelled) == requests.made - 1 == simulator.executed["delmsg"]
    assert sorted(report.cancelled + report.retry) == pks
    # Every request is logged once: in-flight answers recorded, the failure logged.
    rows = delmsg_rows()
    assert set(rows) == set(report.cancelled) | {failed}
    assert set(rows.values()) == {1}
    assert GatewayExchange.objects.get(message_id=failed).outcome != "status"
    retry = OutboundMessage.objects.filter(pk__in=report.retry)
    assert set(retry.values_list("claim_token", flat=True)) == {""}  # released for the retry
    assert retry.get(pk=failed).cancel_state == CancelState.RETRYING
    assert set(retry.exclude(pk=failed).values_list("cancel_state", flat=True)) == {
        CancelState.PENDING
    }
    # The retry finishes the rest; nothing is asked twice after its 006.
    again = cancel_messages(report.retry, via=Via.TASK, task_id="t-2")
    assert sorted(again.cancelled) == sorted(report.retry)
    assert simulator.executed["delmsg"] == N
    assert requests.per_message[failed] == 2
    assert set(requests.per_message.values()) == {1, 2}
    assert sum(requests.per_message.values()) == N + 1


def test_session_expiry_mid_run_costs_one_renewal(
    simulator: ClickatellSimulator, in_flight_8: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = scheduled_messages(simulator, N)
    requests = Requests()
    requests.before[200] = simulator.expire_sessions
    with requests.watching(monkeypatch), simulator.latency_of(0.01):
        report = cancel_messages([m.pk for m in messages], via=Via.TASK)
    assert len(report.cancelled) == N
    assert simulator.counts["auth"] == 2  # the first login, then one renewal for all threads
    assert simulator.executed["delmsg"] == N
    refused = GatewayExchange.objects.filter(command="delmsg", error_code=3).count()
    assert 1 <= refused <= WIDTH  # each request that met ERR 003 is logged, then repeated
    assert simulator.counts["delmsg"] == N + refused
    answered = Counter(
        GatewayExchange.objects.filter(outcome="status").values_list("message_id", flat=True)
    )
    assert len(answered) == N
    assert set(answered.values()) == {1}


def test_lease_lost_mid_run_no_request_for_messages_no_longer_held(
    simulator: ClickatellSimulator, in_flight_8: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    messages = scheduled_messages(simulator, N)
    pks = [m.pk for m in messages]
    taken = pks[-150:]
    lapsed = threading.Event()

    def take_over() -> None:
        # The run's lease lapsed (a pause) and another run took the tail of the chunk.
        OutboundMessage.objects.filter(pk__in=taken).update(
            claim_token="other-run", claim_expires_at=timezone.now() + timedelta(seconds=60)
        )
        lapsed.set()

    real_holds = claims.LeaseKeeper.holds

    def holds(keeper: claims.LeaseKeeper, pk: int) -> bool:
        if lapsed.is_set():
            keeper._renewed = float("-inf")  # due for renewal: it finds what it lost
        return real_holds(keeper, pk)

    monkeypatch.setattr(claims.LeaseKeeper, "holds", holds)
    requests = Requests()
    requests.before[50] = take_over
    with requests.watching(monkeypatch), simulator.latency_of(0.01):
        report = cancel_messages(pks, via=Via.TASK)
    assert not set(requests.per_message) & set(taken)
    assert sorted(report.cancelled) == pks[:-150]
    assert all(simulator.status_of(str(m.apimsgid)) == "011" for m in messages[-150:])
    assert set(
        OutboundMessage.objects.filter(pk__in=taken).values_list("claim_token", flat=True)
    ) == {"other-run"}


def test_pipeline_threads_open_no_database_connection(
    simulator: ClickatellSimulator, in_flight_8: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[str] = []

    def on_connect(sender: Any, connection: Any, **kwargs: Any) -> None:
        opened.append(threading.current_thread().name)

    messages = scheduled_messages(simulator, 100)
    connection_created.connect(on_connect)
    try:
        with Requests().watching(monkeypatch) as requests, simulator.latency_of(0.005):
            cancel_messages([m.pk for m in messages], via=Via.TASK)
    finally:
        connection_created.disconnect(on_connect)
    assert requests.peak > 1
    assert not [name for name in opened if name.startswith("clickatell-delmsg")]
    # The pool is gone with the run.
    assert not [t for t in threading.enumerate() if t.name.startswith("clickatell-delmsg")]


def test_a_connection_opened_below_a_request_is_closed_not_leaked(
    simulator: ClickatellSimulator, in_flight_8: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Anything below the request that touches the database (a signal receiver, an
    instrumented client) must not leave a connection open per pipeline thread."""
    wrappers: list[Any] = []

    def on_connect(sender: Any, connection: Any, **kwargs: Any) -> None:
        if threading.current_thread().name.startswith("clickatell-delmsg"):
            wrappers.append(connection)

    real = CancelRun.stop_request

    def nosy(run: CancelRun, backend: Backend, message: OutboundMessage) -> MessageStatusReply:
        OutboundMessage.objects.filter(pk=message.pk).exists()
        return real(run, backend, message)

    monkeypatch.setattr(CancelRun, "stop_request", nosy)
    messages = scheduled_messages(simulator, 40)
    connection_created.connect(on_connect)
    try:
        with simulator.latency_of(0.005):
            report = cancel_messages([m.pk for m in messages], via=Via.TASK)
    finally:
        connection_created.disconnect(on_connect)
    assert len(report.cancelled) == 40
    assert wrappers  # the threads did open some ...
    assert all(wrapper.connection is None for wrapper in wrappers)  # ... and closed them all


def test_killed_after_replies_before_their_group_was_written_asks_again_harmlessly(
    simulator: ClickatellSimulator, in_flight_8: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loss window is one group: its messages are still leased to the dead run, and the
    redelivery asks about them again -- 006 again for a stopped message, never a step back."""
    messages = scheduled_messages(simulator, 120)
    pks = [m.pk for m in messages]
    real = recording.write_outcomes
    calls = []

    def dies_on_second_group(outcomes: Any, token: str, **options: Any) -> int:
        calls.append(len(outcomes))
        if len(calls) == 2:
            raise SystemExit("worker killed")  # nothing of this group is written
        return real(outcomes, token, **options)

    monkeypatch.setattr(recording, "write_outcomes", dies_on_second_group)
    with pytest.raises(SystemExit):
        cancel_messages(pks, via=Via.TASK, claim_token="dead-run")
    monkeypatch.undo()
    written = OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count()
    assert written == 1 + recording.GROUP_SIZE
    unwritten = list(
        OutboundMessage.objects.filter(cancel_state=CancelState.IN_FLIGHT).order_by("pk")
    )
    assert len(unwritten) == 120 - written
    assert {m.claim_token for m in unwritten} == {"dead-run"}  # still leased to the dead run
    stopped_unrecorded = [m for m in unwritten if simulator.status_of(str(m.apimsgid)) == "006"]
    # Received but not written: the group that died, plus replies already on their way.
    assert len(stopped_unrecorded) <= recording.GROUP_SIZE + WIDTH
    OutboundMessage.objects.update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    report = cancel_messages(pks, via=Via.TASK)  # the redelivery, after the lease
    assert sorted(report.cancelled) == [m.pk for m in unwritten]
    assert set(OutboundMessage.objects.values_list("cancel_state", "status")) == {
        (CancelState.CANCELLED, "006")
    }
    assert all(simulator.status_of(str(m.apimsgid)) == "006" for m in messages)


@pytest.mark.parametrize(("value", "ok"), [(0, False), (1, True), (32, True), (33, False)])
def test_in_flight_never_exceeds_the_transports_keep_alive_pool(value: int, ok: bool) -> None:
    """More requests in flight than pooled connections would open (and drop) a connection
    per extra request; the setting's bound is the pool's size."""
    from django.core.exceptions import ImproperlyConfigured
    from django.test import override_settings

    from django_clickatell.conf import app_settings
    from django_clickatell.gateway.transport import POOL_SIZE

    assert POOL_SIZE == 32
    base = {"USERNAME": "u", "PASSWORD": "p4ssword", "API_ID": "1234567"}
    with override_settings(CLICKATELL={**base, "MAX_IN_FLIGHT": value}):
        if ok:
            assert app_settings.max_in_flight == value
        else:
            with pytest.raises(ImproperlyConfigured, match="MAX_IN_FLIGHT"):
                _ = app_settings.max_in_flight
