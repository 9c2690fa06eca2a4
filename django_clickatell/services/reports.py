"""What a service run did, by message primary key, and its summary for task results."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any


@dataclass
class Report:
    def as_dict(self) -> dict[str, Any]:
        """Lists of primary keys become counts (task results stay small); the rest as is."""
        summary: dict[str, Any] = {}
        for field in fields(self):
            value = getattr(self, field.name)
            summary[field.name] = len(value) if isinstance(value, list) else value
        return summary
