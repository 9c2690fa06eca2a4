"""Sending SMS (``sendmsg``) exactly once -- or, where that cannot be known, honestly "unknown".

Records are written first (``QUEUED``), each with its own ``climsgid``, unique
in the database, so nothing is sent that is not recorded and every send can be
asked about.  A run claims the messages it sends with the one lease mechanism
(:mod:`.claims`) before any request leaves, then sends one message per
request, so each request carries exactly one ``climsgid`` -- up to
``MAX_IN_FLIGHT`` requests at once, their outcomes written in groups
(:mod:`.send_run`).

Whenever the outcome of a request is not known -- a timeout, a reset, a 5xx,
an unreadable reply, a worker killed after the request left, the database cut
before the answer was written -- the message is ``VERIFYING``: before anything
is sent again, Clickatell is asked (``querymsg`` by ``climsgid``) whether it
has the message.  Only ``ERR 104`` ("unknown client message id") makes a
resend safe; what cannot be resolved ends ``UNKNOWN`` and is shown to the
operator, never resent blindly.  A command that was never sent (no usable
session) leaves the message ``QUEUED``.  Database errors never cause a resend:
a message whose run died is ``SENDING`` under an expired lease, which the next
run treats as in doubt.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.db.models import Case, F, Q, Value, When

from ..gateway.backends import Backend
from ..models import CancelState, OutboundMessage, SendState
from . import claims, recording
from .account import BackendPool
from .send_run import HAND_BACK, SendReport, SendRun

logger = logging.getLogger("django_clickatell.sending")


_FIELDS = (
    "pk",
    "recipient",
    "sender",
    "text",
    "climsgid",
    "account",
    "send_options",
    "send_state",
    "cancel_state",
    "apimsgid",
    "status",
)
#: What a send run may claim: queued and not being stopped, or in doubt.
_SENDABLE = Q(send_state=SendState.QUEUED, cancel_state=CancelState.NOT_REQUESTED) | Q(
    send_state__in=[SendState.SENDING, SendState.VERIFYING]
)
#: Claiming: a queued message stays queued, under the run's lease, until it is about to
#: be sent (then ``SENDING``, see :mod:`.send_run`); one left "sending" by a dead run is
#: in doubt.
_ON_CLAIM = {
    "send_state": Case(
        When(send_state=SendState.SENDING, then=Value(SendState.VERIFYING)),
        default=F("send_state"),
    )
}


def send_messages(
    message_pks: Iterable[int],
    *,
    via: str,
    actor: Any = None,
    task_id: str = "",
    backend: Backend | None = None,
) -> SendReport:
    """Send (or first verify) the given messages, each at most once; see the module docstring.

    Each message goes through its account's backend (*backend*, if given, for all).
    A transient failure stops the run for that message's account: the message it
    concerned and that account's untried ones are handed back and listed in
    ``report.retry`` (with the failure, per message, in ``report.retry_reasons``);
    other accounts' messages are still sent.  Messages another live
    run holds are listed in ``report.held_elsewhere``.
    """
    pks = sorted(set(message_pks))
    report = SendReport()
    claim = claims.acquire(
        pks, claims.new_token(), eligible=_SENDABLE, updates=_ON_CLAIM, fields=_FIELDS
    )
    report.held_elsewhere, report.retry_after = claim.held_elsewhere, claim.retry_after
    if not claim.messages:
        return report
    keeper = claims.LeaseKeeper(claim.token, [m.pk for m in claim.messages])
    actor_id = getattr(actor, "pk", None)
    run = SendRun(BackendPool(backend), via, actor_id, task_id, report, keeper, claim.messages)
    stopped = run.run()  # by account: see SendRun.run
    if stopped:
        untried = [m.pk for messages, _error in stopped.values() for m in messages]
        claims.release(untried, claim.token, **HAND_BACK)
        reasons = {
            m.pk: recording.describe(stopped[m.account][1])
            for m in claim.messages
            if m.account in stopped
        }
        report.retry = sorted(
            OutboundMessage.objects.filter(
                pk__in=list(reasons),
                send_state__in=[SendState.QUEUED, SendState.VERIFYING],
                claim_token="",
                waiting_for="",  # waiting for a reason, handed on when it is gone
            ).values_list("pk", flat=True)
        )
        report.retry_reasons = {pk: reasons[pk] for pk in report.retry}
    return report
