"""Issue 22, item 4: the pause, in a real headless Chromium (Debian's, never downloaded).

An operator with the ``pause_account`` permission finds the control from the message list,
reads what pausing will do, pauses the account with a reason, and then sees the banner on
every page -- the message list, a waiting message's page -- and the message's row saying
who paused it; resuming takes the banner away and sends the message once.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from django_clickatell.api import send_sms
from django_clickatell.models import OutboundMessage, SendState, WaitingFor
from django_clickatell.simulator import ClickatellSimulator
from tests.test_browser import MESSAGES, browser, check_and_shoot, expect, log_in, page

__all__ = ["browser", "page"]  # the fixtures, shared with tests/test_browser.py

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_operator_pauses_sees_the_banner_everywhere_and_resumes(
    page: Any, live_server: Any, simulator: ClickatellSimulator, settings: Any
) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "USE_CELERY": False}
    user = User.objects.create_user("ops", password="s3cret-pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            codename__in=["view_outboundmessage", "pause_account", "view_accountpause"]
        )
    )
    log_in(page, live_server, "ops", "s3cret-pw")
    expect(page.locator("#clickatell-pause-banner")).to_have_count(0)

    # From the message list to the pause page, and its confirmation.
    page.click("#clickatell-pause-link a")
    page.click("#pause-default")
    explanation = page.locator("#pause-explanation")
    expect(explanation).to_contain_text("stops everything it would send")
    expect(explanation).to_contain_text("pausing never delays a cancellation")
    check_and_shoot(page, "admin-pause-confirmation")
    page.fill("#pause-reason", "wrong promo text")
    page.click("#confirm-pause")
    banner = page.locator("#clickatell-pause-banner")
    expect(banner).to_contain_text("Account “default” is paused")
    expect(banner).to_contain_text("by ops at")
    expect(banner).to_contain_text("(wrong promo text)")

    # A message sent meanwhile waits, and every page says why.
    [message] = send_sms("27990003001", "waits for the pause")
    assert OutboundMessage.objects.get(pk=message.pk).waiting_for == WaitingFor.PAUSED
    page.goto(f"{live_server.url}{MESSAGES}")
    expect(page.locator("#clickatell-pause-banner")).to_contain_text("stops still go out")
    expect(page.locator("#result_list")).to_contain_text(
        "Waiting: account “default” paused by ops at"
    )
    check_and_shoot(page, "admin-paused-list")
    page.goto(f"{live_server.url}{MESSAGES}{message.pk}/change/")
    expect(page.locator("#clickatell-pause-banner")).to_contain_text("Account “default”")
    assert simulator.sendmsg_requests_by_recipient() == {}

    # Resume from the banner: confirmation, then the banner is gone and the message sent once.
    page.click("#clickatell-pause-banner a")
    page.click("#resume-default")
    expect(page.locator("#resume-explanation")).to_contain_text("1 message waiting")
    page.click("#confirm-resume")
    expect(page.locator(".messagelist")).to_contain_text("Account “default” is resumed")
    expect(page.locator("#clickatell-pause-banner")).to_have_count(0)
    assert OutboundMessage.objects.get(pk=message.pk).send_state == SendState.SENT
    assert simulator.sendmsg_requests_by_recipient() == {"27990003001": 1}
