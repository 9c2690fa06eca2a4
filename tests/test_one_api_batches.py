"""Issue 20, item 2: One API batches, over HTTP against the simulator.

A send run groups an account's claimed messages into requests of up to
``SEND_BATCH_SIZE`` (``POST /v1/message`` with one ``clientMessageId`` each);
every message of a request is admitted on its own (lease, account, pause), gets
its own result and its own log row, and a request whose reply is lost puts
exactly its own messages in doubt -- settled later by the status callbacks that
carry their ``clientMessageId``, or shown unknown for an operator until one does.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from django_clickatell.conf import ClickatellSettings, app_settings
from django_clickatell.conf.errors import SettingError
from django_clickatell.models import GatewayExchange, OutboundMessage, SendState, Via, WaitingFor
from django_clickatell.services import claims, pausing
from django_clickatell.services.composing import create_messages
from django_clickatell.services.send_run import SendRun, batch_size, doubt_bound
from django_clickatell.services.sending import send_messages
from django_clickatell.simulator import ClickatellSimulator, Fault

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "cb-SECRET-0123456789abcdefXYZ"
URL = f"/clickatell/one-api/default/{SECRET}/"


@pytest.fixture
def one_api(simulator: ClickatellSimulator, settings: Any) -> Iterator[ClickatellSimulator]:
    """The default account on the One API, in batches of 10, four requests at once."""
    settings.CLICKATELL = {
        **simulator.one_api_settings(),
        "SEND_BATCH_SIZE": 10,
        "MAX_IN_FLIGHT": 4,
        "CALLBACK_SECRET": SECRET,
    }
    simulator.one_api.reset()
    yield simulator
    simulator.one_api.reset()


def queued(count: int, *, account: str = "default", prefix: str = "2799930") -> list[int]:
    recipients = [f"{prefix}{n:05d}" for n in range(count)]
    return [m.pk for m in create_messages(recipients, "batched", account=account)]


def posts(simulator: ClickatellSimulator) -> int:
    """``POST /v1/message`` requests the gateway received."""
    return simulator.counts["sendmsg"]


def states(pks: list[int] | None = None) -> Counter[str]:
    rows = OutboundMessage.objects.all()
    if pks is not None:
        rows = rows.filter(pk__in=pks)
    return Counter(rows.values_list("send_state", flat=True))


def assert_recorded_as_the_gateway_has_them(simulator: ClickatellSimulator) -> None:
    at_gateway = {m.climsgid: m.apimsgid for m in simulator.accepted_sends()}
    for message in OutboundMessage.objects.filter(send_state=SendState.SENT):
        assert at_gateway[message.climsgid] == message.apimsgid, message.pk
    assert not simulator.duplicate_sends()


def test_an_accounts_messages_go_in_batches_each_with_its_own_result(
    one_api: ClickatellSimulator,
) -> None:
    """35 messages, batches of 10: four requests; the opted-out one (code 26 in a 207) is
    rejected with its code, the others sent under the id the gateway gave each."""
    pks = queued(35)
    one_api.one_api.refused = {"279993000007"}
    report = send_messages(pks, via=Via.TASK)
    assert posts(one_api) == 4
    assert len(report.sent) == 34
    refused = OutboundMessage.objects.get(recipient="279993000007")
    assert report.rejected == [refused.pk]
    assert refused.send_state == SendState.REJECTED
    assert "opted out" in refused.send_error.lower()
    log = GatewayExchange.objects.get(message=refused, command="sendmsg")
    assert log.error_code == 26
    assert GatewayExchange.objects.filter(command="sendmsg").count() == 35  # one row each
    assert_recorded_as_the_gateway_has_them(one_api)


def test_the_batch_size_is_the_accounts_up_to_what_its_api_takes(
    one_api: ClickatellSimulator, settings: Any
) -> None:
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "ACCOUNTS": {
            "big": {**one_api.one_api_settings(), "SEND_BATCH_SIZE": 200},
            "legacy": {**one_api.settings(), "SEND_BATCH_SIZE": 200},
        },
    }
    from django_clickatell.gateway.backends import get_backend

    assert batch_size(get_backend()) == 10
    assert batch_size(get_backend("big")) == 200
    assert batch_size(get_backend("legacy")) == 1  # the legacy API takes one a request
    pks = queued(250, account="big")
    send_messages(pks, via=Via.TASK)
    assert posts(one_api) == 2  # 200 + 50
    assert states(pks) == {SendState.SENT: 250}


@pytest.mark.parametrize("value", [0, 201, "50", True, 12.5])
def test_the_batch_size_setting_is_validated(value: object) -> None:
    with pytest.raises(SettingError, match="SEND_BATCH_SIZE"):
        _ = ClickatellSettings({"SEND_BATCH_SIZE": value}).send_batch_size


def test_a_request_refused_whole_for_one_message_refuses_only_that_one(
    one_api: ClickatellSimulator,
) -> None:
    """The API answers 400 to the whole request for one bad message (here an empty text):
    nothing was carried out, so each goes again alone and only the culprit is refused."""
    pks = queued(10)
    OutboundMessage.objects.filter(pk=pks[3]).update(text="")
    report = send_messages(pks, via=Via.TASK)
    assert posts(one_api) == 1 + 10
    assert report.rejected == [pks[3]]
    assert states(pks) == {SendState.SENT: 9, SendState.REJECTED: 1}
    # The refused request is logged for each of its messages, then each one's own.
    assert GatewayExchange.objects.filter(command="sendmsg").count() == 20
    assert_recorded_as_the_gateway_has_them(one_api)


def test_a_lost_reply_puts_exactly_that_requests_messages_in_doubt(
    one_api: ClickatellSimulator, client: Client
) -> None:
    """The first request is carried out and its reply lost: its 10 messages are in doubt,
    no others.  The One API cannot be asked by clientMessageId, so the next run shows them
    unknown (never sends them again); their status callbacks, which carry the
    clientMessageId, settle each one sent under its id."""
    pks = queued(40)
    one_api.inject(Fault("drop_reply", command="sendmsg"))
    report = send_messages(pks, via=Via.TASK)
    first = pks[:10]
    assert states(first) == {SendState.VERIFYING: 10}
    assert states(pks[10:]) == {SendState.QUEUED: 30}  # handed back untried
    assert sorted(report.retry) == pks
    assert report.transient_error
    assert len(one_api.accepted_sends()) == 10  # the lost request was carried out

    report = send_messages(pks, via=Via.TASK)  # the retry: never a blind resend
    assert states(first) == {SendState.UNKNOWN: 10}
    assert all("check" in m.send_error for m in OutboundMessage.objects.filter(pk__in=first))
    assert states(pks[10:]) == {SendState.SENT: 30}
    assert not one_api.duplicate_sends()

    events = [
        {
            "channel": "sms",
            "messageId": sent.apimsgid,
            "clientMessageId": sent.climsgid,
            "status": "RECEIVED_BY_RECIPIENT",
            "timestamp": 1_700_000_000_000,
        }
        for sent in one_api.accepted_sends()
        if sent.climsgid
        in set(OutboundMessage.objects.filter(pk__in=first).values_list("climsgid", flat=True))
    ]
    assert len(events) == 10
    body = json.dumps({"event": {"messageStatusUpdate": events}})
    response = client.post(URL, body, content_type="application/json")
    assert response.status_code == 200
    assert states(pks) == {SendState.SENT: 40}
    assert_recorded_as_the_gateway_has_them(one_api)


def test_a_killed_run_leaves_in_doubt_at_most_its_window_of_batches() -> None:
    """The documented bound grows with the batch: the requests in flight carry a batch each."""
    assert doubt_bound(1) == doubt_bound()
    assert doubt_bound(200) == doubt_bound() + (200 - 1) * app_settings.max_in_flight


def test_a_pause_inside_a_batch_holds_back_the_rest_of_it(
    one_api: ClickatellSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each message of a batch is admitted on its own: a pause that comes while the first
    request is being put together keeps the messages after it out of the request."""
    pks = queued(10)
    real = SendRun.admit
    asked: list[int] = []

    def admit(run: SendRun, message: OutboundMessage) -> bool:
        asked.append(message.pk)
        if len(asked) == 5:
            pausing.pause_account("default", reason="wrong text")
        return real(run, message)

    monkeypatch.setattr(SendRun, "admit", admit)
    report = send_messages(pks, via=Via.TASK)
    assert posts(one_api) == 1
    assert sorted(report.sent) == pks[:4]
    assert sorted(report.waiting) == pks[4:]
    waiting = OutboundMessage.objects.filter(pk__in=pks[4:])
    assert {(m.send_state, m.waiting_for) for m in waiting} == {
        (SendState.QUEUED, WaitingFor.PAUSED)
    }
    assert len(one_api.accepted_sends()) == 4


def test_messages_whose_lease_was_lost_are_dropped_from_their_batch(
    one_api: ClickatellSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    pks = queued(10)
    taken = {pks[2], pks[7]}
    real = claims.LeaseKeeper.holds

    def holds(keeper: claims.LeaseKeeper, pk: int) -> bool:
        return pk not in taken and real(keeper, pk)

    monkeypatch.setattr(claims.LeaseKeeper, "holds", holds)
    report = send_messages(pks, via=Via.TASK)
    assert posts(one_api) == 1
    assert sorted(report.sent) == sorted(set(pks) - taken)
    sent = {m.climsgid for m in one_api.accepted_sends()}
    assert not sent & set(
        OutboundMessage.objects.filter(pk__in=taken).values_list("climsgid", flat=True)
    )


def test_a_missing_account_waits_and_holds_back_no_other_accounts_batch(
    one_api: ClickatellSimulator,
) -> None:
    ours = queued(15)
    gone = queued(5, prefix="2799931")
    OutboundMessage.objects.filter(pk__in=gone).update(account="gone")
    report = send_messages(ours + gone, via=Via.TASK)
    assert posts(one_api) == 2
    assert sorted(report.sent) == ours
    assert sorted(report.waiting) == gone
    assert set(
        OutboundMessage.objects.filter(pk__in=gone).values_list("waiting_for", flat=True)
    ) == {WaitingFor.ACCOUNT}
