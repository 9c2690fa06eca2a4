"""The One API's statuses, replies and callbacks, parsed with no I/O (a step of issue 14)."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from django_clickatell.exceptions import (
    AuthenticationError,
    ClickatellError,
    GatewayError,
    GatewayHTTPError,
    InvalidCallback,
    ProtocolError,
)
from django_clickatell.protocol import one_api
from django_clickatell.protocol.codes import STATUSES as LEGACY_STATUSES

API_KEY = "k3y-Secret-123456"
ID = "a" * 32


def test_its_status_table_is_its_own() -> None:
    stopped = one_api.describe_status("STOPPED_BY_USER")
    assert (stopped.code, stopped.final, stopped.stopped) == (21, True, True)
    # 4 is "sent to the network" here, "delivered to gateway" (not final) in legacy: by name.
    assert one_api.describe_status(code=4).name == "SENT_TO_SUPPLIER"
    assert one_api.describe_status("device_ack").final
    assert "006" in LEGACY_STATUSES
    assert not one_api.describe_status(code=6).stopped  # 6 is READ here, not "cancelled"


def test_unknown_statuses_are_kept_not_rejected() -> None:
    status = one_api.describe_status("SOMETHING_NEW", 99)
    assert (status.name, status.code, status.known, status.final) == (
        "SOMETHING_NEW",
        99,
        False,
        False,
    )
    assert one_api.describe_status(code=77).name == "CODE_77"
    with pytest.raises(ValueError, match="name or a number"):
        one_api.describe_status(None, None)


def test_send_results_per_message() -> None:
    body = json.dumps(
        {
            "messages": [
                {"apiMessageId": ID, "accepted": True, "to": "27999000001", "error": None},
                {
                    "apiMessageId": None,
                    "accepted": False,
                    "to": "27999000002",
                    "error": {"code": 26, "description": "Number opted out"},
                },
            ],
            "error": None,
        }
    )
    accepted, refused = one_api.parse_send(207, body)
    assert (accepted.to, accepted.accepted, accepted.apimsgid) == ("27999000001", True, ID)
    assert (refused.accepted, refused.error_code, refused.error_description) == (
        False,
        26,
        "Number opted out",
    )


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, AuthenticationError),
        (400, GatewayError),
        (402, GatewayError),
        (404, GatewayError),
        (429, GatewayHTTPError),
        (503, GatewayHTTPError),
        (500, GatewayHTTPError),
    ],
)
def test_request_level_answers_are_typed(status: int, error: type[Exception]) -> None:
    body = json.dumps({"error": {"code": "107", "description": f"refused {API_KEY}"}})
    with pytest.raises(error) as raised:
        one_api.parse_send(status, body, secrets=(API_KEY,))
    assert API_KEY not in str(raised.value)
    assert isinstance(raised.value, ClickatellError)
    retryable = status in (429, 500, 503)
    assert raised.value.retryable is retryable  # never retry what is the request's fault


@pytest.mark.parametrize(
    "body",
    [
        "",
        "not json",
        "[]",
        '{"messages": []}',
        '{"messages": [{"accepted": true, "to": "27999000001"}]}',  # accepted under no id
        '{"messages": [{"apiMessageId": "x y", "accepted": true, "to": "27999000001"}]}',
        '{"messages": [{"apiMessageId": "' + ID + '", "accepted": "yes", "to": "1"}]}',
        "[" * 100_000,  # deep nesting: a typed error, not a RecursionError
    ],
)
def test_unreadable_send_replies_are_protocol_errors(body: str) -> None:
    with pytest.raises(ProtocolError):
        one_api.parse_send(202, body)


def test_oversized_replies_are_refused_unread() -> None:
    with pytest.raises(ProtocolError, match="too large"):
        one_api.parse_send(202, "x" * (one_api.MAX_BODY + 1))


def test_status_reply_and_millisecond_timestamps() -> None:
    event = one_api.parse_status(
        json.dumps({"sms": {"status": "QUEUED", "timestamp": 1506607698000}}), ID
    )
    assert event.status.name == "QUEUED"
    assert event.reported_at == datetime(2017, 9, 28, 14, 8, 18, tzinfo=timezone.utc)
    with pytest.raises(ProtocolError, match="timestamp"):
        one_api.parse_status(json.dumps({"sms": {"status": "QUEUED", "timestamp": 10**20}}), ID)


def test_a_status_reply_carries_the_time_the_status_happened() -> None:
    """A status query's own timestamp was dropped on the way to the record (issue 19)."""
    body = json.dumps({"sms": {"status": "SENT_TO_SUPPLIER", "timestamp": 1506607698000}})
    reply = one_api.status_reply(one_api.parse_status(body, ID))
    assert (reply.status, reply.gateway_status) == ("003", "SENT_TO_SUPPLIER")
    assert reply.reported_at == datetime(2017, 9, 28, 14, 8, 18, tzinfo=timezone.utc)


def test_statuses_rank_in_the_one_apis_own_order() -> None:
    """QUEUED (accepted, not yet with the network) comes before SENT_TO_SUPPLIER.  It was
    read as legacy 002 ("awaiting redelivery"), the same stage as 003: a QUEUED report
    with a newer clock then replaced a recorded SENT_TO_SUPPLIER (issue 19)."""
    from django_clickatell.protocol.lifecycle import FINAL_RANK, lifecycle_rank

    def rank(name: str) -> int:
        return lifecycle_rank(one_api.describe_status(name).meaning)

    order = ["UNKNOWN", "SCHEDULED", "QUEUED", "SENT_TO_SUPPLIER", "DEVICE_ACK"]
    ranks = [rank(name) for name in order]
    assert ranks == sorted(set(ranks)), dict(zip(order, ranks, strict=True))
    assert rank("DELIVERED_TO_GATEWAY") == rank("SENT_TO_SUPPLIER")
    assert all(rank(name) == FINAL_RANK for name, s in one_api.STATUSES.items() if s.final)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1506607698000, datetime(2017, 9, 28, 14, 8, 18, tzinfo=timezone.utc)),
        (1506607698000.0, datetime(2017, 9, 28, 14, 8, 18, tzinfo=timezone.utc)),
        ("1506607698000", datetime(2017, 9, 28, 14, 8, 18, tzinfo=timezone.utc)),
        (None, None),
        ("", None),
    ],
)
def test_millisecond_timestamps_are_read_liberally(value: object, expected: object) -> None:
    assert one_api.milliseconds(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        True,
        1506607698000.5,
        float("nan"),
        float("inf"),
        "soon",
        "-1506607698000",
        "1506607698000.0",
        "\u0661" * 13,  # Arabic-Indic digits: not ours
        "9" * 100_000,  # refused by its length, never converted
        10**30,
        946_684_799_999,  # before 2000
        4_102_444_800_001,  # after 2100
        [1506607698000],
    ],
)
def test_hostile_timestamps_are_value_errors(value: object) -> None:
    started = time.perf_counter()
    with pytest.raises(ValueError, match="timestamp"):
        one_api.milliseconds(value)
    assert time.perf_counter() - started < 0.05


def test_callbacks_in_both_shapes() -> None:
    envelope = {
        "integrationId": "i",
        "event": {
            "messageStatusUpdate": [
                {
                    "channel": "sms",
                    "messageId": ID,
                    "clientMessageId": "c42",
                    "status": "DELIVERED_TO_GATEWAY",
                    "statusCode": 4,
                    "timestamp": 1506607698000,
                }
            ]
        },
    }
    [event] = one_api.parse_callback(json.dumps(envelope))
    assert (event.apimsgid, event.climsgid, event.status.code) == (ID, "c42", 4)
    flat = {"messageId": ID, "clientMessageId": "", "statusCode": 21, "timestamp": ""}
    [event] = one_api.parse_callback(json.dumps(flat).encode())
    assert event.status.stopped
    assert event.reported_at is None


@pytest.mark.parametrize(
    "body",
    [
        "{}",
        '{"event": {"messageStatusUpdate": []}}',
        '{"messageId": "bad id", "status": "QUEUED"}',
        '{"messageId": "' + ID + '"}',  # no status at all
        '{"messageId": "' + ID + '", "status": "QUEUED", "clientMessageId": "no spaces"}',
        '{"messageId": "' + ID + '", "status": "QUEUED", "timestamp": -1}',
        "nope",
    ],
)
def test_malformed_callbacks_have_a_short_safe_reason(body: str) -> None:
    with pytest.raises(InvalidCallback) as raised:
        one_api.parse_callback(body)
    assert len(str(raised.value)) < 80


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=40),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=20,
    ),
    st.sampled_from([202, 207, 400, 401, 429, 503]),
)
def test_any_json_ends_as_a_typed_result_or_error(document: object, status: int) -> None:
    body = json.dumps(document)
    with contextlib.suppress(ClickatellError):
        one_api.parse_send(status, body)
    with contextlib.suppress(InvalidCallback):
        one_api.parse_callback(body)
    with contextlib.suppress(ProtocolError):
        one_api.parse_status(body, ID)
