"""How a person or a program may name messages: ids and status codes, checked before use.

The faces (the cancel command, the admin's filters) validate their input with
these rather than reaching into the protocol layer; the rules are the
protocol's own, so what is accepted here is what Clickatell can be asked about.
"""

from __future__ import annotations

from ..protocol.codes import STATUSES, normalize_status
from ..protocol.replies import is_client_message_id, is_message_id

#: The documented status codes (``"006"`` and so on).
KNOWN_STATUSES: frozenset[str] = frozenset(STATUSES)

__all__ = ["KNOWN_STATUSES", "is_client_message_id", "is_message_id", "normalize_status"]
