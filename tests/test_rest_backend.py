"""The REST backend: its requests (``responses`` as the gateway) and its flows on the simulator."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from django.core.exceptions import ImproperlyConfigured

from django_clickatell.conf import ClickatellSettings
from django_clickatell.exceptions import (
    AuthenticationError,
    ClickatellError,
    CommandNotSent,
    CredentialsRefused,
    GatewayHTTPError,
    GatewayTimeout,
    GatewayUnreachable,
    InvalidMessage,
    ProtocolError,
    UnknownMessage,
)
from django_clickatell.gateway.backends import backend_class
from django_clickatell.gateway.backends.base import OutgoingSms
from django_clickatell.gateway.backends.rest import RestBackend, message_body, rest_root
from django_clickatell.gateway.client import ClickatellClient
from django_clickatell.gateway.transport import reset_transports
from django_clickatell.protocol.replies import MessageStatusReply, SentMessageReply
from django_clickatell.simulator import ClickatellSimulator
from tests.simulator_cli import base_url_printed_for

ROOT = "https://gw.test/rest/"
KEY = "rest-key-0123456789abcdefXYZ"
MSG = "f6b9af2a2c9e5b18ee2d257e3def5d66"
TO = "27999000001"


def backend(**overrides: Any) -> RestBackend:
    return RestBackend(
        ClickatellSettings({"BACKEND": "rest", "API_KEY": KEY, "BASE_URL": ROOT, **overrides})
    )


def sms(text: str = "Hello", climsgid: str = "c1", **options: Any) -> OutgoingSms:
    return OutgoingSms(to=TO, text=text, climsgid=climsgid, options=options)


def status_json(status: str = "006", apimsgid: str = MSG) -> dict[str, Any]:
    return {"data": {"apiMessageId": apimsgid, "messageStatus": status, "description": ""}}


def no_secret(*texts: str) -> None:
    for text in texts:
        assert KEY not in text


@pytest.fixture
def gw() -> Iterator[responses.RequestsMock]:
    reset_transports()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
    reset_transports()


# -- the backend's requests ------------------------------------------------------------------


def test_registered_as_rest_with_its_capabilities() -> None:
    assert backend_class("rest") is RestBackend
    caps = RestBackend.capabilities
    assert caps.remote_stop
    assert not caps.sessions
    assert caps.native_scheduling
    assert caps.batch_size == 1
    assert caps.query_by_client_id
    assert caps.scheduling_horizon is not None
    assert caps.scheduling_horizon.days == 7


def test_send_posts_json_with_the_key_only_in_the_authorization_header(
    gw: responses.RequestsMock,
) -> None:
    gw.post(
        ROOT + "message",
        json={"data": {"message": [{"accepted": True, "to": TO, "apiMessageId": MSG}]}},
        status=202,
    )
    results = backend().send([sms(scheduled_time=2_000_000_000, concat=3, validity=60)])
    assert results == [SentMessageReply(MSG, TO)]
    (call,) = gw.calls
    request = call.request
    assert request.method == "POST"
    assert request.url == ROOT + "message"
    assert request.headers["Authorization"] == f"Bearer {KEY}"
    assert request.headers["X-Version"] == "1"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Accept"] == "application/json"
    assert isinstance(request.body, bytes)
    sent = json.loads(request.body)
    assert sent == {
        "text": "Hello",
        "to": [TO],
        "clientMessageId": "c1",
        "scheduledDeliveryTime": "2033-05-18T03:33:20Z",
        "maxMessageParts": 3,
        "validityPeriod": 60,
    }
    no_secret(str(request.url), request.body.decode())


def test_message_body_unicode_sender_callback_and_deliv_time() -> None:
    body = message_body(
        OutgoingSms(
            to="+" + TO,
            text="naïve ☃",
            climsgid="c2",
            sender="ACME",
            options={"deliv_time": "15", "callback": "3"},
        ),
        now=1_800_000_000,
    )
    assert body["unicode"] == 1
    assert bytes.fromhex(body["text"]).decode("utf-16-be") == "naïve ☃"
    assert body["to"] == [TO]
    assert body["from"] == "ACME"
    assert body["callback"] == 3
    assert body["scheduledDeliveryTime"] == "2027-01-15T08:15:00Z"  # now + 15 minutes
    assert "unicode" not in message_body(sms("plain GSM text €"))
    with pytest.raises(InvalidMessage):
        message_body(sms(concat="three"))


def test_send_refuses_more_than_one_message_without_a_request(gw: responses.RequestsMock) -> None:
    with pytest.raises(InvalidMessage):
        backend().send([sms(climsgid="a"), sms(climsgid="b")])
    assert not gw.calls


def test_a_result_about_another_recipient_is_a_protocol_error(gw: responses.RequestsMock) -> None:
    gw.post(
        ROOT + "message",
        json={"data": {"message": [{"accepted": True, "to": "27999000999", "apiMessageId": MSG}]}},
        status=202,
    )
    with pytest.raises(ProtocolError):
        backend().send([sms()])


def test_stop_is_a_delete(gw: responses.RequestsMock) -> None:
    gw.delete(ROOT + f"message/{MSG}", json=status_json("006"))
    assert backend().stop(apimsgid=MSG) == MessageStatusReply(MSG, "006")
    (call,) = gw.calls
    assert call.request.method == "DELETE"
    assert call.request.headers["Authorization"] == f"Bearer {KEY}"


def test_stop_by_client_id_looks_the_message_up_then_deletes_it(
    gw: responses.RequestsMock,
) -> None:
    gw.get(ROOT + "message", json=status_json("011"))
    gw.delete(ROOT + f"message/{MSG}", json=status_json("006"))
    assert backend().stop(climsgid="c1").status == "006"
    lookup, stop = gw.calls
    assert lookup.request.method == "GET"
    assert parse_qs(urlsplit(str(lookup.request.url)).query) == {"clientMessageId": ["c1"]}
    assert stop.request.method == "DELETE"


def test_stop_by_client_id_sends_no_delete_when_the_lookup_fails(
    gw: responses.RequestsMock,
) -> None:
    gw.get(ROOT + "message", status=503, headers={"Retry-After": "9"})
    with pytest.raises(CommandNotSent) as caught:
        backend().stop(climsgid="c1")
    assert caught.value.command == "delmsg"
    assert isinstance(caught.value.cause, GatewayHTTPError)
    assert [call.request.method for call in gw.calls] == ["GET"]
    gw.replace(responses.GET, ROOT + "message", status=404, json={"error": {"code": "104"}})
    with pytest.raises(UnknownMessage) as unknown:
        backend().stop(climsgid="c1")
    assert unknown.value.command == "delmsg"
    assert unknown.value.code == 104
    assert [call.request.method for call in gw.calls] == ["GET", "GET"]


def test_query_by_either_id_and_balance(gw: responses.RequestsMock) -> None:
    gw.get(ROOT + f"message/{MSG}", json=status_json("004"))
    gw.get(ROOT + "message", json=status_json("003"))
    gw.get(ROOT + "account/balance", json={"data": {"balance": "300.50"}})
    assert backend().query(apimsgid=MSG).status == "004"
    assert backend().query(climsgid="c9").status == "003"
    assert str(backend().balance().credit) == "300.50"
    backend().check_credentials()
    assert [call.request.method for call in gw.calls] == ["GET"] * 4
    for call in gw.calls:
        no_secret(str(call.request.url))


def test_ids_are_checked_before_any_request(gw: responses.RequestsMock) -> None:
    for kwargs in (
        {},
        {"apimsgid": MSG, "climsgid": "c1"},
        {"apimsgid": "../x"},
        {"climsgid": "a-b"},
    ):
        with pytest.raises(ValueError, match="id"):
            backend().query(**kwargs)
        with pytest.raises(ValueError, match="id"):
            backend().stop(**kwargs)
    assert not gw.calls


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [("30", 30.0), (None, None), ("86400", 3600.0), ("soon", None)],
)
def test_503_and_429_carry_retry_after(
    gw: responses.RequestsMock, retry_after: str | None, expected: float | None
) -> None:
    headers = {"Retry-After": retry_after} if retry_after else {}
    gw.post(ROOT + "message", status=503, body="<html>busy</html>", headers=headers)
    gw.get(ROOT + "account/balance", status=429, json={"error": {}}, headers=headers)
    with pytest.raises(GatewayHTTPError) as caught:
        backend().send([sms()])
    assert caught.value.retry_after == expected
    assert caught.value.command == "sendmsg"
    assert caught.value.retryable
    with pytest.raises(GatewayHTTPError) as limited:
        backend().balance()
    assert limited.value.status_code == 429
    assert limited.value.retry_after == expected


def test_retry_after_as_an_http_date(gw: responses.RequestsMock) -> None:
    gw.get(
        ROOT + "account/balance",
        status=503,
        headers={"Retry-After": formatdate(time.time() + 120, usegmt=True)},
    )
    with pytest.raises(GatewayHTTPError) as caught:
        backend().balance()
    assert caught.value.retry_after == pytest.approx(120, abs=3)


def test_a_refused_key_is_command_not_sent(gw: responses.RequestsMock) -> None:
    gw.delete(
        ROOT + f"message/{MSG}",
        status=401,
        json={"error": {"code": "001", "description": f"Authentication failed for Bearer {KEY}"}},
    )
    with pytest.raises(CommandNotSent) as caught:
        backend().stop(apimsgid=MSG)
    assert isinstance(caught.value.cause, AuthenticationError)
    assert caught.value.code == 1
    no_secret(str(caught.value), repr(caught.value), repr(caught.value.cause))


def test_check_credentials_raises_the_refusal_itself(gw: responses.RequestsMock) -> None:
    """As on every API: ``CredentialsRefused``, an ``AuthenticationError`` with the code."""
    gw.get(ROOT + "account/balance", status=401, json={"error": {"code": "007"}})
    with pytest.raises(AuthenticationError) as caught:
        backend().check_credentials()
    assert type(caught.value) is CredentialsRefused
    assert caught.value.code == 7
    assert "IP lockdown" in str(caught.value)
    gw.replace(responses.GET, ROOT + "account/balance", status=503)
    with pytest.raises(GatewayHTTPError):
        backend().check_credentials()


def test_without_an_api_key_nothing_is_sent(gw: responses.RequestsMock) -> None:
    """An empty key is a settings mistake naming the key (check E001 says so at start-up)."""
    with pytest.raises(ImproperlyConfigured, match=r"\['API_KEY'\]"):
        backend(API_KEY="").balance()
    assert not gw.calls


def test_an_oversized_reply_is_refused(gw: responses.RequestsMock) -> None:
    gw.get(ROOT + "account/balance", body=b'{"data": {"balance": "1"}}' + b" " * 2_000_000)
    with pytest.raises(ProtocolError) as caught:
        backend().balance()
    assert caught.value.reason == "reply too large"


def test_connection_failures_are_typed_and_secret_free(gw: responses.RequestsMock) -> None:
    gw.get(ROOT + "account/balance", body=requests.ConnectionError(f"boom Bearer {KEY}"))
    with pytest.raises(GatewayUnreachable) as caught:
        backend().balance()
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None
    no_secret(str(caught.value), repr(caught.value))


def test_logs_name_the_legacy_command_and_never_the_key(
    gw: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    gw.delete(ROOT + f"message/{MSG}", status=503, body=f"echo Bearer {KEY}")
    gw.get(ROOT + f"message/{MSG}", status=404, json={"error": {"description": KEY}})
    with caplog.at_level(logging.DEBUG, logger="django_clickatell"):
        with pytest.raises(GatewayHTTPError):
            backend().stop(apimsgid=MSG)
        with pytest.raises(UnknownMessage):
            backend().query(apimsgid=MSG)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [warnings[0]]
    assert warnings[0].startswith("Clickatell delmsg answered HTTP 503")
    assert "Clickatell querymsg answered HTTP 404" in caplog.text
    no_secret(caplog.text)


def test_the_key_never_shows_in_the_backend() -> None:
    instance = backend()
    no_secret(repr(instance), repr(vars(instance)), repr(instance.transport))


def test_base_url_of_the_http_api_is_read_as_its_rest_sibling() -> None:
    assert rest_root("https://api.clickatell.com/http/") == "https://api.clickatell.com/rest/"
    assert rest_root(ROOT) == ROOT
    assert RestBackend(ClickatellSettings({"API_KEY": KEY})).transport.base_url == (
        "https://api.clickatell.com/rest/"
    )


# -- against the simulator, over HTTP ------------------------------------------------------------


@pytest.fixture
def rest_backend(simulator: ClickatellSimulator) -> RestBackend:
    return RestBackend(ClickatellSettings(simulator.rest_settings()))


def test_send_query_stop_and_query_again(
    simulator: ClickatellSimulator, rest_backend: RestBackend
) -> None:
    (sent,) = rest_backend.send([sms(climsgid="flow1", deliv_time=60)])
    assert isinstance(sent, SentMessageReply)
    assert rest_backend.query(apimsgid=sent.apimsgid).status == "011"
    assert rest_backend.query(climsgid="flow1").apimsgid == sent.apimsgid
    assert rest_backend.stop(apimsgid=sent.apimsgid) == MessageStatusReply(sent.apimsgid, "006")
    assert rest_backend.query(apimsgid=sent.apimsgid).status == "006"
    assert simulator.messages[sent.apimsgid].history == ["011", "006"]
    assert ("DELETE", "message/{id}") in simulator.rest_requests
    assert ("GET", "message/{id}") in simulator.rest_requests  # the queries, not the stop
    assert simulator.secrets_in_url == 0
    assert simulator.stats()["gateway_connections"] == 1  # one kept-alive connection


def test_one_message_store_for_both_apis(
    simulator: ClickatellSimulator, rest_backend: RestBackend
) -> None:
    (sent,) = rest_backend.send([sms(climsgid="both1", deliv_time=60)])
    assert isinstance(sent, SentMessageReply)
    legacy = ClickatellClient(ClickatellSettings(simulator.settings()))
    assert legacy.querymsg(climsgid="both1") == MessageStatusReply(sent.apimsgid, "011")
    assert legacy.delmsg(apimsgid=sent.apimsgid).status == "006"
    assert rest_backend.query(apimsgid=sent.apimsgid).status == "006"


def test_stop_by_client_id_on_the_simulator(
    simulator: ClickatellSimulator, rest_backend: RestBackend
) -> None:
    (sent,) = rest_backend.send([sms(climsgid="cstop", scheduled_time=int(time.time()) + 3600)])
    assert isinstance(sent, SentMessageReply)
    assert rest_backend.stop(climsgid="cstop").status == "006"
    assert simulator.rest_requests[-2:] == [("GET", "message"), ("DELETE", "message/{id}")]


def test_stop_too_late_reports_the_delivered_status(
    simulator: ClickatellSimulator, rest_backend: RestBackend
) -> None:
    simulator.handset_delay = 0.0
    try:
        (sent,) = rest_backend.send([sms(climsgid="late1")])
        assert isinstance(sent, SentMessageReply)
        deadline = time.monotonic() + 5
        while simulator.status_of(sent.apimsgid) != "004" and time.monotonic() < deadline:
            time.sleep(0.05)
        reply = rest_backend.stop(apimsgid=sent.apimsgid)
    finally:
        simulator.handset_delay = 1.0
    assert reply.status == "004"
    assert "006" not in simulator.messages[sent.apimsgid].history


def test_unknown_messages(simulator: ClickatellSimulator, rest_backend: RestBackend) -> None:
    calls: list[Callable[[], object]] = [
        lambda: rest_backend.query(apimsgid=MSG),
        lambda: rest_backend.stop(apimsgid=MSG),
        lambda: rest_backend.query(climsgid="nosuch"),
        lambda: rest_backend.stop(climsgid="nosuch"),
    ]
    for call in calls:
        with pytest.raises(UnknownMessage) as caught:
            call()
        assert caught.value.code in (103, 104)
    assert simulator.executed["delmsg"] == 1  # only the stop by apimsgid reached a DELETE


def test_a_wrong_key_is_refused_and_nothing_carried_out(simulator: ClickatellSimulator) -> None:
    wrong = RestBackend(ClickatellSettings(simulator.rest_settings(API_KEY="wrong-key-123")))
    for call in (
        lambda: wrong.send([sms(climsgid="wk1")]),
        lambda: wrong.stop(apimsgid=MSG),
        wrong.balance,
    ):
        with pytest.raises(CommandNotSent) as caught:
            call()
        assert isinstance(caught.value.cause, AuthenticationError)
        assert simulator.api_token not in str(caught.value)
    assert sum(simulator.executed.values()) == 0
    assert not simulator.accepted_sends()


def test_503_with_retry_after_stops_nothing(
    simulator: ClickatellSimulator, rest_backend: RestBackend
) -> None:
    (sent,) = rest_backend.send([sms(climsgid="busy1", deliv_time=60)])
    assert isinstance(sent, SentMessageReply)
    simulator.inject("http_503", command="delmsg", body="17")
    with pytest.raises(GatewayHTTPError) as caught:
        rest_backend.stop(apimsgid=sent.apimsgid)
    assert caught.value.status_code == 503
    assert caught.value.retry_after == 17.0
    assert simulator.status_of(sent.apimsgid) == "011"
    simulator.inject(
        "http_429", command="getbalance", body=formatdate(time.time() + 60, usegmt=True)
    )
    with pytest.raises(GatewayHTTPError) as limited:
        rest_backend.balance()
    assert limited.value.retry_after == pytest.approx(60, abs=3)


def test_faults_by_legacy_command_name_hit_rest_calls(
    simulator: ClickatellSimulator, rest_backend: RestBackend
) -> None:
    simulator.inject("drop_reply", command="sendmsg")
    with pytest.raises(GatewayUnreachable):
        rest_backend.send([sms(climsgid="doubt1")])
    # The send in doubt is verifiable by its own clientMessageId before any retry.
    assert rest_backend.query(climsgid="doubt1").status in ("003", "004")
    assert simulator.accepted_by_climsgid() == {"doubt1": 1}
    simulator.inject("http_500", command="querymsg")
    with pytest.raises(GatewayHTTPError):
        rest_backend.query(climsgid="doubt1")
    simulator.inject("malformed", command="getbalance")
    with pytest.raises(ProtocolError):
        rest_backend.balance()
    simulator.inject("reset", command="delmsg")
    with pytest.raises(GatewayUnreachable):
        rest_backend.stop(apimsgid=MSG)
    assert simulator.counts["faults"] == 4


def test_a_delayed_reply_keeps_the_status_it_earned(
    simulator: ClickatellSimulator, rest_backend: RestBackend
) -> None:
    simulator.inject("delay_after", command="sendmsg", delay=0.1)
    (sent,) = rest_backend.send([sms(climsgid="slow1")])  # 202, after the delay
    assert isinstance(sent, SentMessageReply)


def test_a_trickled_reply_is_cut_at_the_read_deadline(simulator: ClickatellSimulator) -> None:
    slow = RestBackend(ClickatellSettings(simulator.rest_settings(TIMEOUT=(1.0, 0.5))))
    simulator.inject("trickle", command="getbalance", delay=0.05)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout):
        slow.balance()
    assert time.monotonic() - started < 2.0


def test_an_oversized_reply_over_http_is_cut_and_refused(
    simulator: ClickatellSimulator, rest_backend: RestBackend
) -> None:
    simulator.inject("body", command="getbalance", body='{"data": {}}' + " " * 3_000_000)
    with pytest.raises(ProtocolError) as caught:
        rest_backend.balance()
    assert caught.value.reason == "reply too large"
    assert rest_backend.balance().credit == simulator.balance  # the next call is unharmed


def test_the_simulator_checks_the_key_and_the_version(simulator: ClickatellSimulator) -> None:
    url = simulator.rest_url + "account/balance"
    good = {"Authorization": f"Bearer {simulator.api_token}", "X-Version": "1"}
    assert requests.get(url, headers=good, timeout=5).status_code == 200
    assert requests.get(url, headers={"X-Version": "1"}, timeout=5).status_code == 401
    unversioned = requests.get(url, headers={"Authorization": good["Authorization"]}, timeout=5)
    assert unversioned.status_code == 400
    assert simulator.secrets_in_url == 0
    requests.get(url, params={"api_key": "x"}, headers=good, timeout=5)
    requests.get(simulator.rest_url + f"message/{simulator.api_token}", headers=good, timeout=5)
    assert simulator.secrets_in_url == 2


def test_a_get_is_no_stop(simulator: ClickatellSimulator) -> None:
    """What a client that forgets DELETE gets: a status, and the message goes on."""
    apimsgid = simulator.add_message(climsgid="g1")
    headers = {"Authorization": f"Bearer {simulator.api_token}", "X-Version": "1"}
    reply = requests.get(simulator.rest_url + f"message/{apimsgid}", headers=headers, timeout=5)
    assert reply.json()["data"]["messageStatus"] == "011"
    assert simulator.rest_requests == [("GET", "message/{id}")]
    assert simulator.status_of(apimsgid) == "011"


def test_secrets_never_in_urls_errors_or_reprs(
    simulator: ClickatellSimulator, rest_backend: RestBackend
) -> None:
    errors: list[ClickatellError] = []
    simulator.inject("http_502", command="sendmsg")
    wrong = RestBackend(ClickatellSettings(simulator.rest_settings(API_KEY="wrong-key-456")))
    for call in (
        lambda: rest_backend.send([sms(climsgid="s1")]),
        lambda: rest_backend.query(apimsgid=MSG),
        lambda: wrong.balance(),
        lambda: rest_backend.stop(climsgid="nosuch"),
    ):
        try:
            call()
        except ClickatellError as exc:
            errors.append(exc)
    assert len(errors) == 4
    for error in errors:
        for text in (str(error), repr(error), repr(vars(error))):
            assert simulator.api_token not in text
            assert "wrong-key-456" not in text
    assert simulator.secrets_in_url == 0
    assert simulator.api_token not in repr(rest_backend) + repr(vars(rest_backend))


def test_command_line_serves_rest_with_the_key_from_the_environment() -> None:
    env = {**os.environ, "CLICKATELL_REST_API_KEY": "cli-rest-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "django_clickatell.simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert "listening on http://127.0.0.1:" in process.stdout.readline()
        url = base_url_printed_for(process.stdout, "Legacy REST API:")
        headers = {"Authorization": "Bearer cli-rest-key", "X-Version": "1"}
        reply = requests.get(url + "account/balance", headers=headers, timeout=5)
        assert reply.status_code == 200
        assert reply.json() == {"data": {"balance": "1000.0"}}
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()
