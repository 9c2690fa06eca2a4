"""Keeping each message's status current: ``querymsg`` refreshes and status callbacks.

Every status, whatever its source -- a ``delmsg`` or ``querymsg`` reply, a
callback -- is written through :func:`supersedes_q` / :func:`status_updates`,
the database form of the one ordering rule in
:mod:`django_clickatell.protocol.lifecycle`: a final status is never replaced,
a later stage of the lifecycle wins whatever the clocks say, two reports at the
same stage are ordered by when the gateway says they happened (the report's
own time: a callback's ``timestamp``, a One API status's ``timestamp``; the
time it arrived only where the API gives none), and a report from the future
cannot freeze a message.  Callbacks are retried by Clickatell for days, so
duplicates and reordering are normal.

A report that names a message also proves Clickatell has it: :func:`settle_send`
turns a send in doubt into "sent" -- without fighting a run that holds it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from ..conf import app_settings
from ..models import (
    CancelState,
    OutboundMessage,
    SendState,
)
from ..protocol.codes import CANCELLED_STATUS
from ..protocol.lifecycle import (
    FINAL_RANK,
    clamp,
    known_codes,
    lifecycle_rank,
    ranks_below,
    ranks_equal,
)
from ..signals import message_cancelled, message_status_changed
from . import claims

logger = logging.getLogger("django_clickatell.status")


def supersedes_q(new: str, when: datetime) -> Q:
    """Messages whose recorded status a report of *new* at *when* replaces.

    The same ranks as :func:`~django_clickatell.protocol.lifecycle.supersedes`,
    as a filter, so the decision and the write are one atomic ``UPDATE``.
    *when* must be clamped already.
    """
    rank = lifecycle_rank(new)
    unknown = ~Q(status__in=known_codes())
    below_known, below_unknown = ranks_below(rank)
    earlier = Q(status__in=below_known)
    if below_unknown:
        earlier |= unknown
    if rank == FINAL_RANK:
        return earlier  # a final status replaces anything not final, and nothing final
    equal_known, equal_unknown = ranks_equal(rank)
    same_stage = Q(status__in=equal_known - {new})
    if equal_unknown:
        same_stage |= unknown & ~Q(status=new)
    newer = Q(status_changed_at__isnull=True) | Q(status_changed_at__lte=when)
    return earlier | (same_stage & newer)


def status_updates(new: str, reported_at: datetime | None) -> dict[str, Any]:
    """``UPDATE`` values that record *new* only where the rule lets it replace the old."""
    when = clamp(reported_at, timezone.now())
    applies = supersedes_q(new, when)
    return {
        "status": Case(When(applies, then=Value(new)), default=F("status")),
        "status_changed_at": Case(When(applies, then=Value(when)), default=F("status_changed_at")),
    }


def apply_status(
    message: OutboundMessage,
    status: str,
    *,
    reported_at: datetime | None,
    via: str,
    extra: dict[str, Any] | None = None,
) -> bool:
    """Record *status* if the lifecycle rule lets it replace the recorded one; True if it did.

    One conditional ``UPDATE``, so two reports racing cannot both win.
    """
    now = timezone.now()
    when = clamp(reported_at, now)
    old_status = message.status
    updates: dict[str, Any] = {
        "status": status,
        "status_changed_at": when,
        "updated_at": now,
        **(extra or {}),
    }
    cancelled = status == CANCELLED_STATUS
    if cancelled:
        updates["cancel_state"] = CancelState.CANCELLED
        updates["cancel_completed_at"] = now
    changed = (
        OutboundMessage.objects.filter(pk=message.pk)
        .filter(supersedes_q(status, when))
        .update(**updates)
    )
    if not changed:
        if extra:
            OutboundMessage.objects.filter(pk=message.pk).update(**extra, updated_at=now)
        return False
    message.status, message.status_changed_at = status, when
    message_status_changed.send(
        sender=OutboundMessage, message=message, old_status=old_status, new_status=status, via=via
    )
    if cancelled:
        message.cancel_state = CancelState.CANCELLED
        message_cancelled.send(sender=OutboundMessage, message=message, via=via)
    return True


#: Sends whose outcome this app does not know: being checked (``verifying``), given up
#: on (``unknown``), or left ``sending`` with no id (a run died with its request on the
#: wire).  A report from Clickatell naming one of them settles it.
SEND_IN_DOUBT = Q(send_state__in=[SendState.VERIFYING, SendState.UNKNOWN]) | Q(
    send_state=SendState.SENDING, apimsgid__isnull=True
)


def settle_send(message: OutboundMessage, apimsgid: str) -> bool:
    """Clickatell reported on *message* under *apimsgid*: it accepted the send.  True if
    that settled a send in doubt (now ``sent``, with its id).

    One conditional ``UPDATE``, never a blind write:

    * only a send in doubt (:data:`SEND_IN_DOUBT`) is settled -- ``sent`` stays, and
      a message never handed over (queued, held, failed) is not made "sent" by a report;
    * only while no live run holds it (:func:`.claims.free_for`): a send or a
      verification in flight decides from its own reply, and a run whose lease lapsed
      finds its token gone and writes nothing over this;
    * only with the id it already has, or none -- and never an id another message
      holds (a replayed or hostile report), which the unique column would refuse.

    When a live run holds the message, the id alone is recorded if it had none (the
    same conditions), so the run -- and any later report -- finds what Clickatell said.
    """
    now = timezone.now()
    taken = OutboundMessage.objects.filter(apimsgid=apimsgid).exclude(pk=message.pk)
    if taken.exists():
        return False
    own = OutboundMessage.objects.filter(pk=message.pk).filter(
        Q(apimsgid__isnull=True) | Q(apimsgid=apimsgid)
    )
    settled: dict[str, Any] = {
        "send_state": SendState.SENT,
        "send_error": "",
        "apimsgid": apimsgid,
        "updated_at": now,
        **claims.RELEASED,
    }
    if not app_settings.keep_text:
        settled["text"] = ""  # as for any accepted send
    if own.filter(SEND_IN_DOUBT & claims.free_for("", now)).update(**settled):
        message.apimsgid, message.send_state = apimsgid, SendState.SENT
        logger.info("Message %s: a report from Clickatell settled its send in doubt", message.pk)
        return True
    if own.filter(apimsgid__isnull=True).update(apimsgid=apimsgid, updated_at=now):
        message.apimsgid = apimsgid
    return False
