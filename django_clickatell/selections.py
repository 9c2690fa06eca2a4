"""Which messages an operation may touch: every such rule, named once.

The services build their conditional ``UPDATE``\\ s from these, the admin its
filters and the confirmation pages their counts, so a rule cannot differ
between the place that shows it and the place that acts on it.  Each is a
``Q`` (usable in aggregates and in ``Case``) and a method of
:class:`MessageQuerySet` (``OutboundMessage.objects.at_gateway()``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import models
from django.db.models import Q

from .protocol.codes import FINAL_STATUSES
from .states import ACTIVE_CANCEL_STATES, OPEN_SEND_STATES, CancelState, SendState

if TYPE_CHECKING:
    from typing_extensions import Self

#: Clickatell can be asked about it: an id, and handed over (or possibly handed over).
AT_GATEWAY = Q(send_state__in=[SendState.NOT_SENT_HERE, SendState.SENT, SendState.UNKNOWN]) & (
    Q(apimsgid__isnull=False) | ~Q(climsgid="")
)
#: Being handed over by this app right now, or waiting to be (or given up on).
SENDING_HERE = Q(send_state__in=[*OPEN_SEND_STATES, SendState.FAILED])
#: Clickatell has reported a final status: nothing will change any more.
FINAL = Q(status__in=FINAL_STATUSES)
#: A cancellation is queued or running: a new request leaves it alone.
CANCELLING = Q(cancel_state__in=ACTIVE_CANCEL_STATES)
#: What a new cancellation request may take on: stoppable here or at Clickatell.
REQUESTABLE = (
    ~FINAL
    & ~Q(cancel_state__in=[*ACTIVE_CANCEL_STATES, CancelState.CANCELLED])
    & (AT_GATEWAY | SENDING_HERE)
)
#: Whose status Clickatell can still be asked for (``querymsg``).
REFRESHABLE = (
    ~FINAL
    & Q(send_state__in=[SendState.NOT_SENT_HERE, SendState.SENT])
    & (Q(apimsgid__isnull=False) | ~Q(climsgid=""))
)


class MessageQuerySet(models.QuerySet[Any]):
    """``OutboundMessage.objects``: the selections above as chainable methods."""

    def at_gateway(self) -> Self:
        return self.filter(AT_GATEWAY)

    def final(self) -> Self:
        return self.filter(FINAL)

    def requestable(self) -> Self:
        """Messages a new cancellation request would queue (or stop here)."""
        return self.filter(REQUESTABLE)

    def refreshable(self) -> Self:
        return self.filter(REFRESHABLE)
