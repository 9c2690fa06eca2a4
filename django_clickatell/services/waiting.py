"""Work that waits, with its reason, and goes out exactly once when the reason is gone.

A send, a release or a stop that cannot proceed *only* because of something
that only the settings (or an operator) can change is neither retried every
few seconds nor given up on: nothing would change until that does.  Today the
one such reason is an account that is not in ``settings.CLICKATELL`` any more
(a deploy that dropped it from ``ACCOUNTS``: :attr:`WaitingFor.ACCOUNT`); a
pause of the account is meant to be the next, through the same functions.

- The message stays in its open state -- queued, in doubt, held, its stop
  queued -- and records why (``waiting_for``) and since when
  (``waiting_since``).  No request is made and none is logged: nothing was
  asked.  A send in doubt stays in doubt (it is verified before anything is
  resent, once the account is back); a stop stays queued.
- The send and stop runs ask :func:`send_waits_for` / :func:`request_waits_for`
  about each message's backend (one call each), the release loop leaves held
  messages of such accounts held (:func:`usable`, :func:`hold_back`), the
  refresh skips them; the task retries and give-ups never see them.
- :func:`resume` -- run by ``requeue_stalled_work`` and ``clickatell_requeue``
  -- clears the reason of the messages whose account is back under the one
  lease mechanism (:func:`.claims.acquire`), so of two runs racing exactly one
  hands each message on, and returns them for the send and stop paths, which
  claim them again before any request: each goes out once.  Held ones need no
  hand-on: the release loop takes them once their account is usable.

The second reason is a pause of the account (:attr:`WaitingFor.PAUSED`,
:mod:`.pausing`): it holds sends and releases only -- :func:`request_waits_for`
never sees it, so stops and queries (including the verification of a send in
doubt) go on, and :func:`send_waits_for` is asked right before each
``sendmsg`` leaves, after any verification.

A third is a sending cap of the account reached right before a send left
(:attr:`WaitingFor.GUARD`, :mod:`.guards`): it holds nothing back as a ``Q`` --
:func:`resume` hands such messages on at each run and the send path counts them
again, so they go out as room opens.

A new reason is a :class:`~..states.WaitingFor` value,
an entry in :func:`obstacles` (which accounts it holds back, as a ``Q``) and a
test in :func:`send_waits_for` (by ``backend.alias``); :func:`request_waits_for`
stays as it is when the reason must never hold a stop.  The admin's "Waiting"
state, the requeue, the release loop, the logs and the task budgets then treat
it like a missing account, with no other change.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import Case, Count, F, Min, Q, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from ..conf import (
    ACCOUNTS,
    DEFAULT_ACCOUNT,
    MalformedAccounts,
    SettingError,
    UnknownAccount,
    account_aliases,
    account_settings,
)
from ..gateway.backends import Backend
from ..models import CancelState, OutboundMessage, SendState, WaitingFor
from . import claims, pausing
from .account import Unconfigured

logger = logging.getLogger("django_clickatell.waiting")

#: Sending states a waiting send can be in (``SENDING`` only under a run's lease).
_WAITING_SENDS = (SendState.HELD, SendState.QUEUED, SendState.SENDING, SendState.VERIFYING)
#: Work that some run may still do something about: a send, a release or a stop.
OPEN_WORK = Q(send_state__in=_WAITING_SENDS) | Q(
    cancel_state__in=[CancelState.PENDING, CancelState.RETRYING, CancelState.IN_FLIGHT]
)
#: Open work recorded as waiting: the admin's "Waiting" state.  (A reason left on a
#: message that has moved on -- stopped, delivered -- means nothing and is not shown.)
WAITING = ~Q(waiting_for=WaitingFor.NOTHING) & (
    Q(send_state__in=_WAITING_SENDS) | Q(cancel_state=CancelState.PENDING)
)


def missing_account(alias: str) -> str:
    """Why *alias* is not in the settings ("" if it is): the account's work waits meanwhile."""
    try:
        account_settings(alias)
    except (UnknownAccount, MalformedAccounts) as exc:
        return str(exc)
    except SettingError:
        return ""  # there, but broken in another way: the system checks report it
    return ""


def configured_accounts() -> list[str]:
    """The aliases work may go out through; only ``default`` if ``ACCOUNTS`` is unusable."""
    try:
        return account_aliases()
    except SettingError:
        return [DEFAULT_ACCOUNT]


def obstacles() -> list[tuple[str, Q]]:
    """Each reason to wait, with the messages it holds back (by their account)."""
    return [
        (WaitingFor.ACCOUNT, ~Q(account__in=configured_accounts())),
        (WaitingFor.PAUSED, pausing.holds_back()),
    ]


def usable() -> Q:
    """Messages no reason holds back: what the release loop may hand over."""
    condition = Q()
    for _reason, held_back in obstacles():
        condition &= ~held_back
    return condition


def send_waits_for(backend: Backend) -> str:
    """The reason a ``sendmsg`` through *backend* must not leave now, or "".

    Asked right before each send request (after any verification): a missing
    account, or a paused one (read at most ``pausing.PAUSE_FRESH_SECONDS`` late).
    """
    reason = request_waits_for(backend)
    if not reason and pausing.is_paused(backend.alias):
        return WaitingFor.PAUSED
    return reason


def request_waits_for(backend: Backend) -> str:
    """The reason any request through *backend* waits (a stop, a query, a verification), or "".

    Only a missing account: a pause holds sends, never a stop or a query.
    """
    if isinstance(backend, Unconfigured) and backend.missing:
        return WaitingFor.ACCOUNT
    return ""


def marks(reason: str, now: datetime | None = None) -> dict[str, Any]:
    """The values that record *reason*; the first ``waiting_since`` is kept."""
    return {
        "waiting_for": reason,
        "waiting_since": Coalesce(F("waiting_since"), Value(now or timezone.now())),
    }


def send_waits(message: OutboundMessage, token: str, reason: str) -> None:
    """Hand a claimed send back to wait: queued again, or still in doubt; no request made."""
    claims.release(
        [message.pk],
        token,
        send_state=Case(
            When(send_state=SendState.SENDING, then=Value(SendState.QUEUED)),
            default=F("send_state"),
        ),
        **marks(reason),
    )
    message.send_state = (
        SendState.QUEUED if message.send_state == SendState.SENDING else message.send_state
    )


def send_held_back(message: OutboundMessage, token: str, reason: str) -> None:
    """Hand back a claimed send that was about to leave (never sent, or verified absent):
    queued again, waiting for *reason*; no request made.  Queued, not in doubt, so a
    stop of it is carried out here at once."""
    claims.release([message.pk], token, send_state=SendState.QUEUED, **marks(reason))
    message.send_state = SendState.QUEUED


def stop_wait_updates(reason: str) -> dict[str, Any]:
    """What a stop that waits records: still queued, the reason, the lease handed back."""
    return {"cancel_state": CancelState.PENDING, **marks(reason), **claims.RELEASED}


def stops_set_aside(pks: list[int], token: str) -> list[int]:
    """Of claimed stops about to be given up on untried, those whose account is held back
    wait instead (queued, with the reason); returns the others."""
    if not pks:
        return pks
    aside: set[int] = set()
    for reason, held_back in obstacles():
        if reason != WaitingFor.ACCOUNT:
            continue  # only a missing account holds a stop back (a pause never does)
        mine = OutboundMessage.objects.filter(held_back, pk__in=pks, claim_token=token)
        found = set(mine.values_list("pk", flat=True))
        claims.release(found, token, cancel_state=CancelState.PENDING, **marks(reason))
        aside |= found
    return [pk for pk in pks if pk not in aside]


def hold_back(due: Q, now: datetime | None = None) -> int:
    """Record why due held messages of held-back accounts stay held; returns how many newly.

    The release loop's selection excludes them (:func:`usable`); this only says why.
    """
    now = now or timezone.now()
    newly = 0
    for reason, held_back in obstacles():
        newly += OutboundMessage.objects.filter(
            due & held_back & Q(waiting_for=WaitingFor.NOTHING)
        ).update(waiting_for=reason, waiting_since=now)
    if newly:
        log_waiting()
    return newly


@dataclass
class Resumed:
    """What :func:`resume` handed back: sends to queue, stops to queue (a key may be in both)."""

    sends: list[int] = field(default_factory=list)
    stops: list[int] = field(default_factory=list)
    #: Held messages freed for the release loop (nothing to queue).
    held: int = 0


def resume() -> Resumed:
    """Clear the reason of waiting work no reason holds back any more; return it to queue.

    Claimed with the one lease mechanism and released in the same breath, so of
    two concurrent callers exactly one gets each message; the send and stop
    runs claim it again before any request.  Logs the work still waiting.
    """
    eligible = ~Q(waiting_for=WaitingFor.NOTHING) & usable()
    pks = list(OutboundMessage.objects.filter(eligible).values_list("pk", flat=True))
    resumed = Resumed()
    if pks:
        token = claims.new_token()
        claim = claims.acquire(
            pks,
            token,
            eligible=eligible,
            updates={"waiting_for": WaitingFor.NOTHING, "waiting_since": None},
            fields=("pk", "send_state", "cancel_state"),
        )
        claims.release([m.pk for m in claim.messages], token)
        for message in claim.messages:
            stop_asked = message.cancel_state in (CancelState.PENDING, CancelState.RETRYING)
            if message.send_state in (SendState.SENDING, SendState.VERIFYING) or (
                message.send_state == SendState.QUEUED and not stop_asked
            ):
                resumed.sends.append(message.pk)
            if stop_asked:
                resumed.stops.append(message.pk)
            if message.send_state == SendState.HELD:
                resumed.held += 1
        if claim.messages:
            logger.warning(
                "%d waiting messages can go now (their account is configured again, or "
                "resumed): "
                "%d sends and %d stops handed on, %d held ones left to the release loop",
                len(claim.messages),
                len(resumed.sends),
                len(resumed.stops),
                resumed.held,
            )
    log_waiting()
    return resumed


def waiting_by_account() -> list[tuple[str, str, int, datetime | None]]:
    """``(account, reason, messages, since)`` of the work that waits (its own index)."""
    rows = (
        OutboundMessage.objects.filter(WAITING)
        .values("account", "waiting_for")
        .annotate(n=Count("pk"), since=Min("waiting_since"))
        .order_by("account", "waiting_for")
        .values_list("account", "waiting_for", "n", "since")
    )
    return [(str(a), str(r), int(n), since) for a, r, n, since in rows]


def log_waiting() -> None:
    """One error per account whose work waits on it: the operator must act, nothing retries."""
    for account, reason, count, since in waiting_by_account():
        if reason == WaitingFor.ACCOUNT:
            logger.error(
                "%d messages of Clickatell account %r wait (sends, releases or stops) since "
                "%s: the account is not in settings.CLICKATELL[%r]. They go out, each once, "
                "when it is configured again.",
                count,
                account[:40],
                since.isoformat() if since else "?",
                ACCOUNTS,
            )
        elif reason == WaitingFor.GUARD:
            logger.warning(
                "%d messages of Clickatell account %r wait since %s: a sending cap of the "
                "account (GUARD_MAX_*) is reached. They go out, each once, when there is room.",
                count,
                account[:40],
                since.isoformat() if since else "?",
            )
        elif reason == WaitingFor.PAUSED:
            logger.warning(
                "%d messages of Clickatell account %r wait (sends or releases) since %s: "
                "the account is paused. They go out, each once, when it is resumed.",
                count,
                account[:40],
                since.isoformat() if since else "?",
            )


def open_work_of_missing_accounts(using: str) -> dict[str, int]:
    """Accounts not in the settings with open work in database *using*, and how much.

    For the system check: held messages not yet due count too (they would wait).
    """
    rows = (
        OutboundMessage.objects.using(using)
        .filter(OPEN_WORK)
        .exclude(account__in=configured_accounts())
        .values("account")
        .annotate(n=Count("pk"))
        .order_by("account")
        .values_list("account", "n")
    )
    return {str(account): int(n) for account, n in rows}
