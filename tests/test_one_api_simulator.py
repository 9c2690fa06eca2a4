"""The One API backend against the real simulator's ``/v1/`` over HTTP (no mocks)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from django_clickatell.conf import ClickatellSettings
from django_clickatell.exceptions import (
    AuthenticationError,
    CommandNotSent,
    GatewayHTTPError,
    GatewayUnreachable,
    QueryByClientIdUnsupported,
    RemoteStopUnsupported,
    UnknownMessage,
)
from django_clickatell.gateway.backends.base import OutgoingSms
from django_clickatell.gateway.backends.one_api import OneApiBackend
from django_clickatell.gateway.transport import reset_transports
from django_clickatell.protocol.replies import ErrorReply, SentMessageReply
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import wait_until
from tests.simulator_cli import base_url_printed_for


@pytest.fixture
def one_api(simulator: ClickatellSimulator) -> Iterator[ClickatellSimulator]:
    simulator.one_api.reset()
    reset_transports()
    yield simulator
    simulator.one_api.reset()
    simulator.handset_delay = 1.0
    reset_transports()


def backend(simulator: ClickatellSimulator, **overrides: Any) -> OneApiBackend:
    return OneApiBackend(ClickatellSettings(simulator.one_api_settings(**overrides)))


def three() -> list[OutgoingSms]:
    return [
        OutgoingSms("27999000001", "Grüße ☃", "c1"),
        OutgoingSms("27999000002", "refused", "c2"),
        OutgoingSms("27999000003", "third", "c3", sender="Clinic"),
    ]


def test_three_messages_in_one_request_with_one_refused(one_api: ClickatellSimulator) -> None:
    one_api.one_api.refused = {"27999000002"}
    results = backend(one_api).send(three())
    assert [type(r) for r in results] == [SentMessageReply, ErrorReply, SentMessageReply]
    assert [r.to for r in results] == ["27999000001", "27999000002", "27999000003"]
    refused = results[1]
    assert isinstance(refused, ErrorReply)
    assert (refused.code, refused.description) == (26, "Number opted out")
    assert one_api.counts["sendmsg"] == 1  # one request for all three
    sent = {m.climsgid: m for m in one_api.accepted_sends()}
    assert set(sent) == {"c1", "c3"}
    assert sent["c1"].text == "Grüße ☃"
    assert sent["c3"].sender == "Clinic"
    assert {r.apimsgid for r in results if isinstance(r, SentMessageReply)} == {
        m.apimsgid for m in sent.values()
    }
    assert one_api.secrets_in_url == 0


def test_query_translates_the_status_and_keeps_the_api_name(one_api: ClickatellSimulator) -> None:
    one_api.handset_delay = 0.3
    gateway = backend(one_api)
    [sent] = gateway.send([OutgoingSms("27999000001", "hi", "c1")])
    assert isinstance(sent, SentMessageReply)
    first = gateway.query(apimsgid=sent.apimsgid)
    assert (first.status, first.gateway_status, first.final) == ("003", "SENT_TO_SUPPLIER", False)
    assert wait_until(lambda: gateway.query(apimsgid=sent.apimsgid).status == "004", timeout=5)
    last = gateway.query(apimsgid=sent.apimsgid)
    assert (last.gateway_status, last.final) == ("DEVICE_ACK", True)
    with pytest.raises(UnknownMessage):
        gateway.query(apimsgid="f" * 32)


def test_a_stop_asks_nothing(one_api: ClickatellSimulator) -> None:
    gateway = backend(one_api)
    [sent] = gateway.send([OutgoingSms("27999000001", "hi", "c1")])
    assert isinstance(sent, SentMessageReply)
    before = dict(one_api.counts)
    with pytest.raises(RemoteStopUnsupported):
        gateway.stop(apimsgid=sent.apimsgid)
    with pytest.raises(QueryByClientIdUnsupported):
        gateway.query(climsgid="c1")
    assert dict(one_api.counts) == before


def test_a_wrong_key_is_refused_and_nothing_carried_out(one_api: ClickatellSimulator) -> None:
    gateway = backend(one_api, API_KEY="not-the-key-0000")
    with pytest.raises(CommandNotSent) as caught:
        gateway.send(three())
    assert isinstance(caught.value.cause, AuthenticationError)
    with pytest.raises(CommandNotSent):
        gateway.balance()
    assert one_api.counts["sendmsg"] == 1
    assert not one_api.executed["sendmsg"]
    assert not one_api.accepted_sends()
    assert one_api.secrets_in_url == 0


def test_503_with_retry_after_carries_nothing_out(one_api: ClickatellSimulator) -> None:
    one_api.inject("http_503", command="sendmsg", body="3")
    with pytest.raises(GatewayHTTPError) as caught:
        backend(one_api).send(three())
    assert (caught.value.status_code, caught.value.retry_after) == (503, 3.0)
    assert caught.value.retryable
    assert not one_api.accepted_sends()


def test_a_lost_reply_leaves_a_send_in_doubt_that_cannot_be_checked(
    one_api: ClickatellSimulator,
) -> None:
    """The simulator took the message but the answer was lost: no climsgid query exists, so
    the caller cannot verify it -- it must record it unknown, never resend it blindly."""
    one_api.inject("drop_reply", command="sendmsg")
    gateway = backend(one_api)
    with pytest.raises(GatewayUnreachable):
        gateway.send([OutgoingSms("27999000001", "hi", "c1")])
    assert len(one_api.accepted_sends()) == 1
    with pytest.raises(QueryByClientIdUnsupported):
        gateway.query(climsgid="c1")


def test_faults_answer_with_the_status_the_call_earned(one_api: ClickatellSimulator) -> None:
    one_api.inject("delay_after", command="sendmsg", delay=0.05)
    [sent] = backend(one_api).send([OutgoingSms("27999000001", "hi", "c1")])
    assert isinstance(sent, SentMessageReply)


def test_balance(one_api: ClickatellSimulator) -> None:
    assert backend(one_api).balance().credit == Decimal("1000.0")
    backend(one_api).check_credentials()
    assert one_api.counts["getbalance"] == 2


def test_a_key_in_the_url_is_counted(one_api: ClickatellSimulator) -> None:
    url = f"{one_api.root_url}v1/balance?key={one_api.one_api.api_key}"
    request = urllib.request.Request(url, headers={"Authorization": one_api.one_api.api_key})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["balance"] == 1000.0
    assert one_api.secrets_in_url == 1


def test_switches_over_the_control_endpoint(one_api: ClickatellSimulator) -> None:
    payload = json.dumps({"refused": ["27999000002"], "duplicate_callbacks": 1}).encode()
    request = urllib.request.Request(
        f"{one_api.root_url}_simulator/one-api", data=payload, method="POST"
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert json.loads(response.read())["refused"] == ["27999000002"]
    assert one_api.one_api.duplicate_callbacks == 1
    results = backend(one_api).send(three())
    assert isinstance(results[1], ErrorReply)


def test_command_line_takes_the_key_from_the_environment() -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "CLICKATELL_ONE_API_KEY": "cli-one-api-key"}
    process = subprocess.Popen(
        [sys.executable, "-m", "django_clickatell.simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        url = base_url_printed_for(process.stdout, "One API")
        request = urllib.request.Request(
            url + "v1/balance", headers={"Authorization": env["CLICKATELL_ONE_API_KEY"]}
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert json.loads(response.read())["currency"] == "ZAR"
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()


def test_a_trickled_reply_is_cut_off_by_the_whole_request_deadline(
    one_api: ClickatellSimulator,
) -> None:
    """The JSON transport keeps the legacy one's deadline: TIMEOUT's read bounds the whole
    reply, not each socket read, so a reply sent a byte at a time is cut off."""
    import time

    from django_clickatell.exceptions import GatewayTimeout

    one_api.inject("trickle", command="getbalance", delay=0.05)
    started = time.monotonic()
    with pytest.raises(GatewayTimeout):
        backend(one_api, TIMEOUT=(1.0, 0.5)).balance()
    assert time.monotonic() - started < 3.0
