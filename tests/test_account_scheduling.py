"""Each message is scheduled by its own account's rule, and a message its API cannot carry fails.

Two defects ``make demo`` found once the accounts, the hold rule and the One
API met: a message for a One API account scheduled two hours ahead was handed
to the One API -- which cannot schedule -- because composing and the release
loop read the *default* account's rule; and the One API backend's refusal,
made before any request, left the message "checking whether Clickatell got it"
as if a request might have carried it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import pytest

from django_clickatell import api
from django_clickatell.exceptions import InvalidMessage
from django_clickatell.gateway.backends.base import Backend, Capabilities, OutgoingSms, SendResult
from django_clickatell.models import GatewayExchange, OutboundMessage, SendState
from django_clickatell.protocol.replies import BalanceReply, MessageStatusReply
from django_clickatell.services.release import release_due
from django_clickatell.services.sending import send_messages

pytestmark = pytest.mark.django_db


class CannotCarry(Backend):
    """An API that refuses every message before making a request, as a backend may."""

    name = "cannot_carry"
    capabilities = Capabilities(
        remote_stop=True,
        sessions=False,
        native_scheduling=True,
        scheduling_horizon=timedelta(days=7),
        batch_size=1,
        callbacks="",
        query_by_client_id=True,
    )
    calls: list[str] = []

    def send(self, messages: Sequence[OutgoingSms]) -> list[SendResult]:
        self.calls.append("send")
        raise InvalidMessage("This API cannot carry that message.")

    def query(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        self.calls.append("query")
        raise AssertionError("a message that never left must not be asked about")

    def stop(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        raise AssertionError("not expected")

    def balance(self) -> BalanceReply:
        raise AssertionError("not expected")

    def check_credentials(self) -> None:
        pass


@pytest.fixture
def two_accounts(settings: Any) -> None:
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "BACKEND": "test",
        "ACCOUNTS": {"platform": {"BACKEND": "one_api", "API_KEY": "k" * 20}},
    }


def test_a_one_api_message_two_hours_ahead_is_held_by_its_own_accounts_rule(
    two_accounts: None,
) -> None:
    [platform] = api.send_sms("27999000001", "hi", deliver_in_minutes=120, account="platform")
    [default] = api.send_sms("27999000002", "hi", deliver_in_minutes=120)
    platform.refresh_from_db()
    default.refresh_from_db()
    assert platform.send_state == SendState.HELD  # the One API cannot schedule
    assert platform.send_options == {}
    assert default.send_state != SendState.HELD  # the test backend schedules natively


def test_the_release_loop_applies_each_accounts_rule(two_accounts: None, settings: Any) -> None:
    """Due in 30 minutes: the default account's API may schedule it, the One API may not."""
    [platform] = api.send_sms("27999000001", "hi", deliver_in_minutes=120, account="platform")
    due = platform.scheduled_for
    assert due is not None
    report = release_due(now=due - timedelta(minutes=30))
    assert platform.pk not in report.released  # the One API: held until it is due
    platform.refresh_from_db()
    assert platform.send_state == SendState.HELD
    report = release_due(now=due)
    assert report.released == [platform.pk]


def test_a_message_the_api_refuses_before_any_request_fails_not_in_doubt(
    settings: Any,
) -> None:
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "BACKEND": f"{__name__}.CannotCarry",
        "HOLD_LEAD_TIME": 0,
    }
    CannotCarry.calls.clear()
    [message] = api.send_sms("27999000003", "hi", wait=True)
    message.refresh_from_db()
    assert message.send_state == SendState.FAILED
    assert "cannot carry" in message.send_error
    [exchange] = GatewayExchange.objects.filter(message=message)
    assert exchange.outcome == GatewayExchange.Outcome.NOT_SENT  # no request was answered
    # Run again (a retry, a redelivery): it is never checked nor resent blindly.
    send_messages([message.pk], via="task")
    assert CannotCarry.calls == ["send"]
    assert OutboundMessage.objects.get(pk=message.pk).send_state == SendState.FAILED


def test_each_account_has_its_own_callback_secret(settings: Any) -> None:
    """``CALLBACK_SECRET`` is the account's: set in its dict, never inherited, never ignored."""
    from django_clickatell.conf import account_settings

    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "CALLBACK_SECRET": "top-level-secret-0123456789",
        "ACCOUNTS": {
            "platform": {
                "BACKEND": "one_api",
                "API_KEY": "k" * 20,
                "CALLBACK_SECRET": "platform-secret-0123456789",
            },
            "other": {"BACKEND": "one_api", "API_KEY": "k" * 20},
        },
    }
    assert account_settings("platform").callback_secret.reveal() == "platform-secret-0123456789"
    assert account_settings("other").callback_secret.reveal() == ""
    assert account_settings().callback_secret.reveal() == "top-level-secret-0123456789"
