"""Issue 19, item 4: nothing lost when an account comes and goes.

A bad deploy drops accounts from ``CLICKATELL["ACCOUNTS"]`` for a while: a
legacy HTTP account (``legacy``) and a One API account (``platform``), both on
the one simulator.  Every periodic path runs meanwhile -- on its *last* retry,
where a failure used to become final -- and nothing may end failed, unknown or
given up: each message waits in its open state with the reason, and the admin
says so.  Once the accounts are back, the periodic tasks (the release loop and
``requeue_stalled_work``) send and stop each message exactly once, counted at the
simulator over HTTP.  The same with a real Celery worker is in
``tests/test_account_comes_and_goes_worker.py``.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.cache import cache
from django.core.checks import run_checks
from django.core.management import CommandError, call_command
from django.test import Client
from django.utils import timezone

from django_clickatell import api, checks, dispatch, tasks
from django_clickatell.admin.story import describe
from django_clickatell.models import CancelState, OutboundMessage, SendState, Via
from django_clickatell.services import composing, refreshing
from django_clickatell.simulator import ClickatellSimulator
from tests.factories import scheduled_messages
from tests.test_operator_view import CHANGELIST

pytestmark = pytest.mark.django_db

LAST_TRY = {"gateway_retries": 10_000}
FINAL_STATES = {SendState.FAILED, SendState.UNKNOWN, SendState.REJECTED}


def with_accounts(settings: Any, simulator: ClickatellSimulator) -> None:
    accounts = {"legacy": simulator.settings(), "platform": simulator.one_api_settings()}
    settings.CLICKATELL = {**settings.CLICKATELL, "USE_CELERY": False, "ACCOUNTS": accounts}
    cache.clear()


def without_accounts(settings: Any) -> None:
    """The bad deploy: ``ACCOUNTS`` gone (the default account stays)."""
    settings.CLICKATELL = {k: v for k, v in settings.CLICKATELL.items() if k != "ACCOUNTS"}
    cache.clear()


def due_held(recipient: str, account: str) -> OutboundMessage:
    """A message held here whose time has come (due a minute ago)."""
    [message] = composing.create_messages(recipient, "held", account=account)
    past = timezone.now() - timedelta(minutes=1)
    OutboundMessage.objects.filter(pk=message.pk).update(
        send_state=SendState.HELD, scheduled_for=past, release_at=past
    )
    return message


@pytest.fixture
def open_work(simulator: ClickatellSimulator, settings: Any) -> dict[str, OutboundMessage]:
    """Open work of both accounts, recorded while they were configured."""
    return record_open_work(simulator, settings)


def record_open_work(simulator: ClickatellSimulator, settings: Any) -> dict[str, OutboundMessage]:
    """Queued, in doubt and held messages of both accounts, and a stop queued for one sent."""
    simulator.one_api.reset()
    with_accounts(settings, simulator)
    [legacy_queued] = composing.create_messages("27990000001", "q", account="legacy")
    [platform_queued] = composing.create_messages("27990000002", "q", account="platform")
    [in_doubt] = composing.create_messages("27990000003", "doubt", account="legacy")
    OutboundMessage.objects.filter(pk=in_doubt.pk).update(send_state=SendState.VERIFYING)
    [stop] = scheduled_messages(
        simulator, 1, account="legacy", send_state=SendState.SENT, recipient="27990000004"
    )
    OutboundMessage.objects.filter(pk=stop.pk).update(
        cancel_state=CancelState.PENDING, cancel_requested_at=timezone.now()
    )
    return {
        "legacy queued": legacy_queued,
        "platform queued": platform_queued,
        "legacy in doubt": in_doubt,
        "legacy held": due_held("27990000005", "legacy"),
        "platform held": due_held("27990000006", "platform"),
        "legacy stop": stop,
    }


def run_every_periodic_path(work: dict[str, OutboundMessage]) -> None:
    """What the workers and beat do while the accounts are missing, each on its last try."""
    sends = [m.pk for k, m in work.items() if "queued" in k or "doubt" in k]
    tasks.send_messages.apply(args=(sends,), kwargs=LAST_TRY)
    tasks.cancel_messages.apply(args=([work["legacy stop"].pk],), kwargs=LAST_TRY)
    dispatch.release_held()
    dispatch.requeue_stalled()
    refreshing.refresh_statuses([work["legacy stop"].pk], via=Via.TASK)
    tasks.refresh_statuses.apply()


def test_removed_accounts_work_waits_and_goes_out_once_when_back(
    open_work: dict[str, OutboundMessage],
    simulator: ClickatellSimulator,
    settings: Any,
    admin_user: Any,
    caplog: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    capture_on_commit = django_capture_on_commit_callbacks
    simulator.reset_counts()
    without_accounts(settings)
    with (
        caplog.at_level(logging.ERROR, logger="django_clickatell"),
        capture_on_commit(execute=True),
    ):
        run_every_periodic_path(open_work)
    rows = {k: OutboundMessage.objects.get(pk=m.pk) for k, m in open_work.items()}
    # Nothing final: each in its open state.
    assert {k: m.send_state for k, m in rows.items()} == {
        "legacy queued": SendState.QUEUED,
        "platform queued": SendState.QUEUED,
        "legacy in doubt": SendState.VERIFYING,  # still in doubt, never "unknown"
        "legacy held": SendState.HELD,
        "platform held": SendState.HELD,
        "legacy stop": SendState.SENT,
    }
    assert rows["legacy stop"].cancel_state == CancelState.PENDING
    assert simulator.counts["total"] == 0  # nothing was asked of anyone
    # Shown as waiting, with the reason, in the admin.
    for key, message in rows.items():
        view = describe(message)
        assert view.key == "waiting", key
        assert f"account “{message.account}” is not in the settings since" in view.reason
    client = Client()
    client.force_login(admin_user)
    page = client.get(CHANGELIST).content.decode()
    assert page.count("is not in the settings since") == len(rows)
    assert "its stop is sent to Clickatell when the account is configured again" in page
    # A clear error names each account whose work waits.
    errors = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR)
    assert "account 'legacy' wait" in errors
    assert "account 'platform' wait" in errors

    # The accounts are back: the periodic tasks alone send and stop each once.
    with_accounts(settings, simulator)
    back = describe(rows["platform held"])
    assert (back.key, back.hint) == ("waiting", "Nothing to do.")
    assert "Account “platform” is configured again: it is handed to Clickatell" in back.reason
    for _ in range(2):  # a second round finds nothing left to do
        with capture_on_commit(execute=True):  # (work is handed on once committed)
            dispatch.release_held()
            dispatch.requeue_stalled()
    for message in rows.values():
        message.refresh_from_db()
    assert all(m.waiting_for == "" for m in rows.values())
    sent = [m for k, m in rows.items() if k != "legacy stop"]
    assert {m.send_state for m in sent} == {SendState.SENT}
    assert simulator.sendmsg_requests_by_recipient() == {m.recipient: 1 for m in sent}
    assert simulator.duplicate_sends() == []
    assert simulator.counts["delmsg"] == 1
    assert rows["legacy stop"].cancel_state == CancelState.CANCELLED
    # The one in doubt was asked about (querymsg by climsgid) before it was sent.
    assert rows["legacy in doubt"].exchanges.filter(command="querymsg").count() == 1
    assert not OutboundMessage.objects.filter(send_state__in=FINAL_STATES).exists()


def test_a_verification_that_cannot_run_leaves_the_send_in_doubt(
    open_work: dict[str, OutboundMessage], simulator: ClickatellSimulator, settings: Any
) -> None:
    """Giving up on a check means "unknown"; a missing account is no reason to give up."""
    without_accounts(settings)
    message = open_work["legacy in doubt"]
    tasks.send_messages.apply(args=([message.pk],), kwargs=LAST_TRY)
    message.refresh_from_db()
    assert message.send_state == SendState.VERIFYING
    assert not message.exchanges.exists()  # nothing asked, so nothing logged as asked


def test_a_stop_not_tried_on_the_last_retry_waits_for_its_account(
    open_work: dict[str, OutboundMessage], simulator: ClickatellSimulator, settings: Any
) -> None:
    """A run that gives up on untried stops after another account's failure leaves the
    missing account's stop queued, not "gave up"."""
    without_accounts(settings)
    stop = open_work["legacy stop"]
    tasks.cancel_messages.apply(args=([stop.pk],), kwargs=LAST_TRY)
    stop.refresh_from_db()
    assert stop.cancel_state == CancelState.PENDING
    assert stop.cancel_error == ""
    assert not stop.exchanges.exists()


def test_the_check_names_accounts_with_open_work(
    open_work: dict[str, OutboundMessage], settings: Any
) -> None:
    check_id = checks.ACCOUNT_MISSING_WITH_WORK.id
    # Configured: nothing to say.
    assert [m for m in run_checks(databases=["default"]) if m.id == check_id] == []
    without_accounts(settings)
    # Only with databases (Django's rule for database checks).
    assert [m for m in run_checks() if m.id == check_id] == []
    found = [m for m in run_checks(databases=["default"]) if m.id == check_id]
    assert [m.msg.split(" is not")[0] for m in found] == [
        "Clickatell account 'legacy'",
        "Clickatell account 'platform'",
    ]
    assert "4 of its messages" in found[0].msg
    assert "2 of its messages" in found[1].msg
    assert all(not m.is_serious() for m in found)  # a warning: the work waits, it is not lost


def test_the_check_is_quiet_about_a_database_it_cannot_read(settings: Any) -> None:
    """Before migrations (or with no database): nothing reported, nothing raised."""
    without_accounts(settings)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE django_clickatell_outboundmessage RENAME TO _away")
        try:
            assert checks.check_waiting_work(databases=["default"]) == []
        finally:
            cursor.execute("ALTER TABLE _away RENAME TO django_clickatell_outboundmessage")


def test_waiting_messages_never_handed_over_can_still_be_stopped_here(
    open_work: dict[str, OutboundMessage],
    simulator: ClickatellSimulator,
    settings: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    """A removed account's held and queued messages need no request to stop: stopped here."""
    without_accounts(settings)
    run_every_periodic_path(open_work)
    simulator.reset_counts()
    never_sent = [open_work[k].pk for k in ("platform held", "legacy queued")]
    api.cancel_sms(OutboundMessage.objects.filter(pk__in=never_sent), wait=True)
    states = set(
        OutboundMessage.objects.filter(pk__in=never_sent).values_list("send_state", "cancel_state")
    )
    assert states == {(SendState.WITHDRAWN, CancelState.CANCELLED)}
    assert simulator.counts["total"] == 0
    assert all(
        describe(m).key == "stopped_here" for m in OutboundMessage.objects.filter(pk__in=never_sent)
    )
    # Once back, the requeue hands on what still waits -- and not these.
    with_accounts(settings, simulator)
    with django_capture_on_commit_callbacks(execute=True):
        dispatch.requeue_stalled()
    assert simulator.sendmsg_requests_by_recipient() == {
        open_work[k].recipient: 1 for k in ("platform queued", "legacy in doubt")
    }


def test_clickatell_cancel_says_the_stop_waits_for_its_account(
    open_work: dict[str, OutboundMessage], simulator: ClickatellSimulator, settings: Any
) -> None:
    """``--sync`` on a removed account: exit 4 ("left waiting"), and why; nothing asked."""
    without_accounts(settings)
    stop = open_work["legacy stop"]
    out = StringIO()
    with pytest.raises(CommandError, match="their account is not in") as error:
        call_command("clickatell_cancel", "--resume", "--sync", str(stop.pk), stdout=out)
    assert error.value.returncode == 4
    assert "waiting for their account 1" in out.getvalue()
    stop.refresh_from_db()
    assert (stop.cancel_state, stop.waiting_for) == (CancelState.PENDING, "account")
    assert simulator.counts["total"] == 0


def test_untried_stops_of_a_missing_account_wait_when_the_run_gives_up(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """The last try fails on another account's gateway error: the stops it could not try
    are given up -- except those whose account is missing, which wait for it."""
    with_accounts(settings, simulator)
    # The run goes by key: the default account's stop first, then the legacy account's.
    [first] = scheduled_messages(simulator, 1, send_state=SendState.SENT)
    [stop] = scheduled_messages(
        simulator, 1, send_state=SendState.SENT, account="legacy", recipient="27990000009"
    )
    pks = [first.pk, stop.pk]
    OutboundMessage.objects.filter(pk__in=pks).update(cancel_state=CancelState.PENDING)
    without_accounts(settings)
    simulator.inject("http_502", command="delmsg")
    tasks.cancel_messages.apply(args=(pks,), kwargs=LAST_TRY)
    first.refresh_from_db()
    stop.refresh_from_db()
    assert first.cancel_state == CancelState.GAVE_UP  # its own gateway failed: as before
    assert (stop.cancel_state, stop.waiting_for) == (CancelState.PENDING, "account")
    assert stop.cancel_error == ""
    assert not stop.exchanges.exists()
