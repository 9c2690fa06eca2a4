"""End to end through the public API with ``BACKEND = "test"``: what a user's test suite does.

Written as if the services built their backend with ``get_backend()``; until
they do (the services still speak to the HTTP client), every test here fails
and is marked so -- strictly, so that the marker cannot outlive the switch.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from django_clickatell import api, testing
from django_clickatell.exceptions import GatewayTimeout
from django_clickatell.models import CancelState, OutboundMessage, SendState, Via
from django_clickatell.services.sending import send_messages

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def test_backend(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "BACKEND": "test"}


def test_send_sms_lands_in_the_outbox() -> None:
    messages = api.send_sms(["27999000001", "27999000002"], "Hello", sender="Acme", wait=True)
    assert {m.send_state for m in messages} == {SendState.SENT}
    assert [(m.to, m.text, m.sender) for m in testing.outbox] == [
        ("27999000001", "Hello", "Acme"),
        ("27999000002", "Hello", "Acme"),
    ]
    assert {(m.apimsgid, m.climsgid) for m in messages} == {
        (sms.apimsgid, sms.climsgid) for sms in testing.outbox
    }


def test_unicode_text_arrives_as_written() -> None:
    api.send_sms("27999000001", "Grüße ☃ 你好", wait=True)
    assert [sms.text for sms in testing.outbox] == ["Grüße ☃ 你好"]


def test_a_scheduled_message_is_stopped_at_the_gateway() -> None:
    [message] = api.send_sms("27999000001", "Later", deliver_in_minutes=60, wait=True)
    [sent] = testing.outbox
    assert sent.options["deliv_time"] == 60
    assert testing.status_of(message) == "011"
    api.cancel_sms(OutboundMessage.objects.all(), wait=True)
    message.refresh_from_db()
    assert (message.cancel_state, message.status) == (CancelState.CANCELLED, "006")
    assert testing.status_of(message) == "006"
    assert testing.requests["delmsg"] == 1


def test_a_delivered_message_cannot_be_stopped() -> None:
    [message] = api.send_sms("27999000001", "Later", deliver_in_minutes=60, wait=True)
    testing.set_status(message, "004")
    api.cancel_sms(OutboundMessage.objects.all(), wait=True)
    message.refresh_from_db()
    assert message.status == "004"
    assert message.cancel_state != CancelState.CANCELLED


def test_refresh_reads_the_scripted_status() -> None:
    [message] = api.send_sms("27999000001", "Hello", wait=True)
    testing.set_status(message, "003")
    report = api.refresh_sms(OutboundMessage.objects.all(), wait=True)
    assert report is not None
    assert report.changed == [message.pk]
    message.refresh_from_db()
    assert message.status == "003"


def test_a_callback_reaches_the_sent_message() -> None:
    [message] = api.send_sms("27999000001", "Hello", wait=True)
    assert testing.deliver_callback(message, "004", charge="0.3") == "applied"
    message.refresh_from_db()
    assert (message.status, message.charge) == ("004", Decimal("0.3"))


def test_a_refused_recipient_is_recorded_rejected() -> None:
    testing.script.refuse_next("sendmsg", code=121)
    messages = api.send_sms(["27999000001", "27999000002"], "Hello", wait=True)
    states = sorted(m.send_state for m in messages)
    assert states == sorted([SendState.REJECTED, SendState.SENT])
    [rejected] = [m for m in messages if m.send_state == SendState.REJECTED]
    assert "121" in rejected.send_error
    assert rejected.apimsgid is None
    assert len(testing.outbox) == 1


def test_a_send_in_doubt_is_verified_not_sent_twice() -> None:
    testing.script.fail_next(
        "sendmsg", error=GatewayTimeout("sendmsg", "read timed out"), carried_out=True
    )
    [message] = api.send_sms("27999000001", "Once", wait=True)
    send_messages([message.pk], via=Via.API)  # the retry a worker makes
    message.refresh_from_db()
    [sent] = testing.outbox
    assert (message.send_state, message.apimsgid) == (SendState.SENT, sent.apimsgid)
    assert (testing.requests["sendmsg"], testing.requests["querymsg"]) == (1, 1)
    assert testing.duplicates() == []


def test_the_balance_is_the_scripted_one() -> None:
    testing.script.balance("12.5")
    assert api.get_balance(cached=False) == Decimal("12.5")


def test_without_remote_stop_a_sent_message_is_not_shown_stopped() -> None:
    testing.script.capabilities(remote_stop=False)
    [message] = api.send_sms("27999000001", "Later", deliver_in_minutes=60, wait=True)
    assert message.send_state == SendState.SENT
    api.cancel_sms(OutboundMessage.objects.all(), wait=True)
    message.refresh_from_db()
    assert message.status != "006"
    assert testing.requests["delmsg"] == 0
    assert testing.status_of(message) == "011"
