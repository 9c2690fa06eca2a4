"""The operator's story end to end in a real headless Chromium, with a real Celery worker.

An operator who has never seen the app sends ten messages, stops seven of them
from the admin and reads, from the list alone, which were stopped, which were
too late and why, and what to do about each failure.  On the way the test
takes the screenshots the docs show (``make screenshots`` writes them to
``docs/_static``) and checks every page at 1280x800: no column or cell is cut
off, nothing scrolls sideways, every row's reason is on screen.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from django_clickatell.api import send_sms
from django_clickatell.models import CancellationBatch, CancelState, OutboundMessage, SendState
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import ARTIFACTS, WorkerProcess, wait_until
from tests.factories import scheduled_messages

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CLICKATELL_CHROMIUM", "/usr/bin/chromium")
#: `make screenshots` points this at docs/_static so the docs show the real admin.
SHOTS = Path(os.environ.get("CLICKATELL_SCREENSHOT_DIR", str(ARTIFACTS)))
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
MESSAGES = "/admin/django_clickatell/outboundmessage/"
SETTLED_STOPS = (CancelState.CANCELLED, CancelState.TOO_LATE, CancelState.REFUSED)

#: Everything on a page that must fit: the list's cells, the confirmation pages' rows, the
#: message page's fields and exchange log, the counts above the list, the filter column.
_CLIPPING = """
() => {
  const width = window.innerWidth;
  const problems = [];
  const page = document.documentElement;
  if (page.scrollWidth > width) problems.push(`the page scrolls sideways: ${page.scrollWidth}px`);
  const selector = [
    '#result_list th', '#result_list td', 'table.ct-rows th', 'table.ct-rows td',
    '.inline-group th', '.inline-group td', '.form-row', '.readonly',
    '#changelist-filter', '#clickatell-state-counts li', '.messagelist li',
  ].join(', ');
  for (const cell of document.querySelectorAll(selector)) {
    const box = cell.getBoundingClientRect();
    if (!box.width) continue;
    const name = `${cell.className || cell.tagName} "${cell.textContent.trim().slice(0, 40)}"`;
    if (box.left < 0 || box.right > width + 0.5) {
      const where = `${Math.round(box.left)}..${Math.round(box.right)}`;
      problems.push(`${name} is outside the window (${where})`);
    }
    if (cell.scrollWidth > cell.clientWidth + 1) problems.push(`${name} is wider than its cell`);
  }
  for (const box of document.querySelectorAll('.results, .tabular, fieldset, #content')) {
    if (box.scrollWidth > box.clientWidth + 1) problems.push(`${box.className || box.id} scrolls`);
  }
  return problems;
}
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium is missing at {CHROMIUM}: run `make browser`.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def log_in(page: Any, live_server: Any, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next={MESSAGES}")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url(f"**{MESSAGES}")


def check_and_shoot(page: Any, name: str) -> None:
    """Nothing cut off at 1280x800; then the screenshot the docs show (the whole page)."""
    problems = page.evaluate(_CLIPPING)
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
    assert not problems, f"{name}: {problems}"


def rows_by_recipient(page: Any) -> dict[str, Any]:
    rows = page.locator("#result_list tbody tr")
    return {
        rows.nth(i)
        .locator("th.field-recipient, td.field-recipient")
        .inner_text()
        .strip(): rows.nth(i)
        for i in range(rows.count())
    }


def assert_row_tells(
    row: Any, state: str | re.Pattern[str], *, reason: str = "", hint: str = ""
) -> None:
    """The row's state, its reason and its next step are on screen, not cut off."""
    expect(row.locator(".ct-state")).to_have_text(state)
    explained = row.locator(".ct-reason")
    expect(explained).to_be_visible()
    box = explained.bounding_box()
    assert box is not None
    assert box["x"] >= 0, box
    assert box["x"] + box["width"] <= VIEWPORT["width"], box
    if reason:
        expect(explained).to_contain_text(reason)
    if hint:
        expect(row.locator(".ct-hint")).to_contain_text(hint)


def choose_action(page: Any, recipients: list[str], action: str) -> None:
    rows = rows_by_recipient(page)
    for recipient in recipients:
        rows[recipient].locator("input.action-select").check()
    page.select_option("select[name=action]", action)


def test_operator_cancels_seven_of_ten_and_reads_the_list(
    page: Any,
    live_server: Any,
    simulator: ClickatellSimulator,
    celery_worker_process: WorkerProcess,
) -> None:
    User.objects.create_superuser("ops", "ops@example.com", "s3cret-pw")
    # Ten appointment reminders; Clickatell refuses the first for lack of credit.
    simulator.inject("body", command="sendmsg", body="ERR: 301, No credit left")
    numbers = [f"2783555{n:04d}" for n in range(10)]
    send_sms(numbers, "Reminder: your appointment is on Tuesday at 10:00.", deliver_in_minutes=120)
    assert wait_until(
        lambda: (
            OutboundMessage.objects.filter(send_state=SendState.QUEUED).count() == 0
            and OutboundMessage.objects.filter(send_state=SendState.SENDING).count() == 0
        ),
        timeout=60,
    )
    sent = list(OutboundMessage.objects.filter(send_state=SendState.SENT).order_by("pk"))
    [rejected] = OutboundMessage.objects.filter(send_state=SendState.REJECTED)
    assert len(sent) == 9
    assert {m.status for m in sent} == {""}  # accepted; no status fetched yet

    log_in(page, live_server, "ops", "s3cret-pw")
    assert_row_tells(
        rows_by_recipient(page)[rejected.recipient],
        "Rejected (ERR 301)",
        reason="No credit left",
        hint="Top up the account, then choose “Send again”",
    )

    # The first stop meets a gateway answering HTTP 502 until the retries run out.
    simulator.inject("http_502", command="delmsg", times=1000)
    page.click("#changelist-filter a:has-text('Can still be stopped')")
    expect(page.locator("#result_list tbody tr")).to_have_count(9)
    first = sent[0]
    choose_action(page, [first.recipient], "cancel_delivery")
    page.click("button[name=index]")
    expect(page.locator("#cancel-summary")).to_contain_text("1 message will be stopped.")
    page.click("#confirm-cancel")
    expect(page.locator(".messagelist li")).to_have_count(1)
    assert wait_until(
        lambda: OutboundMessage.objects.get(pk=first.pk).cancel_state == CancelState.GAVE_UP,
        timeout=90,
    )
    simulator.clear_faults()

    # Meanwhile at Clickatell: two leave for the network, one is not known there.
    handed_on, unknown_there, stoppable = sent[1:3], sent[3], sent[4:7]
    for message in handed_on:
        simulated = simulator.messages[str(message.apimsgid)]
        simulated.status, simulated.deliver_at = "003", None
    simulator.messages.pop(str(unknown_there.apimsgid))

    # Six more, and the rejected one by mistake: the confirmation says why it is skipped.
    page.goto(f"{live_server.url}{MESSAGES}?stoppable=yes")
    expect(page.locator("#result_list tbody tr")).to_have_count(9)  # a stop that gave up, too
    page.goto(f"{live_server.url}{MESSAGES}")
    six = [m.recipient for m in (*handed_on, unknown_there, *stoppable)]
    choose_action(page, [*six, rejected.recipient], "cancel_delivery")
    check_and_shoot(page, "admin-select")
    page.click("button[name=index]")
    expect(page.locator("#cancel-summary")).to_contain_text("6 messages will be stopped.")
    expect(page.locator("#cancel-skipped-rows tbody tr")).to_have_count(1)
    expect(page.locator("#cancel-skipped-rows")).to_contain_text("there is nothing to stop")
    check_and_shoot(page, "admin-confirm")
    page.click("#confirm-cancel")
    expect(page.locator(".messagelist .success")).to_contain_text(
        "6 messages queued for Clickatell."
    )
    expect(page.locator(".messagelist li")).to_have_count(1)
    assert wait_until(
        lambda: OutboundMessage.objects.filter(cancel_state__in=SETTLED_STOPS).count() == 6,
        timeout=60,
    )

    # From the list alone: what was stopped, what was too late and why, what to do.
    page.goto(f"{live_server.url}{MESSAGES}")
    rows = rows_by_recipient(page)
    for message in stoppable:
        assert_row_tells(rows[message.recipient], "Stopped", reason="Clickatell answered 006")
    for message in handed_on:
        assert_row_tells(
            rows[message.recipient],
            "Too late (003)",
            reason="Delivered to gateway",
            hint="cannot be stopped",
        )
    assert_row_tells(
        rows[unknown_there.recipient],
        "Refused (ERR 103)",
        reason="Unknown API message ID",
        hint="Clickatell does not know this id",
    )
    assert_row_tells(
        rows[first.recipient], "Gave up", reason="HTTP 502", hint="“Retry failed stops”"
    )
    assert_row_tells(rows[rejected.recipient], "Rejected (ERR 301)", hint="“Send again”")
    for message in sent[7:]:
        assert_row_tells(rows[message.recipient], "Accepted", hint="Can still be stopped")
    counts = page.locator("#clickatell-state-counts")
    for text in ("Stopped: 3", "Too late: 2", "Refused: 1", "Gave up: 1", "Rejected: 1"):
        expect(counts).to_contain_text(text)
    check_and_shoot(page, "admin-list")

    # The message page: the exchanges say what was recorded.
    rows[handed_on[0].recipient].locator("th.field-recipient a").click()
    expect(page.locator(".inline-group")).to_contain_text(f"Accepted, id: {handed_on[0].apimsgid}")
    expect(page.locator(".inline-group")).to_contain_text("Status: 003 – Delivered to gateway")
    check_and_shoot(page, "admin-message")

    # The batch page: progress, rate, what is left.
    batch = CancellationBatch.objects.order_by("-pk").first()
    assert batch is not None
    page.goto(f"{live_server.url}/admin/django_clickatell/cancellationbatch/{batch.pk}/change/")
    expect(page.locator("#batch-progress")).to_contain_text("6 of 6 settled (100%)")
    expect(page.locator("#batch-progress")).to_contain_text("of the request; nothing left.")
    check_and_shoot(page, "admin-batch")
    page.goto(f"{live_server.url}/admin/django_clickatell/cancellationbatch/")
    check_and_shoot(page, "admin-batches")

    # The gave-up stop, retried once the gateway is back.
    page.goto(f"{live_server.url}{MESSAGES}?state=stop_gave_up")
    page.check("#action-toggle")
    page.select_option("select[name=action]", "retry_stops")
    page.click("button[name=index]")
    page.click("#confirm-cancel")
    assert wait_until(
        lambda: OutboundMessage.objects.get(pk=first.pk).cancel_state == CancelState.CANCELLED,
        timeout=60,
    )
    assert simulator.status_of(str(first.apimsgid)) == "006"


def test_operator_without_permission_sees_no_action(page: Any, live_server: Any) -> None:
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("viewer", password="s3cret-pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_outboundmessage"))
    scheduled_messages(None, 2)
    log_in(page, live_server, "viewer", "s3cret-pw")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    expect(page.locator("option[value=cancel_delivery]")).to_have_count(0)
