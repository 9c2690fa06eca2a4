"""The one rule that orders message statuses: a status only ever moves forward.

Reports about a message arrive from several sources -- ``delmsg`` and
``querymsg`` replies, status callbacks (retried by Clickatell for days, so
duplicated and reordered) -- each stamped with a different clock.  Clocks are
therefore only a tie-breaker; what decides is where a status sits in
Clickatell's lifecycle::

    001 unknown  <  011 scheduled  <  008 received / unknown codes
                 <  002 queued, 003 delivered to the network  <  any final status

* A final status (delivered, failed, cancelled, expired, ...) is never replaced.
* A status later in the lifecycle replaces an earlier one whatever the clocks say.
* Two different statuses at the same stage (002 "awaiting redelivery" and 003
  "delivered to gateway" alternate while the network retries) are ordered by
  their report times, the newer winning; ties go to the report that arrives later.
  A report's time is when the gateway says the status happened (a callback's
  ``timestamp``, the One API's status ``timestamp``); only a reply that carries
  none (``querymsg``, ``delmsg``, REST) counts as made when it arrived.
* Each API's statuses are translated *by meaning* before they meet this rule, so
  that its order is the API's own: the One API's ``QUEUED`` (accepted, before
  ``SENT_TO_SUPPLIER``) is ``008``, not ``002`` (see :mod:`.one_api`).
* A report time in the future is clamped to "now" before it is compared or
  stored, so one callback from a gateway with a fast clock cannot freeze a message.

:func:`supersedes` is the rule as a pure function (the Hypothesis model uses it
as its oracle); :mod:`django_clickatell.services.status` turns the same ranks
into one conditional ``UPDATE``.
"""

from __future__ import annotations

from datetime import datetime

from .codes import FINAL_STATUSES, STATUSES

#: Rank of a final status: nothing comes after it.
FINAL_RANK = 4
#: Rank given to codes the documentation does not list (kept, never rejected).
UNKNOWN_RANK = 2

_RANKS: dict[str, int] = {
    "": -1,  # nothing recorded yet
    "001": 0,  # "message unknown": the gateway may simply not have reported yet
    "011": 1,  # scheduled for later delivery
    "008": 2,  # received by the gateway
    "002": 3,  # queued at the gateway, awaiting (re)delivery
    "003": 3,  # handed to the network
}


def lifecycle_rank(status: str) -> int:
    """Where *status* sits in Clickatell's lifecycle (higher is later)."""
    if status in FINAL_STATUSES:
        return FINAL_RANK
    if status in _RANKS:
        return _RANKS[status]
    return UNKNOWN_RANK


def is_final(status: str) -> bool:
    return status in FINAL_STATUSES


def supersedes(new: str, new_at: datetime, old: str, old_at: datetime | None) -> bool:
    """Whether a report of *new* at *new_at* replaces the recorded *old* (at *old_at*).

    Both times must already be clamped (see :func:`clamp`).
    """
    if new == old or is_final(old):
        return False
    new_rank, old_rank = lifecycle_rank(new), lifecycle_rank(old)
    if new_rank != old_rank:
        return new_rank > old_rank
    return old_at is None or new_at >= old_at


def clamp(reported_at: datetime | None, now: datetime) -> datetime:
    """The time a report counts as made: its own, unless missing or in the future."""
    if reported_at is None or reported_at > now:
        return now
    return reported_at


def ranks_below(rank: int) -> tuple[frozenset[str], bool]:
    """Known codes ranked below *rank*, and whether unknown codes are too.

    For building a database filter from the same table: "the recorded status
    is in these codes, or is an unknown code if the flag says so".
    """
    known = frozenset(code for code in (*_RANKS, *STATUSES) if lifecycle_rank(code) < rank)
    return known, rank > UNKNOWN_RANK


def ranks_equal(rank: int) -> tuple[frozenset[str], bool]:
    """Known codes at *rank*, and whether unknown codes are too."""
    known = frozenset(code for code in (*_RANKS, *STATUSES) if lifecycle_rank(code) == rank)
    return known, rank == UNKNOWN_RANK


def known_codes() -> frozenset[str]:
    """Every code (and the empty "nothing yet") that has a rank of its own."""
    return frozenset((*_RANKS, *STATUSES))
