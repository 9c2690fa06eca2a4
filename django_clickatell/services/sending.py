"""Sending SMS (``sendmsg``) exactly once -- or, where that cannot be known, honestly "unknown".

Records are written first (``QUEUED``), each with its own ``climsgid``, unique
in the database, so nothing is sent that is not recorded and every send can be
asked about.  A run claims the messages it sends with the one lease mechanism
(:mod:`.claims`) before any request leaves, then sends one message per
request, so each request carries exactly one ``climsgid``.

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
from . import claims
from .account import BackendPool
from .send_run import SendReport, SendRun

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
#: Claiming: a queued message is being sent; one left "sending" by a dead run is in doubt.
_ON_CLAIM = {
    "send_state": Case(
        When(send_state=SendState.QUEUED, then=Value(SendState.SENDING)),
        default=Value(SendState.VERIFYING),
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
    run = SendRun(BackendPool(backend), via, getattr(actor, "pk", None), task_id, report, keeper)
    # A transient failure stops the run for its account only: the release loop and the
    # requeue hand several accounts' messages on in one task, and one account's outage or
    # refused key must neither hold back nor fail another's (which it was never tried for).
    stopped: dict[str, str] = {}  # account -> the failure that stopped it
    reasons: dict[int, str] = {}
    untried: list[int] = []
    for message in claim.messages:
        if message.account in stopped:
            untried.append(message.pk)
            reasons[message.pk] = stopped[message.account]
        elif not run.process(message):
            stopped[message.account] = reasons[message.pk] = report.transient_error
    if stopped:
        _hand_back(untried, claim.token)
        report.retry = sorted(
            OutboundMessage.objects.filter(
                pk__in=list(reasons), send_state__in=[SendState.QUEUED, SendState.VERIFYING]
            ).values_list("pk", flat=True)
        )
        report.retry_reasons = {pk: reasons[pk] for pk in report.retry}
    return report


def _hand_back(pks: list[int], token: str) -> None:
    """Untried messages go back to waiting: queued ones to the queue, doubtful ones in doubt."""
    claims.release(
        pks,
        token,
        send_state=Case(
            When(send_state=SendState.SENDING, then=Value(SendState.QUEUED)),
            default=F("send_state"),
        ),
    )
