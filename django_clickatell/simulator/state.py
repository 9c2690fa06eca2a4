"""What the simulated gateway knows: the account, its sessions, the messages and the counters.

One re-entrant lock, :attr:`GatewayState.lock`, guards all of it: the request threads,
the ticker that moves messages along and the tests all read and write here.  The
public methods (the test controls) take the lock themselves; the underscored ones,
which the simulator's other modules call, expect the caller to hold it.

Nothing here does I/O: a status change that earns a callback is only queued in
``_pending_callbacks`` for the ``callbacks`` module to push.

It is also the gateway-side truth about duplicates: every message an accepted
``sendmsg`` created is kept, so the ``duplicates`` module can tell whether one SMS
went out twice, whatever the client recorded.
"""

from __future__ import annotations

import heapq
import queue
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .duplicates import duplicates

#: The gateway's own list of statuses nothing follows, kept apart from
#: ``protocol.codes`` so that the test double does not share the client's mistakes.
FINAL_STATUSES = frozenset({"004", "005", "006", "007", "009", "010", "012", "014"})


@dataclass(frozen=True)
class JsonPush:
    """A JSON callback (the One API's) to push: its own URL, body and Basic credentials."""

    url: str
    body: bytes = field(repr=False)
    auth: tuple[str, str] | None = field(default=None, repr=False)


#: A callback waiting to be pushed: its form fields (or a JSON push) and how many
#: attempts failed so far.
PendingCallback = tuple[dict[str, str] | JsonPush, int]


@dataclass
class SimulatedMessage:
    """One SMS as the gateway holds it, with every status it went through."""

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
    #: Unix time of the last status change: what the gateway reports as the status's time
    #: (callbacks' ``timestamp``, the One API's status ``timestamp``), not the time it answers.
    status_at: float = field(default_factory=time.time)
    #: Created by an accepted ``sendmsg`` (an SMS that goes out), not put there by a test.
    sent: bool = False

    def wants_callback(self) -> bool:
        """Whether the callback level asks to hear of the current status (4 and up: any)."""
        final = self.status in FINAL_STATUSES
        return bool(self.callback & (2 if final else 1) or self.callback >= 4)

    def callback_fields(self, api_id: str) -> dict[str, str]:
        """The form Clickatell posts to the callback URL about the current status."""
        return {
            "api_id": api_id,
            "apiMsgId": self.apimsgid,
            "cliMsgId": self.climsgid,
            "to": self.to,
            "from": self.sender,
            "timestamp": str(int(self.status_at)),
            "status": self.status,
            "charge": self.charge,
        }


@dataclass(eq=False, repr=False, kw_only=True)
class GatewayState:
    """The account and everything the gateway holds and counts (defaults: the simulator's)."""

    username: str
    password: str
    api_id: str
    session_idle_timeout: float
    #: Seconds every gateway request waits before it is handled.
    latency: float
    balance: Decimal
    #: Seconds from leaving the router (003) to reaching the handset (004).
    handset_delay: float
    #: Where status callbacks go (None: nowhere), as the account at Clickatell is set up.
    callback_url: str | None
    callback_auth: tuple[str, str] | None
    callback_method: str
    #: The pause before each retry of a callback the receiver refused.
    callback_retry_delays: tuple[float, ...]
    #: The REST API's key (``Authorization: Bearer <api_token>``).
    api_token: str = "demo-rest-api-key"  # noqa: S105 (a local test double's default)

    #: Hold it to read or change several of the fields below at once.
    lock: threading.RLock = field(default_factory=threading.RLock, init=False)
    messages: dict[str, SimulatedMessage] = field(default_factory=dict, init=False)
    #: Heap of (unix time, apimsgid): when a message is next due to move along.
    _due: list[tuple[float, str]] = field(default_factory=list, init=False)
    #: Session id -> when it was last used (``time.monotonic``).
    _sessions: dict[str, float] = field(default_factory=dict, init=False)
    #: Every session id ever handed out, so tests can look for leaks.
    issued_session_ids: list[str] = field(default_factory=list, init=False)
    #: Requests received per command (``total`` and ``faults`` too).
    counts: Counter[str] = field(default_factory=Counter, init=False)
    #: Commands carried out (authenticated and handled), as opposed to requests received.
    executed: Counter[str] = field(default_factory=Counter, init=False)
    #: ``sendmsg`` requests received per recipient, answered or not (faults included).
    sendmsg_requests: Counter[str] = field(default_factory=Counter, init=False)
    connections: int = field(default=0, init=False)
    control_connections: int = field(default=0, init=False)
    secrets_in_url: int = field(default=0, init=False)
    #: ``(method, route)`` of every REST request, in order (``("DELETE", "message/{id}")``),
    #: so tests can see which method a stop used.
    rest_requests: list[tuple[str, str]] = field(default_factory=list, init=False)
    #: Gateway requests received per API (``"http"``, ``"rest"``, ``"v1"``), so tests with
    #: several accounts can see that each went only through its own API.
    api_requests: Counter[str] = field(default_factory=Counter, init=False)
    #: Gateway requests being handled right now (a held or trickling one included).
    in_flight: int = field(default=0, init=False)
    callbacks_sent: int = field(default=0, init=False)
    callback_attempts: int = field(default=0, init=False)
    #: Attempts the receiver answered with an error (or that failed to connect).
    callback_refusals: int = field(default=0, init=False)
    callbacks_failed: int = field(default=0, init=False)
    #: Called, under the lock, after every status change (the One API's JSON callbacks).
    status_listeners: list[Callable[[SimulatedMessage], None]] = field(
        default_factory=list, init=False
    )
    _pending_callbacks: queue.Queue[PendingCallback | None] = field(
        default_factory=queue.Queue, init=False
    )
    #: Set when the simulator stops: the background threads end.
    _stopping: threading.Event = field(default_factory=threading.Event, init=False)

    def __post_init__(self) -> None:
        if self.callback_url is not None and not self.callback_url.startswith(
            ("http://", "https://")
        ):
            raise ValueError("callback_url must be an http(s) URL")

    # -- messages --------------------------------------------------------------------------

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
        with self.lock:
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
        with self.lock:
            message = self.messages[apimsgid]
            self._advance(message)
            return message.status

    def forget_messages(self) -> None:
        """Drop every message and everything due (``/_simulator/clear``)."""
        with self.lock:
            self.messages.clear()
            self._due.clear()

    def _accept(self, message: SimulatedMessage, *, scheduled: bool) -> None:
        """Keep an SMS an accepted ``sendmsg`` created: held until its time, or sent on now."""
        message.sent = True
        self.messages[message.apimsgid] = message
        if scheduled and message.deliver_at is not None:
            message.history.append("011")
            heapq.heappush(self._due, (message.deliver_at, message.apimsgid))
        else:
            self._advance(message)

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
        message.status_at = time.time()
        if self.callback_url and message.wants_callback():
            self._pending_callbacks.put((message.callback_fields(self.api_id), 0))
        for listener in self.status_listeners:
            listener(message)

    def _advance_due(self) -> None:
        """Move along every message whose time has come (the ticker calls this)."""
        now = time.time()
        with self.lock:
            while self._due and self._due[0][0] <= now:
                _, apimsgid = heapq.heappop(self._due)
                message = self.messages.get(apimsgid)
                if message is not None:
                    self._advance(message)

    # -- sessions --------------------------------------------------------------------------

    def _open_session(self) -> str:
        session_id = secrets.token_hex(16)
        self._sessions[session_id] = time.monotonic()
        self.issued_session_ids.append(session_id)
        return session_id

    def _touch_session(self, session_id: str) -> bool:
        """Whether the session is alive; using it keeps it so, an idle one is forgotten."""
        last_used = self._sessions.get(session_id)
        now = time.monotonic()
        if last_used is None or now - last_used > self.session_idle_timeout:
            self._sessions.pop(session_id, None)
            return False
        self._sessions[session_id] = now
        return True

    def expire_sessions(self) -> None:
        """Forget every session, as Clickatell does after 15 minutes idle."""
        with self.lock:
            self._sessions.clear()

    def change_password(self, password: str) -> None:
        """Revoke the current credentials: logins fail and sessions die."""
        with self.lock:
            self.password = password
            self._sessions.clear()

    # -- counters --------------------------------------------------------------------------

    def reset_counts(self) -> None:
        with self.lock:
            self.counts.clear()
            self.executed.clear()
            self.sendmsg_requests.clear()
            self.connections = 0
            self.control_connections = 0
            self.secrets_in_url = 0
            self.rest_requests.clear()
            self.api_requests.clear()
            self.callbacks_sent = self.callbacks_failed = self.callback_attempts = 0
            self.callback_refusals = 0

    def stats(self) -> dict[str, Any]:
        with self.lock:
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
        with self.lock:
            return [m for m in self.messages.values() if m.sent]

    def accepted_by_climsgid(self) -> dict[str, int]:
        """How many SMS were accepted under each ``climsgid`` (more than 1: a duplicate)."""
        return dict(Counter(m.climsgid for m in self.accepted_sends() if m.climsgid))

    def accepted_by_recipient_text(self) -> dict[tuple[str, str], int]:
        """How many SMS with this text went to this recipient (catches a resend under a new id)."""
        return dict(Counter((m.to, m.text) for m in self.accepted_sends()))

    def sendmsg_requests_by_recipient(self) -> dict[str, int]:
        """``sendmsg`` requests received naming each recipient, whatever became of them."""
        with self.lock:
            return dict(self.sendmsg_requests)

    def duplicate_sends(self) -> list[dict[str, Any]]:
        """One entry per SMS that went out more than once, by ``climsgid`` or recipient and text.

        Empty means the gateway never sent anything twice.  Each entry names the
        ``key`` it was found by, the ``count`` and the ``apimsgids`` handed out.
        """
        return duplicates(self.accepted_sends())
