"""The legacy REST API's replies as typed results or typed errors (pure: no HTTP, no database)."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from email.utils import formatdate
from typing import Any

import pytest

from django_clickatell.exceptions import (
    AuthenticationError,
    ClickatellError,
    GatewayBusy,
    GatewayError,
    GatewayHTTPError,
    ProtocolError,
    SessionExpired,
    UnknownMessage,
)
from django_clickatell.protocol import rest
from django_clickatell.protocol.redaction import Secret
from django_clickatell.protocol.replies import (
    BalanceReply,
    ErrorReply,
    MessageStatusReply,
    SentMessageReply,
)

MSG = "f6b9af2a2c9e5b18ee2d257e3def5d66"
KEY = "rest-key-0123456789abcdefXYZ"
SECRETS = (Secret(KEY),)


def body(document: Any) -> bytes:
    return json.dumps(document).encode()


def status_body(status: Any = "004", apimsgid: Any = MSG) -> bytes:
    return body({"data": {"apiMessageId": apimsgid, "messageStatus": status}})


# -- documented replies ----------------------------------------------------------------------


def test_send_202_accepted() -> None:
    reply = body(
        {"data": {"message": [{"accepted": True, "to": "27999000001", "apiMessageId": MSG}]}}
    )
    assert rest.parse_send(202, reply) == [SentMessageReply(MSG, "27999000001")]


def test_send_207_mixes_accepted_and_refused_recipients_with_legacy_codes() -> None:
    reply = body(
        {
            "data": {
                "message": [
                    {"accepted": True, "to": "27999000001", "apiMessageId": MSG, "error": None},
                    {
                        "accepted": False,
                        "to": "+27999000002",
                        "apiMessageId": "",
                        "error": {"code": "105", "description": "Invalid destination address"},
                    },
                ]
            }
        }
    )
    results = rest.parse_send(207, reply)
    assert results == [
        SentMessageReply(MSG, "27999000001"),
        ErrorReply(105, "Invalid destination address", "27999000002"),
    ]
    assert isinstance(results[1], ErrorReply)
    assert results[1].as_exception("sendmsg").code == 105


@pytest.mark.parametrize(("status", "expected"), [("004", "004"), ("6", "006"), (6, "006")])
def test_status_and_stop_replies_use_the_legacy_table(status: Any, expected: str) -> None:
    for command in ("querymsg", "delmsg"):
        reply = rest.parse_message_status(200, status_body(status), command)
        assert reply == MessageStatusReply(MSG, expected)


def test_status_by_client_id_as_a_list() -> None:
    listed = body({"data": [{"apiMessageId": MSG, "messageStatus": "003"}]})
    assert rest.parse_message_status(200, listed, by_client_id=True).status == "003"
    with pytest.raises(UnknownMessage) as caught:
        rest.parse_message_status(200, body({"data": []}), by_client_id=True)
    assert caught.value.code == 104


def test_balance() -> None:
    assert rest.parse_balance(200, body({"data": {"balance": "300.50"}})) == BalanceReply(
        Decimal("300.50")
    )
    assert rest.parse_balance(200, b'{"data": {"balance": 12.25}}').credit == Decimal("12.25")
    assert rest.parse_balance(200, b'{"data": {"balance": 7}}').credit == Decimal(7)


# -- request-level errors ----------------------------------------------------------------------


def error_body(code: Any, description: str = "") -> bytes:
    return body({"error": {"code": code, "description": description, "documentation": "x"}})


def test_401_is_an_authentication_error_for_every_call() -> None:
    for parse in (
        lambda: rest.parse_send(401, error_body("001", "Authentication failed")),
        lambda: rest.parse_message_status(401, b"", "delmsg"),
        lambda: rest.parse_balance(401, b"<html>no</html>"),
    ):
        with pytest.raises(AuthenticationError):
            parse()


def test_404_on_status_or_stop_is_an_unknown_message() -> None:
    with pytest.raises(UnknownMessage) as caught:
        rest.parse_message_status(404, error_body("103", "Unknown API message ID"), "delmsg")
    assert caught.value.code == 103
    assert caught.value.command == "delmsg"
    with pytest.raises(UnknownMessage) as caught:
        rest.parse_message_status(404, b"", "querymsg", by_client_id=True)
    assert caught.value.code == 104


@pytest.mark.parametrize(
    ("status", "error", "cls", "code"),
    [
        (400, error_body("105", "Invalid destination address"), GatewayError, 105),
        (400, error_body(120), GatewayError, 120),
        (402, b"", GatewayError, 301),  # payment required: no credit
        (402, error_body("302"), GatewayError, 302),
        (405, b"", GatewayError, None),
        (410, error_body("121", "Destination mobile number blocked"), GatewayError, 121),
        (400, error_body("003"), GatewayError, 3),  # no sessions here: not SessionExpired
        (400, error_body("901"), GatewayBusy, 901),
        (404, error_body("114"), GatewayError, 114),  # a 404 on a send is no unknown message
    ],
)
def test_client_errors_keep_the_legacy_code(
    status: int, error: bytes, cls: type[GatewayError], code: int | None
) -> None:
    with pytest.raises(GatewayError) as caught:
        rest.parse_send(status, error)
    assert type(caught.value) is cls
    assert caught.value.code == code
    assert not isinstance(caught.value, SessionExpired | UnknownMessage | AuthenticationError)
    assert caught.value.retryable is (cls is GatewayBusy)


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 301, 418])
def test_other_statuses_are_transient_with_retry_after(status: int) -> None:
    with pytest.raises(GatewayHTTPError) as caught:
        rest.parse_balance(status, b"<html>busy</html>", {"retry-after": "30"})
    assert caught.value.status_code == status
    assert caught.value.retry_after == 30.0
    assert caught.value.retryable


def test_retry_after_forms_and_bounds() -> None:
    now = 1_800_000_000.0
    assert rest.retry_after("120", now=now) == 120.0
    assert rest.retry_after(" 0 ", now=now) == 0.0
    assert rest.retry_after("999999999", now=now) == rest.MAX_RETRY_AFTER
    assert rest.retry_after(formatdate(now + 90, usegmt=True), now=now) == 90.0
    assert rest.retry_after(formatdate(now - 90, usegmt=True), now=now) == 0.0
    assert rest.retry_after(formatdate(now + 10**7, usegmt=True), now=now) == rest.MAX_RETRY_AFTER
    for junk in ("", "-5", "1.5", "soon", "9" * 5000, "Mon, 99 Foo 2026", "\x00", None):
        assert rest.retry_after(junk, now=now) is None
    assert rest.retry_after(formatdate(time.time() + 60, usegmt=True)) == pytest.approx(60, abs=2)


def test_retry_after_header_name_is_case_insensitive_and_absent_is_none() -> None:
    for headers in ({"Retry-After": "5"}, {"RETRY-AFTER": "5"}):
        error = rest.error_for_status("sendmsg", 503, b"", headers)
        assert isinstance(error, GatewayHTTPError)
        assert error.retry_after == 5.0
    error = rest.error_for_status("sendmsg", 503, b"", None)
    assert isinstance(error, GatewayHTTPError)
    assert error.retry_after is None


def test_gateway_http_error_keeps_its_legacy_shape() -> None:
    error = GatewayHTTPError("sendmsg", 500)
    assert error.retry_after is None
    assert str(error) == "Clickatell sendmsg: HTTP 500"


# -- hostile replies ----------------------------------------------------------------------------

HOSTILE: list[bytes] = [
    b"",
    b"not json",
    b"\x00\x00\x00",
    b"\xff\xfe garbage",
    b"[]",
    b"null",
    b'"data"',
    b"{}",
    b'{"data": null}',
    b'{"data": "x"}',
    b'{"data": {}}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"data": ' * 50_000 + b"1" + b"}" * 50_000,
    b'{"data": {"balance": NaN}}',
    b'{"data": {"balance": Infinity}}',
    b'{"data": {"balance": "1e999999"}}',
    b'{"data": {"balance": ' + b"9" * 5000 + b"}}",
    b'{"data": {"balance": true}}',
    b'{"data": {"message": {}}}',
    b'{"data": {"message": [1]}}',
    b'{"data": {"message": [{"accepted": "yes", "to": "27999000001"}]}}',
    b'{"data": {"message": [{"accepted": true, "to": "27999000001"}]}}',
    b'{"data": {"message": [{"accepted": true, "to": "27999000001", "apiMessageId": "a b"}]}}',
    b'{"data": {"message": [{"accepted": true, "to": 27999000001, "apiMessageId": "ab"}]}}',
    b'{"data": {"message": [{"accepted": false, "to": "x\\u0000y"}]}}',
    b'{"data": {"apiMessageId": "' + MSG.encode() + b'", "messageStatus": "4\\u0000"}}',
    b'{"data": {"apiMessageId": "' + MSG.encode() + b'", "messageStatus": "' + b"9" * 5000 + b'"}}',
    b'{"data": {"apiMessageId": "' + MSG.encode() + b'", "messageStatus": null}}',
    b'{"data": {"apiMessageId": ["x"], "messageStatus": "004"}}',
    b'{"data": [{"apiMessageId": "a1", "messageStatus": "004"}, {"apiMessageId": "a2"}]}',
]


@pytest.mark.parametrize("reply", HOSTILE, ids=lambda reply: repr(reply[:30]))
def test_hostile_bodies_end_as_typed_errors(reply: bytes) -> None:
    for parse in (
        lambda: rest.parse_send(202, reply, None, SECRETS),
        lambda: rest.parse_message_status(200, reply, "querymsg", None, SECRETS),
        lambda: rest.parse_message_status(200, reply, "delmsg", None, SECRETS),
        lambda: rest.parse_balance(200, reply, None, SECRETS),
    ):
        with pytest.raises(ClickatellError) as caught:
            parse()
        error = caught.value
        if isinstance(error, ProtocolError):
            assert len(error.excerpt) <= 120
            assert "\x00" not in str(error)
        else:  # only an empty list asked by clientMessageId: no such message
            assert isinstance(error, UnknownMessage)


@pytest.mark.parametrize("status", [200, 202, 400, 401, 404, 429, 503])
def test_a_huge_body_is_refused_unread(status: int) -> None:
    huge = b'{"data": {"balance": "1"}, "pad": "' + b"x" * rest.MAX_BODY + b'"}'
    started = time.perf_counter()
    with pytest.raises(ClickatellError) as caught:
        rest.parse_balance(status, huge, {"Retry-After": "1"}, SECRETS)
    assert time.perf_counter() - started < 2
    if status == 200:
        assert isinstance(caught.value, ProtocolError)
        assert caught.value.reason == "reply too large"


def test_parsing_is_linear_in_the_body() -> None:
    """A body ten times larger takes about ten times longer (not a hundred)."""

    def timed(size: int) -> float:
        error = {"code": "105", "description": "x " * 250}
        entry = {"accepted": False, "to": "27999000001", "error": error}
        reply = body({"data": {"message": [entry] * size}})
        assert len(reply) <= rest.MAX_BODY
        started = time.perf_counter()
        rest.parse_send(207, reply, None, SECRETS)
        return time.perf_counter() - started

    timed(10)
    small = min(timed(30) for _ in range(3))
    large = min(timed(300) for _ in range(3))
    assert large < small * 30


ECHOES = [
    KEY,
    f"Bearer {KEY}",
    f"Authorization: Bearer {KEY}",
    KEY.replace("-", "%2D"),
    "".join(f"\\u{ord(ch):04x}" for ch in KEY),
]


@pytest.mark.parametrize("echo", ECHOES)
def test_an_echoed_key_is_redacted_everywhere(echo: str) -> None:
    description = f"bad request {echo} api_key={KEY}"
    errors: list[ClickatellError] = []
    for status in (400, 401, 402, 404, 410):
        errors.append(
            rest.error_for_status("querymsg", status, error_body("101", description), None, SECRETS)
        )
    for parse in (
        lambda: rest.parse_send(202, ('{"junk": "' + echo + '"}').encode(), None, SECRETS),
        lambda: rest.parse_balance(200, f"<html>{echo}</html>".encode(), None, SECRETS),
        lambda: _first(
            rest.parse_send(
                207,
                body(
                    {
                        "data": {
                            "message": [
                                {
                                    "accepted": False,
                                    "to": "27999000001",
                                    "error": {"code": "105", "description": echo},
                                }
                            ]
                        }
                    }
                ),
                None,
                SECRETS,
            )
        ),
    ):
        try:
            result = parse()
        except ClickatellError as exc:
            errors.append(exc)
        else:
            assert isinstance(result, ClickatellError)
            errors.append(result)
    for error in errors:
        for text in (str(error), repr(error), repr(vars(error))):
            assert KEY not in text
            assert KEY.replace("-", "%2D") not in text


def _first(results: list[SentMessageReply | ErrorReply]) -> ClickatellError:
    assert isinstance(results[0], ErrorReply)
    return results[0].as_exception("sendmsg")


def test_a_message_id_that_carries_the_key_is_refused_not_redacted() -> None:
    with pytest.raises(ProtocolError) as caught:
        rest.parse_message_status(200, status_body("004", KEY), "querymsg", None, SECRETS)
    assert KEY not in str(caught.value)
