"""Pausing an account: nothing more leaves it until an operator resumes it.

The incident control for the bad day (issue 22): a campaign goes out wrong,
and the operator must be able to say "nothing more leaves this account until
I say so" before selecting what to stop.

What a pause holds, and what it never holds:

- **Held:** every ``sendmsg``/POST of the account -- new sends, releases of
  held messages, retries and requeues of sends, the resend that follows a
  verification proving Clickatell never got a message.  The messages stay
  queued (or held) and record why (``waiting_for = "paused"``,
  :mod:`.waiting`); the admin shows "Waiting: account paused by … at …
  (reason)".  ``send_sms`` on a paused account is *not* refused: the message
  is recorded, queued, and waits like the others.
- **Never held:** stops (``delmsg``: pausing never delays a cancellation), and
  queries -- status refreshes and the verification of a send in doubt, which
  sends no SMS and which a stop of that message may be waiting on.  A
  verified-absent send then waits queued (it never reached Clickatell, so a
  stop of it is carried out here, with no request).

Where it is checked: the send run asks :func:`.waiting.send_waits_for` right
before each ``sendmsg`` leaves (after any verification), and the release loop
leaves due held messages of a paused account held (:func:`.waiting.usable`).
Each process reads the pauses from the database at most
:data:`PAUSE_FRESH_SECONDS` late (one indexed query per process per period;
the process that sets or lifts a pause sees it at once; the release loop's claim
reads it in the same statement).  So once a pause is
committed, no send request *starts* later than ``PAUSE_FRESH_SECONDS``
afterwards, on any worker on any machine -- and a pipelined send run reads the
pause in the database each time it marks its next step of messages for sending
(:meth:`.send_run.SendRun._mark_from`), so it sends at most the rest of that step
and its requests already on the wire (``MARK_STEP + MAX_IN_FLIGHT``), answered and
recorded as usual.

Resuming deletes the pause and hands the waiting work on through
:func:`.waiting.resume` (the one lease mechanism: of two resumes racing,
exactly one hands on each message; the send path claims it again before any
request), so each waiting message goes out exactly once.

Every pause and resume is written to the admin's ``LogEntry`` (on the pause
object; a ``LogEntry`` needs a user, so a pause set without one -- a command
without ``--by``, the API without ``by`` -- is logged through ``logging``
only) and always logged as a warning.
"""

from __future__ import annotations

import logging
import unicodedata
from dataclasses import dataclass
from datetime import datetime
from threading import Lock
from time import monotonic
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from ..exceptions import InvalidInput
from ..models import AccountPause, CancelState, OutboundMessage, SendState, WaitingFor
from ..signals import account_paused, account_resumed

logger = logging.getLogger("django_clickatell.pausing")

#: How late a process may see a pause set (or lifted) by another process, in seconds.
PAUSE_FRESH_SECONDS = 1.0
#: The longest reason kept (the column's length).
REASON_LENGTH = 200


@dataclass(frozen=True)
class Pause:
    """A pause as the services and the admin show it (no model instance to pass around)."""

    account: str
    paused_by: str  # the user's name, or "" (a command, the API, or a deleted user)
    paused_at: datetime
    reason: str


_lock = Lock()
_cache: tuple[float, dict[str, Pause]] | None = None


def pauses(*, fresh: bool = False) -> dict[str, Pause]:
    """The paused accounts, by alias: read at most :data:`PAUSE_FRESH_SECONDS` ago."""
    global _cache
    cached = _cache
    if not fresh and cached is not None and monotonic() - cached[0] < PAUSE_FRESH_SECONDS:
        return cached[1]
    started = monotonic()
    found = {
        row.account: Pause(
            row.account,
            row.paused_by.get_username() if row.paused_by is not None else "",
            row.paused_at,
            row.reason,
        )
        for row in AccountPause.objects.select_related("paused_by")
    }
    with _lock:
        _cache = (started, found)
    return found


def forget() -> None:
    """Read the pauses again at the next question (this process set or lifted one)."""
    global _cache
    with _lock:
        _cache = None


def paused_accounts() -> list[str]:
    """The aliases of the paused accounts, sorted."""
    return sorted(pauses())


def pause_of(alias: str) -> Pause | None:
    """The pause of account *alias*, if it is paused."""
    return pauses().get(alias)


def is_paused(alias: str) -> bool:
    """Whether a send through account *alias* must wait: asked before each send request.

    A pause set elsewhere is seen at most :data:`PAUSE_FRESH_SECONDS` late (the
    cache); a pause the cache still shows is confirmed in the database, so the
    work a resume hands on is never held back again by a stale view (a query per
    message only while the account is paused, when nothing is sent anyway).
    """
    if alias not in pauses():
        return False
    return alias in pauses(fresh=True)


def holds_back() -> Q:
    """The messages a pause holds back, by their account: a subquery, so the release loop's
    claim (one ``UPDATE``) sees a pause committed before it, with no query of its own."""
    return Q(account__in=AccountPause.objects.values("account"))


def clean_reason(reason: str) -> str:
    """One line of printable text: control characters (a NUL PostgreSQL refuses, terminal
    escapes in a log) become spaces, runs of space one."""
    printable = "".join(
        " " if unicodedata.category(char) in ("Cc", "Cf", "Zl", "Zp") else char
        for char in str(reason or "")
    )
    text = " ".join(printable.split())
    if len(text) > REASON_LENGTH:
        raise InvalidInput(f"The reason for a pause is at most {REASON_LENGTH} characters")
    return text


def check_account(alias: str) -> None:
    """``InvalidInput`` naming the configured accounts unless *alias* is one."""
    from .waiting import configured_accounts

    if alias not in configured_accounts():
        raise InvalidInput(
            f"No Clickatell account {alias[:40]!r} in settings.CLICKATELL "
            f"(accounts: {', '.join(configured_accounts())})"
        )


def pause_account(
    alias: str, *, reason: str = "", by: Any = None, via: str = ""
) -> tuple[Pause, bool]:
    """Pause account *alias*; returns the pause and whether it is new.

    Pausing an account that is already paused changes nothing (the first
    pause, its author and its reason stay).  Raises ``InvalidInput`` for an
    account not in the settings or a reason too long.
    """
    check_account(alias)
    text = clean_reason(reason)
    user = by if getattr(by, "pk", None) is not None else None
    with transaction.atomic():
        row, created = AccountPause.objects.get_or_create(
            account=alias, defaults={"paused_by": user, "reason": text}
        )
        if created:
            _log_entry(row, user, added=True, via=via)
        transaction.on_commit(forget)
    forget()
    pause = pauses(fresh=True).get(alias) or Pause(alias, "", row.paused_at, row.reason)
    if created:
        logger.warning(
            "Clickatell account %r paused by %s%s: nothing more is sent through it until "
            "it is resumed (stops still go out)",
            alias,
            pause.paused_by or via or "?",
            f" ({text})" if text else "",
        )
    return pause, created


def resume_account(alias: str, *, by: Any = None, via: str = "") -> bool:
    """Lift the pause of account *alias*; returns whether it was paused.

    Only lifts the pause: the caller hands the waiting work on
    (``dispatch.requeue_stalled``, which runs :func:`.waiting.resume`) -- the
    faces do, and the beat task ``requeue_stalled_work`` would anyway.
    """
    user = by if getattr(by, "pk", None) is not None else None
    with transaction.atomic():
        row = AccountPause.objects.select_for_update().filter(account=alias).first()
        if row is None:
            return False
        _log_entry(row, user, added=False, via=via)
        row.delete()
        transaction.on_commit(forget)
    forget()
    logger.warning(
        "Clickatell account %r resumed by %s: its waiting messages go out, each once",
        alias,
        getattr(user, "username", "") or via or "?",
    )
    return True


def _log_entry(row: AccountPause, user: Any, *, added: bool, via: str) -> None:
    """Tell the faces (the admin writes its ``LogEntry`` history from it): a signal, so
    the domain knows nothing of the admin."""
    signal = account_paused if added else account_resumed
    signal.send(sender=AccountPause, pause=row, user=user, via=via)


@dataclass(frozen=True)
class Held:
    """What a pause of an account holds back now (for the confirmation pages)."""

    #: Queued or in doubt: sends that wait (those in doubt are still verified).
    sends: int
    #: Held here, due within the next hour: releases that wait.
    held_due_soon: int
    #: Stops queued or under way: they go out whatever the pause.
    stops: int
    #: Already marked as waiting for the pause.
    waiting: int


def held_by_pause(alias: str, now: datetime | None = None) -> Held:
    """What pausing (or resuming) account *alias* concerns: a few counts, one query over
    its open work only."""
    from datetime import timedelta

    from django.db.models import Count

    from .waiting import WAITING

    now = now or timezone.now()
    open_sends = Q(send_state__in=[SendState.QUEUED, SendState.SENDING, SendState.VERIFYING])
    stops = Q(cancel_state__in=[CancelState.PENDING, CancelState.RETRYING, CancelState.IN_FLIGHT])
    # Only open work is read (both states are indexed): fast however many messages were sent.
    held = Q(send_state=SendState.HELD)
    counts = OutboundMessage.objects.filter(
        Q(account=alias) & (open_sends | held | stops)
    ).aggregate(
        sends=Count("pk", filter=open_sends & ~stops),
        held=Count(
            "pk",
            filter=Q(
                send_state=SendState.HELD,
                cancel_state=CancelState.NOT_REQUESTED,
                release_at__lte=now + timedelta(hours=1),
            ),
        ),
        stops=Count("pk", filter=stops),
        waiting=Count("pk", filter=WAITING & Q(waiting_for=WaitingFor.PAUSED)),
    )
    return Held(counts["sends"], counts["held"], counts["stops"], counts["waiting"])
