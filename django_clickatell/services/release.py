"""Handing held messages over when they are due: one step of the release loop.

A message scheduled further ahead than Clickatell is to hold it is recorded
``HELD`` (:mod:`.composing`, :mod:`.scheduling`).  :func:`release_due` turns
the held messages whose release time has come into ordinary ``QUEUED`` ones and
returns their keys; the caller (``dispatch.release_held``: the beat task
``release_due_messages``, ``manage.py clickatell_release``) hands those to the
send path, which sends each at most once with all its machinery (lease,
verification of anything in doubt, stall detection).  Nothing here talks to
Clickatell.

Why a loop and not a Celery task with a long ETA: a Redis broker redelivers an
unacknowledged task after its visibility timeout (an hour by default), so a
task due in a week would run many times over; and a held message must stay
stoppable here, with no request, until it is handed over.

Exactly once, however many loops run: the rows are claimed with the one lease
mechanism (:func:`.claims.acquire`: a conditional ``UPDATE`` under a token)
whose condition is :func:`~django_clickatell.selections.releasable` -- still
held, and no stop asked for.  Of two loops racing for a row the database lets
one ``UPDATE`` it; the other's finds it no longer held and skips it.  A stop
asked for first leaves it held (then withdrawn); a stop asked for afterwards
finds an ordinary queued message (stopped here, or at Clickatell once its send
settles).  The claim, the rewritten sending options and the hand-back happen
in one transaction, so a loop that dies mid-step leaves every row held as it
was, never queued with a half-written schedule or under a dead lease.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..conf import UnknownAccount
from ..models import OutboundMessage, SendState
from ..selections import releasable
from . import claims, waiting
from .reports import Report
from .scheduling import HoldPolicy, current_policy

logger = logging.getLogger("django_clickatell.release")

#: Rows one step claims: bounded, so a step is a few queries and a short transaction.
DEFAULT_BATCH = 500
_FIELDS = ("pk", "scheduled_for", "send_options", "account")


@dataclass
class ReleaseReport(Report):
    """What one step did: ``released`` are queued now, for the send path."""

    released: list[int] = field(default_factory=list)
    #: Claimed but not to go yet (the backend or the lead time changed since they were
    #: composed): held again, with a new release time.
    rescheduled: list[int] = field(default_factory=list)
    #: A full batch was due: another step may find more.
    more: bool = False


def release_due(
    now: datetime | None = None, *, limit: int = DEFAULT_BATCH, policy: HoldPolicy | None = None
) -> ReleaseReport:
    """Turn up to *limit* held messages due for release at *now* into queued ones.

    Returns their keys in ``released``: hand them to the send path
    (``dispatch.enqueue_sending``).  Each released message goes with the
    remaining delay as an absolute ``scheduled_time`` when Clickatell can
    schedule it (10 minutes or more ahead), otherwise with no schedule (it is
    due).  A constant number of queries per step (plus one per rescheduled row,
    which only a configuration change produces); idempotent.
    """
    now = now or timezone.now()
    policy_of = _policies(policy)
    # Held messages of an account not in the settings stay held, with the reason, until
    # it is back (services/waiting.py); the others are released as ever.
    waiting.hold_back(releasable(now), now)
    eligible = releasable(now) & waiting.usable()
    pks = list(
        OutboundMessage.objects.filter(eligible)
        .order_by("release_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    report = ReleaseReport(more=len(pks) >= limit)
    if not pks:
        return report
    token = claims.new_token()
    with transaction.atomic():
        claim = claims.acquire(
            pks,
            token,
            eligible=eligible,
            # Released: whatever it waited for (its account, back now) is over.
            updates={"send_state": SendState.QUEUED, "waiting_for": "", "waiting_since": None},
            fields=_FIELDS,
        )
        going: list[OutboundMessage] = []
        rewritten: list[OutboundMessage] = []  # options changed: written back in one query
        for message in claim.messages:
            due = message.scheduled_for
            rule = policy_of(message.account)
            if due is not None and not rule.may_go(due, now):
                claims.release(
                    [message.pk],
                    token,
                    send_state=SendState.HELD,
                    release_at=rule.release_at(due),
                )
                report.rescheduled.append(message.pk)
                continue
            going.append(message)
            if due is not None:
                options = rule.release_options(message.send_options, due, now)
                if options != message.send_options:
                    message.send_options = options
                    rewritten.append(message)
        if rewritten:
            OutboundMessage.objects.filter(claim_token=token).bulk_update(
                rewritten, ["send_options"]
            )
        if going:
            claims.release([m.pk for m in going], token)
    report.released = [m.pk for m in going]
    if report.released:
        logger.info("Released %d held messages for sending", len(report.released))
    if report.rescheduled:
        logger.warning(
            "%d held messages cannot go yet with the current backend and HOLD_LEAD_TIME; "
            "held again until their new release time",
            len(report.rescheduled),
        )
    return report


def _policies(policy: HoldPolicy | None) -> Callable[[str], HoldPolicy]:
    """Each message's policy: *policy* if given, else its own account's (a One API
    account cannot be handed a schedule, whatever the default account can take).

    Messages of an account not in the settings are not released (they wait, see
    :mod:`.waiting`); should one be removed during a step, its messages get the
    default account's policy and then wait in the send path.
    """
    known: dict[str, HoldPolicy] = {}

    def policy_of(account: str) -> HoldPolicy:
        if policy is not None:
            return policy
        if account not in known:
            try:
                known[account] = current_policy(account)
            except UnknownAccount:
                known[account] = current_policy()
        return known[account]

    return policy_of


def held_messages_overdue(now: datetime | None = None, *, grace_seconds: float = 300) -> int:
    """How many held messages should have been handed over more than *grace_seconds* ago.

    More than zero means no release loop is running (see Scheduling in the README).
    Messages that wait for their account (the loop saw them and left them) are not counted.
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=grace_seconds)
    return OutboundMessage.objects.filter(
        send_state=SendState.HELD, release_at__lt=cutoff, waiting_for=""
    ).count()
