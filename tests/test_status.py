"""Status queries, status callbacks and the balance."""

from __future__ import annotations

import base64
import hmac
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse

from django_clickatell import views
from django_clickatell.api import send_sms
from django_clickatell.models import (
    CancelState,
    GatewayExchange,
    OutboundMessage,
    UnmatchedCallback,
    Via,
)
from django_clickatell.services.callbacks import match_unmatched_callbacks
from django_clickatell.services.refreshing import refresh_statuses
from django_clickatell.signals import message_cancelled, message_status_changed
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import wait_until
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db
URL = "/clickatell/callback/"
CALLBACK_USER, CALLBACK_PASSWORD = "clickatell", "cb-secret-42"


@pytest.fixture
def callbacks(settings: Any) -> None:
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "CALLBACK_USERNAME": CALLBACK_USER,
        "CALLBACK_PASSWORD": CALLBACK_PASSWORD,
    }


def basic(user: str = CALLBACK_USER, password: str = CALLBACK_PASSWORD) -> dict[str, Any]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def fields(message: OutboundMessage, status: str, timestamp: int = 1_700_000_000) -> dict[str, str]:
    return {
        "api_id": "1234567",
        "apiMsgId": str(message.apimsgid),
        "cliMsgId": message.climsgid,
        "to": message.recipient,
        "from": "Clinic",
        "timestamp": str(timestamp),
        "status": status,
        "charge": "0.300000",
    }


class TestRefresh:
    def test_querymsg_updates_changed_statuses(self, simulator: ClickatellSimulator) -> None:
        messages = scheduled_messages(simulator, 3)
        simulator.messages[str(messages[0].apimsgid)].status = "003"
        report = refresh_statuses([m.pk for m in messages], via=Via.API)
        assert report.changed == [messages[0].pk]
        assert len(report.unchanged) == 2
        messages[0].refresh_from_db()
        assert messages[0].status == "003"
        assert GatewayExchange.objects.filter(command="querymsg").count() == 3

    def test_final_messages_are_not_queried(self, simulator: ClickatellSimulator) -> None:
        [message] = scheduled_messages(simulator, 1, status="004")
        refresh_statuses([message.pk], via=Via.API)
        assert simulator.counts["querymsg"] == 0

    def test_transient_failure_returns_the_rest(self, simulator: ClickatellSimulator) -> None:
        messages = scheduled_messages(simulator, 3)
        refresh_statuses([messages[0].pk], via=Via.API)
        simulator.inject("http_500", command="querymsg")
        report = refresh_statuses([m.pk for m in messages], via=Via.API)
        assert report.retry == [m.pk for m in messages]
        assert "HTTP 500" in report.transient_error

    def test_unknown_message_is_logged(self, simulator: ClickatellSimulator) -> None:
        [message] = scheduled_messages(None, 1)
        report = refresh_statuses([message.pk], via=Via.API)
        assert report.failed == [message.pk]
        assert message.exchanges.get().error_code == 103

    def test_admin_refresh_action(
        self,
        admin_client: Client,
        simulator: ClickatellSimulator,
        django_capture_on_commit_callbacks: Any,
    ) -> None:
        messages = scheduled_messages(simulator, 2)
        url = reverse("admin:django_clickatell_outboundmessage_changelist")
        with django_capture_on_commit_callbacks() as queued:
            response = admin_client.post(
                url,
                {
                    "action": "refresh_status",
                    "index": "0",
                    "_selected_action": [str(m.pk) for m in messages],
                },
                follow=True,
            )
        # A small selection is asked about at once, and the page says what was found.
        assert (
            "Asked Clickatell about 2 of 2: 0 changed, 2 unchanged, 0 failed."
            in response.content.decode()
        )
        assert len(queued) == 0


class TestCallbackView:
    @pytest.mark.parametrize("method", ["get", "post"])
    def test_applies_status(self, client: Client, callbacks: None, method: str) -> None:
        [message] = scheduled_messages(None, 1)
        changes: list[tuple[str, str]] = []

        def on_change(**kw: Any) -> None:
            changes.append((kw["old_status"], kw["new_status"]))

        message_status_changed.connect(on_change)
        try:
            response = getattr(client, method)(URL, fields(message, "003"), **basic())
        finally:
            message_status_changed.disconnect(on_change)
        assert response.status_code == 200
        message.refresh_from_db()
        assert message.status == "003"
        assert str(message.charge) == "0.300000"
        assert changes == [("011", "003")]
        exchange = message.exchanges.get()
        assert (exchange.command, exchange.via, exchange.status) == ("callback", "callback", "003")

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            basic(password="wrong"),
            basic(user="other"),
            {"HTTP_AUTHORIZATION": "Basic !!!notbase64"},
            {"HTTP_AUTHORIZATION": "Bearer x"},
        ],
    )
    def test_wrong_or_missing_credentials(
        self, client: Client, callbacks: None, headers: dict[str, Any]
    ) -> None:
        [message] = scheduled_messages(None, 1)
        response = client.post(URL, fields(message, "004"), **headers)
        assert response.status_code == 401
        assert response.content == b"Unauthorized"
        assert "WWW-Authenticate" in response
        message.refresh_from_db()
        assert message.status == "011"

    def test_credentials_compared_in_constant_time(
        self, client: Client, callbacks: None, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        calls: list[tuple[bytes, bytes]] = []
        real = hmac.compare_digest

        def spy(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        [message] = scheduled_messages(None, 1)
        client.post(URL, fields(message, "004"), **basic(user="wrong"))
        # Every accepted pair (padded to a fixed number) is compared, user and password,
        # even though the user was wrong: no early exit reveals which part failed.
        assert len(calls) == 2 * views.COMPARED_PAIRS

    def test_not_configured_refuses(self, client: Client) -> None:
        [message] = scheduled_messages(None, 1)
        assert client.post(URL, fields(message, "004"), **basic()).status_code == 403

    def test_other_api_id_refused(self, client: Client, callbacks: None) -> None:
        [message] = scheduled_messages(None, 1)
        response = client.post(URL, {**fields(message, "004"), "api_id": "999"}, **basic())
        assert (response.status_code, response.content) == (403, b"Unknown api_id")
        message.refresh_from_db()
        assert message.status == "011"

    @pytest.mark.parametrize(
        ("override", "reason"),
        [
            ({"status": "abc"}, "status"),
            ({"status": ""}, "status"),
            ({"status": "12345"}, "status"),
            ({"apiMsgId": ""}, "apiMsgId"),
            ({"apiMsgId": "../../etc"}, "apiMsgId"),
            ({"timestamp": "yesterday"}, "timestamp"),
            ({"timestamp": "99999999999999"}, "timestamp"),
            ({"charge": "NaN"}, "charge"),
            ({"charge": "-1"}, "charge"),
            ({"to": "<script>"}, "to"),
            ({"cliMsgId": "x" * 40}, "cliMsgId"),
            ({"api_id": ""}, "api_id"),
            ({"from": "x" * 300}, "too long"),
        ],
    )
    def test_malformed_gets_400_and_changes_nothing(
        self, client: Client, callbacks: None, override: dict[str, str], reason: str
    ) -> None:
        [message] = scheduled_messages(None, 1)
        response = client.post(URL, {**fields(message, "004"), **override}, **basic())
        assert response.status_code == 400
        assert reason in response.content.decode()
        assert len(response.content) < 80
        message.refresh_from_db()
        assert message.status == "011"
        assert not GatewayExchange.objects.exists()

    def test_wrong_method(self, client: Client, callbacks: None) -> None:
        assert client.put(URL, **basic()).status_code == 405

    def test_not_csrf_protected(self, callbacks: None) -> None:
        [message] = scheduled_messages(None, 1)
        csrf_client = Client(enforce_csrf_checks=True)
        assert csrf_client.post(URL, fields(message, "003"), **basic()).status_code == 200

    def test_duplicates_are_idempotent(self, client: Client, callbacks: None) -> None:
        [message] = scheduled_messages(None, 1)
        seen: list[str] = []

        def on_change(**kw: Any) -> None:
            seen.append(kw["new_status"])

        message_status_changed.connect(on_change)
        try:
            for _ in range(3):
                assert client.post(URL, fields(message, "003"), **basic()).status_code == 200
        finally:
            message_status_changed.disconnect(on_change)
        assert seen == ["003"]
        assert message.exchanges.count() == 3  # every callback is logged

    def test_older_status_arriving_late_is_ignored(self, client: Client, callbacks: None) -> None:
        [message] = scheduled_messages(None, 1)
        client.post(URL, fields(message, "003", timestamp=1_700_000_200), **basic())
        client.post(URL, fields(message, "002", timestamp=1_700_000_100), **basic())
        message.refresh_from_db()
        assert message.status == "003"

    def test_final_status_is_never_overwritten(self, client: Client, callbacks: None) -> None:
        [message] = scheduled_messages(None, 1)
        client.post(URL, fields(message, "004", timestamp=1_700_000_100), **basic())
        client.post(URL, fields(message, "003", timestamp=1_700_000_200), **basic())
        message.refresh_from_db()
        assert message.status == "004"

    def test_reordered_final_and_intermediate(self, client: Client, callbacks: None) -> None:
        [message] = scheduled_messages(None, 1)
        client.post(URL, fields(message, "004", timestamp=1_700_000_300), **basic())
        client.post(URL, fields(message, "003", timestamp=1_700_000_200), **basic())
        client.post(URL, fields(message, "011", timestamp=1_700_000_100), **basic())
        message.refresh_from_db()
        assert message.status == "004"

    def test_006_by_callback_marks_cancelled(self, client: Client, callbacks: None) -> None:
        [message] = scheduled_messages(None, 1)
        fired: list[int] = []

        def on_cancel(**kw: Any) -> None:
            fired.append(kw["message"].pk)

        message_cancelled.connect(on_cancel)
        try:
            client.post(URL, fields(message, "006"), **basic())
        finally:
            message_cancelled.disconnect(on_cancel)
        message.refresh_from_db()
        assert message.cancel_state == CancelState.CANCELLED
        assert fired == [message.pk]

    def test_unknown_message_is_kept_then_matched(self, client: Client, callbacks: None) -> None:
        ghost = OutboundMessage(apimsgid="f" * 32, recipient="27999000009", climsgid="")
        response = client.post(URL, fields(ghost, "003"), **basic())
        assert response.status_code == 200
        kept = UnmatchedCallback.objects.get()
        assert (kept.apimsgid, kept.status) == ("f" * 32, "003")
        ghost.save()
        assert match_unmatched_callbacks(ghost) == 1
        ghost.refresh_from_db()
        assert ghost.status == "003"
        assert UnmatchedCallback.objects.get().matched_message == ghost

    def test_matched_by_climsgid_learns_apimsgid(self, client: Client, callbacks: None) -> None:
        message = OutboundMessage.objects.create(recipient="27999000001", climsgid="order42")
        data = fields(message, "003")
        data["apiMsgId"] = "e" * 32
        client.post(URL, data, **basic())
        message.refresh_from_db()
        assert (message.apimsgid, message.status) == ("e" * 32, "003")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("method", ["POST", "GET"])
def test_simulator_pushes_callbacks_end_to_end(
    simulator: ClickatellSimulator, live_server: Any, settings: Any, method: str
) -> None:
    """sendmsg with callback=3: the simulator pushes 003 then 004 to the real view over HTTP,
    retrying after a refused first attempt."""
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "CALLBACK_USERNAME": CALLBACK_USER,
        "CALLBACK_PASSWORD": "not-yet",
    }
    simulator.callback_url = live_server.url + URL
    simulator.callback_auth = (CALLBACK_USER, CALLBACK_PASSWORD)
    simulator.callback_method = method
    simulator.handset_delay = 0.5
    simulator.callback_retry_delays = (0.2, 0.5, 1.0, 2.0, 4.0, 8.0)

    def state() -> str:
        exchanges = list(GatewayExchange.objects.values_list("command", "status", "detail"))
        return (
            f"attempts={simulator.callback_attempts} sent={simulator.callbacks_sent} "
            f"failed={simulator.callbacks_failed} status={OutboundMessage.objects.get().status} "
            f"exchanges={exchanges}"
        )

    try:
        [message] = send_sms("27999000001", "hello", callback=3, wait=True)
        # The first push is refused (401); fix the credentials and a retry gets through.
        assert wait_until(lambda: simulator.callback_refusals >= 1, timeout=5), state()
        assert simulator.callbacks_sent == 0, state()
        settings.CLICKATELL = {**settings.CLICKATELL, "CALLBACK_PASSWORD": CALLBACK_PASSWORD}
        assert wait_until(
            lambda: OutboundMessage.objects.get(pk=message.pk).status == "004", timeout=20
        ), state()
        # The view answers after recording; the simulator counts the push once it has the 200.
        assert wait_until(lambda: simulator.callbacks_sent >= 2, timeout=20), state()
        assert simulator.callback_attempts > simulator.callbacks_sent, state()
    finally:
        simulator.callback_url = None
        simulator.handset_delay = 1.0
        simulator.callback_retry_delays = (0.2, 0.5, 1.0, 2.0)
    statuses = list(
        GatewayExchange.objects.filter(message=message, command="callback")
        .order_by("pk")
        .values_list("status", flat=True)
    )
    assert statuses[-1] == "004"
    assert set(statuses) <= {"003", "004"}


class TestBalance:
    def test_command(self, simulator: ClickatellSimulator) -> None:
        out = StringIO()
        call_command("clickatell_balance", stdout=out)
        assert out.getvalue().strip() == "Credit: 1000.0"

    def test_command_failure(self, settings: Any) -> None:
        settings.CLICKATELL = {**settings.CLICKATELL, "BASE_URL": "http://127.0.0.1:9/http/"}
        with pytest.raises(CommandError, match="Balance unavailable"):
            call_command("clickatell_balance", stdout=StringIO())

    def test_admin_shows_cached_balance(
        self, admin_client: Client, simulator: ClickatellSimulator
    ) -> None:
        url = reverse("admin:django_clickatell_outboundmessage_changelist")
        assert "Clickatell credit: 1000.0" in admin_client.get(url).content.decode()
        admin_client.get(url)
        assert simulator.counts["getbalance"] == 1

    def test_admin_survives_gateway_outage(self, admin_client: Client, settings: Any) -> None:
        settings.CLICKATELL = {**settings.CLICKATELL, "BASE_URL": "http://127.0.0.1:9/http/"}
        url = reverse("admin:django_clickatell_outboundmessage_changelist")
        response = admin_client.get(url)
        assert response.status_code == 200
        assert "unavailable right now" in response.content.decode()


@pytest.mark.django_db
def test_admin_action_does_not_ask_for_the_balance(
    admin_client: Client, simulator: ClickatellSimulator
) -> None:
    [message] = scheduled_messages(simulator, 1)
    url = reverse("admin:django_clickatell_outboundmessage_changelist")
    admin_client.post(
        url,
        {
            "action": "cancel_delivery",
            "index": "0",
            "post": "yes",
            "_selected_action": [str(message.pk)],
        },
    )
    assert simulator.counts["getbalance"] == 0
