"""Callbacks at campaign scale (issue 20 item 4): the events of one POST applied together.

One locked look-up, one ``UPDATE``, one ``INSERT``, one commit, whatever the
number of events -- with every guarantee of the one-at-a-time path: the one
ordering rule (in gateway-time order inside a POST), duplicates and stale
reports ignored, a final status never replaced, another account's message
untouched, unknown ids kept and matched later, a send in doubt settled.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from django_clickatell.models import GatewayExchange, OutboundMessage, SendState, UnmatchedCallback
from django_clickatell.services.callbacks import (
    match_unmatched_callbacks,
    receive_callback,
    receive_json_callback,
)
from django_clickatell.signals import message_cancelled, message_status_changed

pytestmark = pytest.mark.django_db

T0 = 1_700_000_000_000
API_ID = "1234567"
SECRET = "cb-SECRET-0123456789abcdefXYZ"


def mid(number: int) -> str:
    return f"{number:032x}"


def event(status: str, at: int = T0, apimsgid: str = mid(1), climsgid: str = "") -> dict[str, Any]:
    return {"messageId": apimsgid, "clientMessageId": climsgid, "status": status, "timestamp": at}


def body(*events: dict[str, Any]) -> bytes:
    return json.dumps({"event": {"messageStatusUpdate": list(events)}}).encode()


def message(number: int = 1, **fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {
        "recipient": "27999000001",
        "apimsgid": mid(number),
        "climsgid": f"c{number}",
        "send_state": SendState.SENT,
    }
    return OutboundMessage.objects.create(**{**values, **fields})


def form(status: str = "003", *, apimsgid: str = mid(1), at: float | None = None) -> dict[str, str]:
    return {
        "api_id": API_ID,
        "apiMsgId": apimsgid,
        "cliMsgId": "",
        "to": "27999000001",
        "timestamp": str(int(at if at is not None else time.time())),
        "status": status,
    }


@pytest.fixture
def heard() -> Iterator[list[tuple[str, str, str]]]:
    """The status changes announced, as (apimsgid, old, new); stops as (apimsgid, "stop", "")."""
    changes: list[tuple[str, str, str]] = []

    def changed(message: OutboundMessage, old_status: str, new_status: str, **_: Any) -> None:
        changes.append((message.apimsgid or "", old_status, new_status))

    def cancelled(message: OutboundMessage, **_: Any) -> None:
        changes.append((message.apimsgid or "", "stop", ""))

    message_status_changed.connect(changed, weak=False)
    message_cancelled.connect(cancelled, weak=False)
    yield changes
    message_status_changed.disconnect(changed)
    message_cancelled.disconnect(cancelled)


# -- the one rule, inside one POST and across POSTs ------------------------------------------


def test_duplicates_and_out_of_order_inside_one_post_end_as_one_at_a_time(
    heard: list[tuple[str, str, str]],
) -> None:
    sms = message(status="")
    outcomes = receive_json_callback(
        "default",
        body(
            event("DEVICE_ACK", T0 + 3000),
            event("SENT_TO_SUPPLIER", T0 + 1000),
            event("DEVICE_ACK", T0 + 3000),  # duplicate
            event("QUEUED", T0 + 500),
        ),
    )
    # Applied in gateway-time order: QUEUED, SENT_TO_SUPPLIER, DEVICE_ACK, then the duplicate.
    assert outcomes == ["applied", "applied", "ignored", "applied"]
    sms.refresh_from_db()
    assert sms.status == "004"
    assert sms.status_changed_at is not None
    assert sms.status_changed_at.timestamp() == (T0 + 3000) / 1000
    assert heard == [(mid(1), "", "008"), (mid(1), "008", "003"), (mid(1), "003", "004")]
    assert GatewayExchange.objects.filter(message=sms, command="callback").count() == 4
    # Across POSTs: older and earlier-stage reports change nothing more.
    again = receive_json_callback(
        "default", body(event("SENT_TO_SUPPLIER", T0 + 4000), event("DEVICE_ACK", T0 + 3000))
    )
    assert again == ["ignored", "ignored"]
    sms.refresh_from_db()
    assert sms.status == "004"
    assert len(heard) == 3


def test_a_final_status_is_never_replaced_and_the_first_by_gateway_time_wins() -> None:
    delivered = message(1, status="004")
    racing = message(2, status="003")
    outcomes = receive_json_callback(
        "default",
        body(
            event("DELIVERY_FAILURE", T0 + 9000, apimsgid=mid(1)),
            event("DELIVERY_FAILURE", T0 + 2000, apimsgid=mid(2)),  # arrives first, later
            event("DEVICE_ACK", T0 + 1000, apimsgid=mid(2)),  # happened first: it is the truth
        ),
    )
    assert outcomes == ["ignored", "ignored", "applied"]
    delivered.refresh_from_db()
    racing.refresh_from_db()
    assert (delivered.status, racing.status) == ("004", "004")


def test_two_statuses_of_one_stage_are_ordered_by_the_gateways_time() -> None:
    """002 and 003 alternate while the network retries: the newer report wins, whatever
    order they arrive in, in one POST or two."""
    sms = message(status="")
    receive_callback(form("002", at=(T0 + 5000) / 1000), api_id=API_ID)
    receive_json_callback("default", body(event("SENT_TO_SUPPLIER", T0 + 1000)))
    sms.refresh_from_db()
    assert sms.status == "002"
    receive_json_callback("default", body(event("SENT_TO_SUPPLIER", T0 + 6000)))
    sms.refresh_from_db()
    assert sms.status == "003"


def test_a_stop_in_a_batch_is_recorded_and_announced_once(
    heard: list[tuple[str, str, str]],
) -> None:
    sms = message(status="002")
    receive_json_callback(
        "default", body(event("STOPPED_BY_USER", T0 + 10), event("STOPPED_BY_USER", T0 + 10))
    )
    sms.refresh_from_db()
    assert (sms.status, sms.cancel_state) == ("006", "cancelled")
    assert sms.cancel_completed_at is not None
    assert heard == [(mid(1), "002", "006"), (mid(1), "stop", "")]


# -- accounts, unknown ids, sends in doubt ---------------------------------------------------


def test_another_accounts_message_in_the_same_post_is_untouched_and_not_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    mine = message(1, status="003")
    theirs = message(2, status="003", account="second")
    outcomes = receive_json_callback(
        "default",
        body(event("DEVICE_ACK", apimsgid=mid(1)), event("DEVICE_ACK", apimsgid=mid(2))),
    )
    assert outcomes == ["applied", "ignored"]
    mine.refresh_from_db()
    theirs.refresh_from_db()
    assert (mine.status, theirs.status) == ("004", "003")
    assert not GatewayExchange.objects.filter(message=theirs).exists()
    assert not UnmatchedCallback.objects.exists()
    assert "another account's message" in caplog.text


def test_unknown_ids_in_a_batch_are_kept_and_matched_later() -> None:
    known = message(1, status="")
    outcomes = receive_json_callback(
        "default",
        body(
            event("SENT_TO_SUPPLIER", T0 + 1000, apimsgid=mid(1)),
            event("SENT_TO_SUPPLIER", T0 + 1000, apimsgid=mid(7)),
            event("DEVICE_ACK", T0 + 2000, apimsgid=mid(7)),
        ),
    )
    assert outcomes == ["applied", "unmatched", "unmatched"]
    assert UnmatchedCallback.objects.filter(apimsgid=mid(7), account="default").count() == 2
    known.refresh_from_db()
    assert known.status == "003"
    late = message(7, status="")
    assert match_unmatched_callbacks(late) == 2
    late.refresh_from_db()
    assert late.status == "004"
    assert match_unmatched_callbacks(late) == 0  # each kept report applied once


@pytest.mark.parametrize("state", [SendState.UNKNOWN, SendState.VERIFYING])
def test_a_batch_settles_sends_in_doubt_by_id_and_by_climsgid(state: str) -> None:
    by_id = message(1, send_state=state, status="")
    lost = message(2, apimsgid=None, climsgid="order42", send_state=state, status="")
    receive_json_callback(
        "default",
        body(
            event("DEVICE_ACK", T0 + 2000, apimsgid=mid(2), climsgid="order42"),
            event("SENT_TO_SUPPLIER", T0 + 1000, apimsgid=mid(2), climsgid="order42"),
            event("SENT_TO_SUPPLIER", T0 + 1000, apimsgid=mid(1)),
        ),
    )
    by_id.refresh_from_db()
    lost.refresh_from_db()
    assert (by_id.send_state, by_id.status) == ("sent", "003")
    assert (lost.send_state, lost.apimsgid, lost.status) == ("sent", mid(2), "004")
    details = list(
        GatewayExchange.objects.filter(message=lost).order_by("pk").values_list("detail", flat=True)
    )
    assert len(details) == 2
    assert "the send was in doubt" in details[0]


def test_a_kept_report_is_matched_when_a_batch_teaches_its_message_its_id() -> None:
    receive_json_callback("default", body(event("DEVICE_ACK", T0 + 2000, apimsgid=mid(3))))
    lost = message(3, apimsgid=None, climsgid="order9", send_state=SendState.UNKNOWN, status="")
    outcomes = receive_json_callback(
        "default", body(event("SENT_TO_SUPPLIER", T0 + 1000, apimsgid=mid(3), climsgid="order9"))
    )
    assert outcomes == ["applied"]
    lost.refresh_from_db()
    assert (lost.apimsgid, lost.send_state, lost.status) == (mid(3), "sent", "004")


# -- a malformed event among good ones -------------------------------------------------------


def test_a_malformed_event_costs_only_itself(
    client: Client, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Refusing the whole POST (400) lost the good events with the bad one: Clickatell
    retries the same bad event, so they would never be recorded."""
    settings.CLICKATELL = {**settings.CLICKATELL, "CALLBACK_SECRET": SECRET}
    first, second = message(1, status=""), message(2, status="")
    response = client.post(
        f"/clickatell/one-api/default/{SECRET}/",
        body(
            event("SENT_TO_SUPPLIER", apimsgid=mid(1)),
            {"messageId": mid(9), "status": "QUEUED", "timestamp": "soon"},
            event("DEVICE_ACK", apimsgid=mid(2)),
        ),
        content_type="application/json",
    )
    assert (response.status_code, response.content) == (200, b"OK applied invalid applied")
    first.refresh_from_db()
    second.refresh_from_db()
    assert (first.status, second.status) == ("003", "004")
    assert "event 2 of 3 is malformed (unreadable timestamp)" in caplog.text
    assert not UnmatchedCallback.objects.exists()


def test_a_post_whose_every_event_is_malformed_is_refused(client: Client, settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "CALLBACK_SECRET": SECRET}
    response = client.post(
        f"/clickatell/one-api/default/{SECRET}/",
        body({"messageId": 5, "status": "QUEUED"}, {"messageId": mid(1), "timestamp": "x"}),
        content_type="application/json",
    )
    assert response.status_code == 400
    assert b"messageId" in response.content


# -- statements: constant per POST, few per legacy callback ----------------------------------


def _campaign_post(count: int, start: int) -> bytes:
    for number in range(start, start + count):
        message(number, status="")
    return body(
        *(
            event("SENT_TO_SUPPLIER", T0 + number, apimsgid=mid(number))
            for number in range(start, start + count)
        )
    )


@pytest.mark.django_db(transaction=True)
def test_statements_per_post_do_not_grow_with_its_events() -> None:
    counts = []
    in_transaction: list[bool] = []

    def note(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if sql.split()[0] != "BEGIN":  # SQLite's BEGIN runs as the transaction starts
            in_transaction.append(not connection.get_autocommit())
        return execute(sql, params, many, context)

    for count, start in ((5, 1), (50, 100)):
        post = _campaign_post(count, start)
        in_transaction.clear()
        with (
            CaptureQueriesContext(connection) as queries,
            connection.execute_wrapper(note),
            mock.patch.object(connection, "commit", wraps=connection.commit) as commit,
        ):
            outcomes = receive_json_callback("default", post)
        assert outcomes == ["applied"] * count
        statements = [query["sql"].split()[0] for query in queries.captured_queries]
        counts.append(len([verb for verb in statements if verb not in ("BEGIN", "COMMIT")]))
        assert commit.call_count == 1, "one commit per POST"
        assert all(in_transaction), "every statement inside the one transaction"
    # One locked SELECT, one UPDATE, one INSERT: for 5 events as for 50.
    assert counts == [3, 3]
    assert OutboundMessage.objects.filter(status="003").count() == 55


def test_a_legacy_callback_takes_three_statements_and_a_duplicate_two() -> None:
    message(1, status="")
    with CaptureQueriesContext(connection) as applied:
        assert receive_callback(form("003"), api_id=API_ID) == "applied"
    with CaptureQueriesContext(connection) as duplicate:
        assert receive_callback(form("003"), api_id=API_ID) == "ignored"
    assert len(applied) == 3  # the locked look-up, the UPDATE, the log row
    assert len(duplicate) == 2  # nothing to update: the look-up and the log row


@pytest.mark.django_db(transaction=True)
def test_a_legacy_callback_commits_once() -> None:
    message(1, status="")
    with mock.patch.object(connection, "commit", wraps=connection.commit) as commit:
        assert receive_callback(form("003"), api_id=API_ID) == "applied"
    assert commit.call_count == 1
    assert OutboundMessage.objects.get().status == "003"


def test_signals_are_sent_after_the_batch_is_stored(caplog: pytest.LogCaptureFixture) -> None:
    """A receiver that fails does not keep the others from hearing, nor lose the records."""
    message(1, status=""), message(2, status="")
    heard: list[str] = []

    def receiver(message: OutboundMessage, new_status: str, **_: Any) -> None:
        stored = OutboundMessage.objects.get(pk=message.pk).status
        heard.append(f"{message.apimsgid}:{stored}")
        if len(heard) == 1:
            raise RuntimeError("receiver failed")

    message_status_changed.connect(receiver, weak=False)
    caplog.set_level(logging.ERROR)
    try:
        with pytest.raises(RuntimeError):
            receive_json_callback(
                "default",
                body(event("DEVICE_ACK", apimsgid=mid(1)), event("DEVICE_ACK", apimsgid=mid(2))),
            )
    finally:
        message_status_changed.disconnect(receiver)
    assert heard == [f"{mid(1)}:004", f"{mid(2)}:004"]
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {"004"}


def test_unknown_ids_are_kept_with_constant_statements() -> None:
    counts = []
    for count, start in ((5, 1000), (50, 2000)):
        post = body(*(event("QUEUED", apimsgid=mid(n)) for n in range(start, start + count)))
        with CaptureQueriesContext(connection) as queries:
            assert receive_json_callback("default", post) == ["unmatched"] * count
        counts.append(len(queries))
    assert counts[0] == counts[1] <= 6  # look-ups, one INSERT, one look again
    assert UnmatchedCallback.objects.count() == 55
