"""Issue 19, item 1: "can still be stopped" is decided per message, from its account's API.

``default`` is a legacy HTTP account, ``platform`` a One API account (no stop call for
a submitted message), ``restful`` a REST account, all on the one simulator.  A One API
message already handed over used to be offered as stoppable everywhere (the filter, the
confirmation page, ``clickatell_cancel``, ``cancel_sms``) and then end "too late"; what
is still in Django is stopped here on every account.  Each test here failed before the
rule took the account into account.
"""

from __future__ import annotations

import html
import re
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client
from django.test.utils import override_settings

from django_clickatell import api, testing
from django_clickatell.models import CancellationBatch, CancelState, OutboundMessage, SendState
from django_clickatell.services.cancel_requests import preview_cancellation
from django_clickatell.simulator import ClickatellSimulator
from tests.factories import scheduled_messages
from tests.test_browser import (  # noqa: F401  (browser, page: fixtures)
    browser,
    check_and_shoot,
    choose_action,
    expect,
    log_in,
    page,
)
from tests.test_operator_view import CHANGELIST, post_action, text_of, user_messages

pytestmark = pytest.mark.django_db

PLATFORM, RESTFUL = "platform", "restful"
API_CANNOT_STOP = "too late: this account's API cannot stop a submitted message"


@pytest.fixture
def accounts(simulator: ClickatellSimulator, settings: Any) -> ClickatellSimulator:
    """A legacy default account, a One API account and a REST account, as a project has them."""
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "ACCOUNTS": {
            PLATFORM: simulator.one_api_settings(),
            RESTFUL: simulator.rest_settings(),
        },
    }
    return simulator


def one(account: str, **fields: Any) -> OutboundMessage:
    """A message of *account*; handed over (accepted, no status yet) unless *fields* say not."""
    values: dict[str, Any] = {"status": "", "send_state": SendState.SENT, **fields}
    [message] = scheduled_messages(None, 1, account=account, **values)
    return message


def mixed() -> dict[str, OutboundMessage]:
    """Every situation that decides it, on every kind of account."""
    return {
        # -- can still be stopped
        "legacy handed over": one("default"),
        "legacy scheduled 011": one("default", status="011"),
        "rest handed over": one(RESTFUL),
        "one api held": one(PLATFORM, send_state=SendState.HELD, apimsgid=None),
        "one api queued": one(PLATFORM, send_state=SendState.QUEUED, apimsgid=None),
        "one api being sent": one(PLATFORM, send_state=SendState.SENDING, apimsgid=None),
        # -- cannot: the One API has no stop call for what it was handed
        "one api handed over": one(PLATFORM),
        "one api queued 002": one(PLATFORM, status="002"),
        "one api in doubt": one(PLATFORM, send_state=SendState.UNKNOWN),
    }


STOPPABLE = {
    "legacy handed over",
    "legacy scheduled 011",
    "rest handed over",
    "one api held",
    "one api queued",
    "one api being sent",
}
ONE_API_HANDED_OVER = {"one api handed over", "one api queued 002", "one api in doubt"}


def names_of(messages: dict[str, OutboundMessage], pks: Any) -> set[str]:
    by_pk = {message.pk: name for name, message in messages.items()}
    return {by_pk[pk] for pk in pks}


# -- the one rule ------------------------------------------------------------------------------


def test_a_handed_over_one_api_message_is_not_stoppable(accounts: ClickatellSimulator) -> None:
    messages = mixed()
    selected = OutboundMessage.objects.stoppable().values_list("pk", flat=True)
    assert names_of(messages, selected) == STOPPABLE
    assert names_of(messages, OutboundMessage.objects.requestable().values_list("pk", flat=True))


def test_the_admin_filter_can_still_be_stopped_follows_the_account(
    accounts: ClickatellSimulator, admin_client: Client
) -> None:
    messages = mixed()
    shown = admin_client.get(CHANGELIST, {"stoppable": "yes"}).context["cl"].result_list
    assert names_of(messages, [m.pk for m in shown]) == STOPPABLE
    hidden = admin_client.get(CHANGELIST, {"stoppable": "no"}).context["cl"].result_list
    assert names_of(messages, [m.pk for m in hidden]) == ONE_API_HANDED_OVER


def test_the_rule_reads_the_settings_when_used(
    accounts: ClickatellSimulator, settings: Any
) -> None:
    """Evaluated lazily: the same account moved to the One API is judged by its new API."""
    [legacy] = scheduled_messages(None, 1, account=PLATFORM, status="", send_state=SendState.SENT)
    assert not OutboundMessage.objects.stoppable().exists()
    moved = {**settings.CLICKATELL["ACCOUNTS"], PLATFORM: accounts.settings()}
    with override_settings(CLICKATELL={**settings.CLICKATELL, "ACCOUNTS": moved}):
        assert list(OutboundMessage.objects.stoppable()) == [legacy]


def test_the_test_backends_scripted_capabilities_count(settings: Any) -> None:
    """``script.capabilities(remote_stop=False)`` is what a project's own tests use."""
    settings.CLICKATELL = {**settings.CLICKATELL, "BACKEND": "test"}
    [message] = api.send_sms("27999000001", "Later", deliver_in_minutes=60, wait=True)
    assert OutboundMessage.objects.stoppable().count() == 1
    testing.script.capabilities(remote_stop=False)
    assert OutboundMessage.objects.stoppable().count() == 0
    result = api.cancel_sms(OutboundMessage.objects.all(), wait=True)
    assert (result.message_pks, result.preview.api_cannot_stop) == ([], 1)
    message.refresh_from_db()
    assert message.cancel_state == CancelState.NOT_REQUESTED
    assert testing.requests["delmsg"] == testing.requests["querymsg"] == 0


def list_rows(response: Any) -> dict[int, str]:
    """The message list's rows as text, by primary key (from each row's action checkbox)."""
    content = html.unescape(response.content.decode())
    rows = {}
    for row in content.split("<tr")[1:]:
        found = re.search(r'name="_selected_action" value="(\d+)"', row)
        if found:
            text = re.sub(r"<[^>]+>", " ", row.split("</tr>")[0])
            rows[int(found.group(1))] = re.sub(r"\s+", " ", text)
    return rows


def test_the_state_column_says_what_the_account_can_do(
    accounts: ClickatellSimulator, admin_client: Client
) -> None:
    """A One API message sent now showed "Accepted … Can still be stopped"."""
    legacy, platform = one("default"), one(PLATFORM)
    rows = list_rows(admin_client.get(CHANGELIST))
    assert "Can still be stopped" in rows[legacy.pk]
    assert "Can still be stopped" not in rows[platform.pk]
    assert "this account's API cannot stop a submitted message" in rows[platform.pk]


# -- an account removed from the settings ------------------------------------------------------


def test_an_account_no_longer_configured(
    simulator: ClickatellSimulator, admin_client: Client
) -> None:
    """No credentials to ask with: handed over ones are not stoppable, what is here is."""
    gone_sent = one("gone")
    gone_held = one("gone", send_state=SendState.HELD, apimsgid=None)
    assert list(OutboundMessage.objects.stoppable()) == [gone_held]
    preview = preview_cancellation(OutboundMessage.objects.all())
    assert (preview.stop_here, preview.account_not_configured) == (1, 1)
    listed = text_of(admin_client.get(CHANGELIST))
    assert "account not configured: gone" in listed.lower()
    confirm = text_of(post_action(admin_client, "cancel_delivery", [gone_sent.pk], confirm=False))
    assert "account not configured: gone" in confirm.lower()


# -- the confirmation page, the banner ---------------------------------------------------------


def test_the_confirmation_page_shows_each_account_and_outcome(
    accounts: ClickatellSimulator, admin_client: Client
) -> None:
    messages = mixed()
    pks = [m.pk for m in messages.values()]
    response = post_action(admin_client, "cancel_delivery", pks, confirm=False)
    shown = html.unescape(text_of(response))
    content = html.unescape(response.content.decode())
    # 3 stopped here (held, queued, and the one being sent waits for its send to settle).
    assert "6 messages will be stopped." in shown
    assert "3 selected messages are skipped" in shown
    outcomes = dict(re.findall(r'data-outcome="(\w+)"><strong>(\d+)</strong>', content))
    assert outcomes == {
        "stop_here": "2",
        "after_send": "1",
        "at_clickatell": "3",
        "api_cannot_stop": "3",
    }
    assert API_CANNOT_STOP in shown
    # Each row names its account and what will happen to it.
    rows = dict(re.findall(r'data-pk="(\d+)"[^>]*>(.*?)</tr>', content, re.S))
    for name, message in messages.items():
        row = re.sub(r"<[^>]+>", " ", rows[str(message.pk)])
        assert message.account in row, name
    assert "Stopped here" in rows[str(messages["one api held"].pk)]
    assert "Asked at Clickatell" in rows[str(messages["rest handed over"].pk)]
    assert API_CANNOT_STOP in rows[str(messages["one api handed over"].pk)]


def test_the_confirmation_page_costs_the_same_for_any_size(
    accounts: ClickatellSimulator, admin_client: Client
) -> None:
    """Grouped counts, a bounded listing: the queries do not grow with the selection."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    def queries(copies: int) -> int:
        OutboundMessage.objects.all().delete()
        for _ in range(copies):
            mixed()
        first = list(OutboundMessage.objects.values_list("pk", flat=True)[:5])
        with CaptureQueriesContext(connection) as captured:
            response = post_action(
                admin_client, "cancel_delivery", first, confirm=False, select_across=True
            )
        assert f"{copies * 6} messages will be stopped." in text_of(response)
        return len(captured.captured_queries)

    assert queries(2) == queries(40)


def test_the_banner_counts_what_was_done(
    accounts: ClickatellSimulator, admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    messages = mixed()
    pks = [m.pk for m in messages.values()]
    with django_capture_on_commit_callbacks():
        response = post_action(admin_client, "cancel_delivery", pks, confirm=True)
    [(level, text)] = user_messages(response)
    text = html.unescape(text)
    assert level == "success"
    assert "4 messages queued for Clickatell" in text
    assert "2 messages stopped here" in text
    assert f"3 messages skipped: 3 {API_CANNOT_STOP}" in text
    batch = CancellationBatch.objects.get()
    assert (batch.total, batch.skipped) == (6, 3)
    for name in ONE_API_HANDED_OVER:
        messages[name].refresh_from_db()
        assert messages[name].cancel_state == CancelState.NOT_REQUESTED
        assert messages[name].batch_id is None


# -- the command and the Python API --------------------------------------------------------------


def test_clickatell_cancel_counts_only_what_it_can_stop(accounts: ClickatellSimulator) -> None:
    messages = mixed()
    out = StringIO()
    call_command("clickatell_cancel", *[str(m.pk) for m in messages.values()], stdout=out)
    output = out.getvalue()
    assert "Selected 9: 4 to cancel, 2 stopped here, 3 skipped" in output
    assert f"3 {API_CANNOT_STOP}" in output
    pending = OutboundMessage.objects.filter(cancel_state=CancelState.PENDING)
    assert names_of(messages, pending.values_list("pk", flat=True)) == {
        "legacy handed over",
        "legacy scheduled 011",
        "rest handed over",
        "one api being sent",
    }


def test_clickatell_cancel_stoppable_selects_by_account(accounts: ClickatellSimulator) -> None:
    mixed()
    out = StringIO()
    call_command("clickatell_cancel", "--stoppable", stdout=out)
    assert "Selected 6: 4 to cancel, 2 stopped here, 0 skipped" in out.getvalue()


def test_cancel_sms_says_what_it_did(accounts: ClickatellSimulator) -> None:
    messages = mixed()
    result = api.cancel_sms(OutboundMessage.objects.all(), wait=False)
    assert names_of(messages, result.message_pks) == {
        "legacy handed over",
        "legacy scheduled 011",
        "rest handed over",
        "one api being sent",
    }
    assert names_of(messages, result.stopped_here) == {"one api held", "one api queued"}
    assert result.skipped == 3
    assert result.preview.api_cannot_stop == 3
    assert (result.preview.stop_here, result.preview.queued) == (2, 4)
    assert accounts.counts["querymsg"] == accounts.counts["delmsg"] == 0


# -- in a real browser -------------------------------------------------------------------------


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_confirmation_page_in_the_browser(
    page: Any,  # noqa: F811
    live_server: Any,
    accounts: ClickatellSimulator,
) -> None:
    """A One API and a legacy account mixed: the account column and every outcome, on screen."""
    from django.contrib.auth.models import User

    User.objects.create_superuser("ops", "ops@example.com", "s3cret-pw")
    messages = {
        "legacy": one("default", status="011", recipient="27820010001"),
        "platform held": one(
            PLATFORM, send_state=SendState.HELD, apimsgid=None, recipient="27830010001"
        ),
        "platform sent": one(PLATFORM, recipient="27830010002"),
    }
    log_in(page, live_server, "ops", "s3cret-pw")
    choose_action(page, [m.recipient for m in messages.values()], "cancel_delivery")
    page.click("button[name=index]")
    expect(page.locator("#cancel-summary")).to_contain_text("2 messages will be stopped.")
    outcomes = page.locator("#cancel-outcomes")
    expect(outcomes.locator("[data-outcome=stop_here]")).to_contain_text("1 stopped here")
    expect(outcomes.locator("[data-outcome=at_clickatell]")).to_contain_text("1 asked at")
    skipped = page.locator("#cancel-skipped [data-outcome=api_cannot_stop]")
    expect(skipped).to_contain_text(f"1 {API_CANNOT_STOP}")
    to_stop = page.locator("#cancel-sample")
    expect(to_stop.locator("th", has_text="Account")).to_be_visible()
    legacy_row = to_stop.locator("tr", has_text=messages["legacy"].recipient)
    expect(legacy_row.locator(".ct-account")).to_have_text("default")
    expect(legacy_row.locator(".ct-how")).to_contain_text("Asked at Clickatell")
    held_row = to_stop.locator("tr", has_text=messages["platform held"].recipient)
    expect(held_row.locator(".ct-account")).to_contain_text(PLATFORM)
    expect(held_row.locator(".ct-how")).to_contain_text("Stopped here")
    sent_row = page.locator("#cancel-skipped-rows tr", has_text=messages["platform sent"].recipient)
    expect(sent_row.locator(".ct-account")).to_contain_text(PLATFORM)
    expect(sent_row.locator(".ct-why")).to_contain_text(API_CANNOT_STOP)
    check_and_shoot(page, "admin-confirm-accounts")
