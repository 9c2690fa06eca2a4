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

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from time import monotonic
from typing import Any

from django.db.models import Q
from django.utils import timezone

from ..conf import app_settings
from ..models import OutboundMessage

logger = logging.getLogger("django_clickatell.claims")


def new_token() -> str:
    return uuid.uuid4().hex


def lease_expiry(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) + timedelta(seconds=app_settings.claim_timeout)


def overdue_cutoff(now: datetime) -> datetime:
    """Work waiting since before this was lost: no retry waits longer than a lease plus
    the longest backoff (``CLAIM_TIMEOUT`` + ``TASK_RETRY_BACKOFF_MAX``)."""
    return now - timedelta(seconds=app_settings.claim_timeout + app_settings.task_retry_backoff_max)


def restart_overdue_clock(pks: Iterable[int]) -> None:
    """Work just handed on again: it is not overdue before another full period.

    Without this, a backlog that waits in the broker longer than the period
    would be queued once more by every run of the requeue task.
    """
    OutboundMessage.objects.filter(pk__in=list(pks), claim_token="").update(
        updated_at=timezone.now()
    )


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
    """Keeps a run's lease alive, and knows which messages the run still holds.

    Before each request the run asks :meth:`holds`.  Every third of
    ``CLAIM_TIMEOUT`` the lease is extended -- only on rows that still carry the
    run's token, so a message another run took over after a lapse (the process
    paused longer than its lease) is never extended or acted on again.  The
    settings guarantee that two thirds of a lease outlive the longest request
    (``CLAIM_TIMEOUT`` >= 2 x ``command_deadline``), so a message checked here
    cannot be taken over while its request is on the wire.
    """

    def __init__(self, token: str, pks: Iterable[int]) -> None:
        self.token = token
        self.held = set(pks)
        self._renewed = monotonic()  # acquire() has just written the lease
        self._every = app_settings.claim_timeout / 3

    def holds(self, pk: int) -> bool:
        """Whether the run may still make a request about message *pk*."""
        if monotonic() - self._renewed > self._every:
            self._renew()
        return pk in self.held

    def _renew(self) -> None:
        started = monotonic()
        OutboundMessage.objects.filter(claim_token=self.token).update(
            claim_expires_at=lease_expiry()
        )
        still = set(
            OutboundMessage.objects.filter(claim_token=self.token).values_list("pk", flat=True)
        )
        lost = self.held - still
        if lost:
            logger.warning(
                "Run %s lost the lease on %d messages (it lapsed and another run took "
                "them over); leaving them to that run",
                self.token[:8],
                len(lost),
            )
        self.held = still
        self._renewed = started


def release(pks: Iterable[int], token: str, **updates: Any) -> int:
    """Hand messages still held by *token* back, applying *updates* (a state to wait in)."""
    pks = list(pks)
    if not pks:
        return 0
    return OutboundMessage.objects.filter(pk__in=pks, claim_token=token).update(
        updated_at=timezone.now(), **RELEASED, **updates
    )
