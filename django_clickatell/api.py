"""The documented entry points for code: send SMS, stop them, refresh their status,
read the balance and check the credentials.

These are thin faces over :mod:`django_clickatell.services`: with
``wait=False`` (the default) the work is handed on through
:mod:`django_clickatell.dispatch` -- to a Celery worker once the current
transaction commits, or done here when Celery is not in use; with
``wait=True`` it happens in this process now.  Every error they raise is a
:class:`~django_clickatell.exceptions.ClickatellError`; bad input is also a
``ValueError`` (:class:`~django_clickatell.exceptions.InvalidMessage`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from . import dispatch
from .exceptions import ClickatellError, InvalidMessage
from .models import CancellationBatch, OutboundMessage, Via
from .selections import REFRESHABLE
from .services import (
    balance,
    campaigns,
    cancel_requests,
    cancelling,
    composing,
    guards,
    pausing,
    refreshing,
    sending,
)
from .services.account import Account
from .services.account import check_credentials as _check_credentials
from .services.cancel_requests import CancellationRequest
from .services.pausing import Pause
from .services.refreshing import RefreshReport

logger = logging.getLogger("django_clickatell.api")

__all__ = [
    "Account",
    "CancellationRequest",
    "ClickatellError",
    "InvalidMessage",
    "Pause",
    "RefreshReport",
    "cancel_campaign",
    "cancel_sms",
    "check_credentials",
    "get_balance",
    "pause_account",
    "paused_accounts",
    "refresh_sms",
    "resume_account",
    "send_sms",
]


def send_sms(
    to: str | Sequence[str],
    text: str,
    *,
    sender: str = "",
    climsgid: str | None = None,
    deliver_in_minutes: int | None = None,
    scheduled_for: datetime | None = None,
    callback: int | None = None,
    concat: int | None = None,
    validity_minutes: int | None = None,
    account: str = "default",
    tags: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    wait: bool = False,
) -> list[OutboundMessage]:
    """Record one message per recipient and send them (now or scheduled).

    *to* is one number or several, international (``+27 83 123 4567``,
    ``0027831234567``, ``27831234567``; national ones only with
    ``DEFAULT_REGION``), stored and sent as E.164 digits (``27831234567``).
    Raises :class:`InvalidMessage` (nothing recorded, for any recipient) for a
    bad number, an empty text, a schedule outside 10 minutes to a year, …  A message due
    further ahead than ``HOLD_LEAD_TIME`` (or any scheduled one, on a backend
    without native scheduling) is held here, ``HELD``, and handed to Clickatell
    by the release loop when due (see Scheduling in the README).
    Text outside the GSM alphabet is sent as Unicode automatically.
    *account* names the Clickatell account to send through (an alias of
    ``CLICKATELL["ACCOUNTS"]``; ``"default"``: the top-level settings); an
    unknown one raises :class:`InvalidMessage`.

    *tags* (django-anymail's name) are the campaign handle: up to 10 strings of
    1 to 50 printable characters (``["promo-2026-12", "order:1234"]``), indexed,
    so ``OutboundMessage.objects.tagged("promo-2026-12")`` and
    :func:`cancel_campaign` find them at any table size.  *metadata* is a small
    JSON object of str -> str or number (at most 20 keys, 4,000 bytes) kept with
    each message to link it to an order or a user; it is not searchable (a
    reference to look messages up by belongs in a tag).  Anything else raises
    :class:`InvalidMessage` naming the problem.

    On a paused account (:func:`pause_account`) the messages are recorded and
    queued as usual -- not refused -- and wait, sending nothing, until the
    account is resumed.  A guard of the account (``GUARD_*`` settings: caps,
    destinations, the opt-out list) refuses the whole call with
    :class:`~django_clickatell.exceptions.GuardTripped` (an ``InvalidMessage``
    naming the guard and the setting), recording nothing.

    ``wait=True`` belongs outside a transaction: inside one, the records and
    the claim are not committed when the request leaves, so a rollback
    afterwards would leave an SMS at Clickatell with no record of it (a
    warning is logged).  With ``wait=False`` the send happens after commit.
    """
    messages = composing.create_messages(
        to,
        text,
        sender=sender,
        climsgid=climsgid,
        deliver_in_minutes=deliver_in_minutes,
        scheduled_for=scheduled_for,
        callback=callback,
        concat=concat,
        validity_minutes=validity_minutes,
        account=account,
        tags=tags,
        metadata=metadata,
    )
    pks = [m.pk for m in messages]
    # Held messages (scheduled beyond the lead time) wait here for the release loop.
    now_pks = composing.to_send(messages)
    if wait:
        _warn_inside_a_transaction("send_sms")
        sending.send_messages(now_pks, via=Via.API)
    else:
        dispatch.enqueue_sending(now_pks, via=Via.API)
    return list(OutboundMessage.objects.filter(pk__in=pks).order_by("pk"))


def cancel_sms(
    messages: QuerySet[OutboundMessage], *, wait: bool = False, actor: Any = None
) -> CancellationRequest:
    """Stop the delivery of *messages*: at Clickatell (``delmsg``), or here if never sent.

    Only what can still be stopped is taken on (``OutboundMessage.objects.stoppable()``,
    decided per message from its account's API: a One API message already handed
    over is skipped, since that API cannot stop it).  Returns what was done:
    ``message_pks`` (queued for a worker to stop at Clickatell, some once their
    send has settled), ``stopped_here`` (never handed over: stopped at once, no
    request), ``skipped`` and ``preview`` -- the counts per outcome and per reason
    skipped (``preview.api_cannot_stop``, ``preview.final``, …); see
    :mod:`.services.cancel_requests`.
    """
    result = cancel_requests.request_cancellation(messages, via=Via.API, actor=actor)
    if wait:
        _warn_inside_a_transaction("cancel_sms")
        cancelling.cancel_messages(result.message_pks, via=Via.API, actor=actor)
    else:
        dispatch.enqueue_cancellation(result.message_pks, via=Via.API, actor=actor)
    return result


def cancel_campaign(
    *,
    account: str | None = None,
    tag: str | None = None,
    wait: bool = False,
    actor: Any = None,
) -> CancellationBatch:
    """Stop everything still stoppable on *account*, with *tag*, or with *tag* on *account*.

    One operation whatever the size: the request stores the campaign's filter
    as a cancellation batch (one row: no message key passes through Python or
    the broker) and hands its id to a worker once the transaction commits; the
    worker records the stoppable messages inside the database, stops at once
    those never handed over, and asks Clickatell to stop the rest, each once --
    the same as the admin's "Stop a campaign" button and ``clickatell_cancel
    --tag/--account``.  What can still be stopped is decided per message by its
    account's API (:meth:`~.selections.MessageQuerySet.stoppable`).  Messages
    recorded after this call are not touched: pause the account first
    (:func:`pause_account`) if the campaign is still being sent.

    Returns the batch: ``batch.total`` (taken on) and ``batch.skipped`` once a
    worker has recorded it (``batch.selection_pending`` until then), its messages
    as ``batch.messages``, its progress on its admin page.  With ``wait=True``
    the worker's part runs in this process before returning.  To see first what
    a stop would do, per account: ``services.campaigns.preview_by_account``.
    Raises ``InvalidInput`` (a ``ValueError``) for neither filter, or an account
    that is neither configured nor used.
    """
    target = campaigns.campaign(account=account, tag=tag)
    with transaction.atomic():
        batch = campaigns.request_campaign_stop(target, via=Via.API, actor=actor)
    if wait:
        _warn_inside_a_transaction("cancel_campaign")
        dispatch.CancelBatchWork(batch.pk).run_here(via=Via.API, actor=actor)
        batch.refresh_from_db()
    else:
        dispatch.enqueue_batch(batch.pk, via=Via.API, actor=actor)
    return batch


def refresh_sms(
    messages: QuerySet[OutboundMessage], *, wait: bool = False, actor: Any = None
) -> RefreshReport | None:
    """Ask Clickatell (``querymsg``) for the status of *messages* whose status may change.

    With ``wait=True`` returns what changed; otherwise the work is handed on
    and ``None`` returned.  Final messages and messages not (yet) at Clickatell
    are left alone.
    """
    pks = list(messages.filter(REFRESHABLE).order_by("pk").values_list("pk", flat=True))
    if wait:
        return refreshing.refresh_statuses(pks, via=Via.API, actor=actor)
    dispatch.enqueue_refresh(pks, via=Via.API, actor=actor)
    return None


def get_balance(*, cached: bool = True, account: str = "default") -> Decimal:
    """The account's remaining credit (shared by every process for ``BALANCE_CACHE_SECONDS``)."""
    return balance.get_balance(cached=cached, account=account)


def check_credentials(account: str = "default") -> Account:
    """Prove the account's credentials work (for the HTTP API: open its shared session),
    or raise why Clickatell refused."""
    return _check_credentials(account)


def pause_account(account: str, *, reason: str = "", by: Any = None) -> Pause:
    """Pause *account*: nothing more is sent through it until :func:`resume_account`.

    Sends (new, released, retried) wait, recorded as waiting for the pause;
    stops and status queries go on.  Every worker sees the pause within
    ``PAUSE_FRESH_SECONDS`` (1 s) of the commit.  Already paused: the first
    pause stays as it was.  *by* (a user) is recorded and writes the admin's
    LogEntry.  Raises ``InvalidInput`` (a ``ValueError``) for an account not in
    the settings or a reason over 200 characters.
    """
    pause, _created = pausing.pause_account(account, reason=reason, by=by, via=Via.API)
    return pause


def resume_account(account: str, *, by: Any = None) -> bool:
    """Lift the pause of *account* and hand its waiting messages on (each goes out once).

    Returns whether it was paused.  Held messages that came due meanwhile are
    released by the release loop at its next run.
    """
    resumed = pausing.resume_account(account, by=by, via=Via.API)
    if resumed:
        dispatch.requeue_stalled(via=Via.API)
    return resumed


def paused_accounts() -> list[Pause]:
    """The paused accounts: alias, who paused it (user name or ""), when, and why."""
    return [pause for _alias, pause in sorted(pausing.pauses(fresh=True).items())]


def opt_out(number: str, *, reason: str = "", account: str = "", by: Any = None) -> bool:
    """Put *number* on the opt-out list (every account, or only *account*).

    Accounts with ``GUARD_OPT_OUT`` then refuse it: ``send_sms`` raises
    ``GuardTripped``, and a message already queued to it is not sent.  Returns
    whether it is new (a listed number keeps its first entry).  *by* (a user) is
    recorded and writes the admin's LogEntry.  ``InvalidMessage`` for what is no
    phone number (read like a ``send_sms`` recipient), ``InvalidInput`` for an account
    not in the settings or a reason over 200 characters.
    """
    _row, created = guards.opt_out(number, reason=reason, account=account, by=by, via=Via.API)
    return created


def opt_in(number: str, *, by: Any = None) -> bool:
    """Take *number* off the opt-out list; returns whether it was on it."""
    return guards.opt_in(number, by=by, via=Via.API)


def is_opted_out(number: str, *, account: str | None = None) -> bool:
    """Whether *number* is on the opt-out list (for *account*: listed for it or for every
    account; ``None``: for any account)."""
    return guards.is_opted_out(number, account)


def _warn_inside_a_transaction(what: str) -> None:
    if transaction.get_connection().in_atomic_block:
        logger.warning(
            "%s(wait=True) inside a transaction: a rollback after the request left would "
            "leave Clickatell's answer unrecorded; use wait=False (sent after commit)",
            what,
        )
