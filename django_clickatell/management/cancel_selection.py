"""Which messages ``clickatell_cancel`` acts on: its filters, checked before anything is done.

Every filter is validated first, and an id that names no message is refused by
name: a typo must never look like an empty selection that was "done".
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.core.management.base import CommandError
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_clickatell.models import CancellationBatch, OutboundMessage
from django_clickatell.selections import stoppable_q
from django_clickatell.services.lookups import (
    KNOWN_STATUSES,
    is_client_message_id,
    is_message_id,
    normalize_status,
)

#: Largest primary key a ``BigAutoField`` can hold; larger ones cannot name a message.
_MAX_PK = 2**63 - 1
#: Unknown ids named in an error line, at most (the line stays one readable line).
_NAMED_AT_MOST = 5


def _names(values: Iterable[object]) -> str:
    shown = [str(value) for value in values]
    more = len(shown) - _NAMED_AT_MOST
    text = ", ".join(shown[:_NAMED_AT_MOST])
    return f"{text} and {more} more" if more > 0 else text


def _when(option: str, value: str | None) -> datetime | None:
    """An ISO 8601 date and time (naive ones in the current time zone), or a CommandError."""
    if value is None:
        return None
    try:
        parsed = parse_datetime(value)
    except ValueError:  # well formed but impossible: month 13, offset +99:00
        parsed = None
    if parsed is None:
        raise CommandError(
            f"--{option}: not a date and time (use ISO 8601, e.g. 2026-11-25T10:00): {value[:40]!r}"
        )
    try:
        aware = parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)
        # The database is given UTC: a bound that lands in year 0 or 10000 is no date.
        return aware.astimezone(dt_timezone.utc)
    except (ValueError, OverflowError) as exc:
        raise CommandError(f"--{option}: {value[:40]!r} is out of range: {exc}") from exc


def _primary_keys(values: Sequence[str], what: str) -> list[int]:
    """Positive integers a message or batch can have; anything else is a CommandError."""
    pks = []
    for value in values:
        text = value.strip()
        if not (text.isascii() and text.isdigit()) or not 0 < int(text) <= _MAX_PK:
            raise CommandError(f"Not a {what} primary key: {value[:40]!r}")
        pks.append(int(text))
    return pks


def _status(value: str) -> str:
    """A documented status code, zero-padded (``6`` -> ``006``), or a CommandError."""
    try:
        code = normalize_status(value)
    except ValueError as exc:
        raise CommandError(f"--status takes a numeric status code: {exc}") from exc
    if code not in KNOWN_STATUSES:
        raise CommandError(
            f"--status {value[:16]!r}: not a Clickatell status code "
            f"(known: {', '.join(sorted(KNOWN_STATUSES))})"
        )
    return code


@dataclass(frozen=True)
class Selection:
    """What the operator asked for, validated: ids (any of) narrowed by filters (all of)."""

    ids: Q
    filters: Q
    batches: list[int]

    @property
    def empty(self) -> bool:
        return not self.ids and not self.filters and not self.batches

    def query(self) -> Q:
        return self.ids & self.filters & (Q(batch_id__in=self.batches) if self.batches else Q())


def select(options: dict[str, Any]) -> Selection:
    """Validate every filter before touching anything; unknown ids are named."""
    pks = _primary_keys(options["pks"], "message")
    batches = _primary_keys(options["batch"], "batch")
    for value in options["apimsgid"]:
        if not is_message_id(value):
            raise CommandError(f"Not a Clickatell message id: {value[:40]!r}")
    for value in options["climsgid"]:
        if not is_client_message_id(value):
            raise CommandError(f"Not a client message id: {value[:40]!r}")
    statuses = [_status(value) for value in options["status"]]
    after = _when("scheduled-after", options["scheduled_after"])
    before = _when("scheduled-before", options["scheduled_before"])
    if after is not None and before is not None and after >= before:
        raise CommandError(
            "--scheduled-after must be before --scheduled-before: the window is empty."
        )
    _reject_unknown(OutboundMessage.objects.all(), "pk", pks, "message primary key")
    _reject_unknown(OutboundMessage.objects.all(), "apimsgid", options["apimsgid"], "apimsgid")
    _reject_unknown(OutboundMessage.objects.all(), "climsgid", options["climsgid"], "climsgid")
    _reject_unknown(CancellationBatch.objects.all(), "pk", batches, "batch")
    ids = Q()
    if pks:
        ids |= Q(pk__in=pks)
    if options["apimsgid"]:
        ids |= Q(apimsgid__in=options["apimsgid"])
    if options["climsgid"]:
        ids |= Q(climsgid__in=options["climsgid"])
    filters = Q()
    if options.get("stoppable"):
        filters &= stoppable_q()
    if statuses:
        filters &= Q(status__in=statuses)
    if after is not None:
        filters &= Q(scheduled_for__gte=after)
    if before is not None:
        filters &= Q(scheduled_for__lt=before)
    return Selection(ids=ids, filters=filters, batches=batches)


def _reject_unknown(
    queryset: QuerySet[Any], field: str, values: Sequence[object], what: str
) -> None:
    """An id that names nothing is a typo, never an empty selection to report as done."""
    if not values:
        return
    known = set(queryset.filter(**{f"{field}__in": values}).values_list(field, flat=True))
    unknown = [value for value in dict.fromkeys(values) if value not in known]
    if unknown:
        raise CommandError(f"Unknown {what}: {_names(unknown)} (nothing was done).")
