"""Which messages an operation may touch: every such rule, named once.

The services build their conditional ``UPDATE``\\ s from these, the admin its
filters and the confirmation pages their counts, so a rule cannot differ
between the place that shows it and the place that acts on it.  Each is a
``Q`` (usable in aggregates and in ``Case``) and a method of
:class:`MessageQuerySet` (``OutboundMessage.objects.at_gateway()``).  What
can still be stopped depends on each message's account (whether its API can
stop a submitted message), so that rule is built from the settings when it is
used: :func:`stoppable_q`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db import models
from django.db.models import Q

from .conf import DEFAULT_ACCOUNT, account_aliases
from .gateway.backends import account_capabilities
from .protocol.codes import FINAL_STATUSES
from .states import ACTIVE_CANCEL_STATES, OPEN_SEND_STATES, CancelState, SendState

if TYPE_CHECKING:
    from typing_extensions import Self

#: The shortest delay Clickatell schedules natively (legacy ``deliv_time``: 10 minutes).
MIN_NATIVE_DELAY = timedelta(minutes=10)

#: "Delivered to gateway": Clickatell has passed the message on to the network.
HANDED_ON_STATUS = "003"

#: Clickatell can be asked about it: an id, and handed over (or possibly handed over).
AT_GATEWAY = Q(send_state__in=[SendState.NOT_SENT_HERE, SendState.SENT, SendState.UNKNOWN]) & (
    Q(apimsgid__isnull=False) | ~Q(climsgid="")
)
#: Being handed over by this app right now, or waiting to be (or given up on).
SENDING_HERE = Q(send_state__in=[*OPEN_SEND_STATES, SendState.FAILED])
#: Held here until due (never handed over): stopped locally, with no request.
HELD_HERE = Q(send_state=SendState.HELD)
#: Clickatell has reported a final status: nothing will change any more.
FINAL = Q(status__in=FINAL_STATUSES)
#: A cancellation is queued or running: a new request leaves it alone.
CANCELLING = Q(cancel_state__in=ACTIVE_CANCEL_STATES)
#: Clickatell has handed it on to the network (``003``): too late for ``delmsg``, which
#: stops only what is still scheduled or queued.  A status never moves backwards, so
#: this is known for good.
HANDED_ON = Q(status=HANDED_ON_STATUS)
#: Already stopped: Clickatell answered ``006``, or it was stopped here before sending.
STOPPED = Q(cancel_state=CancelState.CANCELLED)
#: Never handed over: held here until due, queued, or given up on before it reached
#: Clickatell.  A stop needs no request: it is stopped here, at once (:mod:`.services.withdrawal`).
NEVER_HANDED_OVER = Q(send_state__in=[SendState.HELD, SendState.QUEUED, SendState.FAILED])
#: Being handed over right now, or being checked whether it was: a stop waits for the send
#: to settle, then stops it here (it never left) or at Clickatell (it did).
BEING_SENT = Q(send_state__in=[SendState.SENDING, SendState.VERIFYING])
#: Still in Django: stoppable whatever the account's API can do.
STILL_HERE = HELD_HERE | SENDING_HERE
#: Nothing has settled it yet: not final, not handed on (``003``), no stop queued, running
#: or done.
_OPEN = ~FINAL & ~HANDED_ON & ~CANCELLING & ~STOPPED
#: Open and never handed over: a stop is carried out here, with no request.
STOP_HERE = _OPEN & NEVER_HANDED_OVER
#: Open and being sent: the stop waits for the send to settle.
STOP_AFTER_SEND = _OPEN & BEING_SENT

#: How an account can stop a message it has handed over (:meth:`StopReach.of`).
REMOTE, LOCAL_ONLY, NOT_CONFIGURED = "remote", "local_only", "not_configured"


@dataclass(frozen=True)
class StopReach:
    """Which accounts can stop a submitted message at Clickatell: the settings, read now.

    ``remote``: configured accounts whose backend has ``capabilities.remote_stop``
    (``delmsg`` / ``DELETE``); ``local_only``: configured accounts whose API cannot stop
    a submitted message (the One API).  Any other alias a message may carry is not
    configured (removed from ``ACCOUNTS``, or its ``BACKEND`` names no backend): nothing
    can be asked of it, so only what never left Django can be stopped -- here.

    Built by :func:`stop_reach` each time a rule is needed, never at import, so
    ``override_settings`` (and a deploy that adds an account) is seen at once.  The
    accounts are grouped by capability, so the SQL holds one ``account IN (...)`` per
    group, whatever the number of accounts.
    """

    remote: tuple[str, ...]
    local_only: tuple[str, ...]

    def of(self, alias: str) -> str:
        """:data:`REMOTE`, :data:`LOCAL_ONLY` or :data:`NOT_CONFIGURED` for *alias*."""
        if alias in self.remote:
            return REMOTE
        if alias in self.local_only:
            return LOCAL_ONLY
        return NOT_CONFIGURED

    @property
    def stoppable(self) -> Q:
        """Cancellable now, from what this app knows -- not from a status it has not fetched.

        Not final, not handed on (``003``), no stop queued, running or done; and either
        still in Django (held here, queued, being sent, or given up on before reaching
        Clickatell: stopped here, or once its send has settled) -- on every account --
        or at Clickatell with an id to name it by (accepted, in doubt, or recorded from
        elsewhere) on an account whose API can stop a submitted message.  Right after
        ``send_sms`` the status is empty and the message is selected; so are ``011``,
        ``001``/``002``/``008`` and codes this app does not know that are not final.
        A One API message already handed over is not: that API has no stop call.  Nor
        is a message handed over through an account no longer configured: there are no
        credentials to ask with.  The admin's "Can still be stopped" filter, the
        confirmation counts, ``cancel_sms``, ``clickatell_cancel --stoppable`` and the
        request itself (single and batch) all use this one rule.
        """
        if not self.remote:
            return _OPEN & STILL_HERE
        return _OPEN & (STILL_HERE | (AT_GATEWAY & Q(account__in=self.remote)))

    @property
    def api_cannot_stop(self) -> Q | None:
        """Handed over through an account whose API cannot stop a submitted message."""
        return AT_GATEWAY & Q(account__in=self.local_only) if self.local_only else None

    @property
    def account_not_configured(self) -> Q:
        """Handed over through an account the settings no longer define (or cannot use)."""
        configured = (*self.remote, *self.local_only)
        return AT_GATEWAY & ~Q(account__in=configured) if configured else AT_GATEWAY


def stop_reach() -> StopReach:
    """The accounts as configured now, grouped by whether their API can stop remotely.

    Reads each account's backend class (``capabilities.remote_stop``; the test backend's
    scripted capabilities too), never builds a backend: no client, no secret.  An
    account whose settings name no usable backend counts as not configured.
    """
    try:
        aliases = account_aliases()
    except ImproperlyConfigured:  # ACCOUNTS malformed: check E011 says so; only default is known
        aliases = [DEFAULT_ACCOUNT]
    remote: list[str] = []
    local_only: list[str] = []
    for alias in aliases:
        try:
            capabilities = account_capabilities(alias)
        except ImproperlyConfigured:
            continue
        (remote if capabilities.remote_stop else local_only).append(alias)
    return StopReach(remote=tuple(remote), local_only=tuple(local_only))


def stoppable_q() -> Q:
    """The one rule for "can still be stopped", as configured now (:attr:`StopReach.stoppable`)."""
    return stop_reach().stoppable


#: Whose status Clickatell can still be asked for (``querymsg``).
REFRESHABLE = (
    ~FINAL
    & Q(send_state__in=[SendState.NOT_SENT_HERE, SendState.SENT])
    & (Q(apimsgid__isnull=False) | ~Q(climsgid=""))
)


def releasable(now: datetime) -> Q:
    """Held messages the release loop hands over at *now*: see :mod:`.services.release`.

    Their release time has come and nobody asked to stop them; and either they are
    due, or far enough ahead (``MIN_NATIVE_DELAY``) for Clickatell to schedule them --
    a message caught in between waits for its due time rather than go out early.
    """
    return (
        HELD_HERE
        & Q(cancel_state=CancelState.NOT_REQUESTED, release_at__lte=now)
        & (Q(scheduled_for__lte=now) | Q(scheduled_for__gte=now + MIN_NATIVE_DELAY))
    )


class MessageQuerySet(models.QuerySet[Any]):
    """``OutboundMessage.objects``: the selections above as chainable methods."""

    def at_gateway(self) -> Self:
        return self.filter(AT_GATEWAY)

    def final(self) -> Self:
        return self.filter(FINAL)

    def stoppable(self) -> Self:
        """Messages that can still be stopped ("cancellable now"): see :func:`stoppable_q`.

        ``cancel_sms(OutboundMessage.objects.stoppable().filter(...))`` selects
        messages right after ``send_sms``, before any status is known.
        """
        return self.filter(stoppable_q())

    def requestable(self) -> Self:
        """Messages a new cancellation request would queue (or stop here): :meth:`stoppable`."""
        return self.stoppable()

    def refreshable(self) -> Self:
        return self.filter(REFRESHABLE)

    def tagged(self, tag: str) -> Self:
        """Messages sent with *tag* (``send_sms(tags=[...])``): read through the index on
        ``(tag, message)``, at any table size.  Chain for several: ``.tagged("a").tagged("b")``."""
        return self.filter(tags__tag=tag)

    def held(self) -> Self:
        """Messages held here until due, not yet handed to Clickatell."""
        return self.filter(HELD_HERE)
