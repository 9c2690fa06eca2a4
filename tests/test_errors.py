"""Errors that tell the user what to do (issue 19, item 7), on every backend, over HTTP.

One table: each kind of failure, met by each real backend against the bundled
simulator (which speaks all three APIs), raises the same exception type on
every backend and for every call.  Refused credentials and a wrong ``BASE_URL``
name the account and the setting to fix, never a secret; the management
commands print them in one line; the admin never says "nothing to do" about
them; a One API ``400`` about one message keeps that message's own error code.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from django_clickatell import api
from django_clickatell.exceptions import (
    AuthenticationError,
    ClickatellError,
    CommandNotSent,
    CredentialsRefused,
    GatewayError,
    GatewayRateLimited,
    GatewayServerError,
    GatewayTimeout,
    WrongBaseUrl,
)
from django_clickatell.gateway.backends import Backend, get_backend
from django_clickatell.gateway.backends.base import OutgoingSms
from django_clickatell.models import GatewayExchange, OutboundMessage, SendState
from django_clickatell.simulator import ClickatellSimulator
from tests.every_backend import BACKENDS, backend_settings, secret_of

ALIAS = "platform"
#: The account's own dict, as every message about it must name it.
ACCOUNT_DICT = f"settings.CLICKATELL['ACCOUNTS'][{ALIAS!r}]"

#: The one type each kind of failure raises, whichever backend met it.
KINDS: dict[str, type[ClickatellError]] = {
    "refused credentials": CredentialsRefused,
    "wrong URL (404)": WrongBaseUrl,
    "server error": GatewayServerError,
    "timeout": GatewayTimeout,
    "throttled (429)": GatewayRateLimited,
    "invalid message": GatewayError,
}
CALLS = ["check_credentials", "balance", "send"]


def wrong_credential(backend: str) -> dict[str, str]:
    if backend == "legacy_http":
        return {"PASSWORD": "wrong-Pa55word-h5"}
    return {"API_KEY": "wrong-K3y-h5-0123456789"}


def wrong_url(simulator: ClickatellSimulator, backend: str) -> str:
    """A URL the simulator answers 404 at: for the One API, the one it prints (``…/v1/``)."""
    return simulator.root_url + ("v1/" if backend == "one_api" else "nowhere/")


def names_the_setting(text: str, key: str) -> bool:
    """*text* names the account's *key*: in full, or as one of several keys of its dict."""
    return f"{ACCOUNT_DICT}[{key!r}]" in text or (key in text and ACCOUNT_DICT in text)


#: Builds the account ``platform`` on a backend (``account(backend, **overrides)``).
Account = Callable[..., Backend]


@pytest.fixture
def account(simulator: ClickatellSimulator, settings: Any) -> Account:
    """Builds the named account ``platform`` on a backend, with some settings overridden."""

    def build(backend: str, **overrides: Any) -> Backend:
        values = {**backend_settings(simulator, backend), "TIMEOUT": (2.0, 0.5), **overrides}
        settings.CLICKATELL = {**settings.CLICKATELL, "ACCOUNTS": {ALIAS: values}}
        return get_backend(ALIAS)

    return build


def command_of(backend: str, call: str) -> str:
    """The command (as the simulator counts it) that *call* makes on *backend*."""
    if call == "check_credentials":
        return "auth" if backend == "legacy_http" else "getbalance"
    return {"balance": "getbalance", "send": "sendmsg"}[call]


def make(
    kind: str, backend: str, call: str, simulator: ClickatellSimulator, account: Account
) -> Backend:
    """The account, and the simulator primed so that *call* meets *kind*."""
    command = command_of(backend, call)
    if kind == "refused credentials":
        return account(backend, **wrong_credential(backend))
    if kind == "wrong URL (404)":
        return account(backend, BASE_URL=wrong_url(simulator, backend))
    fault = {"server error": "http_500", "timeout": "delay", "throttled (429)": "http_429"}
    simulator.inject(fault[kind], command=command, delay=1.0)
    return account(backend)


def invoke(target: Backend, call: str, text: str = "hello") -> object:
    if call == "send":
        return target.send([OutgoingSms(to="27999000001", text=text, climsgid="h5errors1")])
    return getattr(target, call)()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("kind", [kind for kind in KINDS if kind != "invalid message"])
def test_each_kind_of_failure_has_one_type_on_every_backend(
    kind: str, call: str, backend: str, simulator: ClickatellSimulator, account: Account
) -> None:
    target = make(kind, backend, call, simulator, account)
    with pytest.raises(ClickatellError) as raised:
        invoke(target, call)
    assert type(raised.value) is KINDS[kind], f"{backend} {call}: {raised.value!r}"
    text = str(raised.value)
    assert "\n" not in text
    assert secret_of(simulator, backend) not in text + repr(raised.value)
    assert all(value not in text for value in wrong_credential(backend).values())


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_invalid_message_has_one_type_on_every_backend(
    backend: str, simulator: ClickatellSimulator, account: Account
) -> None:
    with pytest.raises(ClickatellError) as raised:
        invoke(account(backend), "send", text="")
    assert type(raised.value) is KINDS["invalid message"]
    assert isinstance(raised.value, GatewayError)
    assert raised.value.code == 107  # "Empty message": the gateway's own code is kept


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call", CALLS)
def test_refused_credentials_name_the_account_and_the_setting(
    call: str, backend: str, simulator: ClickatellSimulator, account: Account
) -> None:
    target = account(backend, **wrong_credential(backend))
    with pytest.raises(CredentialsRefused) as raised:
        invoke(target, call)
    error = raised.value
    text = str(error)
    # Catchable as a refusal, and nothing was carried out: the message waits for the fix.
    assert isinstance(error, AuthenticationError)
    assert isinstance(error, CommandNotSent)
    assert error.account == ALIAS
    assert f"account {ALIAS!r}" in text
    [key] = wrong_credential(backend)
    assert f"{ACCOUNT_DICT}[{key!r}]" in error.settings
    assert names_the_setting(text, key)
    assert error.code == 1  # the gateway's code, as it said it
    assert "was not sent" not in text  # no "authentication failed: … was not sent"
    assert "Nothing was carried out" in text


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("call", CALLS)
def test_a_base_url_that_404s_says_the_url_is_wrong(
    call: str, backend: str, simulator: ClickatellSimulator, account: Account
) -> None:
    url = wrong_url(simulator, backend)
    target = account(backend, BASE_URL=url)
    with pytest.raises(WrongBaseUrl) as raised:
        invoke(target, call)
    error = raised.value
    text = str(error)
    assert not isinstance(error, AuthenticationError)
    assert "refused" not in text
    assert "Authentication" not in text
    assert error.url == url
    assert url in text
    assert f"{ACCOUNT_DICT}['BASE_URL']" in text
    assert error.settings == (f"{ACCOUNT_DICT}['BASE_URL']",)
    assert "404" in text


def test_the_default_account_names_its_top_level_setting(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    settings.CLICKATELL = {**simulator.settings(), "PASSWORD": "wrong-Pa55word-h5"}
    with pytest.raises(CredentialsRefused) as raised:
        get_backend().balance()
    assert "account 'default'" in str(raised.value)
    assert "settings.CLICKATELL['PASSWORD']" in raised.value.settings
    assert "PASSWORD" in str(raised.value)
    assert "ACCOUNTS" not in str(raised.value)


# -- the management commands ---------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("command", ["clickatell_auth", "clickatell_balance"])
def test_commands_print_what_to_fix_in_one_line(
    command: str, backend: str, simulator: ClickatellSimulator, account: Account
) -> None:
    account(backend, **wrong_credential(backend))
    with pytest.raises(CommandError) as raised:
        call_command(command, account=ALIAS)
    text = str(raised.value)
    [key] = wrong_credential(backend)
    assert "\n" not in text
    assert f"account {ALIAS!r}" in text
    assert names_the_setting(text, key)
    assert "was not sent" not in text
    assert secret_of(simulator, backend) not in text
    assert wrong_credential(backend)[key] not in text


@pytest.mark.parametrize("backend", BACKENDS)
def test_clickatell_auth_with_the_simulators_printed_url_says_wrong_url(
    backend: str, simulator: ClickatellSimulator, account: Account
) -> None:
    """Issue 21: ``BASE_URL`` set to ``…/v1/`` printed "Authentication failed … ERR 000"."""
    account(backend, BASE_URL=wrong_url(simulator, backend))
    with pytest.raises(CommandError) as raised:
        call_command("clickatell_auth", account=ALIAS)
    text = str(raised.value)
    assert "Authentication failed" not in text
    assert "ERR 000" not in text
    assert wrong_url(simulator, backend) in text
    assert f"{ACCOUNT_DICT}['BASE_URL']" in text


@pytest.mark.parametrize("command", ["clickatell_auth", "clickatell_balance"])
def test_a_one_api_account_at_the_legacy_http_url_says_wrong_url(
    command: str, simulator: ClickatellSimulator, account: Account
) -> None:
    """Issue 21's newcomer with both kinds of account pasted the legacy ``BASE_URL``
    (``…/http/``) into the One API account: "not JSON: 'ERR: 005, Missing session ID'".
    (The REST backend reads ``…/http/`` as ``…/rest/`` by design.)"""
    account("one_api", BASE_URL=simulator.base_url)
    with pytest.raises(CommandError) as raised:
        call_command(command, account=ALIAS)
    text = str(raised.value)
    assert "legacy HTTP API" in text
    assert simulator.base_url in text
    assert f"{ACCOUNT_DICT}['BASE_URL']" in text
    assert "\n" not in text


def test_clickatell_ping_names_the_account(
    simulator: ClickatellSimulator, account: Account
) -> None:
    account("legacy_http", **wrong_credential("legacy_http"))
    with pytest.raises(CommandError) as raised:
        call_command("clickatell_ping", account=ALIAS)
    assert names_the_setting(str(raised.value), "PASSWORD")
    assert f"account {ALIAS!r}" in str(raised.value)


# -- the record and the admin --------------------------------------------------------------


@pytest.fixture
def refused_message(
    request: Any, simulator: ClickatellSimulator, account: Account, db: None
) -> tuple[OutboundMessage, str]:
    backend = request.param
    account(backend, **wrong_credential(backend))
    [message] = api.send_sms("27999000001", "blocked", account=ALIAS, wait=True)
    message.refresh_from_db()
    return message, backend


@pytest.mark.parametrize("refused_message", BACKENDS, indirect=True)
def test_a_message_blocked_by_a_bad_key_records_what_to_fix(
    refused_message: tuple[OutboundMessage, str], admin_client: Client
) -> None:
    message, backend = refused_message
    [key] = wrong_credential(backend)
    assert message.send_state == SendState.QUEUED  # waits for the fix; sent once fixed
    assert names_the_setting(message.send_error, key)
    exchange = message.exchanges.get()
    assert exchange.outcome == GatewayExchange.Outcome.NOT_SENT
    assert exchange.error_code == 1
    assert ACCOUNT_DICT in exchange.detail

    page = admin_client.get("/admin/django_clickatell/outboundmessage/").content.decode()
    assert "nothing to do" not in page
    assert "Fix the setting named here" in page
    detail = admin_client.get(
        f"/admin/django_clickatell/outboundmessage/{message.pk}/change/"
    ).content.decode()
    assert "nothing to do" not in detail


ONE_MESSAGE_400 = [
    # The message's own error, the request's left null.
    {
        "messages": [
            {
                "apiMessageId": None,
                "accepted": False,
                "to": "27999000001",
                "error": {"code": 105, "description": "Invalid destination address"},
            }
        ],
        "error": None,
    },
    # The Platform API's flat fields.
    {"messages": [], "errorCode": 105, "errorDescription": "Invalid destination address"},
    {
        "messages": [
            {
                "to": "27999000001",
                "accepted": False,
                "errorCode": "105",
                "error": "Invalid destination address",
            }
        ]
    },
]


@pytest.mark.parametrize("body", ONE_MESSAGE_400)
def test_a_one_api_400_about_one_message_keeps_its_code(
    body: dict[str, Any], simulator: ClickatellSimulator, account: Account, db: None
) -> None:
    account("one_api")
    simulator.inject("http_400", command="sendmsg", body=json.dumps(body))
    [message] = api.send_sms("27999000001", "refused", account=ALIAS, wait=True)
    message.refresh_from_db()
    assert message.send_state == SendState.REJECTED
    assert "ERR 105: Invalid destination address" in message.send_error
    assert "ERR ---" not in message.send_error
    exchange = message.exchanges.get()
    assert (exchange.error_code, exchange.error_description) == (
        105,
        "Invalid destination address",
    )


def test_a_one_api_refused_recipient_keeps_its_own_code(
    simulator: ClickatellSimulator, account: Account, db: None
) -> None:
    """Issue 22's opt-outs: One API error 26 reaches the record as 26."""
    account("one_api")
    simulator.one_api.refused.add("27999000001")
    try:
        [message] = api.send_sms("27999000001", "opted out", account=ALIAS, wait=True)
    finally:
        simulator.one_api.refused.clear()
    message.refresh_from_db()
    assert message.send_state == SendState.REJECTED
    assert "ERR 026: Number opted out" in message.send_error
    exchange = message.exchanges.get()
    assert (exchange.error_code, exchange.error_description) == (26, "Number opted out")


def refused_key_error() -> str:
    """What a message records after a refused key (as ``recording.reason`` writes it)."""
    from django_clickatell.exceptions import AuthenticationError as Refusal

    error = CredentialsRefused(
        "sendmsg",
        Refusal(1, "Invalid or missing Integration API Key", command="sendmsg"),
        account=ALIAS,
        problem="its API key was refused",
        fix=f"fix {ACCOUNT_DICT}['API_KEY']",
        settings=(f"{ACCOUNT_DICT}['API_KEY']",),
    )
    return f"Not sent yet: {error}"


@pytest.mark.parametrize(
    ("state", "fields"),
    [
        ("queued", {"send_error": refused_key_error()}),
        ("failed", {"send_error": refused_key_error().replace("Not sent yet", "Gave up sending")}),
        ("stop_retrying", {"cancel_error": refused_key_error()}),
        ("stop_gave_up", {"cancel_error": refused_key_error()}),
        # A row recorded before errors named their setting: the legacy code still tells.
        ("queued", {"send_error": "Not sent yet: Clickatell sendmsg was not sent: ERR 001: x"}),
    ],
)
def test_the_admin_says_what_to_fix_never_nothing_to_do(state: str, fields: dict[str, str]) -> None:
    from django_clickatell.admin.explanations import EXPLAIN

    reason, hint = EXPLAIN[state](OutboundMessage(account=ALIAS, **fields))
    assert "nothing to do" not in str(hint)
    assert "Only you can" in str(hint) or "only you can" in str(hint)
    if "settings.CLICKATELL" in reason:
        assert f"account “{ALIAS}”" in str(hint)


@pytest.mark.parametrize(
    ("body", "code", "description"),
    [
        (json.dumps(ONE_MESSAGE_400[0]), 105, "Invalid destination address"),
        (json.dumps(ONE_MESSAGE_400[1]), 105, "Invalid destination address"),
        (json.dumps(ONE_MESSAGE_400[2]), 105, "Invalid destination address"),
        # The documented request-level error wins over the messages' own.
        (json.dumps({"messages": [], "error": {"code": 101, "description": "Bad"}}), 101, "Bad"),
        # Two messages refused for different reasons: no one code speaks for the request.
        (
            json.dumps(
                {
                    "messages": [
                        {"to": "1", "error": {"code": 105, "description": "a"}},
                        {"to": "2", "error": {"code": 26, "description": "b"}},
                    ]
                }
            ),
            None,
            "HTTP 400",
        ),
        ("[" * 100_000, None, "HTTP 400"),  # hostile nesting: no code, no crash
        ("<html>Bad Request</html>", None, "HTTP 400"),
    ],
)
def test_a_one_api_400_body_is_read_defensively(
    body: str, code: int | None, description: str
) -> None:
    from django_clickatell.protocol import one_api

    error = one_api.error_for_status("sendmsg", 400, body)
    assert type(error) is GatewayError
    assert (error.code, error.description) == (code, description)
