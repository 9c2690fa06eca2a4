"""The JSON test controls under ``/_simulator/``, for tests and benchmarks in other processes.

Each action is one entry in :data:`CONTROLS`: it takes the simulator and the request's
JSON payload and returns what is sent back as JSON.  A ``ValueError``, ``TypeError`` or
``KeyError`` it raises is the caller's fault: the HTTP handler answers 400.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from .faults import Fault

if TYPE_CHECKING:
    from .server import ClickatellSimulator

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
    simulator.one_api.reset()
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


def _one_api(simulator: ClickatellSimulator, payload: Any) -> Any:
    """Set the One API's switches: ``callback_url``, ``callback_auth`` ([user, password]),
    ``refused`` (recipients), ``duplicate_callbacks``, ``reorder_callbacks``."""
    gateway = simulator.one_api
    with simulator.lock:
        if "callback_url" in payload:
            url = payload["callback_url"]
            if url is not None and not str(url).startswith(("http://", "https://")):
                raise ValueError("callback_url must be an http(s) URL")
            gateway.callback_url = url
        if "callback_auth" in payload:
            auth = payload["callback_auth"]
            gateway.callback_auth = (str(auth[0]), str(auth[1])) if auth else None
        if "refused" in payload:
            gateway.refused = {str(to) for to in payload["refused"]}
        if "duplicate_callbacks" in payload:
            gateway.duplicate_callbacks = int(payload["duplicate_callbacks"])
        if "reorder_callbacks" in payload:
            gateway.reorder_callbacks = bool(payload["reorder_callbacks"])
    return {"callback_url": gateway.callback_url, "refused": sorted(gateway.refused)}


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
    "one-api": _one_api,
}
