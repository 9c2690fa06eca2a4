"""Issue 11's defects, each reproduced: duplicate SMS, stranded work, records that lie.

These run against the simulator over real HTTP on PostgreSQL; the fault matrix
(``test_send_faults.py``) repeats the worst of them with real worker processes.
"""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError, connections
from django.utils import timezone

from django_clickatell import dispatch, tasks
from django_clickatell.conf import app_settings
from django_clickatell.exceptions import AuthenticationError, CommandNotSent
from django_clickatell.gateway.backends.legacy_http import LegacyHttpBackend
from django_clickatell.gateway.client import ClickatellClient
from django_clickatell.models import (
    CancelState,
    GatewayExchange,
    OutboundMessage,
    SendState,
    Via,
)
from django_clickatell.protocol.callbacks import parse_callback
from django_clickatell.services import composing, recording, send_recovery, sending
from django_clickatell.services.callbacks import record_callback
from django_clickatell.services.cancel_requests import request_cancellation
from django_clickatell.services.cancelling import cancel_messages, stalled_cancellations
from django_clickatell.services.refreshing import refresh_statuses
from django_clickatell.simulator import ClickatellSimulator
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db


class ProcessDied(BaseException):
    """Stands in for SIGKILL: nothing after it runs, no ``except Exception`` catches it."""


def sent_at_gateway(simulator: ClickatellSimulator) -> Counter[str]:
    return Counter(m.climsgid for m in simulator.messages.values())


def expire_leases() -> None:
    OutboundMessage.objects.exclude(claim_token="").update(
        claim_expires_at=timezone.now() - timedelta(seconds=1)
    )


# -- sending exactly once ---------------------------------------------------------------


def test_run_killed_after_sendmsg_left_is_verified_not_resent(
    simulator: ClickatellSimulator,
) -> None:
    [message] = composing.create_messages("27999000001", "once")
    client = ClickatellClient()
    real_sendmsg = client.sendmsg

    def send_then_die(fields: dict[str, str]) -> Any:
        real_sendmsg(fields)
        raise ProcessDied

    with mock.patch.object(client, "sendmsg", send_then_die), pytest.raises(ProcessDied):
        sending.send_messages(
            [message.pk], via=Via.TASK, backend=LegacyHttpBackend(app_settings, client=client)
        )
    # A redelivery while the dead run's lease lives sends nothing and waits.
    report = sending.send_messages([message.pk], via=Via.TASK)
    assert simulator.counts["sendmsg"] == 1
    assert report.held_elsewhere == [message.pk]
    expire_leases()
    report = sending.send_messages([message.pk], via=Via.TASK)
    message.refresh_from_db()
    assert report.sent == [message.pk]
    assert message.send_state == SendState.SENT
    assert simulator.counts["sendmsg"] == 1  # found by querymsg, never sent twice
    assert simulator.messages[str(message.apimsgid)].climsgid == message.climsgid


@pytest.mark.django_db(transaction=True)
def test_two_runs_of_the_same_messages_at_once_send_each_once(
    simulator: ClickatellSimulator,
) -> None:
    messages = composing.create_messages([f"279990{n:05d}" for n in range(60)], "hello")
    pks = [m.pk for m in messages]
    barrier = threading.Barrier(2)

    def run() -> None:
        try:
            barrier.wait()
            sending.send_messages(pks, via=Via.TASK)
        finally:
            connections.close_all()

    with simulator.latency_of(0.002):
        threads = [threading.Thread(target=run) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert simulator.counts["sendmsg"] == 60
    assert set(sent_at_gateway(simulator).values()) == {1}
    assert OutboundMessage.objects.filter(send_state=SendState.SENT).count() == 60


def test_database_cut_after_the_reply_never_resends(simulator: ClickatellSimulator) -> None:
    """The autoretry of a database error used to send the same SMS again."""
    [message] = composing.create_messages("27999000001", "once")
    real_write = recording.write_outcome

    def database_gone(
        pk: int, updates: dict[str, Any], exchange: Any, token: str = "", **options: Any
    ) -> int:
        if updates.get("send_state") == SendState.SENT:
            raise OperationalError("server closed the connection unexpectedly")
        return real_write(pk, updates, exchange, token, **options)

    with (
        mock.patch.object(recording, "write_outcome", database_gone),
        pytest.raises(OperationalError),
    ):
        sending.send_messages([message.pk], via=Via.TASK)
    assert simulator.counts["sendmsg"] == 1
    sending.send_messages([message.pk], via=Via.TASK)  # the autoretry, lease still alive
    expire_leases()
    sending.send_messages([message.pk], via=Via.TASK)  # after the lease: verify, don't resend
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    assert simulator.counts["sendmsg"] == 1
    assert simulator.counts["querymsg"] == 1


def test_every_send_carries_a_climsgid_the_database_keeps_unique() -> None:
    from django.db import IntegrityError, transaction

    [message] = composing.create_messages("27999000001", "x")
    assert message.climsgid
    with pytest.raises(IntegrityError), transaction.atomic():
        OutboundMessage.objects.create(recipient="27999000002", climsgid=message.climsgid)


def test_verification_refused_for_good_is_unknown_not_stuck(
    simulator: ClickatellSimulator,
) -> None:
    """A non-retryable answer to querymsg used to leave the message "verifying" for ever."""
    [message] = composing.create_messages("27999000001", "x")
    simulator.inject("drop_reply", command="sendmsg")
    sending.send_messages([message.pk], via=Via.TASK)
    simulator.inject("body", command="querymsg", body="ERR: 101, Invalid or missing parameters")
    sending.send_messages([message.pk], via=Via.TASK)
    message.refresh_from_db()
    assert message.send_state == SendState.UNKNOWN
    assert "ERR 101" in message.send_error
    assert simulator.counts["sendmsg"] == 1
    # The operator asks again once the cause is fixed: resolved, still no second SMS.
    assert send_recovery.recheck(OutboundMessage.objects.all()) == [message.pk]
    sending.send_messages([message.pk], via=Via.TASK)
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    assert simulator.counts["sendmsg"] == 1


def test_command_never_sent_leaves_the_message_queued(simulator: ClickatellSimulator) -> None:
    [message] = composing.create_messages("27999000001", "x")
    client = ClickatellClient()
    refusal = CommandNotSent("sendmsg", AuthenticationError(1, "Authentication failed"))
    with mock.patch.object(client, "sendmsg", side_effect=refusal):
        report = sending.send_messages(
            [message.pk], via=Via.TASK, backend=LegacyHttpBackend(app_settings, client=client)
        )
    message.refresh_from_db()
    assert report.retry == [message.pk]
    assert message.send_state == SendState.QUEUED
    exchange = message.exchanges.get()
    assert (exchange.outcome, exchange.error_code) == ("not_sent", 1)
    sending.send_messages([message.pk], via=Via.TASK)  # no verification needed: never left
    assert (simulator.counts["querymsg"], simulator.counts["sendmsg"]) == (0, 1)


def test_rejected_and_failed_messages_can_be_resent_once_the_cause_is_fixed(
    simulator: ClickatellSimulator,
) -> None:
    simulator.inject("body", command="sendmsg", body="ERR: 301, No credit left")
    [message] = composing.create_messages("27999000001", "x")
    sending.send_messages([message.pk], via=Via.TASK)
    message.refresh_from_db()
    assert message.send_state == SendState.REJECTED
    assert send_recovery.resend(OutboundMessage.objects.all()) == [message.pk]
    sending.send_messages([message.pk], via=Via.TASK)
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    assert send_recovery.resend(OutboundMessage.objects.all()) == []  # sent: nothing to resend


# -- nothing stranded --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_broker_down_at_send_sms_is_reported_and_requeued(
    simulator: ClickatellSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    [message] = composing.create_messages("27999000001", "x")
    with mock.patch.object(
        tasks.send_messages, "apply_async", side_effect=OSError("broker unreachable")
    ):
        assert dispatch.enqueue_sending([message.pk]) is False
    assert "requeue_stalled_work" in caplog.text
    assert send_recovery.stalled_sends() == []  # not overdue yet: a retry may still be on its way
    OutboundMessage.objects.update(updated_at=timezone.now() - timedelta(hours=1))
    with mock.patch.object(tasks.send_messages, "apply_async") as publish:
        assert tasks.requeue_stalled_work() == {"sends": 1, "cancellations": 0}
    assert publish.call_args.args == (([message.pk],),)


@pytest.mark.django_db(transaction=True)
def test_requeue_command_does_the_lost_work_here_without_celery(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    from io import StringIO

    from django.core.management import call_command

    settings.CLICKATELL = {**settings.CLICKATELL, "USE_CELERY": False}
    [message] = composing.create_messages("27999000001", "x")
    OutboundMessage.objects.update(updated_at=timezone.now() - timedelta(hours=1))
    out = StringIO()
    call_command("clickatell_requeue", stdout=out)
    assert out.getvalue().strip() == "Stalled work done: 1 sends, 0 cancellations."
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    assert simulator.counts["sendmsg"] == 1


def test_orphaned_sends_are_requeued_once_their_lease_expires(
    simulator: ClickatellSimulator,
) -> None:
    [message] = composing.create_messages("27999000001", "x")
    OutboundMessage.objects.update(
        send_state=SendState.SENDING,
        claim_token="dead-run",
        claim_expires_at=timezone.now() + timedelta(seconds=60),
    )
    assert send_recovery.stalled_sends() == []
    expire_leases()
    assert send_recovery.stalled_sends() == [message.pk]


def test_stall_detection_reads_the_last_change_not_the_creation(
    simulator: ClickatellSimulator,
) -> None:
    """updated_at was never maintained, so live cancellations looked stalled."""
    messages = scheduled_messages(simulator, 3)
    long_ago = timezone.now() - timedelta(hours=2)
    OutboundMessage.objects.update(created_at=long_ago, updated_at=long_ago)
    request_cancellation(OutboundMessage.objects.all(), via=Via.API)
    assert stalled_cancellations() == []
    assert all(m.updated_at > long_ago for m in OutboundMessage.objects.all())
    assert len(messages) == 3


# -- cancelling what never left, and commands never sent ----------------------------------


def test_cancelling_a_queued_message_stops_it_here_without_a_request(
    simulator: ClickatellSimulator,
) -> None:
    [message] = composing.create_messages("27999000001", "x")
    result = request_cancellation(OutboundMessage.objects.all(), via=Via.API)
    message.refresh_from_db()
    assert result.message_pks == []
    assert (message.cancel_state, message.send_state) == (
        CancelState.CANCELLED,
        SendState.WITHDRAWN,
    )
    assert message.status == ""  # Clickatell never heard of it
    report = sending.send_messages([message.pk], via=Via.TASK)
    assert report.sent == []
    assert simulator.counts["total"] == 0


def test_login_failure_is_not_recorded_as_clickatells_answer_to_delmsg(
    simulator: ClickatellSimulator,
) -> None:
    """A delmsg never sent was recorded "Refused by Clickatell -- ERR 001", final for ever."""
    [message] = scheduled_messages(simulator, 1)
    client = ClickatellClient()
    refusal = CommandNotSent("delmsg", AuthenticationError(1, "Authentication failed"))
    with mock.patch.object(client, "delmsg", side_effect=refusal):
        report = cancel_messages(
            [message.pk], via=Via.API, backend=LegacyHttpBackend(app_settings, client=client)
        )
    message.refresh_from_db()
    assert report.retry == [message.pk]
    assert message.cancel_state == CancelState.RETRYING
    exchange = message.exchanges.get()
    assert exchange.outcome == GatewayExchange.Outcome.NOT_SENT
    assert exchange.status == ""
    assert simulator.counts["delmsg"] == 0
    cancel_messages([message.pk], via=Via.API)  # credentials fixed: the retry stops it
    message.refresh_from_db()
    assert message.cancel_state == CancelState.CANCELLED


# -- status only moves forward -----------------------------------------------------------


def callback(message: OutboundMessage, status: str, at: float) -> None:
    record_callback(
        parse_callback(
            {
                "api_id": "1234567",
                "apiMsgId": str(message.apimsgid),
                "cliMsgId": "",
                "status": status,
                "timestamp": str(int(at)),
            }
        )
    )


def test_final_callback_during_a_delmsg_survives_its_older_reply(
    simulator: ClickatellSimulator,
) -> None:
    [message] = scheduled_messages(simulator, 1)
    client = ClickatellClient()
    real_delmsg = client.delmsg

    def delivered_meanwhile(**kwargs: str) -> Any:
        reply = real_delmsg(**kwargs)
        callback(message, "004", timezone.now().timestamp())
        return type(reply)(reply.apimsgid, "003")

    simulator.messages[str(message.apimsgid)].status = "003"
    with mock.patch.object(client, "delmsg", delivered_meanwhile):
        cancel_messages(
            [message.pk], via=Via.API, backend=LegacyHttpBackend(app_settings, client=client)
        )
    message.refresh_from_db()
    assert message.status == "004"
    assert message.cancel_state == CancelState.TOO_LATE


def test_final_callback_beats_an_earlier_querymsg_whatever_the_clocks(
    simulator: ClickatellSimulator,
) -> None:
    [message] = scheduled_messages(simulator, 1, status="")
    simulator.messages[str(message.apimsgid)].status = "003"
    refresh_statuses([message.pk], via=Via.TASK)  # stamped with our clock: now
    callback(message, "004", timezone.now().timestamp() - 3600)  # stamped an hour ago
    message.refresh_from_db()
    assert message.status == "004"


def test_a_callback_from_the_future_cannot_freeze_a_message(
    simulator: ClickatellSimulator,
) -> None:
    [message] = scheduled_messages(simulator, 1)
    callback(message, "003", timezone.now().timestamp() + 3600)
    message.refresh_from_db()
    assert message.status_changed_at is not None
    assert message.status_changed_at <= timezone.now()
    callback(message, "002", timezone.now().timestamp() - 1)  # same stage, older: ignored
    callback(message, "007", timezone.now().timestamp() - 1)
    message.refresh_from_db()
    assert message.status == "007"


# -- hostile replies cannot make the record lose what it received --------------------------


@pytest.mark.django_db(transaction=True)
def test_a_nul_byte_in_an_err_reply_loses_no_outcome(simulator: ClickatellSimulator) -> None:
    """PostgreSQL refuses NUL in text: the writer failed and threw away every later reply."""
    messages = scheduled_messages(simulator, 10)
    client = ClickatellClient()
    real_delmsg = client.delmsg
    calls = 0

    def hostile_fourth(**kwargs: str) -> Any:
        nonlocal calls
        calls += 1
        if calls == 4:
            simulator.inject("body", command="delmsg", body="ERR: 101, bad\x00byte\x01here")
        return real_delmsg(**kwargs)

    with mock.patch.object(client, "delmsg", hostile_fourth):
        cancel_messages(
            [m.pk for m in messages],
            via=Via.API,
            backend=LegacyHttpBackend(app_settings, client=client),
        )
    assert GatewayExchange.objects.filter(command="delmsg").count() == 10
    refused = OutboundMessage.objects.get(cancel_state=CancelState.REFUSED)
    assert "\x00" not in refused.cancel_error
    assert "bad" in refused.exchanges.get().error_description
    assert OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count() == 9


def test_err_003_twice_in_a_row_is_retried_never_a_final_refusal(
    simulator: ClickatellSimulator,
) -> None:
    """Two ERR 003 in a row used to mark the message "refused", final for ever."""
    [message] = scheduled_messages(simulator, 1)
    cancel_messages([], via=Via.API)
    simulator.inject("expire_session", command="delmsg", times=2)
    report = cancel_messages([message.pk], via=Via.API)
    message.refresh_from_db()
    assert report.refused == []
    assert message.cancel_state == CancelState.RETRYING
    first, last = message.exchanges.order_by("pk")
    assert (first.outcome, first.error_code) == (GatewayExchange.Outcome.GATEWAY_ERROR, 3)
    assert last.outcome == GatewayExchange.Outcome.NOT_SENT
    cancel_messages([message.pk], via=Via.API)
    message.refresh_from_db()
    assert message.cancel_state == CancelState.CANCELLED


def test_a_run_whose_lease_lapsed_leaves_taken_over_messages_alone(
    simulator: ClickatellSimulator,
) -> None:
    """A run that outlived its lease kept sending messages another run had taken over."""
    from django_clickatell.services import claims

    messages = composing.create_messages(["27999000001", "27999000002", "27999000003"], "x")
    client = ClickatellClient()
    real_sendmsg = client.sendmsg
    clock = [1000.0]

    def paused_after_first(fields: dict[str, str]) -> Any:
        reply = real_sendmsg(fields)
        if len(simulator.messages) == 1:
            # The process stalls past its lease; meanwhile another run takes message 2.
            OutboundMessage.objects.filter(pk=messages[1].pk).update(
                claim_token="another-run", claim_expires_at=timezone.now() + timedelta(minutes=1)
            )
            clock[0] += 10_000
        return reply

    def now() -> float:
        return clock[0]

    with (
        mock.patch.object(claims, "monotonic", now),
        mock.patch.object(client, "sendmsg", paused_after_first),
    ):
        report = sending.send_messages(
            [m.pk for m in messages],
            via=Via.TASK,
            backend=LegacyHttpBackend(app_settings, client=client),
        )
    assert sorted(m.climsgid for m in simulator.messages.values()) == sorted(
        [messages[0].climsgid, messages[2].climsgid]
    )
    assert sorted(report.sent) == [messages[0].pk, messages[2].pk]
    taken = OutboundMessage.objects.get(pk=messages[1].pk)
    assert (taken.claim_token, taken.send_state) == ("another-run", SendState.SENDING)


def test_an_outcome_is_not_written_over_a_run_that_took_the_message_over() -> None:
    [message] = composing.create_messages("27999000001", "x")
    OutboundMessage.objects.update(claim_token="current-run")
    written = recording.write_outcome(message.pk, {"send_state": SendState.SENT}, None, "old-run")
    assert written == 0
    assert OutboundMessage.objects.get().send_state == SendState.QUEUED


def test_the_request_that_met_err_003_is_in_the_log_with_what_happened_next(
    simulator: ClickatellSimulator,
) -> None:
    """The README says every exchange is kept: the refused request was missing."""
    [message] = scheduled_messages(simulator, 1)
    cancel_messages([], via=Via.API)
    simulator.inject("expire_session", command="delmsg", times=1)
    cancel_messages([message.pk], via=Via.API)
    rows = list(message.exchanges.order_by("pk").values_list("error_code", "status", "detail"))
    assert len(rows) == 2
    assert rows[0][0] == 3
    assert "renewed it and repeated the command" in rows[0][2]
    assert rows[1][:2] == (None, "006")
    assert simulator.counts["delmsg"] == 2


def test_a_session_refused_with_no_new_login_is_not_used_again(
    simulator: ClickatellSimulator,
) -> None:
    """Each retry used to send its delmsg with the dead id, meet ERR 003, and give up."""
    first, second = scheduled_messages(simulator, 2)
    ClickatellClient().ping()  # a session is cached
    simulator.change_password("rotated")
    simulator.expire_sessions()
    cancel_messages([first.pk], via=Via.API)
    assert simulator.counts["delmsg"] == 1  # met ERR 003; the new login was refused
    cancel_messages([second.pk], via=Via.API)
    assert simulator.counts["delmsg"] == 1  # nothing sent with an id known to be dead
    assert second.exchanges.get().outcome == GatewayExchange.Outcome.NOT_SENT
