"""The one cancel service, against the simulator over real HTTP."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from django_clickatell.models import CancelState, GatewayExchange, OutboundMessage, Via
from django_clickatell.services.cancel_requests import preview_cancellation, request_cancellation
from django_clickatell.services.cancelling import cancel_message, cancel_messages
from django_clickatell.signals import message_cancelled, message_status_changed
from django_clickatell.simulator import ClickatellSimulator
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db


def refreshed(message: OutboundMessage) -> OutboundMessage:
    message.refresh_from_db()
    return message


def test_006_marks_cancelled_and_logs(simulator: ClickatellSimulator) -> None:
    [message] = scheduled_messages(simulator, 1)
    report = cancel_message(message, via=Via.API)
    assert report.cancelled == [message.pk]
    message = refreshed(message)
    assert message.status == "006"
    assert message.cancel_state == CancelState.CANCELLED
    assert message.cancel_completed_at
    assert message.status_changed_at
    assert simulator.status_of(str(message.apimsgid)) == "006"
    [exchange] = message.exchanges.all()
    assert (exchange.command, exchange.outcome, exchange.status, exchange.via) == (
        "delmsg",
        "status",
        "006",
        "api",
    )


def test_already_delivered_is_too_late_with_real_status(simulator: ClickatellSimulator) -> None:
    [message] = scheduled_messages(simulator, 1)
    simulator.messages[str(message.apimsgid)].status = "004"
    report = cancel_message(message, via=Via.API)
    assert report.too_late == [message.pk]
    message = refreshed(message)
    assert (message.status, message.cancel_state) == ("004", CancelState.TOO_LATE)
    assert "004" in message.cancel_error


def test_handed_to_network_is_too_late_not_cancelled(simulator: ClickatellSimulator) -> None:
    [message] = scheduled_messages(simulator, 1)
    simulator.messages[str(message.apimsgid)].status = "003"
    cancel_message(message, via=Via.API)
    message = refreshed(message)
    assert (message.status, message.cancel_state) == ("003", CancelState.TOO_LATE)


def test_unknown_at_gateway_is_refused_with_code(simulator: ClickatellSimulator) -> None:
    [message] = scheduled_messages(None, 1)  # never sent to the simulator
    report = cancel_message(message, via=Via.API)
    assert report.refused == [message.pk]
    message = refreshed(message)
    assert message.cancel_state == CancelState.REFUSED
    assert message.status == "011"
    exchange = message.exchanges.get()
    assert (exchange.outcome, exchange.error_code) == ("gateway_error", 103)


def test_final_message_skipped_without_request(simulator: ClickatellSimulator) -> None:
    [message] = scheduled_messages(simulator, 1, status="004")
    report = cancel_message(message, via=Via.API)
    assert report.not_claimed == [message.pk]
    assert simulator.counts["delmsg"] == 0


def test_by_climsgid_learns_apimsgid(simulator: ClickatellSimulator) -> None:
    apimsgid = simulator.add_message(climsgid="order42")
    message = OutboundMessage.objects.create(climsgid="order42", recipient="2799", status="011")
    cancel_message(message, via=Via.API)
    message = refreshed(message)
    assert (message.apimsgid, message.status) == (apimsgid, "006")


def test_transient_failure_stops_run_and_releases_the_rest(simulator: ClickatellSimulator) -> None:
    messages = scheduled_messages(simulator, 5)
    cancel_message(messages[0], via=Via.API)  # warm the session
    simulator.reset_counts()
    simulator.inject("http_502", command="delmsg")
    report = cancel_messages([m.pk for m in messages[1:]], via=Via.API)
    assert report.retry == [m.pk for m in messages[1:]]
    assert simulator.counts["delmsg"] == 1
    first = refreshed(messages[1])
    assert first.cancel_state == CancelState.RETRYING
    assert first.cancel_error == "Clickatell delmsg: HTTP 502"
    assert first.exchanges.get().outcome == "transport_error"
    assert {refreshed(m).cancel_state for m in messages[2:]} == {CancelState.PENDING}
    # The retry picks all of them up and finishes the job.
    report = cancel_messages(report.retry, via=Via.API)
    assert len(report.cancelled) == 4


@pytest.mark.parametrize("fault", ["http_500", "malformed", "reset"])
def test_give_up_records_reason(simulator: ClickatellSimulator, fault: str) -> None:
    messages = scheduled_messages(simulator, 3)
    simulator.inject(fault, command="delmsg")
    report = cancel_messages([m.pk for m in messages], via=Via.API, give_up=True)
    assert len(report.gave_up) == 3
    states = {refreshed(m).cancel_state for m in messages}
    assert states == {CancelState.GAVE_UP}
    assert refreshed(messages[1]).cancel_error.startswith("Not attempted:")
    assert GatewayExchange.objects.count() == 1  # only the one real attempt


def test_never_cancelled_without_006(simulator: ClickatellSimulator) -> None:
    messages = scheduled_messages(simulator, 4)
    simulator.inject("body", command="delmsg", body=f"ID: {messages[0].apimsgid} Status: 004")
    simulator.inject("body", command="delmsg", body="ERR: 901, Internal error")
    cancel_messages([messages[0].pk], via=Via.API)
    cancel_messages([messages[1].pk], via=Via.API)
    simulator.inject("body", command="delmsg", body=f"ID: {'f' * 32} Status: 006")
    cancel_messages([messages[2].pk], via=Via.API)
    states = [refreshed(m).cancel_state for m in messages[:3]]
    assert states == [CancelState.TOO_LATE, CancelState.RETRYING, CancelState.RETRYING]
    assert OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count() == 0
    # "reply names another message" is kept as a protocol error with the excerpt.
    assert refreshed(messages[2]).exchanges.get().outcome == "protocol_error"


def test_revoked_credentials_are_not_recorded_as_clickatells_answer(
    simulator: ClickatellSimulator,
) -> None:
    """The login was refused, so no delmsg left: "not sent" and retried, never "refused"."""
    messages = scheduled_messages(simulator, 3)
    simulator.change_password("rotated")
    report = cancel_messages([m.pk for m in messages], via=Via.API)
    assert report.refused == []
    assert sorted(report.retry) == [m.pk for m in messages]
    assert simulator.counts["auth"] == 1
    assert simulator.counts["delmsg"] == 0
    [exchange] = GatewayExchange.objects.all()
    assert (exchange.outcome, exchange.error_code) == (GatewayExchange.Outcome.NOT_SENT, 1)
    states = set(OutboundMessage.objects.values_list("cancel_state", flat=True))
    assert states == {CancelState.RETRYING, CancelState.PENDING}


def test_signals(simulator: ClickatellSimulator) -> None:
    [message] = scheduled_messages(simulator, 1)
    seen: list[tuple[str, Any]] = []

    def on_cancel(**kw: Any) -> None:
        seen.append(("cancelled", kw["message"].pk))

    def on_change(**kw: Any) -> None:
        seen.append(("changed", (kw["old_status"], kw["new_status"])))

    message_cancelled.connect(on_cancel)
    message_status_changed.connect(on_change)
    try:
        cancel_message(message, via=Via.API)
    finally:
        message_cancelled.disconnect(on_cancel)
        message_status_changed.disconnect(on_change)
    assert seen == [("changed", ("011", "006")), ("cancelled", message.pk)]


def test_request_is_constant_and_skips(
    simulator: ClickatellSimulator, django_assert_num_queries: Any
) -> None:
    scheduled_messages(None, 5)
    scheduled_messages(None, 2, status="004")
    OutboundMessage.objects.create(recipient="1", status="011")  # no gateway id
    # 6, plus the one UPDATE that stops never-sent messages locally (none here).
    with django_assert_num_queries(7):
        result = request_cancellation(OutboundMessage.objects.all(), via=Via.COMMAND)
    assert len(result.message_pks) == 5
    assert (result.preview.final, result.preview.without_id) == (2, 1)
    assert (result.batch.total, result.batch.skipped) == (5, 3)
    again = request_cancellation(OutboundMessage.objects.all(), via=Via.COMMAND)
    assert again.message_pks == []
    assert again.preview.in_progress == 5


def test_preview_counts(simulator: ClickatellSimulator) -> None:
    scheduled_messages(None, 3)
    scheduled_messages(None, 1, status="006", cancel_state=CancelState.CANCELLED)
    preview = preview_cancellation(OutboundMessage.objects.all())
    assert (preview.cancellable, preview.final, preview.total) == (3, 1, 4)


@pytest.mark.django_db(transaction=True)  # savepoints would be counted inside a test transaction
def test_query_cost_per_message(
    simulator: ClickatellSimulator, django_assert_max_num_queries: Any
) -> None:
    messages = scheduled_messages(simulator, 50)
    cancel_message(scheduled_messages(simulator, 1)[0], via=Via.API)  # warm session
    with django_assert_max_num_queries(3 + 2 * 50):
        report = cancel_messages([m.pk for m in messages], via=Via.API)
    assert len(report.cancelled) == 50


@pytest.mark.django_db(transaction=True)
def test_two_threads_same_200_messages_one_delmsg_each(simulator: ClickatellSimulator) -> None:
    messages = scheduled_messages(simulator, 200)
    pks = [m.pk for m in messages]
    barrier = threading.Barrier(2)
    reports = []

    def operator() -> None:
        barrier.wait()
        try:
            reports.append(cancel_messages(pks, via=Via.API))
        finally:
            connection.close()

    with simulator.latency_of(0.002):
        threads = [threading.Thread(target=operator) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert simulator.counts["delmsg"] == 200
    assert sum(len(r.cancelled) for r in reports) == 200
    assert OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count() == 200
    assert GatewayExchange.objects.count() == 200


def test_redelivered_claim_token_takes_back_its_messages(simulator: ClickatellSimulator) -> None:
    messages = scheduled_messages(simulator, 3)
    pks = [m.pk for m in messages]
    OutboundMessage.objects.filter(pk__in=pks).update(
        cancel_state=CancelState.IN_FLIGHT,
        claim_token="task-1",
        claim_expires_at="2999-01-01T00:00:00Z",
    )
    assert cancel_messages(pks, via=Via.TASK, claim_token="someone-else").not_claimed == pks
    assert simulator.counts["delmsg"] == 0
    assert len(cancel_messages(pks, via=Via.TASK, claim_token="task-1").cancelled) == 3


def test_expired_claim_is_reclaimed(simulator: ClickatellSimulator) -> None:
    [message] = scheduled_messages(simulator, 1)
    OutboundMessage.objects.filter(pk=message.pk).update(
        cancel_state=CancelState.IN_FLIGHT,
        claim_token="dead-worker",
        claim_expires_at="2000-01-01T00:00:00Z",
    )
    assert cancel_messages([message.pk], via=Via.API).cancelled == [message.pk]


def test_recorded_006_is_never_overwritten(simulator: ClickatellSimulator) -> None:
    [message] = scheduled_messages(simulator, 1)
    cancel_message(message, via=Via.API)
    # A second request finds nothing to do: no second delmsg after a recorded 006.
    result = request_cancellation(OutboundMessage.objects.all(), via=Via.API)
    assert result.message_pks == []
    assert cancel_messages([message.pk], via=Via.API).not_claimed == [message.pk]
    assert simulator.counts["delmsg"] == 1


@pytest.mark.django_db(transaction=True)
def test_background_writes_are_saved_before_signals_on_the_calling_thread(
    simulator: ClickatellSimulator,
) -> None:
    messages = scheduled_messages(simulator, 20)
    seen: list[tuple[str, str]] = []

    def on_cancel(**kw: Any) -> None:
        saved = OutboundMessage.objects.get(pk=kw["message"].pk)
        seen.append((threading.current_thread().name, saved.cancel_state))

    message_cancelled.connect(on_cancel)
    try:
        report = cancel_messages([m.pk for m in messages], via=Via.TASK)
    finally:
        message_cancelled.disconnect(on_cancel)
    assert len(report.cancelled) == 20
    assert seen == [(threading.current_thread().name, CancelState.CANCELLED)] * 20
    assert GatewayExchange.objects.count() == 20


@pytest.mark.django_db(transaction=True)
def test_failed_write_stops_the_run_before_more_requests(
    simulator: ClickatellSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.db import OperationalError

    from django_clickatell.services import recording

    def database_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("connection to server was lost")

    messages = scheduled_messages(simulator, 10)
    monkeypatch.setattr(recording, "write_outcome", database_down)
    with simulator.latency_of(0.05), pytest.raises(OperationalError):
        cancel_messages([m.pk for m in messages], via=Via.TASK, claim_token="task-9")
    # The failure is seen before a third request: at most the one in flight went out.
    assert simulator.executed["delmsg"] <= 2
    # Still claimed by the task: its retry takes them back and records what Clickatell says.
    monkeypatch.undo()
    report = cancel_messages([m.pk for m in messages], via=Via.TASK, claim_token="task-9")
    assert len(report.cancelled) == 10


def test_duplicate_delivery_of_a_live_run_cannot_take_its_messages(
    simulator: ClickatellSimulator,
) -> None:
    """Same task delivered twice while the first is still running: no second delmsg."""
    messages = scheduled_messages(simulator, 3)
    pks = [m.pk for m in messages]
    OutboundMessage.objects.filter(pk__in=pks).update(
        cancel_state=CancelState.IN_FLIGHT,
        claim_token="live-run",
        claim_expires_at=timezone.now() + timedelta(seconds=60),
    )
    report = cancel_messages(pks, via=Via.TASK, task_id="task-1")
    assert report.held_elsewhere == pks
    assert 58 < report.retry_after <= 61
    assert simulator.counts["delmsg"] == 0


def test_cache_outage_is_transient_and_releases_the_run(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:9/0",
        },
    }
    settings.CLICKATELL = {**settings.CLICKATELL, "CACHE_ALIAS": "down"}
    messages = scheduled_messages(simulator, 3)
    report = cancel_messages([m.pk for m in messages], via=Via.API)
    assert report.retry == [m.pk for m in messages]
    assert "session cache is unreachable" in report.transient_error
    assert simulator.counts["total"] == 0
