"""Status callbacks pushed by Clickatell: applied to their message, or kept until it appears.

Clickatell retries callbacks for days, so duplicates and reordering are
normal: each goes through the one lifecycle rule (:func:`.status.apply_status`)
and is logged whether it changed anything or not.  A callback for a message
this database does not know yet is kept (``UnmatchedCallback``) and applied
when the message learns its ``apimsgid``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.models import Q

from ..conf import DEFAULT_ACCOUNT, ClickatellSettings
from ..exceptions import InvalidCallback
from ..gateway.backends import account_settings
from ..models import OutboundMessage, UnmatchedCallback, Via
from ..protocol import one_api
from ..protocol.callbacks import StatusCallback, parse_callback
from . import recording
from .status import apply_status

logger = logging.getLogger("django_clickatell.status")


class CallbackOutcome:
    APPLIED = "applied"
    IGNORED = "ignored"  # duplicate, stale, or after a final status
    UNMATCHED = "unmatched"


def receive_callback(
    params: Mapping[str, str], *, api_id: str, account: str = DEFAULT_ACCOUNT
) -> str:
    """Validate a pushed callback's fields and record it; raises ``InvalidCallback``.

    A callback for another API product (``api_id``) is refused as invalid too:
    it cannot concern this account's messages.  It touches *account*'s messages only.
    """
    callback = parse_callback(params)
    if callback.api_id != api_id:
        raise ForeignCallback("Unknown api_id")
    return record_callback(callback, account=account)


class ForeignCallback(InvalidCallback):
    """The callback names another API product than the configured one."""


def record_callback(callback: StatusCallback, *, account: str = DEFAULT_ACCOUNT) -> str:
    """Apply a status callback to its message, or keep it for later matching."""
    mine = OutboundMessage.objects.filter(account=account)
    message = mine.filter(apimsgid=callback.apimsgid).first()
    extra: dict[str, Any] = {}
    if message is None and callback.climsgid:
        message = mine.filter(climsgid=callback.climsgid, apimsgid__isnull=True).first()
        extra["apimsgid"] = callback.apimsgid
    if message is None:
        return _keep_unmatched(
            account=account,
            apimsgid=callback.apimsgid,
            climsgid=callback.climsgid,
            recipient=callback.to,
            sender=callback.sender,
            status=callback.status,
            reported_at=callback.reported_at,
            charge=callback.charge,
        )
    if callback.charge is not None:
        extra["charge"] = callback.charge
    applied = _apply_callback(message, callback.status, callback.reported_at, extra=extra)
    return CallbackOutcome.APPLIED if applied else CallbackOutcome.IGNORED


def _apply_callback(
    message: OutboundMessage,
    status: str,
    reported_at: datetime | None,
    *,
    extra: dict[str, Any] | None = None,
    note: str = "",
    gateway_status: str = "",
) -> bool:
    """Apply a callback's status and log it in the exchange log, applied or not.

    *gateway_status* is the API's own name for the status (the One API's
    ``SENT_TO_SUPPLIER``), shown first in the exchange's detail.
    """
    applied = apply_status(message, status, reported_at=reported_at, via=Via.CALLBACK, extra=extra)
    exchange = recording.answered(
        recording.new_exchange(message.pk, "callback", via=Via.CALLBACK), status
    )
    exchange.duration_ms = None
    detail = (
        note
        if applied
        else "not applied: duplicate, earlier in the lifecycle than the recorded status, "
        "or after a final one"
    )
    if gateway_status:
        detail = f"{gateway_status}; {detail}" if detail else gateway_status
    exchange.detail = recording.clean_text(detail)
    recording.save(exchange)
    return applied


def _keep_unmatched(**fields: Any) -> str:
    """Keep a callback for a message not known yet, then look for the message once more.

    The send that learns the ``apimsgid`` matches kept callbacks right after
    recording it; a callback looked up just before that record and kept just
    after that matching would be missed by both.  Each side writes, then reads what
    the other wrote, so at least one of them sees the other; a row is applied by
    whichever claims it first (:func:`match_unmatched_callbacks`).
    """
    UnmatchedCallback.objects.create(**fields)
    mine = Q(account=fields["account"]) if fields.get("account") else Q()
    message = OutboundMessage.objects.filter(mine, apimsgid=fields["apimsgid"]).first()
    if message is not None and match_unmatched_callbacks(message):
        return CallbackOutcome.APPLIED
    logger.info("Status callback for unknown message %s kept for matching", fields["apimsgid"])
    return CallbackOutcome.UNMATCHED


def match_unmatched_callbacks(message: OutboundMessage) -> int:
    """Apply callbacks that arrived before *message* knew its ``apimsgid``.

    Each kept row is claimed (a conditional ``UPDATE``) before it is applied, so a
    callback the send and the callback view both find is applied once.
    """
    if not message.apimsgid:
        return 0
    pending = list(
        UnmatchedCallback.objects.filter(
            Q(account="") | Q(account=message.account),  # a JSON callback: its account only
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
            _apply_callback(
                message, callback.status, callback.reported_at, note="matched after arrival"
            )
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
    callback.  Each event goes through the one lifecycle rule: duplicates and
    events older than the recorded status are logged and ignored; an unknown
    One API status means ``001`` and never replaces anything recorded.  Events
    for messages this database does not know are kept (``UnmatchedCallback``).
    *account* is the alias the callback URL named (its secret checked by the
    view): the events touch that account's messages only, so one account's
    secret can never change what another account's messages say.
    """
    events = one_api.parse_callback(body)
    return [_record_event(account, event) for event in events]


def _record_event(account: str, event: one_api.StatusEvent) -> str:
    status = event.status.meaning
    mine = OutboundMessage.objects.filter(account=account)
    message = mine.filter(apimsgid=event.apimsgid).first()
    extra: dict[str, Any] = {}
    if message is None and event.climsgid:
        message = mine.filter(climsgid=event.climsgid, apimsgid__isnull=True).first()
        extra["apimsgid"] = event.apimsgid
    if message is None:
        if OutboundMessage.objects.filter(apimsgid=event.apimsgid).exists():
            # Another account's message: not this account's to report on.
            logger.warning(
                "One API callback on account %r names another account's message %s: ignored",
                account[:40],
                event.apimsgid,
            )
            return CallbackOutcome.IGNORED
        return _keep_unmatched(
            apimsgid=event.apimsgid,
            climsgid=event.climsgid,
            account=account,
            status=status,
            reported_at=event.reported_at,
        )
    applied = _apply_callback(
        message, status, event.reported_at, extra=extra, gateway_status=event.status.name
    )
    return CallbackOutcome.APPLIED if applied else CallbackOutcome.IGNORED
