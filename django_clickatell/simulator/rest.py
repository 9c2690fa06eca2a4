"""The legacy REST API under ``/rest/``: the same account and messages as ``/http/``.

A message sent here can be queried or stopped through either API: both work on
the state's one message store and status machine (:mod:`.state`).  Requests are
checked as the gateway checks them -- ``Authorization: Bearer <api_token>``
(``401`` otherwise), ``X-Version: 1`` (``400`` otherwise) -- and answered with
the documented JSON shapes and status codes.

Calls are counted, and faults taken, under the legacy command names
(``sendmsg``, ``querymsg``, ``delmsg``, ``getbalance``), so a test injects
``http_500``/``reset``/``drop_reply``/``http_429``... into a REST call as into
an HTTP one.  Besides the counts, every request's ``(method, route)`` is kept in
``rest_requests`` (a stop must be a ``DELETE``: one well-known client sent GET),
and a request carrying the token or a secret-named parameter in its URL is
counted in ``secrets_in_url``.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from dataclasses import replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, parse_qs, unquote

from ..protocol.encoding import decode_ucs2_hex
from .faults import BEHAVIOURS
from .json_exchange import JsonExchange, Reply
from .state import GatewayState, SimulatedMessage

if TYPE_CHECKING:
    from .http_server import SimulatorRequestHandler

#: Query parameters that must never travel in a URL.
SECRET_PARAMETERS = frozenset({"password", "session_id", "api_key", "apikey", "token", "key"})
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_ISO_UTC = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z")
#: The gateway's own wording of its statuses (kept apart from the client's tables).
_STATUS_TEXT = {
    "001": "Message unknown",
    "002": "Message queued",
    "003": "Delivered to gateway",
    "004": "Received by recipient",
    "005": "Error with message",
    "006": "User cancelled message delivery",
    "007": "Error delivering message",
    "008": "OK",
    "009": "Routing error",
    "010": "Message expired",
    "011": "Message queued for later delivery",
    "012": "Out of credit",
}
#: Statuses a stop still catches (as ``delmsg``).
_STOPPABLE = frozenset({"011", "002", "001", "008"})

#: (status code, JSON text, extra headers)


def serve_rest(handler: SimulatorRequestHandler, url: SplitResult, body: bytes) -> None:
    """Answer one ``/rest/...`` request (the HTTP server's ``_route`` hands it over)."""
    simulator = handler.server.simulator
    method = handler.command
    route = url.path.removeprefix("/rest/").strip("/")
    query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
    with simulator.lock:
        simulator.in_flight += 1
        simulator.rest_requests.append((method, _template(route)))
        if _secret_in_url(simulator, url, query):
            simulator.secrets_in_url += 1
    try:
        if simulator.latency:
            time.sleep(simulator.latency)
        command = _command(method, route)
        if command is None:
            status = 405 if route.startswith("message") or route == "account/balance" else 404
            hint = f"No REST API endpoint {url.path}: BASE_URL should be {simulator.rest_url}"
            handler.answer(status, _error("", hint), "application/json")
            return
        exchange = RestExchange(handler, simulator, command, method, route, query, body)
        if command == "sendmsg":
            with simulator.lock:
                simulator.sendmsg_requests.update(_recipients(_json(body)))
        fault = simulator.faults.take(command)
        if fault is None:
            exchange.answer(200, exchange.carry_out())
        else:
            exchange.counted = True  # counted here, as a fault; carrying it out counts no more
            with simulator.lock:
                fault.hits.append(handler.client_address[:2])
                simulator.counts[command] += 1
                simulator.counts["total"] += 1
                simulator.counts["faults"] += 1
            BEHAVIOURS[fault.kind](exchange, fault)
    finally:
        with simulator.lock:
            simulator.in_flight -= 1


class RestExchange(JsonExchange):
    """The :class:`.faults.Exchange` of one REST request: carries it out, answers in JSON.

    Faults answer "200 with the reply they earned"; here that reply goes out
    with the status the call really earned (``202``, ``404``...) and its headers.
    """

    def __init__(
        self,
        handler: SimulatorRequestHandler,
        state: GatewayState,
        command: str,
        method: str,
        route: str,
        query: dict[str, str],
        body: bytes,
    ) -> None:
        super().__init__(handler, command, route)
        self.state = state
        self.method = method
        self.query = query
        self.body = body

    def handle(self, *, count: bool) -> Reply:
        return handle_rest(self.state, self, count=count)


def handle_rest(state: GatewayState, request: RestExchange, *, count: bool = True) -> Reply:
    """The reply to one REST call (thread-safe): authenticate, then run it."""
    with state.lock:
        if count:
            state.counts[request.command] += 1
            state.counts["total"] += 1
        if request.handler.headers.get("Authorization") != f"Bearer {state.api_token}":
            return 401, _error("001", "Authentication failed"), {}
        if request.handler.headers.get("X-Version") != "1":
            return 400, _error("", "Missing or unsupported X-Version header"), {}
        state.executed[request.command] += 1
        if request.command == "sendmsg":
            return _send(state, _json(request.body))
        if request.command == "getbalance":
            return 200, json.dumps({"data": {"balance": str(state.balance)}}), {}
        message = _find(state, request.route, request.query)
        if isinstance(message, tuple):
            return message
        state._advance(message)
        if request.command == "delmsg" and message.status in _STOPPABLE:
            state._set_status(message, "006")
        return 200, _status_reply(message), {}


# -- routes ---------------------------------------------------------------------------------


def _command(method: str, route: str) -> str | None:
    """The legacy command a REST call stands for (None: no such call)."""
    if route == "account/balance":
        return "getbalance" if method == "GET" else None
    if route == "message":
        return {"POST": "sendmsg", "GET": "querymsg"}.get(method)
    if route.startswith("message/") and route.count("/") == 1:
        return {"GET": "querymsg", "DELETE": "delmsg"}.get(method)
    return None


def _template(route: str) -> str:
    return "message/{id}" if route.startswith("message/") else route


def _secret_in_url(state: GatewayState, url: SplitResult, query: dict[str, str]) -> bool:
    if SECRET_PARAMETERS & {key.lower() for key in query}:
        return True
    whole = unquote(url.path + "?" + url.query)
    return bool(state.api_token) and state.api_token in whole


def _find(state: GatewayState, route: str, query: dict[str, str]) -> SimulatedMessage | Reply:
    if route.startswith("message/"):
        apimsgid = route.removeprefix("message/")
        message = state.messages.get(apimsgid) if _MESSAGE_ID.fullmatch(apimsgid) else None
        return message or (404, _error("103", "Unknown API message ID"), {})
    climsgid = query.get("clientMessageId", "")
    if not climsgid:
        return 400, _error("109", "Missing message ID"), {}
    for message in state.messages.values():
        if message.climsgid == climsgid:
            return message
    return 404, _error("104", "Unknown client message ID"), {}


# -- sending --------------------------------------------------------------------------------


def _send(state: GatewayState, document: object) -> Reply:
    if not isinstance(document, dict):
        return 400, _error("100", "Data malformed"), {}
    numbers = _recipients(document)
    text = document.get("text")
    if not numbers:
        return 400, _error("105", "Invalid destination address"), {}
    if not isinstance(text, str) or not text:
        return 400, _error("107", "Empty message"), {}
    if document.get("unicode") in (1, "1", True):
        try:
            text = decode_ucs2_hex(text)
        except ValueError:
            return 400, _error("116", "Invalid Unicode data"), {}
    deliver_at = _delivery_time(document.get("scheduledDeliveryTime"))
    if deliver_at is None:
        return 400, _error("120", "Invalid delivery time"), {}
    callback = document.get("callback")
    climsgid = document.get("clientMessageId")
    template = SimulatedMessage(
        apimsgid="",
        climsgid=climsgid if isinstance(climsgid, str) and len(numbers) == 1 else "",
        sender=str(document.get("from") or ""),
        text=text,
        status="011",
        deliver_at=deliver_at,
        callback=callback if isinstance(callback, int) and 0 <= callback <= 7 else 0,
    )
    results = [_send_one(state, template, to) for to in numbers]
    refused = any(not result["accepted"] for result in results)
    return (207 if refused else 202), json.dumps({"data": {"message": results}}), {}


def _send_one(state: GatewayState, template: SimulatedMessage, to: str) -> dict[str, Any]:
    if not to.lstrip("+").isdigit() or len(to) < 6:
        error = {"code": "105", "description": "Invalid destination address"}
        return {"accepted": False, "to": to, "apiMessageId": "", "error": error}
    apimsgid = secrets.token_hex(16)
    scheduled = (template.deliver_at or 0) > time.time() + 1
    state._accept(replace(template, apimsgid=apimsgid, to=to, history=[]), scheduled=scheduled)
    return {"accepted": True, "to": to, "apiMessageId": apimsgid, "error": None}


def _delivery_time(value: object) -> float | None:
    """When the SMS leaves the router: now, or at ``scheduledDeliveryTime`` (7 days ahead at most).

    Takes ISO 8601 in UTC (``2026-01-02T03:04:05Z``) or unix seconds; None if unreadable
    or out of range.
    """
    now = time.time()
    if value in (None, ""):
        return now
    when: float | None = None
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 12:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        when = float(value)
    elif isinstance(value, str) and (match := _ISO_UTC.fullmatch(value)):
        try:
            year, month, day, hour, minute, second = (int(part) for part in match.groups())
            when = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc).timestamp()
        except (ValueError, OverflowError):
            return None
    if when is None or not now < when <= now + 7 * 86400:
        return None
    return when


def _recipients(document: object) -> list[str]:
    if not isinstance(document, dict):
        return []
    to = document.get("to")
    to = [to] if isinstance(to, str) else to
    return [number for number in to if isinstance(number, str)] if isinstance(to, list) else []


# -- replies --------------------------------------------------------------------------------


def _status_reply(message: SimulatedMessage) -> str:
    data = {
        "apiMessageId": message.apimsgid,
        "messageStatus": message.status,
        "description": _STATUS_TEXT.get(message.status, ""),
        "charge": message.charge,
    }
    return json.dumps({"data": data})


def _error(code: str, description: str) -> str:
    return json.dumps({"error": {"code": code, "description": description, "documentation": ""}})


def _json(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8", "replace")) if body else None
    except ValueError:
        return None


__all__ = ["RestExchange", "handle_rest", "serve_rest"]
