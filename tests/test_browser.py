"""The admin action end to end in a real headless Chromium, with a real Celery worker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User

from django_clickatell.models import CancelState, OutboundMessage
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import ARTIFACTS, WorkerProcess, wait_until
from tests.factories import scheduled_messages

pytestmark = [pytest.mark.browser, pytest.mark.worker, pytest.mark.django_db(transaction=True)]

CHROMIUM = os.environ.get("CLICKATELL_CHROMIUM", "/usr/bin/chromium")
#: `make screenshots` points this at docs/_static so the docs show the real admin.
SHOTS = Path(os.environ.get("CLICKATELL_SCREENSHOT_DIR", str(ARTIFACTS)))
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
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def expect(locator: Any) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def log_in(page: Any, live_server: Any, username: str, password: str) -> None:
    page.goto(f"{live_server.url}/admin/login/?next=/admin/django_clickatell/outboundmessage/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_url("**/outboundmessage/")


def test_operator_cancels_from_the_admin(
    page: Any,
    live_server: Any,
    simulator: ClickatellSimulator,
    celery_worker_process: WorkerProcess,
) -> None:
    User.objects.create_superuser("ops", "ops@example.com", "s3cret-pw")
    scheduled_messages(simulator, 5)
    scheduled_messages(simulator, 2, status="004")
    log_in(page, live_server, "ops", "s3cret-pw")
    SHOTS.mkdir(parents=True, exist_ok=True)

    # Filter to the scheduled ones (status 011) and select them all.
    page.click("#changelist-filter a:has-text('011')")
    expect(page.locator("#result_list tbody tr")).to_have_count(5)
    page.check("#action-toggle")
    page.select_option("select[name=action]", "cancel_delivery")
    page.screenshot(path=str(SHOTS / "admin-select.png"))
    page.click("button[name=index]")

    expect(page.locator("#cancel-summary")).to_contain_text(
        "5 messages will be stopped at Clickatell."
    )
    page.screenshot(path=str(SHOTS / "admin-confirm.png"))
    page.click("#confirm-cancel")

    expect(page.locator(".messagelist .success")).to_contain_text(
        "Cancellation of 5 messages queued."
    )

    assert wait_until(
        lambda: OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count() == 5,
        timeout=60,
    )
    page.goto(f"{live_server.url}/admin/django_clickatell/outboundmessage/?status__exact=006")
    expect(page.locator("#result_list tbody tr")).to_have_count(5)
    expect(page.locator("#result_list")).to_contain_text("006 – User cancelled message delivery")
    page.screenshot(path=str(SHOTS / "admin-cancelled.png"))
    assert simulator.executed["delmsg"] == 5


def test_operator_without_permission_sees_no_action(page: Any, live_server: Any) -> None:
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("viewer", password="s3cret-pw", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_outboundmessage"))
    scheduled_messages(None, 2)
    log_in(page, live_server, "viewer", "s3cret-pw")
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    expect(page.locator("option[value=cancel_delivery]")).to_have_count(0)
