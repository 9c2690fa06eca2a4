"""The one lease mechanism: who may talk to Clickatell about a message right now.

Every run (a send, a cancellation) takes a token of its own and claims the
messages it will act on with one conditional ``UPDATE``: a message is free when
nobody holds it, when its holder's lease has expired (the holder died), or when
the claimant already holds it.  The database serialises concurrent ``UPDATE``\\ s
of one row, so of two runs racing for a message exactly one gets it, and a
message is never the subject of two requests at once.

The lease is written *before* any request leaves, expires ``CLAIM_TIMEOUT``
seconds later unless extended, and is extended while a run goes on; a run that
dies leaves its messages leased until then, after which the next run takes them
over -- knowing that whatever the dead run did is in doubt.  The settings
guarantee the lease outlives the longest request (see ``conf.py``).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from ..conf import app_settings
from ..models import OutboundMessage


def new_token() -> str:
    return uuid.uuid4().hex


def lease_expiry(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=app_settings.claim_timeout)


def free_for(token: str, now: datetime) -> Q:
    """Messages *token* may claim: unheld, held by a dead run, or already its own."""
    return Q(claim_token="") | Q(claim_expires_at__lt=now) | Q(claim_token=token)


#: Field values that hand a message back (put in every update that settles one).
RELEASED: dict[str, Any] = {"claim_token": "", "claim_expires_at": None}


@dataclass
class Claim:
    """What one :func:`acquire` got, and what others still hold."""

    token: str
    messages: list[OutboundMessage] = field(default_factory=list)
    #: Eligible but leased by another run that is alive (or not yet known dead).
    held_elsewhere: list[int] = field(default_factory=list)
    #: Seconds until the earliest of those leases expires (plus a second).
    retry_after: float = 0.0


def acquire(
    pks: Sequence[int],
    token: str,
    *,
    eligible: Q,
    updates: dict[str, Any],
    fields: Iterable[str],
) -> Claim:
    """Claim the *eligible* messages among *pks* for *token*, applying *updates*.

    Two queries whatever the number of messages: the conditional ``UPDATE`` and
    one read of the rows that are now ours or somebody else's.
    """
    now = timezone.now()
    OutboundMessage.objects.filter(Q(pk__in=pks) & eligible & free_for(token, now)).update(
        claim_token=token, claim_expires_at=lease_expiry(now), updated_at=now, **updates
    )
    # Everything leased among *pks*: ours, and what another live run is working on
    # (a send still in flight when a cancellation arrives, a duplicate delivery).
    rows = list(
        OutboundMessage.objects.filter(pk__in=pks)
        .exclude(claim_token="")
        .order_by("pk")
        .only(*fields, "claim_token", "claim_expires_at")
    )
    claim = Claim(token)
    claim.messages = [row for row in rows if row.claim_token == token]
    others = [
        row
        for row in rows
        if row.claim_token != token
        and row.claim_expires_at is not None
        and row.claim_expires_at >= now
    ]
    claim.held_elsewhere = [row.pk for row in others]
    if others:
        earliest = min(row.claim_expires_at for row in others if row.claim_expires_at is not None)
        claim.retry_after = max((earliest - now).total_seconds(), 0.0) + 1.0
    return claim


class LeaseKeeper:
    """Extends a run's lease every third of ``CLAIM_TIMEOUT`` while the run goes on."""

    def __init__(self, token: str) -> None:
        self.token = token
        self._renewed = time.monotonic()
        self._every = app_settings.claim_timeout / 3

    def keep_alive(self) -> None:
        if time.monotonic() - self._renewed > self._every:
            now = timezone.now()
            OutboundMessage.objects.filter(claim_token=self.token).update(
                claim_expires_at=lease_expiry(now)
            )
            self._renewed = time.monotonic()


def release(pks: Iterable[int], token: str, **updates: Any) -> int:
    """Hand messages still held by *token* back, applying *updates* (a state to wait in)."""
    pks = list(pks)
    if not pks:
        return 0
    return OutboundMessage.objects.filter(pk__in=pks, claim_token=token).update(
        updated_at=timezone.now(), **RELEASED, **updates
    )


def stamped(updates: dict[str, Any]) -> dict[str, Any]:
    """*updates* with ``updated_at`` set (``QuerySet.update`` skips ``auto_now``)."""
    return {**updates, "updated_at": timezone.now()}
