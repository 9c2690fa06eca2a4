"""The One API under ``/v1/``: the same account and messages as ``/http/``, in its own words.

``POST /v1/message`` (up to 200 messages, ``202``, or ``207`` when some recipients
are refused), ``GET /v1/message/{id}`` and ``GET /v1/balance``, authenticated by
the raw API key in ``Authorization`` (``401`` otherwise).  Messages live in the
state's one store and move through its one status machine (:mod:`.state`); replies
and callbacks translate the internal status into the One API's own names and
numbers with a table kept here, apart from the client's, so the test double does
not share the client's mistakes.  There is no stop call: Clickatell documents none.

Requests are counted, and faults taken, under the legacy command names
(``sendmsg``, ``querymsg``, ``getbalance``); a request carrying the key in its URL
is counted in ``secrets_in_url``.  Status changes of messages sent here are pushed
as JSON callbacks (the One API envelope, millisecond timestamps) to
:attr:`OneApiGateway.callback_url` through the simulator's callback queue, with
its retries; :attr:`~OneApiGateway.duplicate_callbacks` and
:attr:`~OneApiGateway.reorder_callbacks` make duplicates and out-of-order pushes,
and :meth:`~OneApiGateway.push_status` pushes any event a test wants.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, unquote

from .faults import BEHAVIOURS
from .json_exchange import JsonExchange, Reply
from .state import FINAL_STATUSES, GatewayState, JsonPush, SimulatedMessage

if TYPE_CHECKING:
    from .http_server import SimulatorRequestHandler

MAX_MESSAGES = 200
_MESSAGE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")

#: The gateway's internal status (the legacy codes it keeps) as the One API names it.
ONE_API_STATUS: dict[str, tuple[str, int]] = {
    "001": ("UNKNOWN", 1),
    "002": ("QUEUED", 2),
    "003": ("SENT_TO_SUPPLIER", 4),
    "004": ("DEVICE_ACK", 5),
    "005": ("DELIVERY_FAILURE", 23),
    "006": ("STOPPED_BY_USER", 21),
    "007": ("DELIVERY_FAILURE", 23),
    "008": ("QUEUED", 2),
    "009": ("ROUTING_ERROR", 100),
    "010": ("EXPIRED", 20),
    "011": ("SCHEDULED", 3),
    "012": ("INSUFFICIENT_ACCOUNT_BALANCE", 25),
    "014": ("VOLUME_LIMIT", 26),
}

#: (status code, JSON text, extra headers)


class OneApiGateway:
    """The One API side of one simulated account: its key, callbacks and test switches."""

    def __init__(self, state: GatewayState, api_key: str = "demo-one-api-key") -> None:
        self.state = state
        self.api_key = api_key
        #: Where JSON status callbacks go (None: nowhere), as set for the integration.
        self.callback_url: str | None = None
        self.callback_auth: tuple[str, str] | None = None
        #: Recipients the API refuses (a ``207`` with an error for each).
        self.refused: set[str] = set()
        #: Each callback is pushed this many more times (duplicates).
        self.duplicate_callbacks = 0
        #: A message's first callback is held back and pushed after its next one.
        self.reorder_callbacks = False
        #: Messages accepted through ``/v1/`` (the ones whose changes are pushed as JSON).
        self.sent: set[str] = set()
        self._held: dict[str, JsonPush] = {}
        state.status_listeners.append(self._status_changed)

    def reset(self) -> None:
        """Back to defaults (the key stays): no callbacks, refusals or reordering."""
        with self.state.lock:
            self.callback_url = None
            self.callback_auth = None
            self.refused.clear()
            self.duplicate_callbacks = 0
            self.reorder_callbacks = False
            self.sent.clear()
            self._held.clear()

    # -- callbacks -------------------------------------------------------------------------

    def push_status(
        self, apimsgid: str, status: str, *, code: int | None = None, at_ms: int | None = None
    ) -> None:
        """Push one status event about *apimsgid* now, whatever the message's state."""
        with self.state.lock:
            message = self.state.messages.get(apimsgid)
            climsgid = message.climsgid if message else ""
            self._queue(self._push(apimsgid, climsgid, status, code, at_ms))

    def _status_changed(self, message: SimulatedMessage) -> None:
        """Called by the state, under its lock, after every status change."""
        if message.apimsgid not in self.sent or not self.callback_url:
            return
        name, code = ONE_API_STATUS.get(message.status, ("UNKNOWN", 1))
        at_ms = int(message.status_at * 1000)
        push = self._push(message.apimsgid, message.climsgid, name, code, at_ms)
        held = self._held.pop(message.apimsgid, None)
        if held is None and self.reorder_callbacks and message.status not in FINAL_STATUSES:
            self._held[message.apimsgid] = push
            return
        self._queue(push)
        if held is not None:
            self._queue(held)

    def _push(
        self, apimsgid: str, climsgid: str, status: str, code: int | None, at_ms: int | None
    ) -> JsonPush:
        event: dict[str, Any] = {
            "channel": "sms",
            "messageId": apimsgid,
            "clientMessageId": climsgid,
            "status": status,
            "timestamp": at_ms if at_ms is not None else int(time.time() * 1000),
        }
        if code is not None:
            event["statusCode"] = code
        body = {
            "integrationId": "simulated-integration",
            "integrationName": "simulator",
            "event": {"messageStatusUpdate": [event]},
        }
        url = self.callback_url or ""
        return JsonPush(url, json.dumps(body).encode(), self.callback_auth)

    def _queue(self, push: JsonPush) -> None:
        if not push.url:
            return
        for _ in range(1 + self.duplicate_callbacks):
            self.state._pending_callbacks.put((push, 0))


def serve_one_api(handler: SimulatorRequestHandler, url: SplitResult, body: bytes) -> None:
    """Answer one ``/v1/...`` request (the HTTP server's ``_route`` hands it over)."""
    simulator = handler.server.simulator
    gateway = simulator.one_api
    route = url.path.removeprefix("/v1/").strip("/")
    with simulator.lock:
        simulator.in_flight += 1
        whole = unquote(url.path + "?" + url.query)
        if gateway.api_key and gateway.api_key in whole:
            simulator.secrets_in_url += 1
    try:
        if simulator.latency:
            time.sleep(simulator.latency)
        command = _command(handler.command, route)
        if command is None:
            hint = f"No One API endpoint {url.path}: BASE_URL should be {simulator.root_url}"
            handler.answer(404, _error(0, hint), "application/json")
            return
        exchange = OneApiExchange(handler, gateway, command, route, body)
        if command == "sendmsg":
            with simulator.lock:
                simulator.sendmsg_requests.update(_recipients(_json(body)))
        fault = simulator.faults.take(command)
        if fault is None:
            exchange.answer(200, exchange.carry_out())
        else:
            exchange.counted = True
            with simulator.lock:
                fault.hits.append(handler.client_address[:2])
                simulator.counts[command] += 1
                simulator.counts["total"] += 1
                simulator.counts["faults"] += 1
            BEHAVIOURS[fault.kind](exchange, fault)
    finally:
        with simulator.lock:
            simulator.in_flight -= 1


class OneApiExchange(JsonExchange):
    """The :class:`.faults.Exchange` of one One API request: carries it out, answers in JSON.

    Faults answer "200 with the reply they earned"; that reply goes out with the
    status the call really earned (``202``, ``207``, ``404``...).
    """

    def __init__(
        self,
        handler: SimulatorRequestHandler,
        gateway: OneApiGateway,
        command: str,
        route: str,
        body: bytes,
    ) -> None:
        super().__init__(handler, command, route)
        self.gateway = gateway
        self.body = body

    def handle(self, *, count: bool) -> Reply:
        return handle_one_api(self, count=count)


def handle_one_api(request: OneApiExchange, *, count: bool = True) -> Reply:
    """The reply to one One API call (thread-safe): authenticate, then run it."""
    gateway, state = request.gateway, request.gateway.state
    with state.lock:
        if count:
            state.counts[request.command] += 1
            state.counts["total"] += 1
        if request.handler.headers.get("Authorization") != gateway.api_key:
            return 401, _error(1, "Invalid or missing Integration API Key"), {}
        state.executed[request.command] += 1
        if request.command == "sendmsg":
            return _send(gateway, _json(request.body))
        if request.command == "getbalance":
            document = {"currency": "ZAR", "balance": float(state.balance)}
            return 200, json.dumps(document), {}
        apimsgid = request.route.removeprefix("message/")
        message = state.messages.get(apimsgid) if _MESSAGE_ID.fullmatch(apimsgid) else None
        if message is None:
            return 404, _error(0, "Message not found"), {}
        state._advance(message)
        name, code = ONE_API_STATUS.get(message.status, ("UNKNOWN", 1))
        # When the status happened, as the One API reports it -- not when it answers.
        sms = {"status": name, "statusCode": code, "timestamp": int(message.status_at * 1000)}
        return 200, json.dumps({"messageId": apimsgid, "sms": sms}), {}


def _command(method: str, route: str) -> str | None:
    """The legacy command a One API call stands for (None: no such call)."""
    if route == "message" and method == "POST":
        return "sendmsg"
    if route.startswith("message/") and route.count("/") == 1 and method == "GET":
        return "querymsg"
    if route == "balance" and method == "GET":
        return "getbalance"
    return None


def _send(gateway: OneApiGateway, document: object) -> Reply:
    entries = document.get("messages") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not 1 <= len(entries) <= MAX_MESSAGES:
        return 400, _error(101, "Invalid or missing parameters"), {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("channel") != "sms":
            return 400, _error(101, "Invalid or missing parameters"), {}
        if not isinstance(entry.get("content"), str) or not entry["content"]:
            return 400, _error(107, "Empty message"), {}
    results = [_send_one(gateway, entry) for entry in entries]
    refused = any(not result["accepted"] for result in results)
    return (207 if refused else 202), json.dumps({"messages": results, "error": None}), {}


def _send_one(gateway: OneApiGateway, entry: dict[str, Any]) -> dict[str, Any]:
    to = entry.get("to")
    if not isinstance(to, str) or not to.lstrip("+").isdigit() or len(to) < 6:
        error = {"code": 105, "description": "Invalid destination address"}
        return {"apiMessageId": None, "accepted": False, "to": str(to)[:32], "error": error}
    if to.lstrip("+") in gateway.refused:
        error = {"code": 26, "description": "Number opted out"}
        return {"apiMessageId": None, "accepted": False, "to": to, "error": error}
    climsgid = entry.get("clientMessageId")
    message = SimulatedMessage(
        apimsgid=secrets.token_hex(16),
        climsgid=climsgid if isinstance(climsgid, str) else "",
        to=to,
        sender=str(entry.get("from") or ""),
        text=entry["content"],
        status="011",
        deliver_at=time.time(),
    )
    gateway.sent.add(message.apimsgid)
    gateway.state._accept(message, scheduled=False)
    return {"apiMessageId": message.apimsgid, "accepted": True, "to": to, "error": None}


def _recipients(document: object) -> list[str]:
    entries = document.get("messages") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        return []
    return [e["to"] for e in entries if isinstance(e, dict) and isinstance(e.get("to"), str)]


def _error(code: int, description: str) -> str:
    return json.dumps({"messages": [], "error": {"code": code, "description": description}})


def _json(body: bytes) -> object:
    try:
        return json.loads(body.decode("utf-8", "replace")) if body else None
    except (ValueError, RecursionError):
        return None


__all__ = ["ONE_API_STATUS", "OneApiExchange", "OneApiGateway", "handle_one_api", "serve_one_api"]
