"""The One API backend against mocked HTTP (``responses``): requests, results and typed errors."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import responses

from django_clickatell.conf import ClickatellSettings
from django_clickatell.exceptions import (
    AuthenticationError,
    ClickatellError,
    CommandNotSent,
    GatewayError,
    GatewayHTTPError,
    GatewayServerError,
    InvalidMessage,
    ProtocolError,
    QueryByClientIdUnsupported,
    RemoteStopUnsupported,
    UnknownMessage,
    WrongBaseUrl,
)
from django_clickatell.gateway.backends import BACKENDS, backend_class
from django_clickatell.gateway.backends.base import OutgoingSms
from django_clickatell.gateway.backends.one_api import PLATFORM_URL, OneApiBackend
from django_clickatell.gateway.transport import reset_transports
from django_clickatell.protocol import one_api
from django_clickatell.protocol.codes import STATUSES as LEGACY
from django_clickatell.protocol.lifecycle import supersedes
from django_clickatell.protocol.replies import ErrorReply, SentMessageReply
from django_clickatell.protocol.retry_after import retry_after

KEY = "oneapi-K3y-0123456789abcdef"
BASE = "https://platform.example.test/"
ID1, ID2 = "a" * 32, "b" * 32


def backend(**overrides: Any) -> OneApiBackend:
    return OneApiBackend(
        ClickatellSettings({"BACKEND": "one_api", "API_KEY": KEY, "BASE_URL": BASE, **overrides})
    )


@pytest.fixture
def gw() -> Iterator[responses.RequestsMock]:
    reset_transports()
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock
    reset_transports()


def sms(to: str, text: str = "hello", climsgid: str = "c1", **options: Any) -> OutgoingSms:
    return OutgoingSms(to=to, text=text, climsgid=climsgid, options=options)


def result(
    to: str,
    apimsgid: str | None,
    error: dict[str, Any] | None = None,
    *,
    climsgid: str | None = None,
) -> dict[str, Any]:
    entry = {"apiMessageId": apimsgid, "accepted": error is None, "to": to, "error": error}
    if climsgid is not None:
        entry["clientMessageId"] = climsgid
    return entry


# -- the status table, by meaning ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "ours"),
    [
        ("UNKNOWN", "001"),
        ("QUEUED", "008"),  # accepted, before SENT_TO_SUPPLIER: not legacy 002
        ("SCHEDULED", "011"),
        ("SENT_TO_SUPPLIER", "003"),
        ("DELIVERED_TO_GATEWAY", "003"),
        ("DEVICE_ACK", "004"),
        ("READ", "004"),
        ("EXPIRED", "010"),
        ("STOPPED_BY_USER", "006"),
        ("STOPPED_BY_ADMIN", "007"),
        ("DELIVERY_FAILURE", "007"),
        ("INSUFFICIENT_ACCOUNT_BALANCE", "012"),
        ("ROUTING_ERROR", "009"),
        ("SOMETHING_NEW", "001"),
    ],
)
def test_statuses_translate_by_meaning(name: str, ours: str) -> None:
    assert one_api.describe_status(name).meaning == ours


def test_every_row_agrees_with_the_package_table() -> None:
    """Final here exactly when final in our codes; only STOPPED_BY_USER means stopped."""
    for row in one_api.STATUSES.values():
        assert row.meaning in LEGACY
        assert row.final == LEGACY[row.meaning].final, row
        assert row.stopped == (row.name == "STOPPED_BY_USER"), row


@pytest.mark.parametrize("recorded", ["011", "002", "003", "008", "004", "006", "999"])
def test_an_unknown_status_never_replaces_a_recorded_one(recorded: str) -> None:
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc)
    odd = one_api.describe_status("BRAND_NEW_STATUS").meaning
    assert not supersedes(odd, now, recorded, None)
    assert supersedes(odd, now, "", None)  # only "nothing recorded yet"


# -- send ----------------------------------------------------------------------------------


def test_send_posts_json_with_the_raw_key_and_returns_results_in_order(
    gw: responses.RequestsMock,
) -> None:
    gw.post(
        BASE + "v1/message",
        status=207,
        json={
            "messages": [
                result("27999000001", ID1),
                result("27999000002", None, {"code": 26, "description": "Number opted out"}),
                result("27999000003", ID2),
            ],
            "error": None,
        },
    )
    messages = [
        sms("27999000001", "Grüße ☃", "c1"),
        sms("+27999000002", "b", "c2", callback=3),
        OutgoingSms("27999000003", "c", "c3", sender="Clinic"),
    ]
    results = backend().send(messages)
    assert results == [
        SentMessageReply(ID1, "27999000001"),
        # The message's own code survives (issue 22's opt-outs read it), as the One API's.
        ErrorReply(26, "Number opted out", "27999000002", table="one_api"),
        SentMessageReply(ID2, "27999000003"),
    ]
    request = gw.calls[0].request
    assert request.headers["Authorization"] == KEY  # raw, no "Bearer"
    assert request.headers["Content-Type"] == "application/json"
    assert KEY not in str(request.url)
    raw = request.body
    assert isinstance(raw, bytes)
    body = json.loads(raw)
    assert body["messages"][0] == {
        "channel": "sms",
        "to": "27999000001",
        "content": "Grüße ☃",
        "clientMessageId": "c1",
    }
    assert "Grüße ☃".encode() in raw  # JSON text, not escapes or UCS-2 hex
    assert body["messages"][1]["to"] == "27999000002"
    assert body["messages"][2]["from"] == "Clinic"


@pytest.mark.parametrize(
    "entries",
    [
        [result("27999000001", ID1)],  # one result for two messages
        [result("27999000001", ID1), result("27999000009", ID2)],  # someone else
        [result("27999000001", ID1), result("27999000001", ID2)],  # one message twice
        # A clientMessageId no message of the request has, or another recipient's.
        [result("27999000001", ID1, climsgid="c9"), result("27999000002", ID2)],
        [result("27999000002", ID1, climsgid="c1"), result("27999000002", ID2)],
    ],
)
def test_results_that_do_not_match_the_request_are_protocol_errors(
    gw: responses.RequestsMock, entries: list[dict[str, Any]]
) -> None:
    gw.post(BASE + "v1/message", status=202, json={"messages": entries})
    with pytest.raises(ProtocolError, match="do not match"):
        backend().send([sms("27999000001"), sms("27999000002", climsgid="c2")])


@pytest.mark.parametrize("named", [True, False])
def test_results_in_any_order_are_matched_to_their_messages(
    gw: responses.RequestsMock, named: bool
) -> None:
    """By ``clientMessageId`` when the reply names it, else by recipient: never by position."""
    ids = {"c1": ID1, "c2": ID2, "c3": "c" * 32}
    recipients = {"c1": "27999000001", "c2": "27999000002", "c3": "27999000003"}
    entries = [
        result(recipients[c], ids[c], climsgid=c if named else None) for c in ("c3", "c1", "c2")
    ]
    entries[0] = {
        **entries[0],
        "apiMessageId": None,
        "accepted": False,
        "error": {"code": 26, "description": "Number opted out"},
    }
    gw.post(BASE + "v1/message", status=207, json={"messages": entries})
    results = backend().send([sms(recipients[c], climsgid=c) for c in ("c1", "c2", "c3")])
    assert results == [
        SentMessageReply(ID1, "27999000001"),
        SentMessageReply(ID2, "27999000002"),
        ErrorReply(26, "Number opted out", "27999000003", table="one_api"),
    ]


def test_two_messages_to_one_recipient_are_told_apart_by_client_id(
    gw: responses.RequestsMock,
) -> None:
    entries = [
        result("27999000001", ID2, climsgid="c2"),
        result("27999000001", ID1, climsgid="c1"),
    ]
    gw.post(BASE + "v1/message", status=202, json={"messages": entries})
    results = backend().send([sms("27999000001", climsgid="c1"), sms("27999000001", "x", "c2")])
    assert [r.apimsgid for r in results if isinstance(r, SentMessageReply)] == [ID1, ID2]


def test_two_messages_to_one_recipient_reordered_and_unnamed_are_not_guessed(
    gw: responses.RequestsMock,
) -> None:
    entries = [result("27999000002", "c" * 32), result("27999000001", ID1)]
    entries += [result("27999000001", ID2)]
    gw.post(BASE + "v1/message", status=202, json={"messages": entries})
    messages = [sms("27999000001"), sms("27999000001", "x", "c2"), sms("27999000002", "y", "c3")]
    with pytest.raises(ProtocolError, match="cannot be told apart"):
        backend().send(messages)


@pytest.mark.parametrize("option", ["deliv_time", "scheduled_time", "validity"])
def test_options_it_cannot_carry_are_refused_before_any_request(
    gw: responses.RequestsMock, option: str
) -> None:
    with pytest.raises(InvalidMessage):
        backend().send([sms("27999000001", **{option: "30"})])
    assert not gw.calls


def test_more_than_200_messages_are_refused(gw: responses.RequestsMock) -> None:
    with pytest.raises(InvalidMessage, match="200"):
        backend().send([sms("27999000001", climsgid=f"c{i}") for i in range(201)])
    assert not gw.calls


def test_a_refused_key_is_not_sent_and_never_shown(
    gw: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    gw.post(BASE + "v1/message", status=401, json={"error": {"code": 1, "description": KEY}})
    with pytest.raises(CommandNotSent) as caught:
        backend().send([sms("27999000001")])
    assert isinstance(caught.value.cause, AuthenticationError)
    assert KEY not in str(caught.value) + repr(caught.value) + repr(caught.value.cause)
    assert KEY not in caplog.text
    assert KEY not in repr(backend())


@pytest.mark.parametrize(
    ("status", "error"),
    [(400, GatewayError), (402, GatewayError), (404, WrongBaseUrl), (500, GatewayServerError)],
)
def test_request_level_errors_are_typed(
    gw: responses.RequestsMock, status: int, error: type[ClickatellError]
) -> None:
    gw.post(BASE + "v1/message", status=status, json={"error": {"code": 7, "description": "x"}})
    with pytest.raises(error) as caught:
        backend().send([sms("27999000001")])
    assert type(caught.value) is error
    # A 404 to a send means nothing answers at BASE_URL: not sent, waits for the fix.
    assert caught.value.retryable == (status >= 500 or status == 404)


@pytest.mark.parametrize(("status", "header", "wait"), [(503, "7", 7.0), (429, "99999", 3600.0)])
def test_transient_answers_carry_retry_after(
    gw: responses.RequestsMock, status: int, header: str, wait: float
) -> None:
    gw.post(BASE + "v1/message", status=status, body="busy", headers={"Retry-After": header})
    with pytest.raises(GatewayHTTPError) as caught:
        backend().send([sms("27999000001")])
    assert caught.value.retryable
    assert caught.value.retry_after == wait


def test_retry_after_as_a_date_and_nonsense() -> None:
    assert retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now=1767225600.0) == 10.0
    assert retry_after("Thu, 01 Jan 2026 00:00:10 GMT", now=1767225700.0) == 0.0
    assert retry_after("soon") is None
    assert retry_after(None) is None


# -- query, stop, balance ------------------------------------------------------------------


def test_query_translates_the_status_and_keeps_its_name(gw: responses.RequestsMock) -> None:
    gw.get(
        BASE + f"v1/message/{ID1}",
        json={"sms": {"status": "SENT_TO_SUPPLIER", "timestamp": 1_700_000_000_000}},
    )
    reply = backend().query(apimsgid=ID1)
    assert (reply.apimsgid, reply.status, reply.gateway_status) == (
        ID1,
        "003",
        "SENT_TO_SUPPLIER",
    )
    assert not reply.final
    assert gw.calls[0].request.method == "GET"


def test_query_of_an_unknown_message(gw: responses.RequestsMock) -> None:
    gw.get(BASE + f"v1/message/{ID1}", status=404, json={"error": {"code": 0}})
    with pytest.raises(UnknownMessage):
        backend().query(apimsgid=ID1)


def test_no_query_by_client_id_and_no_stop_without_any_request(
    gw: responses.RequestsMock,
) -> None:
    with pytest.raises(QueryByClientIdUnsupported) as caught:
        backend().query(climsgid="c1")
    assert not caught.value.retryable
    with pytest.raises(RemoteStopUnsupported):
        backend().stop(apimsgid=ID1)
    assert not gw.calls


def test_balance_and_credentials_check(gw: responses.RequestsMock) -> None:
    gw.get(BASE + "v1/balance", json={"currency": "ZAR", "balance": 123.45})
    assert backend().balance().credit == Decimal("123.45")
    backend().check_credentials()
    assert len(gw.calls) == 2


def test_balance_unreadable(gw: responses.RequestsMock) -> None:
    gw.get(BASE + "v1/balance", json={"balance": "lots"})
    with pytest.raises(ProtocolError):
        backend().balance()


def test_registered_and_truthful_about_what_it_can_do() -> None:
    assert backend_class("one_api") is OneApiBackend
    assert "one_api" in BACKENDS
    caps = OneApiBackend.capabilities
    assert (caps.remote_stop, caps.native_scheduling, caps.query_by_client_id) == (False,) * 3
    assert (caps.batch_size, caps.callbacks) == (200, "json")


def test_default_base_url_means_the_platform() -> None:
    config = ClickatellSettings({"BACKEND": "one_api", "API_KEY": KEY})
    assert OneApiBackend(config).base_url == PLATFORM_URL


# -- the older Platform callback: its numbers are the legacy ones --------------------------


@pytest.mark.parametrize(
    ("fields", "ours", "stopped"),
    [
        ({"statusCode": 6}, "006", True),  # legacy 6 "user cancelled", not the One API's READ
        ({"statusCode": 4}, "004", False),  # legacy 4 "received", not SENT_TO_SUPPLIER
        ({"statusCode": 3, "status": "SOMETHING"}, "003", False),
        ({"statusCode": 13}, "001", False),  # a legacy code we do not list: unknown, inert
        ({"statusCode": 21}, "006", True),  # beyond the legacy table: the One API's number
        ({"statusCode": 4, "status": "DEVICE_ACK"}, "004", False),  # a known name wins
    ],
)
def test_flat_platform_callbacks_read_their_numbers_as_legacy_codes(
    fields: dict[str, Any], ours: str, stopped: bool
) -> None:
    body = json.dumps({"messageId": ID1, "clientMessageId": "c1", **fields})
    [event] = one_api.parse_callback(body)
    assert (event.status.meaning, event.status.stopped) == (ours, stopped)


def test_envelope_numbers_stay_the_one_apis() -> None:
    update = {"messageId": ID1, "statusCode": 6}
    [event] = one_api.parse_callback(json.dumps({"event": {"messageStatusUpdate": [update]}}))
    assert (event.status.name, event.status.meaning) == ("READ", "004")


# -- hostile replies end as typed errors -----------------------------------------------------


def test_a_status_reply_about_another_message_is_refused(gw: responses.RequestsMock) -> None:
    gw.get(BASE + f"v1/message/{ID1}", json={"messageId": ID2, "sms": {"status": "READ"}})
    with pytest.raises(ProtocolError, match="another message"):
        backend().query(apimsgid=ID1)


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 200_000,  # deep nesting
        b'{"messages": "' + b"x" * 2_000_000 + b'"}',  # huge: cut off unread past 1 MB
        b"<html>proxy error</html>",
        b'{"messages": [{"to": 27999000001, "accepted": "yes"}]}',
        b'{"messages": [{"to": "27999000001", "accepted": true, "apiMessageId": "no spaces"}]}',
        b'{"messages": [{"to": "27999000001", "accepted": true}]}',  # accepted under no id
    ],
)
def test_unreadable_send_replies_are_protocol_errors(
    gw: responses.RequestsMock, body: bytes
) -> None:
    gw.post(BASE + "v1/message", status=202, body=body)
    with pytest.raises(ProtocolError) as caught:
        backend().send([sms("27999000001")])
    assert len(str(caught.value)) < 400


def test_an_echoed_key_is_redacted_everywhere(
    gw: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    echo = {"error": {"code": 7, "description": f"bad request with key {KEY}"}}
    gw.post(BASE + "v1/message", status=400, json=echo)
    gw.get(BASE + "v1/balance", body=f"<html>Authorization: {KEY}</html>")
    with pytest.raises(GatewayError) as refused:
        backend().send([sms("27999000001")])
    with pytest.raises(ProtocolError) as unreadable:
        backend().balance()
    for error in (refused.value, unreadable.value):
        assert KEY not in str(error) + repr(error)
    assert KEY not in caplog.text


# -- system checks -----------------------------------------------------------------------------


def test_a_one_api_account_needs_its_key_not_the_http_credentials() -> None:
    from tests.test_conf_and_checks import ids

    assert ids({"BACKEND": "one_api", "API_KEY": KEY}) == []
    assert ids({"BACKEND": "one_api"}) == ["django_clickatell.E001"]
    assert ids({"USERNAME": "u"}) == ["django_clickatell.E001"] * 2  # legacy: as before
