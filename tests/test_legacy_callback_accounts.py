"""Legacy callbacks of every account (issue 19, item 3): routed by ``api_id``, checked
against the credentials of the account that owns it, applied to that account's messages.

``/clickatell/callback/`` serves every account whose API speaks the legacy callback
fields: the ``api_id`` a callback carries names its Clickatell API product, and so the
account in settings whose ``API_ID`` it is.  That account's ``CALLBACK_*`` credentials
authenticate it, and only that account's messages can be touched by it.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from django.core.checks import run_checks
from django.test import Client

from django_clickatell import api
from django_clickatell.models import GatewayExchange, OutboundMessage, UnmatchedCallback
from django_clickatell.services.callbacks import match_unmatched_callbacks
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import wait_until
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db
URL = "/clickatell/callback/"
DEFAULT_ID, SECOND_ID = "1234567", "7654321"
DEFAULT_PAIR = ("clickatell", "cb-default-Pa55-0a9e")
SECOND_PAIR = ("clickatell-2", "cb-second-Pa55-77f1")


def basic(pair: tuple[str, str]) -> dict[str, Any]:
    token = base64.b64encode(":".join(pair).encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def fields(message: OutboundMessage, api_id: str, status: str = "003") -> dict[str, str]:
    return {
        "api_id": api_id,
        "apiMsgId": str(message.apimsgid),
        "cliMsgId": message.climsgid,
        "to": message.recipient,
        "from": "Clinic",
        "timestamp": "1700000000",
        "status": status,
    }


def second_account(**extra: Any) -> dict[str, Any]:
    return {
        "USERNAME": "second",
        "PASSWORD": "second-api-pass",
        "API_ID": SECOND_ID,
        "CALLBACK_USERNAME": SECOND_PAIR[0],
        "CALLBACK_PASSWORD": SECOND_PAIR[1],
        **extra,
    }


@pytest.fixture
def two_accounts(settings: Any) -> None:
    """The default account and a second legacy account, each with its own callback pair."""
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "API_ID": DEFAULT_ID,
        "CALLBACK_USERNAME": DEFAULT_PAIR[0],
        "CALLBACK_PASSWORD": DEFAULT_PAIR[1],
        "ACCOUNTS": {"second": second_account()},
    }


def test_a_named_accounts_callback_arrives(client: Client, two_accounts: None) -> None:
    """It was refused (401): only the top-level credentials were accepted."""
    [message] = scheduled_messages(None, 1, account="second")
    response = client.post(URL, fields(message, SECOND_ID), **basic(SECOND_PAIR))
    assert (response.status_code, response.content) == (200, b"OK applied")
    message.refresh_from_db()
    assert message.status == "003"
    assert message.exchanges.filter(command="callback").count() == 1


def test_a_named_account_needs_no_top_level_credentials(client: Client, settings: Any) -> None:
    """It was refused (403 "Callbacks are not configured"): the top level sets none."""
    settings.CLICKATELL = {**settings.CLICKATELL, "ACCOUNTS": {"second": second_account()}}
    [message] = scheduled_messages(None, 1, account="second")
    response = client.post(URL, fields(message, SECOND_ID, "004"), **basic(SECOND_PAIR))
    assert response.status_code == 200, response.content
    message.refresh_from_db()
    assert message.status == "004"


def test_each_account_is_checked_against_its_own_credentials_only(
    client: Client, two_accounts: None
) -> None:
    first, second = scheduled_messages(None, 2)
    OutboundMessage.objects.filter(pk=second.pk).update(account="second")
    # The default pair with the second account's api_id, and the other way round: 401.
    assert client.post(URL, fields(second, SECOND_ID), **basic(DEFAULT_PAIR)).status_code == 401
    assert client.post(URL, fields(first, DEFAULT_ID), **basic(SECOND_PAIR)).status_code == 401
    for message in (first, second):
        message.refresh_from_db()
        assert message.status == "011"
    assert not GatewayExchange.objects.exists()
    # Each with its own pair: applied.
    assert client.post(URL, fields(first, DEFAULT_ID), **basic(DEFAULT_PAIR)).status_code == 200
    assert client.post(URL, fields(second, SECOND_ID), **basic(SECOND_PAIR)).status_code == 200
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {"003"}


def test_one_accounts_callback_never_touches_another_accounts_message(
    client: Client, two_accounts: None
) -> None:
    """The default account's pair and api_id, naming the second account's message: it
    changed that message to 004.  Now it is at most kept for the default account, where
    no message of the second account will ever match it."""
    [message] = scheduled_messages(None, 1, account="second")
    response = client.post(URL, fields(message, DEFAULT_ID, "004"), **basic(DEFAULT_PAIR))
    assert response.status_code == 200, response.content
    message.refresh_from_db()
    assert (message.status, message.exchanges.count()) == ("011", 0)
    kept = UnmatchedCallback.objects.all()
    assert {callback.account for callback in kept} <= {"default"}
    assert match_unmatched_callbacks(message) == 0
    message.refresh_from_db()
    assert message.status == "011"


def test_an_unknown_api_id_is_refused_after_the_default_credentials(
    client: Client, two_accounts: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="django_clickatell")
    [message] = scheduled_messages(None, 1)
    response = client.post(URL, fields(message, "999"), **basic(DEFAULT_PAIR))
    assert (response.status_code, response.content) == (403, b"Unknown api_id")
    assert "api_id '999' is no account's API_ID" in caplog.text
    assert client.post(URL, fields(message, "999"), **basic(SECOND_PAIR)).status_code == 401
    message.refresh_from_db()
    assert message.status == "011"


def test_an_account_without_credentials_refuses_its_callbacks_and_says_which(
    client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="django_clickatell")
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "CALLBACK_USERNAME": DEFAULT_PAIR[0],
        "CALLBACK_PASSWORD": DEFAULT_PAIR[1],
        "ACCOUNTS": {"second": second_account(CALLBACK_USERNAME="", CALLBACK_PASSWORD="")},
    }
    [message] = scheduled_messages(None, 1, account="second")
    response = client.post(URL, fields(message, SECOND_ID), **basic(DEFAULT_PAIR))
    assert (response.status_code, response.content) == (403, b"Callbacks are not configured")
    assert "'second'" in caplog.text
    assert "['ACCOUNTS']['second']['CALLBACK_USERNAME']" in caplog.text


def test_two_accounts_with_one_api_id_refuse_its_callbacks_and_fail_the_check(
    client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Nothing can tell whose callback it is: neither account gets it (Clickatell retries
    it for days, so it arrives once the settings are fixed), and ``check`` says why."""
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "API_ID": DEFAULT_ID,
        "CALLBACK_USERNAME": DEFAULT_PAIR[0],
        "CALLBACK_PASSWORD": DEFAULT_PAIR[1],
        "ACCOUNTS": {"second": second_account(API_ID=DEFAULT_ID)},
    }
    [message] = scheduled_messages(None, 1)
    caplog.set_level(logging.ERROR, logger="django_clickatell")
    response = client.post(URL, fields(message, DEFAULT_ID), **basic(DEFAULT_PAIR))
    assert response.status_code == 500
    message.refresh_from_db()
    assert message.status == "011"
    assert "API_ID" in caplog.text
    found = [m for m in run_checks(tags=["django_clickatell"]) if m.id]
    assert [m.id for m in found] == ["django_clickatell.E014"]
    assert "'second'" in found[0].msg
    assert "'default'" in found[0].msg


def test_the_url_without_its_slash_is_the_same_endpoint(client: Client, two_accounts: None) -> None:
    """A redirect would lose the POST (and APPEND_SLASH raises on a POST while DEBUG)."""
    [message] = scheduled_messages(None, 1, account="second")
    response = client.post(URL.rstrip("/"), fields(message, SECOND_ID), **basic(SECOND_PAIR))
    assert response.status_code == 200, response.content


def test_deliver_callback_speaks_for_the_messages_account(settings: Any) -> None:
    """The test backend's callback helper uses the account's own API id and scope."""
    from django_clickatell.testing import deliver_callback, reset_outbox

    settings.CLICKATELL = {
        "BACKEND": "test",
        "API_ID": DEFAULT_ID,
        "ACCOUNTS": {"second": {"BACKEND": "test", "API_ID": SECOND_ID}},
    }
    reset_outbox()
    [message] = api.send_sms("+27999000001", "hi", account="second", wait=True)
    assert deliver_callback(str(message.apimsgid), "004") == "applied"
    message.refresh_from_db()
    assert message.status == "004"


# -- end to end: the simulator pushes a named account's callbacks over HTTP -----------------


@pytest.mark.django_db(transaction=True)
def test_simulator_callbacks_reach_a_named_legacy_account(
    simulator: ClickatellSimulator, live_server: Any, settings: Any
) -> None:
    """The default account is a One API one; the legacy account is named.  Its statuses
    now arrive, routed by the simulator's api_id to its own credentials."""
    legacy = {
        "USERNAME": settings.CLICKATELL["USERNAME"],
        "PASSWORD": settings.CLICKATELL["PASSWORD"],
        "API_ID": simulator.api_id,
        "BASE_URL": simulator.base_url,
        "CALLBACK_USERNAME": SECOND_PAIR[0],
        "CALLBACK_PASSWORD": SECOND_PAIR[1],
    }
    settings.CLICKATELL = {
        "BACKEND": "one_api",
        "API_KEY": simulator.one_api.api_key,
        "BASE_URL": simulator.root_url,
        "ACCOUNTS": {"legacy": legacy},
    }
    simulator.handset_delay = 0.3
    simulator.callback_url = live_server.url + URL
    simulator.callback_auth = SECOND_PAIR
    try:
        [message] = api.send_sms("27999000001", "hello", callback=3, account="legacy", wait=True)
        assert wait_until(lambda: simulator.callbacks_sent >= 2, timeout=20), simulator.stats()
        assert simulator.callback_refusals == 0
        message.refresh_from_db()
        assert message.status == "004"
    finally:
        simulator.callback_url = None
        simulator.callback_auth = None
        simulator.handset_delay = 1.0


# -- the simulator from the command line: one per legacy account, each pushing callbacks ----


@contextmanager
def simulator_process(api_id: str, callback_url: str, pair: tuple[str, str]) -> Iterator[str]:
    """``python -m django_clickatell.simulator`` for one legacy account; yields its base URL."""
    env = {
        **os.environ,
        "CLICKATELL_PASSWORD": f"pw-{api_id}",
        "CLICKATELL_CALLBACK_USERNAME": pair[0],
        "CLICKATELL_CALLBACK_PASSWORD": pair[1],
    }
    command = [sys.executable, "-m", "django_clickatell.simulator", "--port", "0"]
    command += ["--api-id", api_id, "--callback-url", callback_url]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in first, first
        shown = [process.stdout.readline() for _ in range(5)]
        assert f'"API_ID": "{api_id}"' in shown[2]
        assert f"legacy to {callback_url}" in shown[-1]
        yield first.rsplit(" ", 1)[1].strip()
    finally:
        process.terminate()
        process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()


def test_the_simulators_help_lists_the_legacy_callback_settings() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "django_clickatell.simulator", "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for name in ("--callback-url", "--callback-username", "CLICKATELL_CALLBACK_PASSWORD"):
        assert name in result.stdout


@pytest.mark.django_db(transaction=True)
def test_two_simulated_legacy_accounts_push_their_callbacks_end_to_end(
    live_server: Any, settings: Any
) -> None:
    """Each account's simulator pushes to the one callback URL with its own api_id and
    pair; each account's message gets its own statuses."""
    url = live_server.url + URL
    with (
        simulator_process(DEFAULT_ID, url, DEFAULT_PAIR) as first,
        simulator_process(SECOND_ID, url, SECOND_PAIR) as second,
    ):
        settings.CLICKATELL = {
            **settings.CLICKATELL,
            "USERNAME": "demo",
            "PASSWORD": f"pw-{DEFAULT_ID}",
            "API_ID": DEFAULT_ID,
            "BASE_URL": first,
            "CALLBACK_USERNAME": DEFAULT_PAIR[0],
            "CALLBACK_PASSWORD": DEFAULT_PAIR[1],
            "ACCOUNTS": {
                "second": second_account(
                    USERNAME="demo", PASSWORD=f"pw-{SECOND_ID}", BASE_URL=second
                )
            },
        }
        [mine] = api.send_sms("27999000001", "hello", callback=3, wait=True)
        [theirs] = api.send_sms("27999000002", "hello", callback=3, account="second", wait=True)

        def delivered() -> bool:
            statuses = OutboundMessage.objects.filter(pk__in=[mine.pk, theirs.pk])
            return set(statuses.values_list("status", flat=True)) == {"004"}

        assert wait_until(delivered, timeout=30)
    # A callback may outrun its send's record; kept, it was then applied to its message.
    assert not UnmatchedCallback.objects.filter(matched_message__isnull=True).exists()
    for message in (mine, theirs):
        callbacks = message.exchanges.filter(command="callback").order_by("pk")
        assert list(callbacks.values_list("status", flat=True)) == ["003", "004"]


def test_a_failure_inside_a_named_accounts_callback_shows_no_secret_on_the_debug_page(
    settings: Any, two_accounts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DEBUG on, the service broken: Django's error page shows every frame's locals and
    the request; neither the account's callback password nor its API password is there."""
    from django_clickatell import views

    def broken(params: Any, *, api_id: str, account: str) -> str:
        assert account == "second"  # routed to the account that owns the api_id
        raise RuntimeError("database on fire")

    monkeypatch.setattr(views, "receive_callback", broken)
    settings.DEBUG = True
    [message] = scheduled_messages(None, 1, account="second")
    client = Client(raise_request_exception=False)
    for accept in ("text/html", "text/plain"):
        response = client.post(
            URL, fields(message, SECOND_ID), HTTP_ACCEPT=accept, **basic(SECOND_PAIR)
        )
        assert response.status_code == 500
        page = response.content.decode()
        assert "database on fire" in page  # the page is the technical one
        for secret in (SECOND_PAIR[1], "second-api-pass", DEFAULT_PAIR[1]):
            assert secret not in page
        assert basic(SECOND_PAIR)["HTTP_AUTHORIZATION"].split()[1] not in page
