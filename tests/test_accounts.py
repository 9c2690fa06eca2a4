"""Backends and named accounts: the services choose by capability and by each message's account."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pytest

from django_clickatell.conf import app_settings
from django_clickatell.exceptions import RemoteStopUnsupported
from django_clickatell.gateway.backends import Backend, Capabilities, OutgoingSms, SendResult
from django_clickatell.models import CancelState, OutboundMessage, Via
from django_clickatell.protocol.replies import BalanceReply, MessageStatusReply
from django_clickatell.services.cancel_run import HANDED_OVER
from django_clickatell.services.cancelling import cancel_messages
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
        self.calls.append("query")
        raise AssertionError("not expected")

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


def test_no_remote_stop_is_too_late_without_any_request() -> None:
    [message] = scheduled_messages(None, 1)
    report = cancel_messages([message.pk], via=Via.API, backend=NoRemoteStop(app_settings))
    assert NoRemoteStop.calls == []  # not even stop(): nothing was asked
    assert report.too_late == [message.pk]
    assert report.cancelled == report.retry == report.refused == []
    message.refresh_from_db()
    assert message.cancel_state == CancelState.TOO_LATE
    assert message.cancel_error == HANDED_OVER
    assert "already handed over" in message.cancel_error
    assert message.cancel_completed_at is not None
    assert message.cancel_attempts == 0  # no request was made
    assert message.status == "011"  # nothing new was said about it
    assert not message.exchanges.exists()  # no request, so no exchange row


def test_the_gateways_guard_is_recorded_the_same_way() -> None:
    [message] = scheduled_messages(None, 1)
    report = cancel_messages([message.pk], via=Via.API, backend=GuardOnly(app_settings))
    assert NoRemoteStop.calls == ["stop"]  # raised before any request, by contract
    assert report.too_late == [message.pk]
    message = OutboundMessage.objects.get(pk=message.pk)
    assert (message.cancel_state, message.cancel_error) == (CancelState.TOO_LATE, HANDED_OVER)
    assert not message.exchanges.exists()
