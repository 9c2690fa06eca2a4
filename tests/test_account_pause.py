"""Issue 22, item 1: pause and resume, per account.

A paused account sends nothing -- no ``sendmsg``/POST for new sends, releases,
retries, requeues or the resend after a verification -- while stops and
queries go on; every message waits, shown with who paused it, and goes out
exactly once on resume.  Over HTTP against the simulator, on a legacy and a One
API account; the same through real Celery workers (a pause set mid-run,
SIGKILL during the resume) is in ``tests/test_account_pause_worker.py``.
"""

from __future__ import annotations

import threading
from io import StringIO
from typing import Any

import pytest
from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import Client
from django.urls import reverse

from django_clickatell import api, dispatch, tasks
from django_clickatell.admin.story import describe
from django_clickatell.exceptions import InvalidInput
from django_clickatell.models import (
    AccountPause,
    CancelState,
    OutboundMessage,
    SendState,
    Via,
    WaitingFor,
)
from django_clickatell.services import pausing, sending
from django_clickatell.simulator import ClickatellSimulator
from tests.every_backend import BACKENDS
from tests.factories import scheduled_messages
from tests.test_account_comes_and_goes import (
    FINAL_STATES,
    LAST_TRY,
    record_open_work,
    run_every_periodic_path,
)
from tests.test_every_backend import backend

__all__ = ["backend"]  # the fixture: the default account on each HTTP backend

pytestmark = pytest.mark.django_db

PAUSES = reverse("admin:django_clickatell_accountpause_changelist")


def pause_url(alias: str) -> str:
    return reverse("admin:django_clickatell_accountpause_pause", args=[alias])


def resume_url(alias: str) -> str:
    return reverse("admin:django_clickatell_accountpause_resume", args=[alias])


@pytest.fixture
def open_work(simulator: ClickatellSimulator, settings: Any) -> dict[str, OutboundMessage]:
    return record_open_work(simulator, settings)


def sends_of(simulator: ClickatellSimulator) -> int:
    """Send requests the gateway received: legacy ``sendmsg`` and One API POSTs."""
    return sum(simulator.sendmsg_requests_by_recipient().values())


def test_a_paused_account_sends_nothing_and_each_goes_out_once_on_resume(
    open_work: dict[str, OutboundMessage],
    simulator: ClickatellSimulator,
    settings: Any,
    admin_user: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    capture_on_commit = django_capture_on_commit_callbacks
    simulator.reset_counts()
    api.pause_account("legacy", reason="wrong campaign", by=admin_user)
    api.pause_account("platform", reason="wrong campaign")
    with capture_on_commit(execute=True):
        run_every_periodic_path(open_work)  # sends (last retry), stop, release, requeue
        tasks.send_messages.apply(  # a duplicate delivery, and a retry
            args=([m.pk for k, m in open_work.items() if "queued" in k],), kwargs=LAST_TRY
        )
        # New messages are recorded, not refused, and wait with the others.
        new = api.send_sms("27990000099", "new while paused", account="legacy", wait=True)
        new += api.send_sms("27990000098", "new while paused", account="platform")
    assert sends_of(simulator) == 0
    assert simulator.api_requests["v1"] == 0  # not one One API POST either
    rows = {k: OutboundMessage.objects.get(pk=m.pk) for k, m in open_work.items()}
    # The stop went out while paused: pausing never delays a cancellation.
    assert rows["legacy stop"].cancel_state == CancelState.CANCELLED
    assert simulator.counts["delmsg"] == 1
    # The send in doubt was checked (a query sends no SMS): Clickatell never had it, so it
    # waits queued -- and is not resent.
    assert rows["legacy in doubt"].exchanges.filter(command="querymsg").count() == 1
    assert rows["legacy in doubt"].send_state == SendState.QUEUED
    waiting = [m for k, m in rows.items() if k != "legacy stop"] + [
        OutboundMessage.objects.get(pk=m.pk) for m in new
    ]
    for message in waiting:
        assert message.send_state in (SendState.QUEUED, SendState.HELD), message
        assert message.waiting_for == WaitingFor.PAUSED, message
        view = describe(message)
        assert view.key == "waiting"
        who = "admin" if message.account == "legacy" else "a command or the API"
        assert f"Waiting: account “{message.account}” paused by {who} at " in view.reason
        assert "(wrong campaign)" in view.reason
    assert not OutboundMessage.objects.filter(send_state__in=FINAL_STATES).exists()

    # Resumed: each waiting message goes out once, by the resume itself and the periodic
    # tasks (run twice: the second finds nothing more).
    with capture_on_commit(execute=True):
        assert api.resume_account("legacy", by=admin_user) is True
        assert api.resume_account("platform") is True
        assert api.resume_account("platform") is False  # not paused any more
    for _ in range(2):
        with capture_on_commit(execute=True):
            dispatch.release_held()
            dispatch.requeue_stalled()
    assert {m.recipient: 1 for m in waiting} == simulator.sendmsg_requests_by_recipient()
    assert simulator.duplicate_sends() == []
    assert set(
        OutboundMessage.objects.filter(pk__in=[m.pk for m in waiting]).values_list(
            "send_state", "waiting_for"
        )
    ) == {(SendState.SENT, "")}
    assert api.paused_accounts() == []


def test_the_pause_holds_one_account_only(
    simulator: ClickatellSimulator, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    record_open_work(simulator, settings)
    simulator.reset_counts()
    api.pause_account("platform")
    sent = api.send_sms("27990000050", "legacy goes", account="legacy", wait=True)
    held = api.send_sms("27990000051", "platform waits", account="platform", wait=True)
    assert OutboundMessage.objects.get(pk=sent[0].pk).send_state == SendState.SENT
    assert OutboundMessage.objects.get(pk=held[0].pk).waiting_for == WaitingFor.PAUSED
    assert simulator.sendmsg_requests_by_recipient() == {"27990000050": 1}
    assert [p.account for p in api.paused_accounts()] == ["platform"]


def test_a_paused_message_can_still_be_stopped_here_without_a_request(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    record_open_work(simulator, settings)
    api.pause_account("legacy")
    [message] = api.send_sms("27990000060", "stop me", account="legacy", wait=True)
    simulator.reset_counts()
    api.cancel_sms(OutboundMessage.objects.filter(pk=message.pk), wait=True)
    message.refresh_from_db()
    assert (message.send_state, message.cancel_state) == (
        SendState.WITHDRAWN,
        CancelState.CANCELLED,
    )
    assert simulator.counts["total"] == 0


def test_a_pause_of_an_unknown_account_or_with_a_long_reason_is_refused(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    record_open_work(simulator, settings)
    with pytest.raises(InvalidInput, match="No Clickatell account 'nope'"):
        api.pause_account("nope")
    with pytest.raises(InvalidInput, match="at most 200 characters"):
        api.pause_account("legacy", reason="x" * 201)
    assert not AccountPause.objects.exists()
    # Control characters (a NUL PostgreSQL refuses, a terminal escape) never reach the row.
    pause = api.pause_account("legacy", reason="bad\x00 text\x1b[31m\n\u2028here")
    assert pause.reason == "bad text [31m here"
    assert AccountPause.objects.get().reason == "bad text [31m here"


def test_pausing_twice_keeps_the_first_pause(
    simulator: ClickatellSimulator, settings: Any, admin_user: Any
) -> None:
    record_open_work(simulator, settings)
    first = api.pause_account("legacy", reason="first", by=admin_user)
    again = api.pause_account("legacy", reason="second")
    assert (again.reason, again.paused_by, again.paused_at) == ("first", "admin", first.paused_at)
    assert LogEntry.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_two_resumes_and_duplicate_deliveries_send_each_once(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """Two resumes racing (two machines' requeues), each followed by two deliveries of
    the same send task: the claims let exactly one request leave per message."""
    record_open_work(simulator, settings)
    settings.CLICKATELL = {**settings.CLICKATELL, "USE_CELERY": False}
    api.pause_account("legacy")
    messages = api.send_sms([f"279900001{n:02d}" for n in range(20)], "campaign", account="legacy")
    assert OutboundMessage.objects.filter(waiting_for=WaitingFor.PAUSED).count() == 20
    simulator.reset_counts()
    simulator.latency = 0.02
    pausing.resume_account("legacy")
    barrier = threading.Barrier(3)
    handed: list[list[int]] = []

    def resume_and_send() -> None:
        try:
            barrier.wait()
            from django_clickatell.services import waiting

            resumed = waiting.resume()
            handed.append(resumed.sends)
            for _ in range(2):  # the task delivered twice
                sending.send_messages(resumed.sends, via=Via.TASK)
            sending.send_messages([m.pk for m in messages], via=Via.TASK)  # and a stray one
        finally:
            connections.close_all()

    threads = [threading.Thread(target=resume_and_send) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(pk for sends in handed for pk in sends) == sorted(m.pk for m in messages)
    assert simulator.sendmsg_requests_by_recipient() == {m.recipient: 1 for m in messages}
    assert simulator.duplicate_sends() == []
    sent = OutboundMessage.objects.filter(pk__in=[m.pk for m in messages], send_state="sent")
    assert sent.count() == 20


def test_refreshes_go_on_while_paused(simulator: ClickatellSimulator, settings: Any) -> None:
    record_open_work(simulator, settings)
    [sent] = scheduled_messages(simulator, 1, account="legacy", send_state=SendState.SENT)
    api.pause_account("legacy")
    simulator.reset_counts()
    api.refresh_sms(OutboundMessage.objects.filter(pk=sent.pk), wait=True)
    assert simulator.counts["querymsg"] == 1
    assert sends_of(simulator) == 0


# -- the admin ------------------------------------------------------------------------------


def operator(perms: list[str]) -> Client:
    user = User.objects.create_user("operator", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=perms))
    client = Client()
    client.force_login(user)
    return client


def test_the_admin_pauses_with_its_own_permission_a_confirmation_and_a_log_entry(
    simulator: ClickatellSimulator, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    record_open_work(simulator, settings)
    viewer = operator(["view_outboundmessage", "view_accountpause"])
    assert viewer.get(pause_url("legacy")).status_code == 403
    assert viewer.post(pause_url("legacy"), {"reason": "x"}).status_code == 403
    assert not AccountPause.objects.exists()
    listing = viewer.get(PAUSES).content.decode()
    assert 'data-account="legacy"' in listing
    assert "pause-legacy" not in listing

    User.objects.filter(username="operator").delete()
    client = operator(["view_outboundmessage", "pause_account"])
    page = client.get(pause_url("legacy")).content.decode()
    # It says exactly what will happen, before anything does.
    assert "Pausing account “legacy” stops everything it would send" in page
    assert "2 sends queued or in doubt wait" in page  # the queued one and the one in doubt
    assert "1 held message due within the hour stays held" in page
    assert "pausing never delays a cancellation" in page
    assert "Every worker sees the pause within 1" in page
    assert not AccountPause.objects.exists()
    response = client.post(pause_url("legacy"), {"reason": "wrong text"}, follow=True)
    assert "Account “legacy” is paused" in response.content.decode()
    pause = AccountPause.objects.get()
    assert pause.paused_by is not None
    assert (pause.account, pause.paused_by.username, pause.reason) == (
        "legacy",
        "operator",
        "wrong text",
    )
    entry = LogEntry.objects.get()
    assert (entry.action_flag, entry.object_id, entry.user.username) == (
        ADDITION,
        str(pause.pk),
        "operator",
    )
    assert "Paused account “legacy”: wrong text" in entry.change_message

    page = client.get(resume_url("legacy")).content.decode()
    assert "Resuming account “legacy” lets its messages go out again" in page
    assert AccountPause.objects.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(resume_url("legacy"), follow=True)
    assert "Account “legacy” is resumed" in response.content.decode()
    assert not AccountPause.objects.exists()
    assert LogEntry.objects.filter(action_flag=DELETION, object_id=str(pause.pk)).exists()


def admin_pages(message: OutboundMessage) -> list[str]:
    from django_clickatell.models import CancellationBatch, UnmatchedCallback

    batch = CancellationBatch.objects.create(via=Via.ADMIN)
    callback = UnmatchedCallback.objects.create(apimsgid="x", status="003")
    return [
        reverse("admin:app_list", args=["django_clickatell"]),
        reverse("admin:django_clickatell_outboundmessage_changelist"),
        reverse("admin:django_clickatell_outboundmessage_change", args=[message.pk]),
        reverse("admin:django_clickatell_outboundmessage_history", args=[message.pk]),
        reverse("admin:django_clickatell_cancellationbatch_changelist"),
        reverse("admin:django_clickatell_cancellationbatch_change", args=[batch.pk]),
        reverse("admin:django_clickatell_unmatchedcallback_changelist"),
        reverse("admin:django_clickatell_unmatchedcallback_change", args=[callback.pk]),
        PAUSES,
        pause_url("default"),
    ]


def test_every_page_of_the_app_shows_the_pause(
    simulator: ClickatellSimulator, settings: Any, admin_client: Client, admin_user: Any
) -> None:
    work = record_open_work(simulator, settings)
    pages = admin_pages(work["legacy queued"])
    for url in pages:
        page = admin_client.get(url)
        assert page.status_code == 200, url
        assert "clickatell-pause-banner" not in page.content.decode(), url
    api.pause_account("platform", reason="bad promo", by=admin_user)
    for url in pages:
        text = admin_client.get(url).content.decode()
        assert 'id="clickatell-pause-banner"' in text, url
        assert "Account “platform” is paused" in text, url
        assert "by admin at" in text, url
        assert "(bad promo)" in text, url
        assert "stops still go out" in text, url
    # The send confirmation page (an action) shows it too.
    confirmation = admin_client.post(
        reverse("admin:django_clickatell_outboundmessage_changelist"),
        {"action": "send_again", "_selected_action": [work["legacy queued"].pk]},
    ).content.decode()
    assert 'id="clickatell-pause-banner"' in confirmation


# -- the commands ---------------------------------------------------------------------------


def test_the_commands_pause_and_resume(
    simulator: ClickatellSimulator,
    settings: Any,
    admin_user: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    work = record_open_work(simulator, settings)
    out = StringIO()
    call_command("clickatell_pause", account="legacy", reason="oops", by="admin", stdout=out)
    text = out.getvalue()
    assert "Paused account 'legacy'" in text
    assert "2 queued or in-doubt sends and 1 held messages due within the hour wait" in text
    assert "1 stops still go out" in text
    assert LogEntry.objects.get().change_message.startswith("Paused account “legacy”: oops")
    out = StringIO()
    call_command("clickatell_pause", account="legacy", stdout=out)
    assert "already paused" in out.getvalue()
    with pytest.raises(CommandError, match="no user 'ghost'"):
        call_command("clickatell_pause", account="legacy", by="ghost")
    with pytest.raises(CommandError, match="No Clickatell account 'nope'"):
        call_command("clickatell_pause", account="nope")
    simulator.reset_counts()
    with django_capture_on_commit_callbacks(execute=True):
        tasks.send_messages.apply(args=([work["legacy queued"].pk],))
    assert sends_of(simulator) == 0
    out = StringIO()
    with django_capture_on_commit_callbacks(execute=True):
        call_command("clickatell_resume", account="legacy", stdout=out)
    assert "Resumed account 'legacy'" in out.getvalue()
    assert simulator.sendmsg_requests_by_recipient()[work["legacy queued"].recipient] == 1
    out = StringIO()
    call_command("clickatell_resume", account="legacy", stdout=out)
    assert "is not paused" in out.getvalue()


# -- every backend --------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS, indirect=True)
def test_a_pause_holds_every_backend_over_http(
    backend: str, simulator: ClickatellSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    """legacy_http, rest and one_api: not one request while paused; once each on resume."""
    api.pause_account("default", reason="incident")
    [message] = api.send_sms("27999000001", "paused", wait=True)
    tasks.send_messages.apply(args=([message.pk],), kwargs=LAST_TRY)
    assert simulator.counts["total"] == 0
    assert not simulator.api_requests
    assert OutboundMessage.objects.get(pk=message.pk).waiting_for == WaitingFor.PAUSED
    with django_capture_on_commit_callbacks(execute=True):
        api.resume_account("default")
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    assert len(simulator.accepted_sends()) == 1
    assert simulator.duplicate_sends() == []


@pytest.mark.parametrize("name", ["test", "console"])
def test_a_pause_holds_the_local_backends(
    name: str, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    from django_clickatell import testing

    settings.CLICKATELL = {**settings.CLICKATELL, "BACKEND": name, "USE_CELERY": False}
    testing.reset_outbox()
    api.pause_account("default")
    [message] = api.send_sms("27999000001", "paused", wait=True)
    assert OutboundMessage.objects.get(pk=message.pk).waiting_for == WaitingFor.PAUSED
    assert testing.outbox == []
    with django_capture_on_commit_callbacks(execute=True):
        api.resume_account("default")
    assert OutboundMessage.objects.get(pk=message.pk).send_state == SendState.SENT
    if name == "test":
        assert [sms.to for sms in testing.outbox] == ["27999000001"]


def test_a_resume_elsewhere_is_seen_at_once_by_a_process_that_saw_the_pause(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """A worker that read the pause a moment ago must not hold back the work a resume on
    another machine just handed on (it would wait for the next requeue, minutes away)."""
    record_open_work(simulator, settings)
    api.pause_account("legacy")
    assert pausing.pauses() != {}  # this process has the pause in its view now
    AccountPause.objects.all().delete()  # resumed by another process: our view is stale
    [message] = api.send_sms("27990000070", "goes", account="legacy", wait=True)
    assert OutboundMessage.objects.get(pk=message.pk).send_state == SendState.SENT
