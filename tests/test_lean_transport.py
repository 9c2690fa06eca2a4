"""The lean transport: per-request work that never varies is done once, behaviour unchanged.

Issue 15, item 3.  The transport still sends through the ``requests.Session``'s
adapter (deadlines, pooled keep-alive, typed errors: tests/test_deadlines.py and
tests/test_client_units.py), but no longer re-merges the session's settings,
rescans the environment, runs ``typing.Protocol`` checks or writes the headers
and the form in two separate socket writes on every request.
"""

from __future__ import annotations

import cProfile
import http.client
import pstats
from typing import Any

import pytest
import requests

from django_clickatell.exceptions import GatewayHTTPError
from django_clickatell.gateway.client import ClickatellClient
from django_clickatell.simulator import ClickatellSimulator


def test_one_write_per_request(simulator: ClickatellSimulator, monkeypatch: Any) -> None:
    """Headers and form leave in one write: one segment, one wake-up of the gateway."""
    apimsgid = simulator.add_message()
    client = ClickatellClient()
    client.delmsg(apimsgid=apimsgid)  # the session and the connection, outside the count
    writes: list[bytes] = []
    original = http.client.HTTPConnection.send

    def counting(self: http.client.HTTPConnection, data: Any) -> None:
        writes.append(bytes(data))
        original(self, data)

    monkeypatch.setattr(http.client.HTTPConnection, "send", counting)
    client.delmsg(apimsgid=apimsgid)
    assert len(writes) == 1
    assert writes[0].startswith(b"POST /http/delmsg HTTP/1.1\r\n")
    assert b"\r\n\r\napimsgid=" + apimsgid.encode() + b"&session_id=" in writes[0]


def test_no_session_merging_per_request(simulator: ClickatellSimulator, monkeypatch: Any) -> None:
    """The session's settings and the environment are read once, not on every POST."""
    apimsgid = simulator.add_message()
    client = ClickatellClient()
    client.delmsg(apimsgid=apimsgid)

    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("per-request session work")

    monkeypatch.setattr(requests.Session, "request", forbidden)
    monkeypatch.setattr(requests.Session, "merge_environment_settings", forbidden)
    monkeypatch.setattr(requests.utils, "get_environ_proxies", forbidden)
    assert client.delmsg(apimsgid=apimsgid).status == "006"


def test_no_protocol_isinstance_checks_per_request(simulator: ClickatellSimulator) -> None:
    """``typing.Protocol`` isinstance checks (slow on Python 3.11) stay off the request path."""
    apimsgid = simulator.add_message()
    client = ClickatellClient()
    client.delmsg(apimsgid=apimsgid)
    profile = cProfile.Profile()
    profile.runcall(client.delmsg, apimsgid=apimsgid)
    called = {
        (path.rsplit("/", 1)[-1], name)
        for path, _, name in pstats.Stats(profile).stats  # type: ignore[attr-defined]
    }
    assert ("typing.py", "_get_protocol_attrs") not in called
    assert ("sessions.py", "prepare_request") not in called
    assert ("cookies.py", "extract_cookies_to_jar") not in called


def test_keep_alive_after_an_http_error(simulator: ClickatellSimulator) -> None:
    """An error page is not read; its connection is closed and the next call reconnects."""
    apimsgid = simulator.add_message()
    client = ClickatellClient()
    client.querymsg(apimsgid=apimsgid)
    simulator.reset_counts()
    simulator.inject("http_500", command="delmsg")
    with pytest.raises(GatewayHTTPError):
        client.delmsg(apimsgid=apimsgid)
    assert client.delmsg(apimsgid=apimsgid).status == "006"
    for _ in range(3):
        client.querymsg(apimsgid=apimsgid)
    assert simulator.connections - simulator.control_connections <= 1
