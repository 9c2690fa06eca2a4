"""Sending (sendmsg) against the simulator: one request each, rejections, unicode, no resends."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from django_clickatell.api import InvalidMessage, send_sms
from django_clickatell.models import GatewayExchange, OutboundMessage, SendState, Via
from django_clickatell.services.sending import send_messages
from django_clickatell.simulator import ClickatellSimulator

pytestmark = pytest.mark.django_db


def test_scheduled_single_recipient(simulator: ClickatellSimulator) -> None:
    [message] = send_sms(
        "+27 999 000 001",
        "Appointment at 10:00",
        sender="Clinic",
        deliver_in_minutes=120,
        callback=3,
        wait=True,
    )
    assert message.send_state == SendState.SENT
    assert message.recipient == "27999000001"
    assert message.apimsgid in simulator.messages
    at_gateway = simulator.messages[str(message.apimsgid)]
    assert (at_gateway.status, at_gateway.climsgid, at_gateway.callback) == (
        "011",
        message.climsgid,
        3,
    )
    assert message.scheduled_for is not None
    assert message.scheduled_for - timezone.now() > timedelta(minutes=119)
    assert message.exchanges.get().command == "sendmsg"


def test_climsgids_are_unique_and_generated() -> None:
    from django_clickatell.services.composing import create_messages

    messages = create_messages(["27999000001", "27999000002"], "hi")
    assert len({m.climsgid for m in messages}) == 2
    assert all(len(m.climsgid) == 32 for m in messages)


def test_each_recipient_is_one_request_with_its_own_climsgid(
    simulator: ClickatellSimulator,
) -> None:
    """One climsgid per request, so every send in doubt can be asked about on its own."""
    numbers = [f"2799900000{n}" for n in range(5)]
    messages = send_sms(numbers, "Hello", wait=True)
    assert simulator.counts["sendmsg"] == 5
    assert {m.send_state for m in messages} == {SendState.SENT}
    at_gateway = {simulator.messages[str(m.apimsgid)].climsgid: m for m in messages}
    assert set(at_gateway) == {m.climsgid for m in messages}
    assert {simulator.messages[str(m.apimsgid)].to for m in messages} == set(numbers)


def test_a_rejected_recipient_does_not_affect_the_others(simulator: ClickatellSimulator) -> None:
    numbers = ["27999000001", "27999000002", "27999000003"]
    simulator.inject(
        "body", command="sendmsg", body="ERR: 121, Destination mobile number blocked", times=1
    )
    messages = send_sms(numbers, "Hello", wait=True)
    blocked, *others = sorted(messages, key=lambda m: m.pk)
    assert (blocked.send_state, blocked.apimsgid) == (SendState.REJECTED, None)
    assert "ERR 121" in blocked.send_error
    assert blocked.exchanges.get().error_code == 121
    assert {m.send_state for m in others} == {SendState.SENT}


def test_whole_request_refused(simulator: ClickatellSimulator) -> None:
    simulator.inject("body", command="sendmsg", body="ERR: 301, No credit left", times=2)
    messages = send_sms(["27999000001", "27999000002"], "Hello", wait=True)
    assert {m.send_state for m in messages} == {SendState.REJECTED}
    assert set(GatewayExchange.objects.values_list("error_code", flat=True)) == {301}


@pytest.mark.parametrize(
    ("text", "unicode"),
    [
        ("Grüße, Zoë! Привет ☃ 你好", True),
        ("Hello £5 — ok?", True),
        ("Héllo Ünïcode-free {€}", False),
    ],
)
def test_text_arrives_intact(simulator: ClickatellSimulator, text: str, unicode: bool) -> None:
    [message] = send_sms("27999000001", text, wait=True)
    assert simulator.messages[str(message.apimsgid)].text == text
    assert message.text == text


def test_text_can_be_dropped_after_sending(simulator: ClickatellSimulator, settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "KEEP_TEXT": False}
    [message] = send_sms("27999000001", "private", wait=True)
    assert message.text == ""
    assert message.send_state == SendState.SENT


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"to": "12ab", "text": "x"}, "phone number"),
        ({"to": "27999000001", "text": ""}, "Empty"),
        ({"to": ["27999000001", "+27999000001"], "text": "x"}, "twice"),
        ({"to": "27999000001", "text": "x", "deliver_in_minutes": 5}, "10 and 525600"),
        # A year at most (beyond Clickatell's 7 days, messages are held here: see
        # test_hold_and_release.py).
        ({"to": "27999000001", "text": "x", "deliver_in_minutes": 525601}, "10 and 525600"),
        ({"to": "27999000001", "text": "x", "scheduled_for": "366d"}, "a year"),
        ({"to": "27999000001", "text": "x", "scheduled_for": "past"}, "future"),
        ({"to": ["27999000001", "27999000002"], "text": "x", "climsgid": "abc"}, "one recipient"),
        ({"to": "27999000001", "text": "x", "climsgid": "with-dash"}, "letters and digits"),
        ({"to": "27999000001", "text": "x", "callback": 9}, "callback"),
        ({"to": "27999000001", "text": "x", "sender": "Far too long sender"}, "Sender"),
    ],
)
def test_invalid_messages_record_and_send_nothing(
    simulator: ClickatellSimulator, kwargs: dict[str, Any], reason: str
) -> None:
    when = {
        "366d": timezone.now() + timedelta(days=366),
        "past": timezone.now() - timedelta(minutes=1),
    }
    if "scheduled_for" in kwargs:
        kwargs["scheduled_for"] = when[kwargs["scheduled_for"]]
    with pytest.raises(InvalidMessage, match=reason):
        send_sms(wait=True, **kwargs)
    assert not OutboundMessage.objects.exists()
    assert simulator.counts["total"] == 0


def test_scheduled_for_is_sent_as_unix_time(simulator: ClickatellSimulator) -> None:
    when = timezone.now() + timedelta(days=2)
    [message] = send_sms("27999000001", "x", scheduled_for=when, wait=True)
    deliver_at = simulator.messages[str(message.apimsgid)].deliver_at
    assert deliver_at is not None
    assert abs(deliver_at - when.timestamp()) < 2
    assert message.send_options == {"scheduled_time": int(when.timestamp())}


def test_lost_reply_is_verified_not_resent(simulator: ClickatellSimulator) -> None:
    """Clickatell took the message but the reply was lost: querymsg finds it, no second send."""
    simulator.inject("drop_reply", command="sendmsg")
    [message] = send_sms("27999000001", "once only", wait=True)
    assert message.send_state == SendState.VERIFYING
    assert len(simulator.messages) == 1
    report = send_messages([message.pk], via=Via.API)
    message.refresh_from_db()
    assert report.sent == [message.pk]
    assert message.send_state == SendState.SENT
    assert message.apimsgid in simulator.messages
    assert simulator.counts["sendmsg"] == 1  # never sent twice
    assert len(simulator.messages) == 1


def test_request_that_never_arrived_is_sent_after_checking(simulator: ClickatellSimulator) -> None:
    simulator.inject("reset", command="sendmsg")
    [message] = send_sms("27999000001", "hello", wait=True)
    assert message.send_state == SendState.VERIFYING
    send_messages([message.pk], via=Via.API)
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    assert simulator.counts["querymsg"] == 1  # ERR 104: unknown, so safe to send
    assert simulator.counts["sendmsg"] == 2
    commands = list(message.exchanges.order_by("pk").values_list("command", "outcome"))
    assert commands == [
        ("sendmsg", "transport_error"),
        ("querymsg", "gateway_error"),
        ("sendmsg", "status"),
    ]


def test_failure_in_transit_stops_the_run_and_checks_before_resending(
    simulator: ClickatellSimulator,
) -> None:
    simulator.inject("drop_reply", command="sendmsg")
    messages = send_sms(["27999000001", "27999000002"], "hello", wait=True)
    first, second = sorted(messages, key=lambda m: m.pk)
    assert (first.send_state, second.send_state) == (SendState.VERIFYING, SendState.QUEUED)
    send_messages([m.pk for m in messages], via=Via.API)
    assert simulator.counts["sendmsg"] == 2  # the lost one was found, the other sent once
    assert set(OutboundMessage.objects.values_list("send_state", flat=True)) == {SendState.SENT}


def test_queued_by_default(
    simulator: ClickatellSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        [message] = send_sms("27999000001", "later")
    assert message.send_state == SendState.QUEUED
    assert len(callbacks) == 1
    assert simulator.counts["total"] == 0


def test_given_climsgid_must_be_unique(simulator: ClickatellSimulator) -> None:
    send_sms("27999000001", "first", climsgid="order42", wait=True)
    with pytest.raises(InvalidMessage, match="already used"):
        send_sms("27999000002", "second", climsgid="order42", wait=True)
    assert simulator.counts["sendmsg"] == 1


def test_giving_up_marks_unverifiable_unknown(simulator: ClickatellSimulator) -> None:
    from django_clickatell.services.send_recovery import give_up

    simulator.inject("reset", command="sendmsg")
    [message] = send_sms("27999000001", "x", wait=True)
    assert give_up([message.pk], "gateway unreachable") == 1
    message.refresh_from_db()
    assert message.send_state == SendState.UNKNOWN
    assert message.send_error == "Gave up checking: gateway unreachable"


def test_giving_up_on_a_never_sent_message_fails_it(simulator: ClickatellSimulator) -> None:
    """A task out of retries used to leave its messages queued for ever."""
    from django_clickatell.services.send_recovery import give_up

    [message] = send_sms("27999000001", "x")
    assert give_up([message.pk], "gateway unreachable") == 1
    message.refresh_from_db()
    assert message.send_state == SendState.FAILED
    assert message.send_error == "Gave up sending: gateway unreachable"
    assert simulator.counts["sendmsg"] == 0


def test_public_api_refresh_balance_and_credentials(simulator: ClickatellSimulator) -> None:
    from django_clickatell import api
    from django_clickatell.exceptions import ClickatellError, InvalidMessage

    [message] = api.send_sms("27999000001", "hi", deliver_in_minutes=60, wait=True)
    simulator.messages[str(message.apimsgid)].status = "003"
    report = api.refresh_sms(OutboundMessage.objects.all(), wait=True)
    assert report is not None
    assert report.changed == [message.pk]
    assert api.get_balance(cached=False) >= 0
    assert api.check_credentials().username == "demo"
    assert issubclass(InvalidMessage, ClickatellError)
    assert issubclass(InvalidMessage, ValueError)
    simulator.change_password("rotated")
    with pytest.raises(ClickatellError):
        api.check_credentials()


def test_every_error_kind_is_an_exchange_outcome() -> None:
    from django_clickatell import exceptions

    outcomes = set(GatewayExchange.Outcome.values)
    for name in exceptions.__all__:
        error = getattr(exceptions, name)
        recorded = isinstance(error, type) and issubclass(error, exceptions.ClickatellError)
        if recorded and not issubclass(error, exceptions.InvalidInput):
            assert error.kind in outcomes, name
