"""Forgetting old history: exchange-log rows and unmatched callbacks past their retention.

Deleted in small batches by primary key, each batch its own short statement,
so a large backlog never holds locks on the tables for long and the workers
writing new rows are not held up.  Messages themselves are never deleted here.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import models
from django.utils import timezone

from ..models import GatewayExchange, UnmatchedCallback

#: Rows deleted per statement.
BATCH_SIZE = 1000
#: Younger history is kept whatever is asked: a run in progress reads its own log.
MIN_DAYS = 1


def delete_old_history(days: int, *, batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Delete exchanges and unmatched callbacks older than *days*; counts per kind."""
    if isinstance(days, bool) or not isinstance(days, int) or days < MIN_DAYS:
        raise ValueError(f"days must be an integer of at least {MIN_DAYS}, got {days!r}")
    cutoff = timezone.now() - timedelta(days=days)
    return {
        "exchanges": _delete_before(GatewayExchange, "occurred_at", cutoff, batch_size),
        "unmatched_callbacks": _delete_before(UnmatchedCallback, "received_at", cutoff, batch_size),
    }


def _delete_before(model: type[models.Model], field: str, cutoff: object, batch_size: int) -> int:
    deleted = 0
    old = model._default_manager.filter(**{f"{field}__lt": cutoff}).order_by("pk")
    while pks := list(old.values_list("pk", flat=True)[:batch_size]):
        deleted += model._default_manager.filter(pk__in=pks).delete()[0]
    return deleted
