"""The simulator itself: protocol, faults, controls and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
import requests

from django_clickatell.simulator import ClickatellSimulator, Fault
from tests.conftest import wait_until


@pytest.fixture
def sim() -> Iterator[ClickatellSimulator]:
    with ClickatellSimulator(session_idle_timeout=60, handset_delay=0.1) as simulator:
        yield simulator


def post(sim: ClickatellSimulator, command: str, **fields: str) -> str:
    return requests.post(sim.base_url + command, data=fields, timeout=5).text


def session(sim: ClickatellSimulator) -> str:
    return post(sim, "auth", user="demo", password="demo-password", api_id="1234567")[4:]


def test_auth_and_errors(sim: ClickatellSimulator) -> None:
    assert post(sim, "auth", user="demo", password="x", api_id="1234567").startswith("ERR: 001")
    assert post(sim, "auth", user="demo", password="demo-password", api_id="9").startswith(
        "ERR: 108"
    )
    assert post(sim, "ping").startswith("ERR: 005")
    assert post(sim, "ping", session_id="0" * 32).startswith("ERR: 003")
    assert post(sim, "ping", session_id=session(sim)) == "OK:"


def test_delmsg_semantics(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    scheduled = sim.add_message(climsgid="abc")
    delivered = sim.add_message(status="004")
    assert post(sim, "delmsg", session_id=sid, apimsgid=scheduled) == f"ID: {scheduled} Status: 006"
    assert post(sim, "delmsg", session_id=sid, climsgid="abc") == f"ID: {scheduled} Status: 006"
    assert post(sim, "delmsg", session_id=sid, apimsgid=delivered) == f"ID: {delivered} Status: 004"
    assert post(sim, "delmsg", session_id=sid, apimsgid="nope").startswith("ERR: 103")
    assert post(sim, "delmsg", session_id=sid, climsgid="nope").startswith("ERR: 104")
    assert post(sim, "delmsg", session_id=sid).startswith("ERR: 109")
    assert sim.counts["delmsg"] == 6


def test_scheduled_message_is_delivered_at_its_time(sim: ClickatellSimulator) -> None:
    apimsgid = sim.add_message(deliver_in=0.2)
    assert sim.status_of(apimsgid) == "011"
    time.sleep(0.5)
    assert sim.status_of(apimsgid) == "004"
    assert sim.messages[apimsgid].history == ["003", "004"]


def test_sendmsg_multi(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    body = post(
        sim, "sendmsg", session_id=sid, to="27999000001,bad,27999000002", text="hi", deliv_time="30"
    )
    lines = body.splitlines()
    assert lines[0].startswith("ID: ")
    assert lines[0].endswith("To: 27999000001")
    assert lines[1] == "ERR: 105, Invalid destination address To: bad"
    assert post(
        sim, "sendmsg", session_id=sid, to="27999000001", text="x", deliv_time="5"
    ).startswith("ERR: 120")


def test_idle_expiry(sim: ClickatellSimulator) -> None:
    sim.session_idle_timeout = 0.2
    sid = session(sim)
    time.sleep(0.3)
    assert post(sim, "ping", session_id=sid).startswith("ERR: 003")


@pytest.mark.parametrize(("kind", "status"), [("http_500", 500), ("http_502", 502)])
def test_http_faults(sim: ClickatellSimulator, kind: str, status: int) -> None:
    sim.inject(kind, command="ping", times=2)
    sid = session(sim)
    for _ in range(2):
        assert (
            requests.post(sim.base_url + "ping", data={"session_id": sid}, timeout=5).status_code
            == status
        )
    assert post(sim, "ping", session_id=sid) == "OK:"


def test_reset_and_delay_faults(sim: ClickatellSimulator) -> None:
    sim.inject("reset")
    with pytest.raises(requests.ConnectionError):
        requests.post(sim.base_url + "ping", timeout=5)
    sim.inject(Fault("delay", delay=1.0))
    with pytest.raises(requests.ReadTimeout):
        requests.post(sim.base_url + "ping", timeout=(1, 0.3))


def test_unknown_fault_rejected() -> None:
    with pytest.raises(ValueError, match="unknown fault"):
        Fault("explode")


def test_counts_connections_and_secrets_in_urls(sim: ClickatellSimulator) -> None:
    with requests.Session() as http:
        for _ in range(3):
            http.post(sim.base_url + "ping", timeout=5)
    assert sim.connections == 1  # keep-alive
    requests.get(sim.base_url + "auth?user=demo&password=demo-password&api_id=1234567", timeout=5)
    assert sim.secrets_in_url == 1


def test_control_endpoints(sim: ClickatellSimulator) -> None:
    def control(action: str, payload: dict[str, object] | None = None) -> object:
        request = urllib.request.Request(
            sim.root_url + "_simulator/" + action,
            data=json.dumps(payload).encode() if payload is not None else None,
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    created = control("messages", {"climsgid": "x1"})
    assert isinstance(created, dict)
    assert created["apimsgid"] in sim.messages
    control("faults", {"kind": "http_500", "command": "ping"})
    assert requests.post(sim.base_url + "ping", timeout=5).status_code == 500
    stats = control("stats")
    assert isinstance(stats, dict)
    assert stats["counts"]["faults"] == 1
    control("reset", {})
    assert sim.counts["total"] == 0


def test_command_line() -> None:
    env = {**os.environ, "CLICKATELL_PASSWORD": "cli-password"}
    process = subprocess.Popen(
        [sys.executable, "-m", "django_clickatell.simulator", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        url = line.rsplit(" ", 1)[1].strip()
        body = requests.post(
            url + "auth",
            data={"user": "demo", "password": "cli-password", "api_id": "1234567"},
            timeout=5,
        ).text
        assert body.startswith("OK: ")
    finally:
        process.terminate()
        assert process.wait(timeout=10) == 0
        if process.stdout is not None:
            process.stdout.close()


def control(sim: ClickatellSimulator, action: str, payload: object = None) -> object:
    request = urllib.request.Request(
        sim.root_url + "_simulator/" + action,
        data=json.dumps(payload).encode() if payload is not None else None,
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read())


def test_accepted_sends_and_duplicates(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    sim.add_message(climsgid="added")  # put there by a test: not an SMS anyone sent
    first = post(sim, "sendmsg", session_id=sid, to="27999000001", text="hi", climsgid="c1")
    post(sim, "sendmsg", session_id=sid, to="27999000002", text="hi", climsgid="c2")
    assert post(sim, "sendmsg", session_id=sid, to="bad", text="hi", climsgid="c3").startswith(
        "ERR: 105"
    )
    assert sim.accepted_by_climsgid() == {"c1": 1, "c2": 1}
    assert sim.duplicate_sends() == []
    again = post(sim, "sendmsg", session_id=sid, to="27999000001", text="hi", climsgid="c1")
    post(sim, "sendmsg", session_id=sid, to="27999000002", text="hi", climsgid="c9")  # new id
    assert sim.accepted_by_climsgid() == {"c1": 2, "c2": 1, "c9": 1}
    assert sim.accepted_by_recipient_text()[("27999000001", "hi")] == 2
    duplicates = sim.duplicate_sends()
    assert [(d["key"], d["to"], d["count"]) for d in duplicates] == [
        ("climsgid", "27999000001", 2),
        ("recipient_text", "27999000001", 2),
        ("recipient_text", "27999000002", 2),
    ]
    assert duplicates[0]["apimsgids"] == [first[4:], again[4:]]
    assert duplicates[2]["climsgids"] == ["c2", "c9"]
    assert sim.sendmsg_requests_by_recipient() == {"27999000001": 2, "27999000002": 2, "bad": 1}
    assert sim.stats()["accepted_sends"] == 4
    assert sim.stats()["duplicate_sends"] == 3
    sends = control(sim, "sends")
    assert isinstance(sends, dict)
    assert sends["accepted"] == 4
    assert sends["by_climsgid"] == {"c1": 2, "c2": 1, "c9": 1}
    assert len(sends["duplicates"]) == 3
    assert sends["requests_by_recipient"]["27999000001"] == 2


def test_multi_recipient_sends_are_counted_per_recipient(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    post(sim, "sendmsg", session_id=sid, to="27999000001,27999000002", text="hi")
    post(sim, "sendmsg", session_id=sid, to="27999000002,27999000003", text="hi")
    assert sim.accepted_by_climsgid() == {}  # a multi-recipient request names no climsgid
    assert [(d["key"], d["to"]) for d in sim.duplicate_sends()] == [
        ("recipient_text", "27999000002")
    ]


def test_query_and_delete_by_climsgid(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    body = post(sim, "sendmsg", session_id=sid, to="27999000001", text="x", climsgid="abc123")
    apimsgid = body.removeprefix("ID: ")
    assert post(sim, "querymsg", session_id=sid, climsgid="abc123").startswith(f"ID: {apimsgid} ")
    unknown = "ERR: 104, Unknown client message ID"
    assert post(sim, "querymsg", session_id=sid, climsgid="nope") == unknown
    assert post(sim, "delmsg", session_id=sid, climsgid="nope") == unknown
    assert post(sim, "querymsg", session_id=sid, apimsgid="nope").startswith("ERR: 103")


def test_delay_hangs_up_without_carrying_out(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    sim.inject(Fault("delay", command="sendmsg", delay=0.5))
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            sim.base_url + "sendmsg",
            data={"session_id": sid, "to": "27999000001", "text": "x"},
            timeout=(1, 0.2),
        )
    time.sleep(0.5)
    assert sim.accepted_sends() == []
    assert sim.executed["sendmsg"] == 0
    assert sim.sendmsg_requests_by_recipient() == {"27999000001": 1}


def test_drop_reply_carries_out_then_resets(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    fault = Fault("drop_reply", command="sendmsg")
    sim.inject(fault)
    with pytest.raises(requests.ConnectionError):
        requests.post(
            sim.base_url + "sendmsg",
            data={"session_id": sid, "to": "27999000001", "text": "x", "climsgid": "lost1"},
            timeout=5,
        )
    assert sim.accepted_by_climsgid() == {"lost1": 1}
    assert len(fault.hits) == 1
    assert fault.hits[0][0] == "127.0.0.1"
    assert post(sim, "querymsg", session_id=sid, climsgid="lost1").startswith("ID: ")


def test_delay_after_carries_out_then_answers_late(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    sim.inject(Fault("delay_after", command="sendmsg", delay=0.6))
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            sim.base_url + "sendmsg",
            data={"session_id": sid, "to": "27999000001", "text": "x", "climsgid": "late1"},
            timeout=(1, 0.2),
        )
    # Carried out before the delay, so it is known at once, while the answer is still held.
    assert sim.accepted_by_climsgid() == {"late1": 1}
    assert sim.executed["sendmsg"] == 1
    # A patient client gets the real answer after the delay.
    sim.inject(Fault("delay_after", command="ping", delay=0.3))
    started = time.monotonic()
    reply = requests.post(sim.base_url + "ping", data={"session_id": sid}, timeout=5)
    assert time.monotonic() - started >= 0.3
    assert (reply.status_code, reply.text) == (200, "OK:")
    assert reply.headers["Connection"] == "close"


def test_trickle_sends_a_valid_reply_byte_by_byte(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    sim.inject(Fault("trickle", command="sendmsg", delay=0.01))
    started = time.monotonic()
    # Every single read is far quicker than the read timeout; the whole reply is not.
    reply = requests.post(
        sim.base_url + "sendmsg",
        data={"session_id": sid, "to": "27999000001", "text": "x", "climsgid": "slow1"},
        timeout=(1, 0.2),
    )
    elapsed = time.monotonic() - started
    assert reply.status_code == 200
    assert reply.text == f"ID: {sim.accepted_sends()[0].apimsgid}"
    wire_bytes = len(reply.text) + 100  # status line and headers come byte by byte too
    assert elapsed >= wire_bytes * 0.01 * 0.8
    assert sim.accepted_by_climsgid() == {"slow1": 1}


def test_new_faults_through_the_control_endpoint(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    control(sim, "faults", {"kind": "delay_after", "command": "ping", "delay": 0.3})
    with pytest.raises(requests.ReadTimeout):
        requests.post(sim.base_url + "ping", data={"session_id": sid}, timeout=(1, 0.1))
    with pytest.raises(urllib.error.HTTPError) as refused:
        control(sim, "faults", {"kind": "trickle", "hits": []})
    refused.value.close()
    assert refused.value.code == 400
    with pytest.raises(ValueError, match="delay"):
        Fault("delay", delay=-1)


def test_execute_late_carries_out_after_the_client_gave_up(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    sim.inject(Fault("execute_late", command="sendmsg", delay=0.5))
    with pytest.raises(requests.ReadTimeout):
        requests.post(
            sim.base_url + "sendmsg",
            data={"session_id": sid, "to": "27999000001", "text": "x", "climsgid": "held1"},
            timeout=(1, 0.1),
        )
    # Not yet carried out: a check now says "unknown"...
    assert post(sim, "querymsg", session_id=sid, climsgid="held1").startswith("ERR: 104")
    # ...and yet the gateway sends it once the held request gets through.
    assert wait_until(lambda: sim.accepted_by_climsgid() == {"held1": 1}, timeout=3)


def test_in_flight_counts_requests_still_being_handled(sim: ClickatellSimulator) -> None:
    sid = session(sim)
    sim.inject(Fault("execute_late", command="ping", delay=0.4))
    with pytest.raises(requests.ReadTimeout):
        requests.post(sim.base_url + "ping", data={"session_id": sid}, timeout=(1, 0.1))
    assert sim.in_flight == 1  # the client gave up; the gateway has not finished with it
    assert sim.stats()["in_flight"] == 1
    assert wait_until(lambda: sim.in_flight == 0, timeout=3)
    assert sim.executed["ping"] == 1


def test_a_refused_callback_says_what_to_check_once(
    sim: ClickatellSimulator, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 21's newcomer started the simulator without ``--callback-username``: the
    runserver printed "Unauthorized", the simulator retried in silence."""
    import http.server
    import threading

    class Refuse(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(401)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    receiver = http.server.HTTPServer(("127.0.0.1", 0), Refuse)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    caplog.set_level("WARNING", logger="django_clickatell.simulator")
    try:
        sim.callback_url = f"http://127.0.0.1:{receiver.server_port}/clickatell/callback/"
        sim.callback_retry_delays = (0.05,)
        sim.add_message(status="011", deliver_in=0.05, callback=3)  # 003, then 004
        assert wait_until(lambda: sim.callbacks_failed >= 2, timeout=10), sim.stats()
    finally:
        receiver.shutdown()
        receiver.server_close()
    said = [r.getMessage() for r in caplog.records if r.name == "django_clickatell.simulator"]
    assert sim.callback_refusals == 4
    assert len(said) == 2  # once per callback, not per retry
    assert all("refused (HTTP 401)" in line for line in said)
    assert all("--callback-username" in line for line in said)
