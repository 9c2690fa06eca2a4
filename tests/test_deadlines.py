"""``TIMEOUT`` bounds the whole request (issue 11, item 6), against real sockets on loopback.

A gateway -- or anything between us and it -- that trickles a valid reply one byte at
a time must not keep a request alive past ``connect + read`` seconds: a claim lease is
sized from that bound, and a request that outlives it lets a second worker send the
same command again.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any

import pytest

from django_clickatell.exceptions import GatewayTimeout, GatewayUnreachable
from django_clickatell.gateway.transport import Transport
from django_clickatell.protocol.redaction import Secret
from django_clickatell.simulator import ClickatellSimulator

MSG = "f6b9af2a2c9e5b18ee2d257e3def5d66"
BODY = f"ID: {MSG} Status: 006".encode()
REPLY = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n"
    b"Connection: close\r\n\r\n%s" % (len(BODY), BODY)
)
BYTE_INTERVAL = 0.2
#: How late after the deadline the error may come (scheduling on a shared 2-core machine).
MARGIN = 0.4


class TricklingServer:
    """Accepts connections, reads the request, then answers one byte every *interval*.

    ``fast_prefix`` bytes of the reply are sent at once (say, the headers), the rest
    trickles.  Stops by itself after ``max_seconds`` per connection.
    """

    def __init__(self, fast_prefix: int = 0, interval: float = BYTE_INTERVAL) -> None:
        self.fast_prefix = fast_prefix
        self.interval = interval
        self.max_seconds = 60.0
        self.sent: list[int] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/http/"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        sent = 0
        started = time.monotonic()
        with conn, suppress(OSError):
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            conn.sendall(REPLY[: self.fast_prefix])
            sent = self.fast_prefix
            for index in range(self.fast_prefix, len(REPLY)):
                if self._stop.is_set() or time.monotonic() - started > self.max_seconds:
                    break
                time.sleep(self.interval)
                conn.sendall(REPLY[index : index + 1])
                sent += 1
        self.sent.append(sent)

    def close(self) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)


@pytest.fixture
def trickle() -> Iterator[TricklingServer]:
    server = TricklingServer()
    yield server
    server.close()


def timed_post(transport: Transport) -> tuple[float, BaseException | None, str | None]:
    started = time.monotonic()
    try:
        body = transport.post("delmsg", {"apimsgid": MSG, "session_id": "x" * 32})
    except Exception as exc:
        return time.monotonic() - started, exc, None
    return time.monotonic() - started, None, body


def test_trickled_reply_is_cut_off_at_the_read_deadline(trickle: TricklingServer) -> None:
    transport = Transport(trickle.url, (1.0, 1.5))
    elapsed, error, _ = timed_post(transport)
    transport.close()
    assert isinstance(error, GatewayTimeout), error
    assert "ReadTimeout" in str(error)
    # The whole reply would take len(REPLY) x 0.2 s (about 25 s); each byte arrives well
    # within any per-read timeout, so only a total deadline stops it.
    assert len(REPLY) * BYTE_INTERVAL > 20
    assert 1.5 - 0.05 <= elapsed <= 1.5 + MARGIN, elapsed


def test_trickled_body_after_prompt_headers_is_cut_off_too() -> None:
    server = TricklingServer(fast_prefix=REPLY.index(b"\r\n\r\n") + 4)
    try:
        transport = Transport(server.url, (1.0, 1.0))
        elapsed, error, _ = timed_post(transport)
        transport.close()
    finally:
        server.close()
    assert isinstance(error, GatewayTimeout), error
    assert 1.0 - 0.05 <= elapsed <= 1.0 + MARGIN, elapsed


def test_prompt_reply_is_read_whole_and_the_connection_reused() -> None:
    server = TricklingServer(fast_prefix=len(REPLY))
    try:
        transport = Transport(server.url, (1.0, 1.0))
        for _ in range(3):
            elapsed, error, body = timed_post(transport)
            assert error is None
            assert body == BODY.decode()
            assert elapsed < 1.0
        transport.close()
    finally:
        server.close()


def test_deadline_starts_after_connecting_and_counts_every_read(
    trickle: TricklingServer,
) -> None:
    """Half the reply arrives in time with a long read budget: the budget is the bound."""
    trickle.interval = 0.05
    transport = Transport(trickle.url, (1.0, 2.0))
    elapsed, error, _ = timed_post(transport)
    transport.close()
    assert isinstance(error, GatewayTimeout)
    assert 2.0 - 0.05 <= elapsed <= 2.0 + MARGIN


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A loopback port whose accept queue is full: a new connection neither opens nor fails."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = int(listener.getsockname()[1])
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)
    probe = socket.socket()
    probe.settimeout(0.2)
    with pytest.raises(TimeoutError):
        probe.connect(("127.0.0.1", port))  # the queue is full indeed
    probe.close()
    yield port
    filler.close()
    listener.close()


def test_connect_deadline_covers_every_address_together(
    unanswered_port: int, monkeypatch: Any
) -> None:
    real_getaddrinfo = socket.getaddrinfo

    def three_addresses(*args: Any, **kwargs: Any) -> Any:
        return real_getaddrinfo(*args, **kwargs) * 3  # a host with three A records

    monkeypatch.setattr(socket, "getaddrinfo", three_addresses)
    transport = Transport(f"http://localhost:{unanswered_port}/http/", (0.5, 5.0))
    elapsed, error, _ = timed_post(transport)
    transport.close()
    assert isinstance(error, GatewayTimeout), error
    assert "ConnectTimeout" in str(error)
    assert 0.5 - 0.05 <= elapsed <= 0.5 + MARGIN, elapsed


def test_refused_connection_is_unreachable_not_a_timeout() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused
        transport = Transport(f"http://127.0.0.1:{port}/http/", (1.0, 1.0))
        elapsed, error, _ = timed_post(transport)
        transport.close()
    assert isinstance(error, GatewayUnreachable), error
    assert elapsed < 0.5


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """A throwaway self-signed certificate for 127.0.0.1."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = str(folder / "cert.pem"), str(folder / "key.pem")
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", key, "-out", cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_requests_read_through_the_deadline_reader(
    tls_files: tuple[str, str], monkeypatch: Any
) -> None:
    """The production path: TLS, keep-alive, a whole reply read within the deadline."""
    cert, key = tls_files
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", cert)
    with ClickatellSimulator(certfile=cert, keyfile=key) as simulator:
        transport = Transport(simulator.base_url, (1.0, 1.0))
        assert simulator.base_url.startswith("https://")
        reply = transport.post(
            "auth", {"user": "demo", "password": Secret("demo-password"), "api_id": "1234567"}
        )
        assert reply.startswith("OK: ")
        simulator.inject("delay", command="ping", delay=2.0)
        started = time.monotonic()
        with pytest.raises(GatewayTimeout):
            transport.post("ping", {"session_id": reply[4:].strip()})
        assert time.monotonic() - started <= 1.0 + MARGIN
        transport.close()
