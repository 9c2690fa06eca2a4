"""The legacy HTTP API's commands: what the gateway answers to each, given its state.

:func:`handle` is the whole of it: count the request, authenticate it, then run the
command :data:`COMMANDS` names, under the state's lock.  Replies have the documented
shapes, errors included (``ERR: 003, Session ID expired``).
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import replace

from ..protocol.encoding import decode_ucs2_hex
from .state import GatewayState, SimulatedMessage

Command = Callable[[GatewayState, dict[str, str]], str]


def handle(state: GatewayState, command: str, fields: dict[str, str], *, count: bool = True) -> str:
    """The reply body for one command (thread-safe)."""
    with state.lock:
        if count:
            state.counts[command] += 1
            state.counts["total"] += 1
        if command == "auth":
            return _auth(state, fields)
        error = _check_session(state, fields)
        if error:
            return error
        run = COMMANDS.get(command)
        if run is None:
            return "ERR: 111, Invalid protocol"
        state.executed[command] += 1
        return run(state, fields)


def recipients(fields: dict[str, str]) -> list[str]:
    """The numbers a ``sendmsg`` names in ``to`` (comma-separated), as sent."""
    return [to.strip() for to in fields.get("to", "").split(",") if to.strip()]


def _credentials_error(state: GatewayState, fields: dict[str, str]) -> str | None:
    if fields.get("api_id") != state.api_id:
        return "ERR: 108, Invalid or missing API ID"
    if fields.get("user") != state.username or fields.get("password") != state.password:
        return "ERR: 001, Authentication failed"
    return None


def _auth(state: GatewayState, fields: dict[str, str]) -> str:
    return _credentials_error(state, fields) or f"OK: {state._open_session()}"


def _check_session(state: GatewayState, fields: dict[str, str]) -> str | None:
    """An error unless the request carries a live session or, instead, the credentials."""
    session_id = fields.get("session_id")
    if session_id:
        return None if state._touch_session(session_id) else "ERR: 003, Session ID expired"
    if "user" in fields or "password" in fields:
        return _credentials_error(state, fields)
    return "ERR: 005, Missing session ID"


def _find(state: GatewayState, fields: dict[str, str]) -> SimulatedMessage | str:
    if fields.get("apimsgid"):
        message = state.messages.get(fields["apimsgid"])
        return message if message else "ERR: 103, Unknown API message ID"
    if fields.get("climsgid"):
        for message in state.messages.values():
            if message.climsgid == fields["climsgid"]:
                return message
        return "ERR: 104, Unknown client message ID"
    return "ERR: 109, Missing message ID"


def _ping(state: GatewayState, fields: dict[str, str]) -> str:
    return "OK:"


def _delmsg(state: GatewayState, fields: dict[str, str]) -> str:
    message = _find(state, fields)
    if isinstance(message, str):
        return message
    state._advance(message)
    if message.status in ("011", "002", "001", "008"):
        state._set_status(message, "006")
    return f"ID: {message.apimsgid} Status: {message.status}"


def _querymsg(state: GatewayState, fields: dict[str, str]) -> str:
    message = _find(state, fields)
    if isinstance(message, str):
        return message
    state._advance(message)
    return f"ID: {message.apimsgid} Status: {message.status}"


def _getbalance(state: GatewayState, fields: dict[str, str]) -> str:
    return f"Credit: {state.balance}"


def _getmsgcharge(state: GatewayState, fields: dict[str, str]) -> str:
    message = _find(state, fields)
    if isinstance(message, str):
        return message
    return f"apiMsgId: {message.apimsgid} charge: {message.charge} status: {message.status}"


def _sendmsg(state: GatewayState, fields: dict[str, str]) -> str:
    numbers = recipients(fields)
    if not numbers:
        return "ERR: 105, Invalid destination address"
    if not fields.get("text"):
        return "ERR: 107, Empty message"
    deliver_at = _delivery_time(fields)
    if deliver_at is None:
        return "ERR: 120, Invalid delivery time"
    text = fields["text"]
    if fields.get("unicode") == "1":
        try:
            text = decode_ucs2_hex(text)
        except ValueError:
            return "ERR: 116, Invalid Unicode data"
    # The SMS as requested; each recipient gets a copy under its own apimsgid.
    template = SimulatedMessage(
        apimsgid="",
        climsgid=fields.get("climsgid", "") if len(numbers) == 1 else "",
        sender=fields.get("from", ""),
        text=text,
        status="011",
        deliver_at=deliver_at,
        callback=int(fields["callback"]) if fields.get("callback", "").isdigit() else 0,
    )
    lines = [_send_one(state, template, to, several=len(numbers) > 1) for to in numbers]
    return "\n".join(lines)


def _delivery_time(fields: dict[str, str]) -> float | None:
    """When the SMS is to leave the router: now, or as deferred; None if out of range."""
    deliver_at = time.time()
    if fields.get("deliv_time"):
        minutes = int(fields["deliv_time"]) if fields["deliv_time"].isdigit() else -1
        if not 10 <= minutes <= 10080:
            return None
        return deliver_at + minutes * 60
    if fields.get("scheduled_time"):
        when = int(fields["scheduled_time"]) if fields["scheduled_time"].isdigit() else 0
        if not time.time() < when <= time.time() + 7 * 86400:
            return None
        return float(when)
    return deliver_at


def _send_one(state: GatewayState, template: SimulatedMessage, to: str, *, several: bool) -> str:
    """Accept the SMS for one recipient; its reply line (``To:`` only when there are several)."""
    if not to.lstrip("+").isdigit() or len(to) < 6:
        return f"ERR: 105, Invalid destination address To: {to}"
    apimsgid = secrets.token_hex(16)
    scheduled = (template.deliver_at or 0) > time.time() + 1
    message = replace(template, apimsgid=apimsgid, to=to, history=[])
    state._accept(message, scheduled=scheduled)
    return f"ID: {apimsgid} To: {to}" if several else f"ID: {apimsgid}"


COMMANDS: dict[str, Command] = {
    "ping": _ping,
    "delmsg": _delmsg,
    "querymsg": _querymsg,
    "getbalance": _getbalance,
    "getmsgcharge": _getmsgcharge,
    "sendmsg": _sendmsg,
}
