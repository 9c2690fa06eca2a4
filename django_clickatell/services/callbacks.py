"""Status callbacks pushed by Clickatell: applied to their message, or kept until it appears.

Clickatell retries callbacks for days, so duplicates and reordering are
normal: each goes through the one lifecycle rule (:func:`.status.apply_status`),
ordered by the time the callback says the status happened, and is logged
whether it changed anything or not.  A callback speaks for one account's
messages only -- the account whose URL (One API) or ``api_id`` (legacy) it came
to: a message of another account is never touched, and a message this
database does not know yet is kept (``UnmatchedCallback``) and applied when the
message learns its ``apimsgid``.  A callback that names a message whose send
is in doubt proves Clickatell accepted it, and settles it
(:func:`.status.settle_send`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q

from ..conf import DEFAULT_ACCOUNT, ClickatellSettings
from ..exceptions import InvalidCallback
from ..gateway.backends import account_settings
from ..models import OutboundMessage, SendState, UnmatchedCallback, Via
from ..protocol import one_api
from ..protocol.callbacks import StatusCallback, parse_callback
from . import recording
from .status import apply_status, settle_send

logger = logging.getLogger("django_clickatell.status")


class CallbackOutcome:
    APPLIED = "applied"
    IGNORED = "ignored"  # duplicate, stale, after a final status, or another account's
    UNMATCHED = "unmatched"


#: Send states in which a callback naming the message may settle its send.
_DOUBTFUL = frozenset({SendState.SENDING, SendState.VERIFYING, SendState.UNKNOWN})


@dataclass(frozen=True)
class _Report:
    """One status report of a callback, whichever API's form it came in."""

    apimsgid: str
    climsgid: str
    status: str
    reported_at: datetime | None
    charge: Decimal | None = None
    recipient: str = ""
    sender: str = ""
    #: The API's own name for the status (the One API's ``SENT_TO_SUPPLIER``).
    gateway_status: str = ""


def receive_callback(
    params: Mapping[str, str], *, api_id: str, account: str = DEFAULT_ACCOUNT
) -> str:
    """Validate a pushed callback's fields and record it for *account*; raises ``InvalidCallback``.

    A callback for another API product (``api_id``) is refused as invalid too:
    it cannot concern this account's messages.  *account* is the alias of the
    account that owns *api_id* (the view routes by it): the callback touches
    that account's messages only.
    """
    callback = parse_callback(params)
    if callback.api_id != api_id:
        raise ForeignCallback("Unknown api_id")
    return record_callback(callback, account=account)


class ForeignCallback(InvalidCallback):
    """The callback names another API product than the configured one."""


def record_callback(callback: StatusCallback, *, account: str = DEFAULT_ACCOUNT) -> str:
    """Apply a legacy status callback to its message on *account*, or keep it for later."""
    return _record(
        account,
        _Report(
            apimsgid=callback.apimsgid,
            climsgid=callback.climsgid,
            status=callback.status,
            reported_at=callback.reported_at,
            charge=callback.charge,
            recipient=callback.to,
            sender=callback.sender,
        ),
    )


def _record(account: str, report: _Report) -> str:
    """Find the report's message among *account*'s, apply it, or keep it for matching.

    Looked up by ``apimsgid``, then by ``climsgid`` among messages that have no
    id yet (a send whose reply was lost, or still being recorded).  Only a
    message that truly belongs to another account refuses the report (logged,
    not kept: it is not this account's news).  The send may be recording the id
    while this runs: a message found under it on this account after the first
    look missed is this account's and is applied; one recorded after both looks
    is found when the kept report looks again (:func:`_keep_unmatched`).
    """
    mine = OutboundMessage.objects.filter(account=account)
    message = mine.filter(apimsgid=report.apimsgid).first()
    if message is None:
        holder = (
            OutboundMessage.objects.filter(apimsgid=report.apimsgid)
            .values_list("account", flat=True)
            .first()
        )
        if holder is not None and holder != account:
            logger.warning(
                "Status callback on account %r names another account's message %s: ignored",
                account[:40],
                report.apimsgid,
            )
            return CallbackOutcome.IGNORED
        if holder is not None:  # this account's: its send recorded the id meanwhile
            message = mine.filter(apimsgid=report.apimsgid).first()
        elif report.climsgid:
            message = mine.filter(climsgid=report.climsgid, apimsgid__isnull=True).first()
    if message is None:
        return _keep_unmatched(account, report)
    had_id = bool(message.apimsgid)
    applied = _apply_callback(message, report)
    if not had_id and message.apimsgid:
        # It learned its id from this report: reports kept under that id are its too.
        applied = bool(match_unmatched_callbacks(message)) or applied
    return CallbackOutcome.APPLIED if applied else CallbackOutcome.IGNORED


def _apply_callback(message: OutboundMessage, report: _Report, *, note: str = "") -> bool:
    """Apply a report's status, settle a send in doubt, and log it, applied or not.

    The report names the message, so Clickatell has it: a send in doubt is
    settled (or, while a run holds it, the id recorded) before the status is
    applied.  Skipped -- no query -- for the usual message, sent under this id.
    """
    settled = False
    if message.apimsgid != report.apimsgid or message.send_state in _DOUBTFUL:
        settled = settle_send(message, report.apimsgid)
    extra: dict[str, Any] = {} if report.charge is None else {"charge": report.charge}
    applied = apply_status(
        message, report.status, reported_at=report.reported_at, via=Via.CALLBACK, extra=extra
    )
    exchange = recording.answered(
        recording.new_exchange(message.pk, "callback", via=Via.CALLBACK), report.status
    )
    exchange.duration_ms = None
    details = [report.gateway_status] if report.gateway_status else []
    if applied:
        details += [note] if note else []
    else:
        details.append(
            "not applied: duplicate, older than the recorded status, earlier in the "
            "lifecycle, or after a final one"
        )
    if settled:
        details.append("the send was in doubt: Clickatell has it, recorded sent")
    exchange.detail = recording.clean_text("; ".join(details))
    recording.save(exchange)
    return applied


def _keep_unmatched(account: str, report: _Report) -> str:
    """Keep a callback for a message not known yet, then look for the message once more.

    The send that learns the ``apimsgid`` matches kept callbacks right after
    recording it; a callback looked up just before that record and kept just
    after that matching would be missed by both.  Each side writes, then reads what
    the other wrote, so at least one of them sees the other; a row is applied by
    whichever claims it first (:func:`match_unmatched_callbacks`).
    """
    UnmatchedCallback.objects.create(
        apimsgid=report.apimsgid,
        climsgid=report.climsgid,
        account=account,
        recipient=report.recipient,
        sender=report.sender,
        status=report.status,
        reported_at=report.reported_at,
        charge=report.charge,
    )
    message = OutboundMessage.objects.filter(account=account, apimsgid=report.apimsgid).first()
    if message is not None and match_unmatched_callbacks(message):
        return CallbackOutcome.APPLIED
    logger.info("Status callback for unknown message %s kept for matching", report.apimsgid)
    return CallbackOutcome.UNMATCHED


def match_unmatched_callbacks(message: OutboundMessage) -> int:
    """Apply callbacks that arrived before *message* knew its ``apimsgid``.

    Each kept row is claimed (a conditional ``UPDATE``) before it is applied, so a
    callback the send and the callback view both find is applied once.  Only
    rows kept for the message's own account match (and rows kept before
    callbacks were scoped to an account, whose account is empty).
    """
    if not message.apimsgid:
        return 0
    pending = list(
        UnmatchedCallback.objects.filter(
            Q(account="") | Q(account=message.account),
            apimsgid=message.apimsgid,
            matched_message__isnull=True,
        ).order_by("reported_at", "pk")
    )
    applied = 0
    for callback in pending:
        claimed = UnmatchedCallback.objects.filter(
            pk=callback.pk, matched_message__isnull=True
        ).update(matched_message=message)
        if claimed:
            report = _Report(
                apimsgid=callback.apimsgid,
                climsgid=callback.climsgid,
                status=callback.status,
                reported_at=callback.reported_at,
                charge=callback.charge,
            )
            _apply_callback(message, report, note="matched after arrival")
            applied += 1
    return applied


# -- JSON callbacks (the One API) ----------------------------------------------------------


def callback_account(alias: str) -> ClickatellSettings | None:
    """The settings of the account a JSON callback names, or None if there is no such account."""
    try:
        return account_settings(alias)
    except ImproperlyConfigured:
        return None


def receive_json_callback(account: str, body: bytes) -> list[str]:
    """Apply every status event of a One API callback; one outcome per event, in order.

    Raises ``InvalidCallback`` (nothing applied) for a body that is not a
    callback.  Each event goes through the one lifecycle rule, ordered by its
    own millisecond ``timestamp``: duplicates and events older than the
    recorded status are logged and ignored; an unknown One API status means
    ``001`` and never replaces anything recorded.  Events for messages this
    database does not know are kept (``UnmatchedCallback``).  *account* is the
    alias the callback URL named (its secret checked by the view): the events
    touch that account's messages only, so one account's secret can never
    change what another account's messages say.
    """
    events = one_api.parse_callback(body)
    return [_record(account, _event_report(event)) for event in events]


def _event_report(event: one_api.StatusEvent) -> _Report:
    return _Report(
        apimsgid=event.apimsgid,
        climsgid=event.climsgid,
        status=event.status.meaning,
        reported_at=event.reported_at,
        gateway_status=event.status.name,
    )
