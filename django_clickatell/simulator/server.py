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

import base64
import heapq
import json
import queue
import secrets
import socket
import ssl
import struct
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.error import URLError
from urllib.parse import parse_qs, urlencode, urlsplit
from urllib.request import Request, urlopen

from ..protocol.encoding import decode_ucs2_hex

SECRET_FIELDS = frozenset({"password", "session_id"})
FAULT_KINDS = frozenset(
    {
        "http_500",  # an HTML error page with status 500
        "http_502",  # a proxy's 502 page
        "malformed",  # HTTP 200 with a body that is not the protocol
        "reset",  # close the connection without answering (RST)
        "drop_reply",  # carry the command out, then reset instead of answering
        "delay",  # wait ``delay`` seconds, then hang up: nothing carried out, no answer
        "delay_after",  # carry the command out, answer only after ``delay`` seconds
        "execute_late",  # hold the request ``delay`` seconds, then carry it out and answer
        "trickle",  # carry it out, send the whole reply a byte at a time, ``delay`` apart
        "expire_session",  # answer ERR 003 as if the session had just expired
        "body",  # answer the literal ``body`` (documented reply variants)
    }
)


@dataclass
class Fault:
    """A fault applied to the next ``times`` requests for ``command`` (any command if None)."""

    kind: str
    command: str | None = None
    times: int = 1
    body: str = ""
    delay: float = 0.0
    #: The (host, port) of each client the fault hit, so a test can find the process that
    #: sent the request (e.g. to kill the worker whose ``sendmsg`` was just carried out).
    hits: list[tuple[str, int]] = field(default_factory=list, init=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; choose from {sorted(FAULT_KINDS)}")
        if not 0 <= self.delay <= 3600:
            raise ValueError("delay must be between 0 and 3600 seconds")


@dataclass
class SimulatedMessage:
    apimsgid: str
    climsgid: str = ""
    to: str = ""
    sender: str = ""
    text: str = ""
    status: str = "011"
    deliver_at: float | None = None  # unix time it leaves the router (011 -> 003)
    delivered_at: float | None = None  # unix time the handset has it (003 -> 004)
    charge: str = "1.000000"
    callback: int = 0  # sendmsg's callback level: 1 intermediate, 2 final, 3 both
    history: list[str] = field(default_factory=list)
    #: Created by an accepted ``sendmsg`` (an SMS that goes out), not put there by a test.
    sent: bool = False


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    simulator: ClickatellSimulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (timeouts, resets) are part of the job: no tracebacks."""
        error = sys.exc_info()[1]
        if not isinstance(error, ConnectionError | TimeoutError | ssl.SSLError):
            super().handle_error(request, client_address)

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        self.simulator._count_connection()
        return sock, address


class ClickatellSimulator:
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
        self.host = host
        self.username = username
        self.password = password
        self.api_id = api_id
        self.session_idle_timeout = session_idle_timeout
        self.latency = latency
        self.balance = Decimal(balance)
        self.handset_delay = handset_delay
        if callback_url is not None and not callback_url.startswith(("http://", "https://")):
            raise ValueError("callback_url must be an http(s) URL")
        self.callback_url = callback_url
        self.callback_auth = callback_auth
        self.callback_method = callback_method
        self.callback_retry_delays = callback_retry_delays
        self.callbacks_sent = 0
        self.callback_attempts = 0
        #: Attempts the receiver answered with an error (or that failed to connect).
        self.callback_refusals = 0
        self.callbacks_failed = 0
        self._callbacks: queue.Queue[tuple[dict[str, str], int] | None] = queue.Queue()
        self._stopping = threading.Event()
        self._due: list[tuple[float, str]] = []  # heap of (unix time, apimsgid) to advance
        self.messages: dict[str, SimulatedMessage] = {}
        self.counts: Counter[str] = Counter()
        #: Commands carried out (authenticated and handled), as opposed to requests received.
        self.executed: Counter[str] = Counter()
        self.connections = 0
        self.control_connections = 0
        self.secrets_in_url = 0
        #: Gateway requests being handled right now (a held or trickling one included).
        self.in_flight = 0
        #: ``sendmsg`` requests received per recipient, answered or not (faults included).
        self.sendmsg_requests: Counter[str] = Counter()
        self._sessions: dict[str, float] = {}
        #: Every session id ever handed out, so tests can look for leaks.
        self.issued_session_ids: list[str] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.RLock()
        self._server = _Server((host, port), _Handler)
        self._server.simulator = self
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

    def stop(self) -> None:
        self._stopping.set()
        self._callbacks.put(None)
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

    # -- test controls ---------------------------------------------------------------------

    def add_message(
        self,
        apimsgid: str | None = None,
        *,
        climsgid: str = "",
        to: str = "27999000001",
        status: str = "011",
        deliver_in: float | None = 3600.0,
        callback: int = 0,
    ) -> str:
        """Put a message at the gateway (scheduled ``deliver_in`` seconds ahead by default)."""
        apimsgid = apimsgid or secrets.token_hex(16)
        deliver_at = time.time() + deliver_in if deliver_in is not None else None
        with self._lock:
            self.messages[apimsgid] = SimulatedMessage(
                apimsgid=apimsgid,
                climsgid=climsgid,
                to=to,
                status=status,
                deliver_at=deliver_at if status == "011" else None,
                callback=callback,
            )
            if status == "011" and deliver_at is not None:
                heapq.heappush(self._due, (deliver_at, apimsgid))
        return apimsgid

    def status_of(self, apimsgid: str) -> str:
        with self._lock:
            message = self.messages[apimsgid]
            self._advance(message)
            return message.status

    def inject(self, fault: Fault | str, **kwargs: Any) -> None:
        """Queue a fault: ``inject("http_502", command="delmsg", times=3)``."""
        with self._lock:
            self._faults.append(fault if isinstance(fault, Fault) else Fault(fault, **kwargs))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def expire_sessions(self) -> None:
        """Forget every session, as Clickatell does after 15 minutes idle."""
        with self._lock:
            self._sessions.clear()

    def change_password(self, password: str) -> None:
        """Revoke the current credentials: logins fail and sessions die."""
        with self._lock:
            self.password = password
            self._sessions.clear()

    def reset_counts(self) -> None:
        with self._lock:
            self.counts.clear()
            self.executed.clear()
            self.sendmsg_requests.clear()
            self.connections = 0
            self.control_connections = 0
            self.secrets_in_url = 0
            self.callbacks_sent = self.callbacks_failed = self.callback_attempts = 0
            self.callback_refusals = 0

    @contextmanager
    def latency_of(self, seconds: float) -> Iterator[None]:
        previous, self.latency = self.latency, seconds
        try:
            yield
        finally:
            self.latency = previous

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "counts": dict(self.counts),
                "executed": dict(self.executed),
                "connections": self.connections,
                "gateway_connections": self.connections - self.control_connections,
                "secrets_in_url": self.secrets_in_url,
                "in_flight": self.in_flight,
                "messages": len(self.messages),
                "sessions": len(self._sessions),
                "callbacks_sent": self.callbacks_sent,
                "callbacks_failed": self.callbacks_failed,
                "accepted_sends": sum(1 for m in self.messages.values() if m.sent),
                "duplicate_sends": len(self.duplicate_sends()),
            }

    # -- the gateway's truth about what was sent --------------------------------------------

    def accepted_sends(self) -> list[SimulatedMessage]:
        """Every message an accepted ``sendmsg`` created, oldest first (one per SMS sent)."""
        with self._lock:
            return [m for m in self.messages.values() if m.sent]

    def accepted_by_climsgid(self) -> dict[str, int]:
        """How many SMS were accepted under each ``climsgid`` (more than 1: a duplicate)."""
        return dict(Counter(m.climsgid for m in self.accepted_sends() if m.climsgid))

    def accepted_by_recipient_text(self) -> dict[tuple[str, str], int]:
        """How many SMS with this text went to this recipient (catches a resend under a new id)."""
        return dict(Counter((m.to, m.text) for m in self.accepted_sends()))

    def sendmsg_requests_by_recipient(self) -> dict[str, int]:
        """``sendmsg`` requests received naming each recipient, whatever became of them."""
        with self._lock:
            return dict(self.sendmsg_requests)

    def duplicate_sends(self) -> list[dict[str, Any]]:
        """One entry per SMS that went out more than once, by ``climsgid`` or recipient and text.

        Empty means the gateway never sent anything twice.  Each entry names the
        ``key`` it was found by, the ``count`` and the ``apimsgids`` handed out.
        """
        by_climsgid: dict[str, list[SimulatedMessage]] = {}
        by_content: dict[tuple[str, str], list[SimulatedMessage]] = {}
        for message in self.accepted_sends():
            if message.climsgid:
                by_climsgid.setdefault(message.climsgid, []).append(message)
            by_content.setdefault((message.to, message.text), []).append(message)
        duplicates = [
            {"key": "climsgid", "climsgid": climsgid, **_group(group)}
            for climsgid, group in by_climsgid.items()
            if len(group) > 1
        ]
        duplicates += [
            {"key": "recipient_text", **_group(group)}
            for group in by_content.values()
            if len(group) > 1
        ]
        return duplicates

    def _count_connection(self) -> None:
        with self._lock:
            self.connections += 1

    # -- protocol --------------------------------------------------------------------------

    def _next_fault(self, command: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.command in (None, command):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def _advance(self, message: SimulatedMessage) -> None:
        """Scheduled messages leave the router at their time (003), then reach the handset."""
        now = time.time()
        if message.status == "011" and message.deliver_at is not None and now >= message.deliver_at:
            self._set_status(message, "003")
            message.delivered_at = message.deliver_at + self.handset_delay
            heapq.heappush(self._due, (message.delivered_at, message.apimsgid))
        handed_on = message.status == "003" and message.delivered_at is not None
        if handed_on and now >= (message.delivered_at or 0):
            self._set_status(message, "004")

    def _set_status(self, message: SimulatedMessage, status: str) -> None:
        message.history.append(status)
        message.status = status
        final = status in ("004", "005", "006", "007", "009", "010", "012", "014")
        wanted = message.callback & (2 if final else 1) or message.callback >= 4
        if self.callback_url and wanted:
            self._callbacks.put((self._callback_fields(message), 0))

    def _callback_fields(self, message: SimulatedMessage) -> dict[str, str]:
        return {
            "api_id": self.api_id,
            "apiMsgId": message.apimsgid,
            "cliMsgId": message.climsgid,
            "to": message.to,
            "from": message.sender,
            "timestamp": str(int(time.time())),
            "status": message.status,
            "charge": message.charge,
        }

    def _tick(self) -> None:
        """Move messages along when their time comes (and push their callbacks)."""
        while not self._stopping.wait(0.05):
            now = time.time()
            with self._lock:
                while self._due and self._due[0][0] <= now:
                    _, apimsgid = heapq.heappop(self._due)
                    message = self.messages.get(apimsgid)
                    if message is not None:
                        self._advance(message)

    def _push_callbacks(self) -> None:
        """Deliver callbacks, retrying failures after each of ``callback_retry_delays``."""
        while True:
            item = self._callbacks.get()
            if item is None or self._stopping.is_set():
                return
            fields, attempt = item
            if self._deliver_callback(fields):
                with self._lock:
                    self.callbacks_sent += 1
                continue
            with self._lock:
                self.callback_refusals += 1
            if attempt >= len(self.callback_retry_delays):
                with self._lock:
                    self.callbacks_failed += 1
                continue
            delay = self.callback_retry_delays[attempt]
            timer = threading.Timer(delay, self._callbacks.put, args=((fields, attempt + 1),))
            timer.daemon = True
            timer.start()

    def _deliver_callback(self, fields: dict[str, str]) -> bool:
        if self.callback_url is None:  # switched off meanwhile: drop it
            return True
        with self._lock:
            self.callback_attempts += 1
        body = urlencode(fields)
        if self.callback_method == "GET":
            request = Request(f"{self.callback_url}?{body}", method="GET")  # noqa: S310
        else:
            request = Request(self.callback_url, data=body.encode(), method="POST")  # noqa: S310
            request.add_header("Content-Type", "application/x-www-form-urlencoded")
        if self.callback_auth:
            token = base64.b64encode(":".join(self.callback_auth).encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urlopen(request, timeout=5) as response:  # noqa: S310 (http(s) checked)
                return bool(200 <= response.status < 300)
        except (URLError, OSError):
            return False

    def handle(self, command: str, fields: dict[str, str], *, count: bool = True) -> str:
        """The reply body for one command (thread-safe)."""
        with self._lock:
            if count:
                self.counts[command] += 1
                self.counts["total"] += 1
            if command == "auth":
                return self._auth(fields)
            error = self._check_session(fields)
            if error:
                return error
            handler = getattr(self, f"_cmd_{command}", None)
            if handler is None:
                return "ERR: 111, Invalid protocol"
            self.executed[command] += 1
            reply: str = handler(fields)
            return reply

    def _auth(self, fields: dict[str, str]) -> str:
        if fields.get("api_id") != self.api_id:
            return "ERR: 108, Invalid or missing API ID"
        if fields.get("user") != self.username or fields.get("password") != self.password:
            return "ERR: 001, Authentication failed"
        session_id = secrets.token_hex(16)
        self._sessions[session_id] = time.monotonic()
        self.issued_session_ids.append(session_id)
        return f"OK: {session_id}"

    def _check_session(self, fields: dict[str, str]) -> str | None:
        session_id = fields.get("session_id")
        if session_id:
            last_used = self._sessions.get(session_id)
            now = time.monotonic()
            if last_used is None or now - last_used > self.session_idle_timeout:
                self._sessions.pop(session_id, None)
                return "ERR: 003, Session ID expired"
            self._sessions[session_id] = now
            return None
        if "user" in fields or "password" in fields:
            if fields.get("api_id") != self.api_id:
                return "ERR: 108, Invalid or missing API ID"
            if fields.get("user") == self.username and fields.get("password") == self.password:
                return None
            return "ERR: 001, Authentication failed"
        return "ERR: 005, Missing session ID"

    def _find(self, fields: dict[str, str]) -> SimulatedMessage | str:
        if fields.get("apimsgid"):
            message = self.messages.get(fields["apimsgid"])
            return message if message else "ERR: 103, Unknown API message ID"
        if fields.get("climsgid"):
            for message in self.messages.values():
                if message.climsgid == fields["climsgid"]:
                    return message
            return "ERR: 104, Unknown client message ID"
        return "ERR: 109, Missing message ID"

    def _cmd_ping(self, fields: dict[str, str]) -> str:
        return "OK:"

    def _cmd_delmsg(self, fields: dict[str, str]) -> str:
        message = self._find(fields)
        if isinstance(message, str):
            return message
        self._advance(message)
        if message.status in ("011", "002", "001", "008"):
            self._set_status(message, "006")
        return f"ID: {message.apimsgid} Status: {message.status}"

    def _cmd_querymsg(self, fields: dict[str, str]) -> str:
        message = self._find(fields)
        if isinstance(message, str):
            return message
        self._advance(message)
        return f"ID: {message.apimsgid} Status: {message.status}"

    def _cmd_getbalance(self, fields: dict[str, str]) -> str:
        return f"Credit: {self.balance}"

    def _cmd_getmsgcharge(self, fields: dict[str, str]) -> str:
        message = self._find(fields)
        if isinstance(message, str):
            return message
        return f"apiMsgId: {message.apimsgid} charge: {message.charge} status: {message.status}"

    def _cmd_sendmsg(self, fields: dict[str, str]) -> str:
        recipients = [to.strip() for to in fields.get("to", "").split(",") if to.strip()]
        if not recipients:
            return "ERR: 105, Invalid destination address"
        if not fields.get("text"):
            return "ERR: 107, Empty message"
        deliver_at = time.time()
        if fields.get("deliv_time"):
            minutes = int(fields["deliv_time"]) if fields["deliv_time"].isdigit() else -1
            if not 10 <= minutes <= 10080:
                return "ERR: 120, Invalid delivery time"
            deliver_at += minutes * 60
        elif fields.get("scheduled_time"):
            when = int(fields["scheduled_time"]) if fields["scheduled_time"].isdigit() else 0
            if not time.time() < when <= time.time() + 7 * 86400:
                return "ERR: 120, Invalid delivery time"
            deliver_at = float(when)
        text = fields["text"]
        if fields.get("unicode") == "1":
            try:
                text = decode_ucs2_hex(text)
            except ValueError:
                return "ERR: 116, Invalid Unicode data"
        callback = int(fields["callback"]) if fields.get("callback", "").isdigit() else 0
        lines = []
        for to in recipients:
            if not to.lstrip("+").isdigit() or len(to) < 6:
                lines.append(f"ERR: 105, Invalid destination address To: {to}")
                continue
            apimsgid = secrets.token_hex(16)
            scheduled = deliver_at > time.time() + 1
            message = SimulatedMessage(
                apimsgid=apimsgid,
                climsgid=fields.get("climsgid", "") if len(recipients) == 1 else "",
                to=to,
                sender=fields.get("from", ""),
                text=text,
                status="011",
                deliver_at=deliver_at,
                callback=callback,
            )
            message.sent = True
            self.messages[apimsgid] = message
            if scheduled:
                message.history.append("011")
                heapq.heappush(self._due, (deliver_at, apimsgid))
            else:
                self._advance(message)
            lines.append(f"ID: {apimsgid} To: {to}" if len(recipients) > 1 else f"ID: {apimsgid}")
        return "\n".join(lines)


def _group(messages: list[SimulatedMessage]) -> dict[str, Any]:
    first = messages[0]
    return {
        "to": first.to,
        "text": first.text,
        "count": len(messages),
        "apimsgids": [m.apimsgid for m in messages],
        "climsgids": [m.climsgid for m in messages],
    }


_ERROR_PAGE = (
    "<html><head><title>{status} {reason}</title></head>"
    "<body><h1>{status} {reason}</h1><p>The gateway is having a moment.</p></body></html>"
)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    _command = ""
    _fields: dict[str, str] = {}
    server: _Server
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
        self._dispatch(body=b"")

    def do_POST(self) -> None:
        self._dispatch(body=self._read_body())

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self, body: bytes) -> None:
        simulator = self.server.simulator
        url = urlsplit(self.path)
        control = url.path.startswith("/_simulator/")
        if self._first_request:
            self._first_request = False
            if control:  # so "connections" can be split into gateway and test traffic
                with simulator._lock:
                    simulator.control_connections += 1
        if control:
            self._control(url.path.removeprefix("/_simulator/"), body)
            return
        if not url.path.startswith("/http/"):
            self._send(404, "Not found", content_type="text/plain")
            return
        with simulator._lock:
            simulator.in_flight += 1
        try:
            self._gateway(url.path.removeprefix("/http/").strip("/"), url.query, body)
        finally:
            with simulator._lock:
                simulator.in_flight -= 1

    def _gateway(self, command: str, query_string: str, body: bytes) -> None:
        simulator = self.server.simulator
        query = {k: v[-1] for k, v in parse_qs(query_string, keep_blank_values=True).items()}
        form = {
            k: v[-1]
            for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()
        }
        if SECRET_FIELDS & query.keys():
            with simulator._lock:
                simulator.secrets_in_url += 1
        fields = {**query, **form}
        if simulator.latency:
            time.sleep(simulator.latency)
        if command == "sendmsg":
            with simulator._lock:
                simulator.sendmsg_requests.update(
                    to.strip() for to in fields.get("to", "").split(",") if to.strip()
                )
        fault = simulator._next_fault(command)
        self._command, self._fields = command, fields
        if fault is not None:
            with simulator._lock:
                fault.hits.append(self.client_address[:2])
                simulator.counts[command] += 1
                simulator.counts["total"] += 1
                simulator.counts["faults"] += 1
            self._apply(fault)
            return
        self._send(200, simulator.handle(command, fields))

    def _apply(self, fault: Fault) -> None:
        if fault.kind in ("http_500", "http_502"):
            status = 500 if fault.kind == "http_500" else 502
            reason = "Internal Server Error" if status == 500 else "Bad Gateway"
            self._send(status, _ERROR_PAGE.format(status=status, reason=reason))
        elif fault.kind == "malformed":
            self._send(200, "<html><body>Service temporarily unavailable</body></html>")
        elif fault.kind == "drop_reply":
            self.server.simulator.handle(self._command, self._fields, count=False)
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        elif fault.kind == "reset":
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
        elif fault.kind == "delay":
            time.sleep(fault.delay)
            self.close_connection = True
        elif fault.kind == "delay_after":
            reply = self.server.simulator.handle(self._command, self._fields, count=False)
            time.sleep(fault.delay)
            self.close_connection = True  # the client has most likely given up by now
            self._send(200, reply)
        elif fault.kind == "execute_late":
            # A request held up on its way (a proxy's queue, retransmissions): the client
            # has usually given up before the gateway acts on it, and acts on it anyway.
            time.sleep(fault.delay)
            reply = self.server.simulator.handle(self._command, self._fields, count=False)
            self.close_connection = True
            self._send(200, reply)
        elif fault.kind == "trickle":
            reply = self.server.simulator.handle(self._command, self._fields, count=False)
            self.close_connection = True
            self._trickle(reply, pause=fault.delay)
        elif fault.kind == "expire_session":
            self._send(200, "ERR: 003, Session ID expired")
        else:
            self._send(200, fault.body)

    def _control(self, action: str, body: bytes) -> None:
        simulator = self.server.simulator
        try:
            payload = json.loads(body or b"{}")
            if action == "stats":
                result: Any = simulator.stats()
            elif action == "messages" and self.command == "POST":
                count = int(payload.pop("count", 0))
                if count:
                    result = {"apimsgids": [simulator.add_message(**payload) for _ in range(count)]}
                else:
                    result = {"apimsgid": simulator.add_message(**payload)}
            elif action == "clear":
                with simulator._lock:
                    simulator.messages.clear()
                    simulator._due.clear()
                simulator.reset_counts()
                simulator.clear_faults()
                simulator.expire_sessions()
                result = {"cleared": True}
            elif action == "messages":
                with simulator._lock:
                    result = [asdict(m) for m in simulator.messages.values()]
            elif action == "sends":
                result = {
                    "accepted": len(simulator.accepted_sends()),
                    "by_climsgid": simulator.accepted_by_climsgid(),
                    "duplicates": simulator.duplicate_sends(),
                    "requests_by_recipient": simulator.sendmsg_requests_by_recipient(),
                }
            elif action == "faults":
                simulator.inject(Fault(**payload))
                result = {"queued": True}
            elif action == "latency":
                simulator.latency = float(payload["seconds"])
                result = {"latency": simulator.latency}
            elif action == "reset":
                simulator.reset_counts()
                simulator.clear_faults()
                result = {"reset": True}
            elif action == "expire-sessions":
                simulator.expire_sessions()
                result = {"expired": True}
            else:
                self._send(404, json.dumps({"error": "unknown control"}), "application/json")
                return
        except (ValueError, TypeError, KeyError) as exc:
            self._send(400, json.dumps({"error": str(exc)}), "application/json")
            return
        self._send(200, json.dumps(result), "application/json")

    def _trickle(self, text: str, pause: float) -> None:
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

    def _send(self, status: int, text: str, content_type: str = "text/html") -> None:
        payload = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection:  # so a client still listening does not reuse the socket
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)
