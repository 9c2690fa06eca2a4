"""What a service run did, by message primary key, and its summary for task results."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class Report:
    #: Seconds the gateway asked us to wait (``Retry-After`` of a 429/503) before the next
    #: try; the tasks never retry sooner.
    gateway_retry_after: float = 0.0

    def waited_for(self, error: BaseException) -> None:
        """Remember how long *error* (or what it wraps) asks to wait before trying again."""
        for candidate in (error, getattr(error, "cause", None)):
            wait = getattr(candidate, "retry_after", None)
            if isinstance(wait, int | float) and wait > 0:
                self.gateway_retry_after = max(self.gateway_retry_after, float(wait))

    def as_dict(self) -> dict[str, Any]:
        """Lists and maps of keys become counts (task results stay small); the rest as is."""
        summary: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            summary[field.name] = len(value) if isinstance(value, list | dict) else value
        return summary
