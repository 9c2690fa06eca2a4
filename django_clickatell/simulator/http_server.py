"""The simulator's HTTP side: the API under ``/http/``, test controls under ``/_simulator/``.

A gateway request is parsed (query and form, the form winning), counted, held for the
simulator's ``latency``, then either answered by :func:`.commands.handle` or handed to
the fault queued for it.  The handler never logs: the simulator must never print
what it was sent.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .commands import handle, recipients
from .controls import find_control
from .faults import BEHAVIOURS, Fault
from .one_api import serve_one_api
from .rest import serve_rest

if TYPE_CHECKING:
    from .server import ClickatellSimulator

#: Fields that must never travel in a URL; a request that puts them there is counted.
SECRET_FIELDS = frozenset({"password", "session_id"})


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: ClickatellSimulator) -> None:
        super().__init__(address, SimulatorRequestHandler)
        self.simulator = simulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (timeouts, resets) are part of the job: no tracebacks."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | TimeoutError | ssl.SSLError):
            super().handle_error(request, client_address)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        with self.simulator.lock:
            self.simulator.connections += 1
        return sock, address


class SimulatorRequestHandler(BaseHTTPRequestHandler):
    """One connection's requests; also the :class:`.faults.Exchange` a fault acts on."""

    protocol_version = "HTTP/1.1"
    _command = ""
    _fields: dict[str, str] = {}
    server: SimulatorHTTPServer
    server_version = "ClickatellSimulator/1"

    def setup(self) -> None:
        super().setup()
        self._first_request = True
        # Headers and body go out in separate writes; without this, Nagle's
        # algorithm and the client's delayed ACK add ~40 ms to every reply.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the simulator must never print what it was sent."""

    def do_GET(self) -> None:
        self._read_body()  # some clients send a body even with GET; never leave it unread
        self._route(body=b"")

    def do_POST(self) -> None:
        self._route(body=self._read_body())

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def do_DELETE(self) -> None:
        self._route(body=self._read_body())

    def _route(self, body: bytes) -> None:
        simulator = self.server.simulator
        url = urlsplit(self.path)
        control = url.path.startswith("/_simulator/")
        if self._first_request:
            self._first_request = False
            if control:  # so "connections" can be split into gateway and test traffic
                with simulator.lock:
                    simulator.control_connections += 1
        if control:
            self._control(url.path.removeprefix("/_simulator/"), body)
            return
        with simulator.lock:
            simulator.api_requests[url.path.split("/")[1]] += 1
        if url.path.startswith("/rest/"):
            serve_rest(self, url, body)
            return
        if url.path.startswith("/v1/"):
            serve_one_api(self, url, body)
            return
        if not url.path.startswith("/http/"):
            self.answer(
                404,
                f"Not found: {url.path}. BASE_URL should be {simulator.base_url} (legacy HTTP), "
                f"{simulator.rest_url} (REST) or {simulator.root_url} (One API)",
                content_type="text/plain",
            )
            return
        with simulator.lock:
            simulator.in_flight += 1
        try:
            self._gateway(url.path.removeprefix("/http/").strip("/"), url.query, body)
        finally:
            with simulator.lock:
                simulator.in_flight -= 1

    def _gateway(self, command: str, query_string: str, body: bytes) -> None:
        simulator = self.server.simulator
        fields = self._fields_of(query_string, body)
        if simulator.latency:
            time.sleep(simulator.latency)
        if command == "sendmsg":
            with simulator.lock:
                simulator.sendmsg_requests.update(recipients(fields))
        fault = simulator.faults.take(command)
        self._command, self._fields = command, fields
        if fault is None:
            self.answer(200, handle(simulator, command, fields))
        else:
            self._apply(fault)

    def _fields_of(self, query_string: str, body: bytes) -> dict[str, str]:
        """The request's fields, query and form (the form wins); counts secrets in the URL."""
        query = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
        form = {
            k: v[-1]
            for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()
        }
        if SECRET_FIELDS & query.keys():
            with self.server.simulator.lock:
                self.server.simulator.secrets_in_url += 1
        return {**query, **form}

    def _apply(self, fault: Fault) -> None:
        simulator = self.server.simulator
        with simulator.lock:
            fault.hits.append(self.client_address[:2])
            simulator.counts[self._command] += 1
            simulator.counts["total"] += 1
            simulator.counts["faults"] += 1
        BEHAVIOURS[fault.kind](self, fault)

    def _control(self, action: str, body: bytes) -> None:
        try:
            payload = json.loads(body or b"{}")
            control = find_control(self.command, action)
            if control is None:
                self.answer(404, json.dumps({"error": "unknown control"}), "application/json")
                return
            result = control(self.server.simulator, payload)
        except (ValueError, TypeError, KeyError) as exc:
            self.answer(400, json.dumps({"error": str(exc)}), "application/json")
            return
        self.answer(200, json.dumps(result), "application/json")

    # -- the Exchange a fault acts on ------------------------------------------------------

    def carry_out(self) -> str:
        return handle(self.server.simulator, self._command, self._fields, count=False)

    def reset_connection(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def close_when_done(self) -> None:
        self.close_connection = True

    def trickle(self, text: str, pause: float) -> None:
        """A valid 200 reply, status line to last byte, one byte per write, ``pause`` apart.

        Each read the client makes returns quickly, so only a deadline on the whole
        request (not a per-read timeout) stops a client from waiting for all of it.
        """
        payload = text.encode()
        head = (
            f"{self.protocol_version} 200 OK\r\n"
            f"Server: {self.version_string()}\r\n"
            f"Date: {self.date_time_string()}\r\n"
            "Content-Type: text/html\r\n"
            f"Content-Length: {len(payload)}\r\n"
            "Connection: close\r\n\r\n"
        ).encode()
        data = head + payload
        for index in range(len(data)):
            if index:
                time.sleep(pause)
            self.wfile.write(data[index : index + 1])

    def answer(
        self,
        status: int,
        text: str,
        content_type: str = "text/html",
        headers: dict[str, str] | None = None,
    ) -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:  # so a client still listening does not reuse the socket
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
