"""Stopping a message that never left Django: no request, nothing to ask Clickatell.

A message still queued here (or given up on before it ever reached the
gateway) is stopped by marking it so; the send path never claims it again
because it only claims queued messages with no cancellation requested.  The
record says which way a message was stopped: ``send_state == WITHDRAWN`` here,
a ``006`` from Clickatell otherwise.
"""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from ..models import CancelState, OutboundMessage, SendState
from ..signals import message_cancelled
from .claims import RELEASED, free_for

#: Never handed to Clickatell, and nobody is handing it over right now (``HELD``: kept
#: here until due, so stopping it needs no request at all).
NEVER_SENT_STATES = (SendState.HELD, SendState.QUEUED, SendState.FAILED, SendState.REJECTED)
#: Cancellation states from which a message may be stopped (not one being worked on remotely).
STOPPABLE_CANCEL_STATES = (CancelState.NOT_REQUESTED, CancelState.PENDING, CancelState.RETRYING)


def withdraw(scope: Q, *, via: str, any_request: bool = False) -> list[int]:
    """Stop every never-sent message in *scope* not already stopped; returns their keys.

    Never sent: held here until due, queued, given up on before reaching Clickatell,
    or rejected by it.

    One conditional ``UPDATE`` (and one read for the signals): a message a send
    run has claimed meanwhile is left alone -- it may be on the wire -- and is
    stopped remotely once its send is settled.
    """
    now = timezone.now()
    # With any_request, a stop that was asked for and settled some other way (refused,
    # given up: Clickatell did not know the message) is carried out here too.
    asked = (
        ~Q(cancel_state=CancelState.CANCELLED)
        if any_request
        else Q(cancel_state__in=STOPPABLE_CANCEL_STATES)
    )
    stopped = OutboundMessage.objects.filter(
        scope & Q(send_state__in=NEVER_SENT_STATES) & asked & free_for("", now)
    ).update(
        send_state=SendState.WITHDRAWN,
        cancel_state=CancelState.CANCELLED,
        cancel_completed_at=now,
        cancel_error="",
        updated_at=now,
        **RELEASED,
    )
    if not stopped:
        return []
    withdrawn = list(
        OutboundMessage.objects.filter(
            scope, send_state=SendState.WITHDRAWN, cancel_completed_at=now
        ).order_by("pk")
    )
    for message in withdrawn:
        message_cancelled.send(sender=OutboundMessage, message=message, via=via)
    return [m.pk for m in withdrawn]
