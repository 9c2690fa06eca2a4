"""Issue 22, items 2 and 4: the campaign stop, in a real headless Chromium (Debian's).

An operator filters the message list to a tag, finds "Stop a campaign" with the tag
already filled in, reads on the confirmation page what will happen per account (stopped
here, asked at Clickatell, skipped and why), confirms, and each still stoppable message
of the campaign is stopped once -- the message of another campaign and the one already
delivered are left alone.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.utils import timezone

from django_clickatell.api import send_sms
from django_clickatell.models import CancelState, OutboundMessage, SendState
from django_clickatell.simulator import ClickatellSimulator
from tests.factories import scheduled_messages
from tests.test_browser import browser, check_and_shoot, expect, log_in, page

__all__ = ["browser", "page"]  # the fixtures, shared with tests/test_browser.py

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_operator_stops_a_campaign_by_its_tag(
    page: Any, live_server: Any, simulator: ClickatellSimulator, settings: Any
) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "USE_CELERY": False}
    user = User.objects.create_user("ops", password="s3cret-pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_outboundmessage", "cancel_outboundmessage"])
    )
    later = timezone.now() + timedelta(days=3)
    at_clickatell = send_sms(
        ["27990004001", "27990004002"], "Wrong promo", tags=["promo-dec"], deliver_in_minutes=120
    )
    held = scheduled_messages(
        None,
        1,
        apimsgid=None,
        status="",
        send_state=SendState.HELD,
        recipient="27990004003",
        scheduled_for=later,
        release_at=later,
    )
    held[0].tags.create(tag="promo-dec")
    other = send_sms("27990004004", "Other", tags=["newsletter"], deliver_in_minutes=120)
    [delivered] = scheduled_messages(simulator, 1, status="004", recipient="27990004005")
    delivered.tags.create(tag="promo-dec")
    sent = OutboundMessage.objects.filter(pk__in=[m.pk for m in at_clickatell + other])
    assert set(sent.values_list("send_state", flat=True)) == {SendState.SENT}

    log_in(page, live_server, "ops", "s3cret-pw")
    page.click("#changelist-filter a[href='?tag=promo-dec']")
    expect(page.locator("#result_list tbody tr")).to_have_count(4)
    expect(page.locator("#campaign-tag")).to_have_value("promo-dec")
    page.click("#campaign-stop-button")

    expect(page.locator("#campaign-scope")).to_contain_text(
        "Everything still stoppable of the campaign tag “promo-dec”"
    )
    expect(page.locator("#campaign-scope")).to_contain_text("pause the account first")
    row = page.locator("#campaign-accounts tr[data-account='default']")
    expect(row.locator("[data-count='total']")).to_have_text("4")
    expect(row.locator("[data-outcome='at_clickatell']")).to_contain_text("2")
    expect(row.locator("[data-outcome='stop_here']")).to_contain_text("1")
    expect(row.locator("[data-reason='final']")).to_contain_text("1")
    expect(page.locator("#cancel-summary")).to_contain_text("3 messages will be stopped.")
    check_and_shoot(page, "admin-campaign-stop-confirmation")
    page.click("#confirm-cancel")

    expect(page.locator(".messagelist")).to_contain_text(
        "Campaign tag “promo-dec”: 3 messages taken on (stopped, or being stopped), 1 skipped."
    )
    expect(page.locator(".messagelist")).to_contain_text("recorded after the confirmation page")
    states = dict(OutboundMessage.objects.values_list("pk", "cancel_state"))
    assert {states[m.pk] for m in at_clickatell + held} == {CancelState.CANCELLED}
    assert states[other[0].pk] == CancelState.NOT_REQUESTED
    assert states[delivered.pk] == CancelState.NOT_REQUESTED
    assert simulator.executed["delmsg"] == 2
    check_and_shoot(page, "admin-campaign-stopped")
