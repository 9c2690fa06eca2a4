"""The documented entry points for code: send SMS, stop them, refresh their status.

These are thin faces over :mod:`django_clickatell.services`: with
``wait=False`` (the default) the work is queued for a Celery worker once the
current transaction commits; with ``wait=True`` it happens in this process.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.db.models import QuerySet

from . import dispatch
from .models import OutboundMessage, Via
from .services import cancel_requests, cancelling, composing, sending
from .services.composing import InvalidMessage

__all__ = ["InvalidMessage", "cancel_sms", "send_sms"]


def send_sms(
    to: str | Sequence[str],
    text: str,
    *,
    sender: str = "",
    climsgid: str | None = None,
    deliver_in_minutes: int | None = None,
    scheduled_at: datetime | None = None,
    callback: int | None = None,
    concat: int | None = None,
    validity_minutes: int | None = None,
    wait: bool = False,
) -> list[OutboundMessage]:
    """Record one message per recipient and send them (now or scheduled).

    Raises :class:`InvalidMessage` (nothing recorded) for a bad number, an
    empty text, a schedule outside Clickatell's 10 minutes to 7 days, …
    Text outside the GSM alphabet is sent as Unicode automatically.
    """
    messages = composing.create_messages(
        to,
        text,
        sender=sender,
        climsgid=climsgid,
        deliver_in_minutes=deliver_in_minutes,
        scheduled_at=scheduled_at,
        callback=callback,
        concat=concat,
        validity_minutes=validity_minutes,
    )
    pks = [m.pk for m in messages]
    if wait:
        sending.send_messages(pks, via=Via.API)
    else:
        dispatch.enqueue_sending(pks, via=Via.API)
    return list(OutboundMessage.objects.filter(pk__in=pks).order_by("pk"))


def cancel_sms(
    messages: QuerySet[OutboundMessage], *, wait: bool = False, actor: Any = None
) -> cancel_requests.CancellationRequest:
    """Stop the scheduled delivery of *messages*; see :mod:`.services.cancellation`."""
    result = cancel_requests.request_cancellation(messages, via=Via.API, actor=actor)
    if wait:
        cancelling.cancel_messages(result.message_pks, via=Via.API, actor=actor)
    else:
        dispatch.enqueue_cancellation(result.message_pks, via=Via.API, actor=actor)
    return result
