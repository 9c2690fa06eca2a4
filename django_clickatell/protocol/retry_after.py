"""``Retry-After`` as the REST and One API send it with ``429`` and ``503``: one reading for both.

Delta-seconds or an HTTP-date, bounded so that a gateway cannot park a worker
for a day; anything unreadable is ``None`` (the task's own backoff applies).
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

#: The longest wait a ``Retry-After`` can ask for; longer ones are cut to it.
MAX_RETRY_AFTER = 3600.0

_DELTA_SECONDS = re.compile(r"[0-9]{1,10}")


def retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """``Retry-After`` (delta-seconds or an HTTP-date) as seconds from *now*, bounded.

    None when absent or unreadable; a date in the past is ``0``; anything
    beyond :data:`MAX_RETRY_AFTER` is cut to it.  *now* (unix time) defaults to
    the current time.
    """
    if value is None:
        return None
    value = value.strip()[:64]
    if _DELTA_SECONDS.fullmatch(value):
        return min(float(int(value)), MAX_RETRY_AFTER)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # pragma: no cover - older Pythons returned None for unreadable dates
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    reference = datetime.now(timezone.utc).timestamp() if now is None else now
    return min(max(when.timestamp() - reference, 0.0), MAX_RETRY_AFTER)
