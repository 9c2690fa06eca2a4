"""A real HTTP server on 127.0.0.1 that speaks Clickatell's legacy HTTP API.

It authenticates, expires idle sessions, keeps scheduled messages, answers
``auth``, ``ping``, ``delmsg``, ``querymsg``, ``sendmsg``, ``getbalance`` and
``getmsgcharge`` with the documented reply shapes, counts requests per command
and TCP connections, and injects faults on demand.  Tests drive it in-process;
other processes use the JSON control endpoints under ``/_simulator/``.

It is also the gateway-side truth about duplicates: every message an accepted
``sendmsg`` created is kept, so :meth:`ClickatellSimulator.duplicate_sends`
can tell whether one SMS went out twice (same ``climsgid``, or same recipient
and text), whatever the client recorded.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .callbacks import push_callbacks
from .commands import handle, recipients
from .faults import BEHAVIOURS, Fault, FaultQueue
from .state import GatewayState, SimulatedMessage

Control = Callable[["ClickatellSimulator", Any], Any]


def find_control(method: str, action: str) -> Control | None:
    """The control for a request; ``POST messages`` adds, any other method lists."""
    if method == "POST" and action == "messages":
        return _add_messages
    return CONTROLS.get(action)


def _stats(simulator: ClickatellSimulator, payload: Any) -> Any:
    return simulator.stats()


def _add_messages(simulator: ClickatellSimulator, payload: Any) -> Any:
    """``{"count": n, ...}`` adds n alike; otherwise one, with ``add_message``'s arguments."""
    count = int(payload.pop("count", 0))
    if count:
        return {"apimsgids": [simulator.add_message(**payload) for _ in range(count)]}
    return {"apimsgid": simulator.add_message(**payload)}


def _list_messages(simulator: ClickatellSimulator, payload: Any) -> Any:
    with simulator.lock:
        return [asdict(m) for m in simulator.messages.values()]


def _clear(simulator: ClickatellSimulator, payload: Any) -> Any:
    """Back to a fresh gateway: no messages, counts, faults or sessions."""
    simulator.forget_messages()
    simulator.reset_counts()
    simulator.clear_faults()
    simulator.expire_sessions()
    return {"cleared": True}


def _sends(simulator: ClickatellSimulator, payload: Any) -> Any:
    return {
        "accepted": len(simulator.accepted_sends()),
        "by_climsgid": simulator.accepted_by_climsgid(),
        "duplicates": simulator.duplicate_sends(),
        "requests_by_recipient": simulator.sendmsg_requests_by_recipient(),
    }


def _inject_fault(simulator: ClickatellSimulator, payload: Any) -> Any:
    simulator.inject(Fault(**payload))
    return {"queued": True}


def _set_latency(simulator: ClickatellSimulator, payload: Any) -> Any:
    simulator.latency = float(payload["seconds"])
    return {"latency": simulator.latency}


def _reset_counts_and_faults(simulator: ClickatellSimulator, payload: Any) -> Any:
    """Zero the counts and drop queued faults; messages and sessions stay."""
    simulator.reset_counts()
    simulator.clear_faults()
    return {"reset": True}


def _expire_sessions(simulator: ClickatellSimulator, payload: Any) -> Any:
    simulator.expire_sessions()
    return {"expired": True}


CONTROLS: dict[str, Control] = {
    "stats": _stats,
    "messages": _list_messages,
    "clear": _clear,
    "sends": _sends,
    "faults": _inject_fault,
    "latency": _set_latency,
    "reset": _reset_counts_and_faults,
    "expire-sessions": _expire_sessions,
}


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
        if not url.path.startswith("/http/"):
            self.answer(404, "Not found", content_type="text/plain")
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

    def answer(self, status: int, text: str, content_type: str = "text/html") -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:  # so a client still listening does not reuse the socket
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)


__all__ = ["ClickatellSimulator", "Fault", "SimulatedMessage"]


class ClickatellSimulator(GatewayState):
    """Start with :meth:`start` (or ``with``); put ``base_url`` in ``CLICKATELL["BASE_URL"]``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = "demo",
        password: str = "demo-password",  # noqa: S107 (a local test double's default)
        api_id: str = "1234567",
        session_idle_timeout: float = 900.0,
        latency: float = 0.0,
        balance: str = "1000.0",
        certfile: str | None = None,
        keyfile: str | None = None,
        handset_delay: float = 1.0,
        callback_url: str | None = None,
        callback_auth: tuple[str, str] | None = None,
        callback_method: str = "POST",
        callback_retry_delays: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0),
    ) -> None:
        super().__init__(
            username=username,
            password=password,
            api_id=api_id,
            session_idle_timeout=session_idle_timeout,
            latency=latency,
            balance=Decimal(balance),
            handset_delay=handset_delay,
            callback_url=callback_url,
            callback_auth=callback_auth,
            callback_method=callback_method,
            callback_retry_delays=callback_retry_delays,
        )
        self.host = host
        #: Faults waiting for requests: :meth:`inject` adds, :meth:`clear_faults` empties.
        self.faults = FaultQueue()
        self._server = SimulatorHTTPServer((host, port), self)
        self._tls = certfile is not None
        if certfile is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self.host}:{self.port}/"

    @property
    def base_url(self) -> str:
        return self.root_url + "http/"

    def start(self) -> ClickatellSimulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="clickatell-simulator", daemon=True
        )
        self._thread.start()
        self._start_background()
        return self

    def serve_forever(self) -> None:
        self._start_background()
        self._server.serve_forever()

    def _start_background(self) -> None:
        for target, name in ((self._tick, "ticker"), (self._push_callbacks, "callbacks")):
            threading.Thread(
                target=target, name=f"clickatell-simulator-{name}", daemon=True
            ).start()

    def _tick(self) -> None:
        """Move messages along when their time comes (and so queue their callbacks)."""
        while not self._stopping.wait(0.05):
            self._advance_due()

    def _push_callbacks(self) -> None:
        push_callbacks(self)

    def stop(self) -> None:
        self._stopping.set()
        self._pending_callbacks.put(None)
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ClickatellSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """A ``CLICKATELL`` settings dict pointing at this simulator."""
        return {
            "USERNAME": self.username,
            "PASSWORD": self.password,
            "API_ID": self.api_id,
            "BASE_URL": self.base_url,
            **overrides,
        }

    # -- test controls (the rest, on the state, are inherited) -----------------------------

    def inject(self, fault: Fault | str, **kwargs: Any) -> None:
        """Queue a fault: ``inject("http_502", command="delmsg", times=3)``."""
        self.faults.add(fault if isinstance(fault, Fault) else Fault(fault, **kwargs))

    def clear_faults(self) -> None:
        self.faults.clear()

    @contextmanager
    def latency_of(self, seconds: float) -> Iterator[None]:
        previous, self.latency = self.latency, seconds
        try:
            yield
        finally:
            self.latency = previous

    def handle(self, command: str, fields: dict[str, str], *, count: bool = True) -> str:
        """The reply body for one command (thread-safe), as if no fault were queued."""
        return handle(self, command, fields, count=count)
