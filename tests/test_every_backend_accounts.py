"""Issue 14: one project, one legacy and one One API account, both at once.

``default`` is a legacy HTTP account, ``platform`` a One API account, both on the one
simulator (which counts requests per API).  A real Celery worker, configured with both
accounts, sends and stops; the operator cancels a mixed selection from the admin --
through the Django test client, then in a real Chromium.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from django_clickatell import api
from django_clickatell.models import CancelState, OutboundMessage, SendState
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import WorkerProcess, wait_until
from tests.every_backend import assert_no_false_stop, settled, worker_on_own_queue
from tests.test_browser import (  # noqa: F401  (browser, page: fixtures)
    MESSAGES,
    assert_row_tells,
    browser,
    choose_action,
    expect,
    log_in,
    page,
    rows_by_recipient,
)
from tests.test_operator_view import post_action

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

PLATFORM = "platform"


@pytest.fixture(scope="module")
def accounts_worker(
    gateway: ClickatellSimulator, django_db_setup: Any, django_db_blocker: Any
) -> Iterator[WorkerProcess]:
    extra = {"ACCOUNTS": {PLATFORM: gateway.one_api_settings()}}
    with worker_on_own_queue(gateway, django_db_blocker, "two-accounts", extra) as worker:
        yield worker


@pytest.fixture
def two_accounts(simulator: ClickatellSimulator, settings: Any) -> Iterator[ClickatellSimulator]:
    simulator.one_api.reset()
    accounts = {PLATFORM: simulator.one_api_settings()}
    settings.CLICKATELL = {**settings.CLICKATELL, "ACCOUNTS": accounts}
    yield simulator
    simulator.one_api.reset()
    assert_no_false_stop()


def _send_in_thread(numbers: list[str], text: str, **options: Any) -> threading.Thread:
    def send() -> None:
        try:
            api.send_sms(numbers, text, **options)
        finally:
            connection.close()

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def _all_sent(expected_sent: int, expected_held: int) -> bool:
    messages = OutboundMessage.objects
    return (
        messages.filter(send_state=SendState.SENT).count() == expected_sent
        and messages.filter(send_state=SendState.HELD).count() == expected_held
    )


def numbers(prefix: str, count: int) -> list[str]:
    return [f"{prefix}{n:04d}" for n in range(count)]


def test_a_legacy_and_a_one_api_account_at_once(
    two_accounts: ClickatellSimulator, accounts_worker: WorkerProcess, admin_user: Any
) -> None:
    simulator = two_accounts
    legacy_now, platform_now = numbers("2782000", 20), numbers("2783000", 20)
    legacy_later, platform_later = numbers("2782100", 5), numbers("2783100", 5)
    threads = [
        _send_in_thread(legacy_now, "legacy now"),
        _send_in_thread(platform_now, "platform now", account=PLATFORM),
        _send_in_thread(legacy_later, "legacy later", deliver_in_minutes=120),
        _send_in_thread(platform_later, "platform later", deliver_in_minutes=120, account=PLATFORM),
    ]
    for thread in threads:
        thread.join()
    assert wait_until(lambda: _all_sent(45, 5), timeout=30), list(
        OutboundMessage.objects.exclude(send_state=SendState.SENT).values_list(
            "recipient", "account", "send_state", "send_error", "scheduled_for", "release_at"
        )
    )
    by_number = {m.recipient: m for m in OutboundMessage.objects.all()}
    legacy = [by_number[n] for n in legacy_now + legacy_later]
    platform = [by_number[n] for n in platform_now + platform_later]
    assert {m.account for m in legacy} == {"default"}
    assert {m.account for m in platform} == {PLATFORM}
    # Each message went through its own account's API, once.
    v1_ids = simulator.one_api.sent
    assert all(m.apimsgid and m.apimsgid not in v1_ids for m in legacy)
    assert all(m.apimsgid in v1_ids for m in platform if m.send_state == SendState.SENT)
    assert [by_number[n].send_state for n in platform_later] == [SendState.HELD] * 5
    assert simulator.sendmsg_requests_by_recipient() == {
        n: 1 for n in legacy_now + legacy_later + platform_now
    }
    assert simulator.duplicate_sends() == []
    assert simulator.counts["auth"] == 1  # one session for the legacy account, two processes
    assert simulator.api_requests["rest"] == 0
    # 20 + 5 sends and one login at the legacy API; the 20 at the One API in one POST
    # (SEND_BATCH_SIZE 50), the held ones waiting.
    assert simulator.api_requests == {"http": 26, "v1": 1}
    assert (simulator.counts["sendmsg"], simulator.counts["total"]) == (26, 27)

    # A mixed selection: both accounts, scheduled/held and sent.
    simulator.reset_counts()
    selection = {
        "legacy scheduled": [by_number[n] for n in legacy_later],
        "legacy sent": [by_number[n] for n in legacy_now[:3]],
        "platform held": [by_number[n] for n in platform_later],
        "platform sent": [by_number[n] for n in platform_now[:3]],
    }
    pks = [m.pk for group in selection.values() for m in group]
    # The platform messages already handed over are not taken on: the One API cannot stop them.
    taken = [m.pk for name, group in selection.items() if name != "platform sent" for m in group]
    client = Client()
    client.force_login(admin_user)
    assert post_action(client, "cancel_delivery", pks, confirm=True).status_code == 200
    assert wait_until(lambda: settled(taken), timeout=60), accounts_worker.log_path.read_text()[
        -3000:
    ]
    for group in selection.values():
        for message in group:
            message.refresh_from_db()
    for message in selection["legacy scheduled"]:
        assert (message.cancel_state, message.status) == (CancelState.CANCELLED, "006")
        assert message.exchanges.filter(command="delmsg", status="006").count() == 1
    for message in selection["legacy sent"]:
        assert message.cancel_state == CancelState.TOO_LATE
        assert message.status in ("003", "004")  # what Clickatell answered to the stop
    for message in selection["platform held"]:
        assert (message.send_state, message.cancel_state) == (
            SendState.WITHDRAWN,
            CancelState.CANCELLED,
        )
        assert not message.exchanges.exists()
    for message in selection["platform sent"]:
        assert (message.cancel_state, message.batch_id) == (CancelState.NOT_REQUESTED, None)
        assert not message.exchanges.filter(command__in=["delmsg", "querymsg"]).exists()
    # The stops went to the legacy API only, one per legacy message; the One API was asked
    # nothing (its handed-over messages were skipped, the held ones stopped here), nothing
    # was sent again.
    assert simulator.executed["delmsg"] == 8
    assert simulator.counts["sendmsg"] == 0
    assert simulator.counts["querymsg"] == 0
    assert simulator.counts["auth"] == 0  # the session of the sends still in use
    # The 8 stops and the balances the admin page shows (one per account, each from its
    # own API).
    requests = simulator.api_requests
    assert requests["http"] + requests["v1"] == 8 + simulator.counts["getbalance"]
    assert requests["v1"] <= 1
    assert requests["rest"] == 0


@pytest.mark.browser
def test_operator_stops_a_mixed_selection_in_the_browser(
    page: Any,  # noqa: F811
    live_server: Any,
    two_accounts: ClickatellSimulator,
    accounts_worker: WorkerProcess,
) -> None:
    simulator = two_accounts
    User.objects.create_superuser("ops", "ops@example.com", "s3cret-pw")
    [legacy_scheduled] = api.send_sms("27820010001", "legacy", deliver_in_minutes=120, wait=True)
    [legacy_delivered] = api.send_sms("27820010002", "legacy", wait=True)
    [platform_held] = api.send_sms(
        "27830010001", "platform", deliver_in_minutes=120, account=PLATFORM, wait=True
    )
    [platform_sent] = api.send_sms("27830010002", "platform", account=PLATFORM, wait=True)
    legacy_delivered.refresh_from_db()
    with simulator.lock:
        at_gateway = simulator.messages[str(legacy_delivered.apimsgid)]
        at_gateway.status, at_gateway.delivered_at = "004", None
    four = [legacy_scheduled, legacy_delivered, platform_held, platform_sent]

    log_in(page, live_server, "ops", "s3cret-pw")
    choose_action(page, [m.recipient for m in four], "cancel_delivery")
    page.click("button[name=index]")
    # Each row names its account; the handed-over One API one is skipped, and says why.
    skipped = page.locator("#cancel-skipped-rows tr[data-reason=api_cannot_stop]")
    expect(skipped).to_have_count(1)
    expect(skipped).to_contain_text(PLATFORM)
    page.click("#confirm-cancel")
    pks = [m.pk for m in (legacy_scheduled, legacy_delivered, platform_held)]
    assert wait_until(lambda: settled(pks), timeout=60), accounts_worker.log_path.read_text()[
        -3000:
    ]
    page.goto(f"{live_server.url}{MESSAGES}")
    rows = rows_by_recipient(page)
    # Stopped at Clickatell / stopped here / too late, each with its reason, per account.
    assert_row_tells(rows[legacy_scheduled.recipient], "Stopped", reason="Clickatell answered 006")
    assert_row_tells(
        rows[legacy_delivered.recipient],
        "Too late (004)",
        reason="Clickatell reported status 004",
        hint="cannot be stopped",
    )
    assert_row_tells(
        rows[platform_held.recipient],
        "Stopped before sending",
        reason="Never handed to Clickatell: stopped here, no request needed.",
    )
    assert_row_tells(
        rows[platform_sent.recipient],
        re.compile(r"^(Accepted|Delivered|Handed on)"),  # not taken on: nothing was asked
    )
    for message, account in ((legacy_scheduled, "legacy"), (platform_sent, "platform")):
        expect(rows[message.recipient]).to_contain_text(account)
    assert simulator.executed["delmsg"] == 2  # the legacy ones only
    assert simulator.api_requests["rest"] == 0
