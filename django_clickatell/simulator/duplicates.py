"""Finding SMS the gateway sent more than once: the test double's verdict on exactly-once.

Two accepted ``sendmsg`` messages are one SMS sent twice when they share a ``climsgid``,
or a recipient and text (which catches a resend under a new id).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .state import SimulatedMessage


def duplicates(sent: list[SimulatedMessage]) -> list[dict[str, Any]]:
    """One entry per SMS among ``sent`` that went out more than once (oldest first)."""
    by_climsgid: dict[str, list[SimulatedMessage]] = {}
    by_content: dict[tuple[str, str], list[SimulatedMessage]] = {}
    for message in sent:
        if message.climsgid:
            by_climsgid.setdefault(message.climsgid, []).append(message)
        by_content.setdefault((message.to, message.text), []).append(message)
    found = [
        {"key": "climsgid", "climsgid": climsgid, **_group(group)}
        for climsgid, group in by_climsgid.items()
        if len(group) > 1
    ]
    found += [
        {"key": "recipient_text", **_group(group)}
        for group in by_content.values()
        if len(group) > 1
    ]
    return found


def _group(messages: list[SimulatedMessage]) -> dict[str, Any]:
    first = messages[0]
    return {
        "to": first.to,
        "text": first.text,
        "count": len(messages),
        "apimsgids": [m.apimsgid for m in messages],
        "climsgids": [m.climsgid for m in messages],
    }
