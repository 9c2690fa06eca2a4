"""Many ``sendmsg`` requests in flight per send run, outcomes written in groups: exactly once
still, every send in doubt verified before any resend, and a bounded loss when a run dies.

These run in autocommit (``transaction=True``): inside a caller's transaction a run makes
one request at a time on the caller's thread, so the pipeline is exercised only here and
in the worker suites (tests/test_send_faults.py).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_clickatell.models import GatewayExchange, OutboundMessage, SendState, Via
from django_clickatell.services import recording, send_run
from django_clickatell.services.composing import create_messages
from django_clickatell.services.send_run import Request, SendAttempt, SendRun, doubt_bound
from django_clickatell.services.sending import send_messages
from django_clickatell.simulator import ClickatellSimulator

pytestmark = pytest.mark.django_db(transaction=True)

N = 300
WIDTH = 8


@pytest.fixture
def in_flight_8(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "MAX_IN_FLIGHT": WIDTH}


def queued(count: int) -> list[int]:
    recipients = [f"2799920{n:05d}" for n in range(count)]
    return [m.pk for m in create_messages(recipients, "pipelined")]


class Requests:
    """Wraps ``SendRun.attempt``: counts requests and the peak in flight, by thread."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = self.peak = 0
        self.threads: set[str] = set()

    @contextmanager
    def watching(self, monkeypatch: pytest.MonkeyPatch) -> Iterator[Requests]:
        real = SendRun.attempt

        def attempt(run: SendRun, request: Request) -> list[SendAttempt]:
            with self.lock:
                self.now += 1
                self.peak = max(self.peak, self.now)
                self.threads.add(threading.current_thread().name)
            try:
                return real(run, request)
            finally:
                with self.lock:
                    self.now -= 1

        monkeypatch.setattr(SendRun, "attempt", attempt)
        yield self


def test_300_sends_8_in_flight_each_sent_once_and_recorded_once(
    simulator: ClickatellSimulator, in_flight_8: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pks = queued(N)
    with Requests().watching(monkeypatch) as requests, simulator.latency_of(0.01):
        report = send_messages(pks, via=Via.TASK, task_id="t-1")
    assert sorted(report.sent) == pks
    assert 1 < requests.peak <= WIDTH  # really pipelined, never wider than the setting
    assert all(name.startswith("clickatell-sendmsg") for name in requests.threads)
    assert simulator.counts["sendmsg"] == N
    assert not simulator.duplicate_sends()
    rows = Counter(
        GatewayExchange.objects.filter(command="sendmsg").values_list("message_id", flat=True)
    )
    assert set(rows) == set(pks)
    assert set(rows.values()) == {1}
    at_gateway = {m.climsgid: m.apimsgid for m in simulator.accepted_sends()}
    for message in OutboundMessage.objects.all():
        assert message.send_state == SendState.SENT
        assert message.claim_token == ""
        assert at_gateway[message.climsgid] == message.apimsgid  # each its own id


def test_a_pipelined_send_costs_at_most_0_3_queries_per_message(
    simulator: ClickatellSimulator, in_flight_8: None
) -> None:
    pks = queued(N)
    with CaptureQueriesContext(connection) as queries, simulator.latency_of(0.002):
        report = send_messages(pks, via=Via.TASK)
    assert len(report.sent) == N
    assert len(queries.captured_queries) / N <= 0.3, len(queries.captured_queries)


def test_sends_in_doubt_are_verified_in_the_pipeline_before_any_resend(
    simulator: ClickatellSimulator, in_flight_8: None
) -> None:
    """Half were carried out before their run died, half never arrived: querymsg for each,
    then a sendmsg for the absent ones only."""
    pks = queued(40)
    OutboundMessage.objects.update(send_state=SendState.VERIFYING)
    carried_out = pks[::2]
    send_messages(carried_out, via=Via.TASK)  # verified absent (ERR 104), so sent
    assert simulator.counts["sendmsg"] == 20
    OutboundMessage.objects.filter(pk__in=carried_out).update(
        send_state=SendState.VERIFYING, apimsgid=None
    )
    with simulator.latency_of(0.005):
        report = send_messages(pks, via=Via.TASK)
    assert sorted(report.sent) == pks
    assert simulator.counts["sendmsg"] == 40  # 20 before, 20 absent now: none twice
    assert not simulator.duplicate_sends()
    assert simulator.counts["querymsg"] == 20 + 40


def test_a_transient_error_stops_new_requests_and_hands_the_rest_back(
    simulator: ClickatellSimulator, in_flight_8: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    pks = queued(100)
    real = SendRun.attempt
    made: list[int] = []

    def attempt(run: SendRun, request: Request) -> list[SendAttempt]:
        made.append(request.messages[0].pk)
        if len(made) == 31:
            simulator.inject("http_502", command="sendmsg")
        return real(run, request)

    monkeypatch.setattr(SendRun, "attempt", attempt)
    with simulator.latency_of(0.005):
        report = send_messages(pks, via=Via.TASK)
    states = Counter(OutboundMessage.objects.values_list("send_state", flat=True))
    assert states[SendState.SENT] == len(report.sent) >= 30
    # The failed one is in doubt; what was never tried is queued again, not in doubt.
    assert states[SendState.VERIFYING] >= 1
    assert states[SendState.VERIFYING] <= WIDTH
    assert states[SendState.SENT] + states[SendState.VERIFYING] + states[SendState.QUEUED] == 100
    assert sorted(report.retry) == sorted(
        OutboundMessage.objects.exclude(send_state=SendState.SENT).values_list("pk", flat=True)
    )
    assert not OutboundMessage.objects.exclude(claim_token="").exists()
    assert simulator.counts["sendmsg"] <= len(report.sent) + WIDTH


def test_a_killed_run_leaves_at_most_one_group_and_its_window_in_doubt(
    simulator: ClickatellSimulator, in_flight_8: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunks of any size: the untried messages of a dead run stay queued, not in doubt,
    and the redelivery asks about the few it may have sent, then sends the rest once."""
    pks = queued(N)
    real = recording.write_outcomes
    calls: list[int] = []

    def dies_on_third_group(outcomes: Any, token: str, **options: Any) -> int:
        calls.append(len(outcomes))
        if len(calls) == 3:
            raise SystemExit("worker killed")  # nothing of this group is written
        return real(outcomes, token, **options)

    monkeypatch.setattr(recording, "write_outcomes", dies_on_third_group)
    with pytest.raises(SystemExit):
        send_messages(pks, via=Via.TASK)
    monkeypatch.undo()
    states = Counter(OutboundMessage.objects.values_list("send_state", flat=True))
    in_doubt = states[SendState.SENDING]
    assert 0 < in_doubt <= doubt_bound()
    assert doubt_bound() < recording.GROUP_SIZE + WIDTH
    assert states[SendState.QUEUED] >= N - states[SendState.SENT] - in_doubt
    sent_before = simulator.counts["sendmsg"]
    assert sent_before <= states[SendState.SENT] + in_doubt  # nothing untried was sent

    OutboundMessage.objects.update(claim_expires_at=timezone.now() - timedelta(seconds=1))
    unsent = sorted(
        OutboundMessage.objects.exclude(send_state=SendState.SENT).values_list("pk", flat=True)
    )
    report = send_messages(pks, via=Via.TASK)  # the redelivery, after the lease
    assert sorted(report.sent) == unsent
    assert simulator.counts["querymsg"] == in_doubt  # only those in doubt were asked about
    assert not simulator.duplicate_sends()
    assert len(simulator.accepted_sends()) == N
    assert set(OutboundMessage.objects.values_list("send_state", flat=True)) == {SendState.SENT}


def test_a_stop_asked_for_before_the_step_is_marked_is_withdrawn_not_sent(
    simulator: ClickatellSimulator, in_flight_8: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_clickatell.services.cancel_requests import request_cancellation

    pks = queued(40)
    last = pks[-1]
    real = SendRun._mark_from

    def operator_stops_the_last(run: SendRun, first: OutboundMessage) -> None:
        if first.pk == pks[0]:
            request_cancellation(OutboundMessage.objects.filter(pk=last), via=Via.API)
        real(run, first)

    monkeypatch.setattr(SendRun, "_mark_from", operator_stops_the_last)
    report = send_messages(pks, via=Via.TASK)
    assert last not in report.sent
    assert len(report.sent) == 39
    assert OutboundMessage.objects.get(pk=last).send_state == SendState.WITHDRAWN
    assert simulator.counts["sendmsg"] == 39


def test_the_doubt_bound_follows_the_settings(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "MAX_IN_FLIGHT": 16}
    assert doubt_bound() == recording.GROUP_SIZE + 16 - 1
    # Unwritten outcomes and the unsent rest of a marked step: within one group together.
    assert (recording.GROUP_SIZE - send_run.MARK_STEP) + send_run.MARK_STEP <= recording.GROUP_SIZE


@pytest.mark.parametrize("backend", ["legacy_http", "rest", "one_api", "test", "console"])
def test_every_backend_sends_pipelined_each_message_once(
    simulator: ClickatellSimulator,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from tests.every_backend import backend_settings

    simulated = backend in ("legacy_http", "rest", "one_api")
    config = backend_settings(simulator, backend) if simulated else {"BACKEND": backend}
    # Batches of 10 where the API takes several (One API, test): six requests to overlap.
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        **config,
        "MAX_IN_FLIGHT": WIDTH,
        "SEND_BATCH_SIZE": 10,
    }
    pks = queued(60)
    with Requests().watching(monkeypatch) as requests, simulator.latency_of(0.01):
        report = send_messages(pks, via=Via.TASK)
    assert sorted(report.sent) == pks
    # Pipelined on every API (the in-process backends answer before the next request
    # leaves, so two are rarely outstanding there: they go through the same loop).
    assert requests.peak > 1 or not simulated
    assert all(name.startswith("clickatell-sendmsg") for name in requests.threads)
    ids = list(OutboundMessage.objects.values_list("apimsgid", flat=True))
    assert all(ids)
    assert len(set(ids)) == 60
    assert GatewayExchange.objects.filter(command="sendmsg").count() == 60
    if simulated:
        assert len(simulator.accepted_sends()) == 60
        assert not simulator.duplicate_sends()
