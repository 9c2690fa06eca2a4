"""Backends and named accounts: the services choose by capability and by each message's account."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from decimal import Decimal
from typing import Any
from unittest import mock

import pytest
from django.core.cache import cache

from django_clickatell import api
from django_clickatell.conf import app_settings
from django_clickatell.exceptions import InvalidMessage, RemoteStopUnsupported
from django_clickatell.gateway import backends
from django_clickatell.gateway.backends import Backend, Capabilities, OutgoingSms, SendResult
from django_clickatell.models import (
    CancelState,
    GatewayExchange,
    OutboundMessage,
    SendState,
    Via,
    WaitingFor,
)
from django_clickatell.protocol.replies import BalanceReply, MessageStatusReply
from django_clickatell.services import account, balance, composing, sending
from django_clickatell.services.cancel_run import HANDED_OVER, HANDED_OVER_OR_NOT
from django_clickatell.services.cancelling import cancel_messages
from django_clickatell.services.refreshing import refresh_statuses
from django_clickatell.simulator import ClickatellSimulator
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db


class NoRemoteStop(Backend):
    """An API like the One API: it sends, but has no call that stops a submitted message."""

    name = "no_remote_stop"
    capabilities = Capabilities(
        remote_stop=False,
        sessions=False,
        native_scheduling=False,
        scheduling_horizon=None,
        batch_size=200,
        callbacks="json",
        query_by_client_id=False,
    )
    #: Every call made, by any instance (the services build their own from the settings).
    calls: list[str] = []

    def send(self, messages: Sequence[OutgoingSms]) -> list[SendResult]:
        self.calls.append("send")
        raise AssertionError("not expected")

    def query(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        """Asked instead of a stop: the message is on its way (003)."""
        self.calls.append("query")
        assert apimsgid, "asked by its id"
        return MessageStatusReply(apimsgid, "003")

    def stop(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        self.calls.append("stop")
        raise RemoteStopUnsupported(self.name)

    def balance(self) -> BalanceReply:
        self.calls.append("balance")
        return BalanceReply(credit=Decimal("1"))

    def check_credentials(self) -> None:
        self.calls.append("check_credentials")


class GuardOnly(NoRemoteStop):
    """Claims remote stop but raises the gateway's guard: the service must record the same."""

    capabilities = Capabilities(**{**vars(NoRemoteStop.capabilities), "remote_stop": True})


@pytest.fixture(autouse=True)
def _no_calls() -> None:
    NoRemoteStop.calls.clear()


def test_no_remote_stop_is_too_late_without_a_stop_request() -> None:
    """No stop is asked (not even stop()); what became of the message is, and recorded."""
    [message] = scheduled_messages(None, 1)
    report = cancel_messages([message.pk], via=Via.API, backend=NoRemoteStop(app_settings))
    assert NoRemoteStop.calls == ["query"]  # its status, instead of a stop that cannot be
    assert report.too_late == [message.pk]
    assert report.cancelled == report.retry == report.refused == []
    message.refresh_from_db()
    assert message.cancel_state == CancelState.TOO_LATE
    assert message.cancel_error == HANDED_OVER
    assert "already handed over" in message.cancel_error
    assert message.cancel_completed_at is not None
    assert message.cancel_attempts == 0  # no stop was asked
    assert message.status == "003"  # what the API said when asked
    [asked] = message.exchanges.all()  # the one request made, logged as answered
    assert (asked.command, asked.status) == ("querymsg", "003")


def test_a_send_in_doubt_is_not_claimed_handed_over() -> None:
    """Whether Clickatell got a message whose send ended unknown is not known: say so."""
    [message] = scheduled_messages(None, 1)
    OutboundMessage.objects.filter(pk=message.pk).update(
        send_state=SendState.UNKNOWN, apimsgid=None
    )
    cancel_messages([message.pk], via=Via.API, backend=NoRemoteStop(app_settings))
    message.refresh_from_db()
    assert message.cancel_state == CancelState.TOO_LATE
    assert message.cancel_error == HANDED_OVER_OR_NOT
    assert "already handed over" not in message.cancel_error
    assert NoRemoteStop.calls == []  # no id to ask by
    assert message.send_state == SendState.UNKNOWN


def test_a_send_in_doubt_that_a_query_finds_is_settled_sent() -> None:
    """Asked by its id (a callback told it) and answered: Clickatell has it (issue 19)."""
    [message] = scheduled_messages(None, 1)
    OutboundMessage.objects.filter(pk=message.pk).update(send_state=SendState.UNKNOWN)
    cancel_messages([message.pk], via=Via.API, backend=NoRemoteStop(app_settings))
    message.refresh_from_db()
    assert (message.send_state, message.status) == (SendState.SENT, "003")
    assert message.cancel_error == HANDED_OVER
    assert NoRemoteStop.calls == ["query"]


def test_the_gateways_guard_is_recorded_the_same_way() -> None:
    [message] = scheduled_messages(None, 1)
    report = cancel_messages([message.pk], via=Via.API, backend=GuardOnly(app_settings))
    assert NoRemoteStop.calls == ["stop"]  # raised before any request, by contract
    assert report.too_late == [message.pk]
    message = OutboundMessage.objects.get(pk=message.pk)
    assert (message.cancel_state, message.cancel_error) == (CancelState.TOO_LATE, HANDED_OVER)
    assert not message.exchanges.exists()


# -- two accounts in one project ------------------------------------------------------------

OTHER = {"username": "other", "password": "0ther-pass", "api_id": "7654321"}


@pytest.fixture
def other_gateway() -> Iterator[ClickatellSimulator]:
    """A second Clickatell account: its own gateway, its own user, sessions and balance."""
    with ClickatellSimulator(
        username=OTHER["username"],
        password=OTHER["password"],
        api_id=OTHER["api_id"],
        balance="77.5",
    ) as gateway:
        yield gateway


@pytest.fixture
def two_accounts(
    simulator: ClickatellSimulator, other_gateway: ClickatellSimulator, settings: Any
) -> tuple[ClickatellSimulator, ClickatellSimulator]:
    """The default account on the shared simulator, account ``"other"`` on its own."""
    other = {
        "USERNAME": OTHER["username"],
        "PASSWORD": OTHER["password"],
        "API_ID": OTHER["api_id"],
        "BASE_URL": other_gateway.base_url,
    }
    settings.CLICKATELL = {**settings.CLICKATELL, "ACCOUNTS": {"other": other}}
    return simulator, other_gateway


def test_each_message_goes_through_its_own_accounts_session(
    two_accounts: tuple[ClickatellSimulator, ClickatellSimulator],
) -> None:
    default, other = two_accounts
    mine = composing.create_messages(["27990000001", "27990000002"], "hello")
    theirs = composing.create_messages(["27990000003", "27990000004"], "hi", account="other")
    assert {m.account for m in mine} == {"default"}
    assert {m.account for m in theirs} == {"other"}
    built = mock.patch.object(account, "get_backend", wraps=backends.get_backend)
    with built as get_backend:
        pks = [m.pk for m in mine + theirs]
        report = sending.send_messages(pks, via=Via.TASK)  # one run, both accounts
    assert sorted(report.sent) == sorted(pks)
    assert sorted(call.args[0] for call in get_backend.call_args_list) == ["default", "other"]
    # Each gateway saw its own user log in once, and only its own messages, each carried
    # out under the session it handed out (another's session would have met ERR 003).
    for gateway, messages in ((default, mine), (other, theirs)):
        assert gateway.counts["auth"] == 1
        assert gateway.executed["sendmsg"] == gateway.counts["sendmsg"] == 2
        assert gateway.counts["faults"] == 0
        assert set(gateway.sendmsg_requests) == {m.recipient for m in messages}
        for message in messages:
            message.refresh_from_db()
            assert message.send_state == SendState.SENT
            assert gateway.status_of(str(message.apimsgid))
    assert other.counts["total"] == 3  # auth + two sendmsg: nothing of the default account's
    assert len(other.issued_session_ids) == 1
    assert GatewayExchange.objects.filter(message__in=mine + theirs).count() == 4  # no refusals


def test_stop_refresh_and_balance_use_the_messages_account(
    two_accounts: tuple[ClickatellSimulator, ClickatellSimulator],
) -> None:
    default, other = two_accounts
    [mine] = scheduled_messages(default, 1)
    [theirs] = scheduled_messages(None, 1, apimsgid=other.add_message(), account="other")
    report = cancel_messages([mine.pk, theirs.pk], via=Via.API)
    assert sorted(report.cancelled) == sorted([mine.pk, theirs.pk])
    assert (default.counts["delmsg"], other.counts["delmsg"]) == (1, 1)
    assert other.status_of(str(theirs.apimsgid)) == "006"
    [theirs2] = scheduled_messages(None, 1, apimsgid=other.add_message(), account="other")
    refresh_statuses([theirs2.pk], via=Via.API)
    assert (default.counts["querymsg"], other.counts["querymsg"]) == (0, 1)
    assert balance.get_balance(account="other") == 77.5
    assert balance.get_balance() == 1000
    assert balance.get_balance(account="other") == 77.5  # its own cache entry
    assert api.check_credentials("other").username == "other"


def test_an_unknown_account_is_refused_and_nothing_recorded(
    two_accounts: tuple[ClickatellSimulator, ClickatellSimulator],
) -> None:
    with pytest.raises(InvalidMessage, match=r"'marketing' \(configured: default, other\)"):
        api.send_sms("27990000001", "hello", account="marketing")
    assert not OutboundMessage.objects.exists()


def test_a_message_of_an_account_since_removed_waits(
    two_accounts: tuple[ClickatellSimulator, ClickatellSimulator], settings: Any
) -> None:
    """Its run asks nothing and retries nothing: the message waits, queued, with the reason."""
    [message] = composing.create_messages("27990000001", "hello", account="other")
    settings.CLICKATELL = {k: v for k, v in settings.CLICKATELL.items() if k != "ACCOUNTS"}
    cache.clear()
    report = sending.send_messages([message.pk], via=Via.TASK)
    assert (report.sent, report.retry, report.waiting) == ([], [], [message.pk])
    message.refresh_from_db()
    assert (message.send_state, message.waiting_for) == (SendState.QUEUED, WaitingFor.ACCOUNT)
    assert message.waiting_since is not None
    assert message.claim_token == ""
    assert not message.exchanges.exists()  # no request was made, so none is logged
    assert sum(gateway.counts["total"] for gateway in two_accounts) == 0


def test_the_ping_keeps_every_session_account_alive(
    two_accounts: tuple[ClickatellSimulator, ClickatellSimulator], settings: Any
) -> None:
    accounts = settings.CLICKATELL["ACCOUNTS"]
    platform = {"BACKEND": "tests.test_accounts.NoRemoteStop", "API_KEY": "k3y"}
    settings.CLICKATELL = {**settings.CLICKATELL, "ACCOUNTS": {**accounts, "platform": platform}}
    account.keep_session_alive()
    for gateway in two_accounts:
        assert (gateway.counts["auth"], gateway.counts["ping"]) == (1, 1)
    assert NoRemoteStop.calls == []  # no sessions: nothing to keep alive
    account.keep_session_alive("other")
    assert two_accounts[1].counts["ping"] == 2
    assert two_accounts[0].counts["ping"] == 1
