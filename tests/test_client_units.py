"""The client's HTTP behaviour, with ``responses`` standing in for the gateway."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs

import pytest
import redis
import requests
import responses
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured

from django_clickatell import __version__
from django_clickatell.exceptions import (
    AuthenticationError,
    CommandNotSent,
    GatewayError,
    GatewayHTTPError,
    GatewayTimeout,
    GatewayUnreachable,
    ProtocolError,
    SessionExpired,
)
from django_clickatell.gateway.client import ClickatellClient
from django_clickatell.gateway.session import forget_local_sessions as reset_local_memo
from django_clickatell.gateway.transport import reset_transports
from django_clickatell.protocol.redaction import Secret

BASE = "https://gw.test/http/"
SID1 = "a" * 32
SID2 = "b" * 32
MSG = "f6b9af2a2c9e5b18ee2d257e3def5d66"


@pytest.fixture
def gw(settings: Any, redis_cache: None) -> Iterator[responses.RequestsMock]:
    settings.CLICKATELL = {**settings.CLICKATELL, "BASE_URL": BASE}
    reset_transports()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
    reset_transports()


def form(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def endpoint(call: Any) -> str:
    return str(call.request.url).rsplit("/", 1)[1]


def test_delmsg_posts_form_with_session(gw: responses.RequestsMock) -> None:
    gw.post(BASE + "auth", body=f"OK: {SID1}")
    gw.post(BASE + "delmsg", body=f"ID: {MSG} Status: 006")
    reply = ClickatellClient().delmsg(apimsgid=MSG)
    assert reply.status == "006"
    auth, delmsg = gw.calls
    assert form(auth) == {"user": "demo", "password": "demo-password", "api_id": "1234567"}
    assert form(delmsg) == {"apimsgid": MSG, "session_id": SID1}
    for call in gw.calls:
        assert call.request.method == "POST"
        assert "?" not in str(call.request.url)
        assert call.request.headers["User-Agent"].startswith(f"django-clickatell/{__version__} ")


def test_session_reused_between_calls(gw: responses.RequestsMock) -> None:
    gw.post(BASE + "auth", body=f"OK: {SID1}")
    gw.post(BASE + "ping", body="OK:")
    client = ClickatellClient()
    client.ping()
    ClickatellClient().ping()
    assert [str(c.request.url).rsplit("/", 1)[1] for c in gw.calls] == ["auth", "ping", "ping"]


def test_expired_session_reauthenticates_once(gw: responses.RequestsMock) -> None:
    gw.post(BASE + "auth", body=f"OK: {SID1}")
    gw.post(BASE + "ping", body="OK:")
    ClickatellClient().ping()
    gw.replace(responses.POST, BASE + "auth", body=f"OK: {SID2}")
    gw.post(BASE + "delmsg", body="ERR: 003, Session ID expired")
    gw.post(BASE + "delmsg", body=f"ID: {MSG} Status: 006")
    assert ClickatellClient().delmsg(apimsgid=MSG).status == "006"
    sent = [form(c).get("session_id") for c in gw.calls if str(c.request.url).endswith("delmsg")]
    assert sent == [SID1, SID2]


def test_second_expiry_is_not_sent(gw: responses.RequestsMock) -> None:
    gw.post(BASE + "auth", body=f"OK: {SID1}")
    gw.post(BASE + "delmsg", body="ERR: 005, Missing session ID")
    with pytest.raises(CommandNotSent) as info:
        ClickatellClient().delmsg(apimsgid=MSG)
    assert isinstance(info.value.cause, SessionExpired)
    assert info.value.code == 5
    assert info.value.retryable
    assert len([c for c in gw.calls if str(c.request.url).endswith("auth")]) == 2
    assert len([c for c in gw.calls if str(c.request.url).endswith("delmsg")]) == 2


def test_refused_login_is_remembered(gw: responses.RequestsMock) -> None:
    gw.post(BASE + "auth", body="ERR: 001, Authentication failed")
    for _ in range(3):
        with pytest.raises(CommandNotSent) as info:
            ClickatellClient().ping()
        assert isinstance(info.value.cause, AuthenticationError)
        assert info.value.code == 1
    assert len(gw.calls) == 1


def test_auth_raises_its_own_refusal(gw: responses.RequestsMock) -> None:
    gw.post(BASE + "auth", body="ERR: 001, Authentication failed")
    with pytest.raises(AuthenticationError) as info:
        ClickatellClient().auth()
    assert info.value.code == 1
    assert not isinstance(info.value, CommandNotSent)


def test_refused_auth_keeps_a_cached_session_of_the_same_credentials(
    gw: responses.RequestsMock,
) -> None:
    """The explicit check does not throw away an id that may still work."""
    gw.post(BASE + "auth", body=f"OK: {SID1}")
    gw.post(BASE + "ping", body="OK:")
    ClickatellClient().ping()
    gw.replace(responses.POST, BASE + "auth", body="ERR: 001, Authentication failed")
    with pytest.raises(AuthenticationError):
        ClickatellClient().auth()
    reset_local_memo()
    ClickatellClient().ping()
    assert [form(c).get("session_id") for c in gw.calls if endpoint(c) == "ping"] == [SID1, SID1]


@pytest.mark.parametrize("code", [1, 2, 4, 7, 108])
def test_account_refused_on_the_command_is_not_sent(gw: responses.RequestsMock, code: int) -> None:
    gw.post(BASE + "auth", body=f"OK: {SID1}")
    gw.post(BASE + "delmsg", body=f"ERR: {code:03d}, Refused")
    with pytest.raises(CommandNotSent) as info:
        ClickatellClient().delmsg(apimsgid=MSG)
    assert info.value.code == code
    assert isinstance(info.value.cause, AuthenticationError)
    assert [endpoint(c) for c in gw.calls] == ["auth", "delmsg"]  # nothing renewed or repeated


@pytest.mark.parametrize(
    ("kwargs", "cause"),
    [
        ({"body": requests.ReadTimeout("slow")}, GatewayTimeout),
        ({"body": requests.ConnectionError("reset")}, GatewayUnreachable),
        ({"body": "<h1>oops</h1>", "status": 502}, GatewayHTTPError),
        ({"body": "<html>captive portal</html>"}, ProtocolError),
        ({"body": "ERR: 901, Internal error"}, GatewayError),
    ],
)
def test_login_failure_of_any_kind_means_not_sent(
    gw: responses.RequestsMock, kwargs: dict[str, Any], cause: type[Exception]
) -> None:
    gw.post(BASE + "auth", **kwargs)
    with pytest.raises(CommandNotSent) as info:
        ClickatellClient().delmsg(apimsgid=MSG)
    assert isinstance(info.value.cause, cause)
    assert info.value.command == "delmsg"
    assert [endpoint(c) for c in gw.calls] == ["auth"]


def test_cached_failure_is_redacted_and_sanitised(gw: responses.RequestsMock) -> None:
    gw.post(BASE + "auth", body="ERR: 001, no\x00 such user demo / demo-password here")
    client = ClickatellClient()
    with pytest.raises(AuthenticationError):
        client.auth()
    code, description = cache.get(client.sessions.failure_key)
    assert code == 1
    assert "demo-password" not in description
    assert "\x00" not in description
    with pytest.raises(CommandNotSent) as info:
        client.ping()
    assert "demo-password" not in str(info.value)


def test_auth_forces_a_new_session(gw: responses.RequestsMock) -> None:
    gw.post(BASE + "auth", body=f"OK: {SID1}")
    client = ClickatellClient()
    client.auth()
    client.auth()
    assert len(gw.calls) == 2


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"body": requests.ConnectTimeout("slow")}, GatewayTimeout),
        ({"body": requests.ReadTimeout("slow")}, GatewayTimeout),
        ({"body": requests.ConnectionError("reset")}, GatewayUnreachable),
        ({"body": "<h1>oops</h1>", "status": 502}, GatewayHTTPError),
        ({"body": "moved", "status": 302, "headers": {"Location": "/login"}}, GatewayHTTPError),
        ({"body": "<html>captive portal</html>"}, ProtocolError),
    ],
)
def test_failures_are_typed(
    gw: responses.RequestsMock, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    gw.post(BASE + "auth", body=f"OK: {SID1}")
    gw.post(BASE + "delmsg", **kwargs)
    with pytest.raises(error) as info:
        ClickatellClient().delmsg(apimsgid=MSG)
    assert info.value.retryable  # type: ignore[attr-defined]
    # The library's exception is not chained (its frames hold the encoded form): the
    # error stands alone and names the library's type instead.
    assert info.value.__cause__ is None
    assert info.value.__context__ is None
    if "body" in kwargs and isinstance(kwargs["body"], Exception):
        assert type(kwargs["body"]).__name__ in str(info.value)
    assert SID1 not in str(info.value)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"apimsgid": MSG, "climsgid": "abc"},
        {"apimsgid": "bad id"},
        {"climsgid": "x" * 33},
        {"climsgid": "with-dash"},
    ],
)
def test_message_ids_validated_before_any_request(
    gw: responses.RequestsMock, kwargs: dict[str, str]
) -> None:
    with pytest.raises(ValueError, match="id"):
        ClickatellClient().delmsg(**kwargs)
    assert len(gw.calls) == 0


def test_delmsg_by_climsgid(gw: responses.RequestsMock) -> None:
    gw.post(BASE + "auth", body=f"OK: {SID1}")
    gw.post(BASE + "delmsg", body=f"ID: {MSG} Status: 006")
    assert ClickatellClient().delmsg(climsgid="order42").apimsgid == MSG
    assert form(gw.calls[1])["climsgid"] == "order42"


def test_balance_query_and_charge(gw: responses.RequestsMock) -> None:
    gw.post(BASE + "auth", body=f"OK: {SID1}")
    gw.post(BASE + "getbalance", body="Credit: 12.5")
    gw.post(BASE + "querymsg", body=f"ID: {MSG} Status: 011")
    gw.post(BASE + "getmsgcharge", body=f"apiMsgId: {MSG} charge: 0.3 status: 004")
    client = ClickatellClient()
    assert str(client.getbalance().credit) == "12.5"
    assert client.querymsg(apimsgid=MSG).status == "011"
    assert client.getmsgcharge(apimsgid=MSG).status == "004"


def test_session_key_is_namespaced_without_password(
    gw: responses.RequestsMock, settings: Any
) -> None:
    gw.post(BASE + "auth", body=f"OK: {SID1}")
    client = ClickatellClient()
    client.sessions.get()
    key = client.sessions.session_key
    assert "demo-password" not in key
    assert "demo" not in key  # the account is hashed, not spelled out
    sealed = cache.get(key)
    assert isinstance(sealed, bytes)
    assert SID1.encode() not in sealed
    assert client.sessions.keys.open(sealed) == Secret(SID1)
    ttl = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"]).ttl(cache.make_key(key))
    assert 0 < ttl <= 600  # inside Clickatell's 15-minute idle window


@pytest.mark.parametrize("url", ["http://gw.test/http/", "http://api.clickatell.com/"])
def test_plain_http_to_another_host_is_refused_before_anything_is_sent(
    gw: responses.RequestsMock, settings: Any, url: str
) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "BASE_URL": url}
    gw.post(url + "auth", body=f"OK: {SID1}")
    gw.post(url + "ping", body="OK:")
    with pytest.raises(ImproperlyConfigured, match="not https"):
        ClickatellClient().ping()
    assert len(gw.calls) == 0  # the password never left
