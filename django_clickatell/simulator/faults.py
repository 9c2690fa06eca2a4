"""Fault injection: how the simulated gateway misbehaves when a test asks it to.

A test queues a :class:`Fault`; the next request for its command takes it from the
:class:`FaultQueue` and, instead of the normal exchange, the fault's entry in
:data:`BEHAVIOURS` acts on that request through an :class:`Exchange` (which the
HTTP handler provides).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol


class Exchange(Protocol):
    """What a fault can do with the request it hit."""

    def carry_out(self) -> str:
        """Carry the command out (not counted again) and return the reply it earned."""

    def answer(
        self, status: int, text: str, content_type: str = ..., headers: dict[str, str] | None = ...
    ) -> None:
        """Send a whole reply with this status (and these extra headers)."""

    def trickle(self, text: str, pause: float) -> None:
        """Send a 200 reply a byte at a time, ``pause`` seconds apart."""

    def reset_connection(self) -> None:
        """End the connection with a reset (RST) instead of an answer."""

    def close_when_done(self) -> None:
        """Close the connection after this request (a reply still sent says so)."""


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


class FaultQueue:
    """Faults waiting for the requests they will hit, first queued first taken."""

    def __init__(self) -> None:
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, command: str) -> Fault | None:
        """The first fault for ``command`` (or for any), dropped once it has had its ``times``."""
        with self._lock:
            for fault in self._faults:
                if fault.command in (None, command):
                    fault.times -= 1
                    if fault.times <= 0:
                        self._faults.remove(fault)
                    return fault
        return None


_ERROR_PAGE = (
    "<html><head><title>{status} {reason}</title></head>"
    "<body><h1>{status} {reason}</h1><p>The gateway is having a moment.</p></body></html>"
)


def _http_500(exchange: Exchange, fault: Fault) -> None:
    """An HTML error page with status 500."""
    exchange.answer(500, _ERROR_PAGE.format(status=500, reason="Internal Server Error"))


def _http_502(exchange: Exchange, fault: Fault) -> None:
    """A proxy's 502 page."""
    exchange.answer(502, _ERROR_PAGE.format(status=502, reason="Bad Gateway"))


def _retry_after(fault: Fault) -> dict[str, str]:
    """``Retry-After`` as the fault's ``body`` gives it (seconds or an HTTP-date), if any."""
    return {"Retry-After": fault.body} if fault.body else {}


def _http_429(exchange: Exchange, fault: Fault) -> None:
    """Rate limited, nothing carried out; ``body`` is the ``Retry-After`` value, if any."""
    error = '{"error": {"code": "", "description": "Too many requests"}}'
    exchange.answer(429, error, "application/json", _retry_after(fault))


def _http_400(exchange: Exchange, fault: Fault) -> None:
    """Bad request, nothing carried out; ``body`` is the JSON error body to answer with."""
    error = (
        fault.body or '{"error": {"code": "101", "description": "Invalid or missing parameters"}}'
    )
    exchange.answer(400, error, "application/json")


def _http_503(exchange: Exchange, fault: Fault) -> None:
    """Try again later, nothing carried out; ``body`` is the ``Retry-After`` value, if any."""
    page = _ERROR_PAGE.format(status=503, reason="Service Unavailable")
    exchange.answer(503, page, "text/html", _retry_after(fault))


def _malformed(exchange: Exchange, fault: Fault) -> None:
    """HTTP 200 with a body that is not the protocol."""
    exchange.answer(200, "<html><body>Service temporarily unavailable</body></html>")


def _reset(exchange: Exchange, fault: Fault) -> None:
    """Close the connection without answering (RST)."""
    exchange.reset_connection()


def _drop_reply(exchange: Exchange, fault: Fault) -> None:
    """Carry the command out, then reset instead of answering."""
    exchange.carry_out()
    exchange.reset_connection()


def _delay(exchange: Exchange, fault: Fault) -> None:
    """Wait ``delay`` seconds, then hang up: nothing carried out, no answer."""
    time.sleep(fault.delay)
    exchange.close_when_done()


def _delay_after(exchange: Exchange, fault: Fault) -> None:
    """Carry the command out, answer only after ``delay`` seconds."""
    reply = exchange.carry_out()
    time.sleep(fault.delay)
    exchange.close_when_done()  # the client has most likely given up by now
    exchange.answer(200, reply)


def _execute_late(exchange: Exchange, fault: Fault) -> None:
    """Hold the request ``delay`` seconds, then carry it out and answer.

    A request held up on its way (a proxy's queue, retransmissions): the client
    has usually given up before the gateway acts on it, and acts on it anyway.
    """
    time.sleep(fault.delay)
    reply = exchange.carry_out()
    exchange.close_when_done()
    exchange.answer(200, reply)


def _trickle(exchange: Exchange, fault: Fault) -> None:
    """Carry it out, send the whole reply a byte at a time, ``delay`` apart."""
    reply = exchange.carry_out()
    exchange.close_when_done()
    exchange.trickle(reply, pause=fault.delay)


def _expire_session(exchange: Exchange, fault: Fault) -> None:
    """Answer ERR 003 as if the session had just expired."""
    exchange.answer(200, "ERR: 003, Session ID expired")


def _body(exchange: Exchange, fault: Fault) -> None:
    """Answer the literal ``body`` (documented reply variants)."""
    exchange.answer(200, fault.body)


#: What each kind of fault does to the request it hits.
BEHAVIOURS: dict[str, Callable[[Exchange, Fault], None]] = {
    "http_500": _http_500,
    "http_502": _http_502,
    "http_429": _http_429,
    "http_400": _http_400,
    "http_503": _http_503,
    "malformed": _malformed,
    "reset": _reset,
    "drop_reply": _drop_reply,
    "delay": _delay,
    "delay_after": _delay_after,
    "execute_late": _execute_late,
    "trickle": _trickle,
    "expire_session": _expire_session,
    "body": _body,
}
FAULT_KINDS = frozenset(BEHAVIOURS)
