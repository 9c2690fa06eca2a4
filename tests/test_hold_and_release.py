"""Local hold-and-release scheduling: held beyond the lead time, released once when due.

A message scheduled further ahead than ``min(HOLD_LEAD_TIME, the backend's
horizon)`` -- or any scheduled message on a backend without native scheduling --
is recorded ``HELD`` and not sent; the release loop hands it to the send path
when due, exactly once, with what is left of its delay as an absolute schedule.
A held message is stopped here with no request to Clickatell.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_clickatell import dispatch
from django_clickatell.admin.explanations import compact_when
from django_clickatell.api import InvalidMessage, cancel_sms, send_sms
from django_clickatell.gateway.backends import Backend, Capabilities
from django_clickatell.models import CancelState, OutboundMessage, SendState, Via
from django_clickatell.services import composing
from django_clickatell.services.cancel_requests import preview_cancellation, request_cancellation
from django_clickatell.services.release import release_due
from django_clickatell.services.scheduling import HoldPolicy
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import WorkerProcess, wait_until
from tests.test_operator_view import CHANGELIST, post_action, text_of

pytestmark = pytest.mark.django_db

NO_NATIVE = HoldPolicy(native=False, at_gateway=timedelta(0))


def _lead(settings: Any, seconds: int, **more: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "HOLD_LEAD_TIME": seconds, **more}


def _time_passes(message: OutboundMessage, *, due_in: timedelta) -> OutboundMessage:
    """As if the clock had moved on: the message is now due in *due_in*, its release past."""
    now = timezone.now()
    OutboundMessage.objects.filter(pk=message.pk).update(
        scheduled_for=now + due_in, release_at=now - timedelta(seconds=1)
    )
    return OutboundMessage.objects.get(pk=message.pk)


# -- composing: held or scheduled at Clickatell ----------------------------------------


def test_within_the_default_lead_it_goes_to_clickatell_as_before(
    simulator: ClickatellSimulator,
) -> None:
    [message] = send_sms("27999000001", "x", deliver_in_minutes=6 * 24 * 60, wait=True)
    assert message.send_state == SendState.SENT
    assert message.release_at is None
    assert simulator.counts["sendmsg"] == 1


def test_beyond_the_seven_day_horizon_it_is_held_and_not_sent(
    simulator: ClickatellSimulator,
) -> None:
    due = timezone.now() + timedelta(days=30)
    [message] = send_sms("27999000001", "x", scheduled_for=due, wait=True)
    assert message.send_state == SendState.HELD
    assert message.scheduled_for == due
    assert message.release_at == message.scheduled_for - timedelta(days=7)
    assert message.send_options == {}  # the due time is scheduled_for alone
    assert simulator.counts["total"] == 0
    assert not message.exchanges.exists()


def test_a_shorter_lead_time_holds_what_it_does_not_cover(settings: Any) -> None:
    _lead(settings, 3600)
    [held] = composing.create_messages("27999000001", "x", deliver_in_minutes=120, callback=3)
    [native] = composing.create_messages("27999000002", "x", deliver_in_minutes=30)
    assert held.send_state == SendState.HELD
    assert held.send_options == {"callback": 3}  # no stale relative deliv_time
    assert held.scheduled_for is not None
    assert held.release_at == held.scheduled_for - timedelta(hours=1)
    assert (native.send_state, native.send_options) == (SendState.QUEUED, {"deliv_time": 30})
    assert composing.to_send([held, native]) == [native.pk]


def test_without_native_scheduling_every_scheduled_message_is_held() -> None:
    [scheduled] = composing.create_messages(
        "27999000001", "x", deliver_in_minutes=10, policy=NO_NATIVE
    )
    [now] = composing.create_messages("27999000002", "x", policy=NO_NATIVE)
    assert scheduled.send_state == SendState.HELD
    assert scheduled.release_at == scheduled.scheduled_for  # released when due, sent at once
    assert now.send_state == SendState.QUEUED


def test_a_lead_below_ten_minutes_releases_at_the_due_time(settings: Any) -> None:
    _lead(settings, 0)
    [message] = composing.create_messages("27999000001", "x", deliver_in_minutes=10)
    assert message.send_state == SendState.HELD
    assert message.release_at == message.scheduled_for


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"deliver_in_minutes": 9}, "between 10 and 525600"),
        ({"deliver_in_minutes": 525601}, "between 10 and 525600"),
        ({"deliver_in_minutes": True}, "between 10 and 525600"),
        ({"scheduled_for": timedelta(days=366)}, "at most a year"),
    ],
)
def test_schedules_beyond_a_year_are_refused(options: dict[str, Any], error: str) -> None:
    if "scheduled_for" in options:
        options = {"scheduled_for": timezone.now() + options["scheduled_for"]}
    with pytest.raises(InvalidMessage, match=error):
        composing.create_messages("27999000001", "x", **options)
    assert not OutboundMessage.objects.exists()


def test_a_year_ahead_is_accepted_and_held() -> None:
    [message] = composing.create_messages("27999000001", "x", deliver_in_minutes=525600)
    assert message.send_state == SendState.HELD


# -- the release loop ------------------------------------------------------------------


def test_nothing_is_released_before_its_release_time(settings: Any) -> None:
    _lead(settings, 3600)
    [message] = composing.create_messages("27999000001", "x", deliver_in_minutes=120)
    assert message.release_at is not None
    assert release_due().released == []
    assert release_due(message.release_at - timedelta(seconds=1)).released == []
    assert OutboundMessage.objects.get().send_state == SendState.HELD


def test_released_once_and_sent_once_with_what_is_left_of_its_delay(
    settings: Any, simulator: ClickatellSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    _lead(settings, 3600, USE_CELERY=False)
    [message] = send_sms("27999000001", "x", deliver_in_minutes=120, callback=3)
    assert message.send_state == SendState.HELD
    # 90 minutes later: 30 left.  A stale deliv_time=120 would deliver it 2 hours from now.
    message = _time_passes(message, due_in=timedelta(minutes=30))
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.release_held(via=Via.COMMAND) == {"released": 1, "rescheduled": 0}
        assert dispatch.release_held(via=Via.COMMAND) == {"released": 0, "rescheduled": 0}
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    assert simulator.counts["sendmsg"] == 1
    assert message.scheduled_for is not None
    at_gateway = simulator.messages[str(message.apimsgid)]
    assert at_gateway.deliver_at == int(message.scheduled_for.timestamp())
    assert (at_gateway.status, at_gateway.callback) == ("011", 3)
    assert message.send_options == {
        "callback": 3,
        "scheduled_time": int(message.scheduled_for.timestamp()),
    }


def test_a_message_released_when_due_goes_at_once(
    settings: Any, simulator: ClickatellSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    _lead(settings, 0, USE_CELERY=False)
    [message] = send_sms("27999000001", "x", deliver_in_minutes=60)
    message = _time_passes(message, due_in=timedelta(seconds=-5))
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.release_held(via=Via.TASK)["released"] == 1
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    assert message.send_options == {}
    at_gateway = simulator.messages[str(message.apimsgid)]
    assert at_gateway.deliver_at is not None
    assert at_gateway.deliver_at <= time.time()


def test_caught_between_release_and_ten_minutes_it_waits_for_its_due_time(
    settings: Any,
) -> None:
    """Released late with 5 minutes left: too soon for Clickatell to schedule, so it
    stays held until due rather than go out early."""
    _lead(settings, 3600)
    [message] = composing.create_messages("27999000001", "x", deliver_in_minutes=120)
    message = _time_passes(message, due_in=timedelta(minutes=5))
    assert release_due().released == []
    assert release_due(timezone.now() + timedelta(minutes=5, seconds=1)).released == [message.pk]


def test_a_backend_change_never_sends_a_held_message_early(settings: Any) -> None:
    """Composed for Clickatell to schedule it 7 days ahead, released under a backend that
    cannot schedule: held again until its due time."""
    due = timezone.now() + timedelta(days=20)
    [message] = composing.create_messages("27999000001", "x", scheduled_for=due)
    now = due - timedelta(days=7)
    report = release_due(now, policy=NO_NATIVE)
    assert (report.released, report.rescheduled) == ([], [message.pk])
    message.refresh_from_db()
    assert (message.send_state, message.release_at) == (SendState.HELD, message.scheduled_for)
    assert message.claim_token == ""


def test_a_message_asked_to_stop_is_never_released(settings: Any) -> None:
    _lead(settings, 3600)
    [message] = composing.create_messages("27999000001", "x", deliver_in_minutes=120)
    # A cancellation request caught between marking and withdrawing it.
    OutboundMessage.objects.filter(pk=message.pk).update(cancel_state=CancelState.PENDING)
    assert release_due(timezone.now() + timedelta(hours=2)).released == []
    assert OutboundMessage.objects.get().send_state == SendState.HELD


def test_batches_are_bounded(settings: Any) -> None:
    _lead(settings, 0)
    composing.create_messages([f"2799900{n:04d}" for n in range(5)], "x", deliver_in_minutes=10)
    later = timezone.now() + timedelta(minutes=11)
    first = release_due(later, limit=3)
    second = release_due(later, limit=3)
    assert (len(first.released), first.more, len(second.released), second.more) == (
        3,
        True,
        2,
        False,
    )
    assert release_due(later, limit=3).released == []


@pytest.mark.django_db(transaction=True)
def test_two_release_loops_at_once_release_each_message_once(settings: Any) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row locking under concurrent UPDATEs is what is tested")
    _lead(settings, 0)
    count = 300
    composing.create_messages([f"2799900{n:04d}" for n in range(count)], "x", deliver_in_minutes=10)
    later = timezone.now() + timedelta(minutes=11)
    start = threading.Barrier(2)
    released: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def loop(index: int) -> None:
        try:
            start.wait()
            while True:
                report = release_due(later, limit=25)
                released[index] += report.released
                if not report.more:
                    break
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=loop, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    first, second = released
    assert not set(first) & set(second)
    assert len(first) + len(second) == count
    assert OutboundMessage.objects.filter(send_state=SendState.QUEUED, claim_token="").count() == (
        count
    )


# -- stopping a held message -----------------------------------------------------------


def test_a_held_message_is_stopped_here_with_no_request(
    settings: Any, simulator: ClickatellSimulator
) -> None:
    due = timezone.now() + timedelta(days=30)
    [message] = send_sms("27999000001", "x", scheduled_for=due)
    selection = OutboundMessage.objects.filter(pk=message.pk)
    assert preview_cancellation(selection).cancellable == 1
    result = request_cancellation(selection, via=Via.API)
    assert result.message_pks == []  # nothing for a worker: stopped already
    message.refresh_from_db()
    assert (message.send_state, message.cancel_state) == (
        SendState.WITHDRAWN,
        CancelState.CANCELLED,
    )
    assert release_due(due).released == []
    assert simulator.counts["total"] == 0


def _held(due_in: timedelta = timedelta(days=30), number: str = "27999000001") -> OutboundMessage:
    [message] = send_sms(number, "held", scheduled_for=timezone.now() + due_in)
    assert message.send_state == SendState.HELD
    return message


def _assert_stopped_here(message: OutboundMessage, simulator: ClickatellSimulator) -> None:
    message.refresh_from_db()
    assert (message.send_state, message.cancel_state) == (
        SendState.WITHDRAWN,
        CancelState.CANCELLED,
    )
    # No request about any message (the admin's pages may read the balance).
    assert [simulator.counts[c] for c in ("sendmsg", "delmsg", "querymsg")] == [0, 0, 0]
    assert not message.exchanges.exists()


def test_held_message_stopped_from_the_admin(
    admin_client: Client, simulator: ClickatellSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    message = _held()
    confirm = post_action(admin_client, "cancel_delivery", [message.pk], confirm=False)
    text = text_of(confirm)
    assert "1 message will be stopped." in text
    assert "Stopped here, at once: it was never handed to Clickatell." in text
    with django_capture_on_commit_callbacks(execute=True):
        post_action(admin_client, "cancel_delivery", [message.pk], confirm=True)
    _assert_stopped_here(message, simulator)
    page = text_of(admin_client.get(CHANGELIST))
    assert "Stopped before sending" in page


def test_held_message_stopped_by_the_task(simulator: ClickatellSimulator) -> None:
    from django_clickatell import tasks

    message = _held()
    result = tasks.cancel_messages.apply(args=([message.pk],)).get()
    assert result["withdrawn"] == 1
    _assert_stopped_here(message, simulator)


def test_held_message_stopped_by_the_command(simulator: ClickatellSimulator) -> None:
    message = _held()
    out = StringIO()
    call_command("clickatell_cancel", str(message.pk), "--sync", stdout=out)
    assert "1 stopped here: never handed to Clickatell" in out.getvalue()
    _assert_stopped_here(message, simulator)
    assert message.batch is not None  # the record of the request is kept


def test_held_message_stopped_through_the_api(simulator: ClickatellSimulator) -> None:
    message = _held()
    result = cancel_sms(OutboundMessage.objects.stoppable().filter(pk=message.pk), wait=True)
    assert (result.preview.cancellable, result.message_pks) == (1, [])
    _assert_stopped_here(message, simulator)


def test_released_and_sent_it_is_stopped_at_clickatell(
    settings: Any, simulator: ClickatellSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    _lead(settings, 3600, USE_CELERY=False)
    message = _time_passes(_held(timedelta(hours=3)), due_in=timedelta(minutes=50))
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.release_held(via=Via.TASK)
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    cancel_sms(OutboundMessage.objects.filter(pk=message.pk), wait=True)
    message.refresh_from_db()
    assert (message.cancel_state, message.status) == (CancelState.CANCELLED, "006")
    assert message.send_state == SendState.SENT  # stopped at Clickatell, not here
    assert simulator.executed["delmsg"] == 1


# -- the faces of the release loop -----------------------------------------------------


def test_the_beat_task_releases_and_sends(
    settings: Any, simulator: ClickatellSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    from django_clickatell import tasks

    _lead(settings, 3600, USE_CELERY=False)
    message = _time_passes(_held(timedelta(hours=3)), due_in=timedelta(minutes=-1))
    assert tasks.release_due_messages.name == "django_clickatell.release_due_messages"
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.release_due_messages.apply().get() == {"released": 1, "rescheduled": 0}
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    assert simulator.counts["sendmsg"] == 1


def test_the_beat_task_queues_the_send_when_celery_is_in_use(
    settings: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    from django_clickatell import tasks

    _lead(settings, 3600)
    message = _time_passes(_held(timedelta(hours=3)), due_in=timedelta(minutes=-1))
    published: list[Any] = []
    monkeypatch.setattr(
        tasks.send_messages, "apply_async", lambda args, **kw: published.append(args)
    )
    with django_capture_on_commit_callbacks(execute=True):
        tasks.release_due_messages.apply().get()
    assert published == [([message.pk],)]
    message.refresh_from_db()
    assert (message.send_state, message.claim_token) == (SendState.QUEUED, "")


def test_the_command_once(
    settings: Any, simulator: ClickatellSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    _lead(settings, 3600, USE_CELERY=False)
    due = _time_passes(_held(timedelta(hours=3)), due_in=timedelta(minutes=-1))
    later = _held(timedelta(hours=3), number="27999000002")
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("clickatell_release", "--once", stdout=out)
    assert "Released 1 held messages (sent)" in out.getvalue()
    assert OutboundMessage.objects.get(pk=due.pk).send_state == SendState.SENT
    assert OutboundMessage.objects.get(pk=later.pk).send_state == SendState.HELD
    assert simulator.counts["sendmsg"] == 1


def test_the_command_refuses_a_bad_interval() -> None:
    with pytest.raises(CommandError, match="from 1 to 3600"):
        call_command("clickatell_release", "--interval", "0")
    with pytest.raises(CommandError, match="number of seconds"):
        call_command("clickatell_release", "--interval", "soon")


@pytest.mark.django_db(transaction=True)
def test_the_command_loops_until_sigterm_and_exits_cleanly(
    settings: Any, simulator: ClickatellSimulator
) -> None:
    _lead(settings, 3600, USE_CELERY=False)
    message = _time_passes(_held(timedelta(hours=3)), due_in=timedelta(minutes=-1))
    timer = threading.Timer(2.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    out = StringIO()
    started = time.monotonic()
    try:
        call_command("clickatell_release", "--interval", "1", stdout=out)
    finally:
        timer.cancel()
    assert time.monotonic() - started < 10
    assert out.getvalue().splitlines()[-1] == "Stopped."
    assert "Released 1 held messages (sent)" in out.getvalue()
    assert OutboundMessage.objects.get(pk=message.pk).send_state == SendState.SENT
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back


# -- what the operator sees ------------------------------------------------------------


def test_the_admin_shows_held_messages_and_when_they_go(
    admin_client: Client, settings: Any
) -> None:
    _lead(settings, 3600)
    message = _held(timedelta(days=30))
    overdue = _time_passes(_held(timedelta(days=30), number="27999000002"), due_in=timedelta(0))
    OutboundMessage.objects.filter(pk=overdue.pk).update(
        release_at=timezone.now() - timedelta(hours=1)
    )
    response = admin_client.get(CHANGELIST, {"state": "held"})
    shown = {m.pk for m in response.context["cl"].result_list}
    assert shown == {message.pk, overdue.pk}
    page = text_of(response)
    assert "Held here" in page
    assert f"handed to Clickatell {compact_when(message.release_at)}" in page
    assert "Can be stopped here, with no request to Clickatell." in page
    assert "should have been handed to Clickatell" in page
    assert "Is the release loop running?" in page
    assert stoppable_pks(admin_client) >= {message.pk, overdue.pk}
    detail = admin_client.get(
        reverse("admin:django_clickatell_outboundmessage_change", args=[message.pk])
    )
    assert "Held here until due" in text_of(detail)


def stoppable_pks(client: Client) -> set[int]:
    response = client.get(CHANGELIST, {"stoppable": "yes"})
    return {m.pk for m in response.context["cl"].result_list}


def test_send_again_and_requeue_leave_held_messages_alone(
    admin_client: Client,
    settings: Any,
    simulator: ClickatellSimulator,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django_clickatell.services.send_recovery import resend, stalled_sends

    message = _held()
    with django_capture_on_commit_callbacks(execute=True):
        post_action(admin_client, "send_again", [message.pk], confirm=True)
    OutboundMessage.objects.filter(pk=message.pk).update(
        updated_at=timezone.now() - timedelta(days=1)
    )
    assert resend(OutboundMessage.objects.all()) == []
    assert stalled_sends() == []
    assert dispatch.requeue_stalled() == {"sends": 0, "cancellations": 0}
    assert OutboundMessage.objects.get().send_state == SendState.HELD
    assert simulator.counts["sendmsg"] == 0  # (the list page reads the balance)


def test_requeue_warns_when_held_messages_are_overdue(
    settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    message = _held()
    dispatch.requeue_stalled()
    assert "release loop" not in caplog.text
    OutboundMessage.objects.filter(pk=message.pk).update(
        release_at=timezone.now() - timedelta(hours=1)
    )
    dispatch.requeue_stalled()
    assert "1 held messages are past their release time" in caplog.text


def test_a_release_step_costs_the_same_queries_for_5_or_200_messages(settings: Any) -> None:
    _lead(settings, 0)
    later = timezone.now() + timedelta(minutes=11)
    counts = []
    for size in (5, 200):
        composing.create_messages(
            [f"27999{size:03d}{n:04d}" for n in range(size)], "x", deliver_in_minutes=10
        )
        with CaptureQueriesContext(connection) as queries:
            assert len(release_due(later, limit=500).released) == size
        counts.append(len(queries))
    assert counts[0] == counts[1]


class NoSchedulingBackend(Backend):
    """A backend like the One API: it cannot schedule, so every schedule is held here."""

    name = "no_scheduling"
    capabilities = Capabilities(
        remote_stop=False,
        sessions=False,
        native_scheduling=False,
        scheduling_horizon=None,
        batch_size=200,
        callbacks="json",
        query_by_client_id=False,
    )

    def send(self, messages: Any) -> Any:
        raise NotImplementedError

    def query(self, *, apimsgid: str | None = None, climsgid: str | None = None) -> Any:
        raise NotImplementedError

    def stop(self, *, apimsgid: str | None = None, climsgid: str | None = None) -> Any:
        raise NotImplementedError

    def balance(self) -> Any:
        raise NotImplementedError

    def check_credentials(self) -> None:
        raise NotImplementedError


def test_the_backend_capabilities_decide(settings: Any) -> None:
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "BACKEND": f"{__name__}.NoSchedulingBackend",
    }
    [message] = composing.create_messages("27999000001", "x", deliver_in_minutes=15)
    assert message.send_state == SendState.HELD
    assert message.release_at == message.scheduled_for
    assert release_due(timezone.now() + timedelta(minutes=14)).released == []
    assert release_due(timezone.now() + timedelta(minutes=16)).released == [message.pk]
    message.refresh_from_db()
    assert (message.send_state, message.send_options) == (SendState.QUEUED, {})


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_releases_and_sends_once(
    simulator: ClickatellSimulator, celery_worker_process: WorkerProcess
) -> None:
    """Beat's task on a real worker: released, queued as a send task, sent exactly once."""
    from django_clickatell import tasks

    message = _time_passes(_held(timedelta(days=30)), due_in=timedelta(minutes=30))
    later = _held(timedelta(days=30), number="27999000002")
    tasks.release_due_messages.delay()
    tasks.release_due_messages.delay()  # two beats at once: still one release, one send

    def sent() -> bool:
        message.refresh_from_db()
        return message.send_state == SendState.SENT

    assert wait_until(sent, timeout=60)
    time.sleep(1)  # give a duplicate the time to show itself
    # This message reached Clickatell once.  (Counted by its climsgid, not by all sendmsg
    # requests: the session-wide worker may still be finishing another test's task.)
    assert simulator.accepted_by_climsgid()[message.climsgid] == 1
    assert simulator.duplicate_sends() == []
    assert message.scheduled_for is not None
    at_gateway = simulator.messages[str(message.apimsgid)]
    assert at_gateway.deliver_at == int(message.scheduled_for.timestamp())  # Clickatell holds it
    assert OutboundMessage.objects.get(pk=later.pk).send_state == SendState.HELD
