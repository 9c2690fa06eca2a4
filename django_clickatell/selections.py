"""Which messages an operation may touch: every such rule, named once.

The services build their conditional ``UPDATE``\\ s from these, the admin its
filters and the confirmation pages their counts, so a rule cannot differ
between the place that shows it and the place that acts on it.  Each is a
``Q`` (usable in aggregates and in ``Case``) and a method of
:class:`MessageQuerySet` (``OutboundMessage.objects.at_gateway()``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Q

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
#: "Cancellable now", from what this app knows -- not from a status it has not fetched:
#: Clickatell accepted it (or it was recorded from elsewhere with an id) or it was never
#: handed over (stopped here, no request); not final, not handed on (``003``); no stop
#: queued, running or done.  Right after ``send_sms`` the status is empty and the
#: message is selected; so are ``011``, ``001``/``002``/``008`` and codes this app does
#: not know that are not final.  A message being sent right now is included: its stop
#: waits for the send to settle.  A message held here until due is included: it is
#: stopped here, with no request to Clickatell.  The admin's "Can still be stopped" filter, the
#: confirmation counts, ``cancel_sms`` examples, ``clickatell_cancel --stoppable`` and
#: the request itself all use this one rule.
STOPPABLE = ~FINAL & ~HANDED_ON & ~CANCELLING & ~STOPPED & (AT_GATEWAY | SENDING_HERE | HELD_HERE)
#: What a new cancellation request takes on (the name the services use): :data:`STOPPABLE`.
REQUESTABLE = STOPPABLE
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
        """Messages that can still be stopped ("cancellable now"): see :data:`STOPPABLE`.

        ``cancel_sms(OutboundMessage.objects.stoppable().filter(...))`` selects
        messages right after ``send_sms``, before any status is known.
        """
        return self.filter(STOPPABLE)

    def requestable(self) -> Self:
        """Messages a new cancellation request would queue (or stop here): :meth:`stoppable`."""
        return self.filter(REQUESTABLE)

    def refreshable(self) -> Self:
        return self.filter(REFRESHABLE)

    def held(self) -> Self:
        """Messages held here until due, not yet handed to Clickatell."""
        return self.filter(HELD_HERE)
