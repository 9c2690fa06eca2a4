"""Composing messages: validate what the caller asked for and record it, sending nothing.

One ``OutboundMessage`` per recipient, ``QUEUED``, each with its own
``climsgid`` (the caller's, for one recipient, or a generated one) that the
database keeps unique.  Whatever is wrong with the request raises
:class:`InvalidMessage` and records nothing.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..conf import DEFAULT_ACCOUNT, account_aliases
from ..exceptions import InvalidMessage
from ..models import OutboundMessage, SendState
from ..protocol.msisdn import normalize_msisdn
from ..protocol.replies import is_client_message_id

_SENDER = re.compile(r"[0-9]{1,16}|[A-Za-z0-9 ]{1,11}")
MIN_DELAY_MINUTES = 10
MAX_AHEAD = timedelta(days=7)


@dataclass(frozen=True)
class SendOptions:
    """How a message is to be sent: sender, schedule and ``sendmsg`` options."""

    sender: str = ""
    deliver_in_minutes: int | None = None
    scheduled_at: datetime | None = None
    callback: int | None = None
    concat: int | None = None
    validity_minutes: int | None = None

    def gateway_fields(self, now: datetime) -> tuple[dict[str, Any], datetime | None]:
        """The ``sendmsg`` options to store, and when delivery is due; or InvalidMessage."""
        if self.sender and not _SENDER.fullmatch(self.sender):
            raise InvalidMessage("Sender must be up to 16 digits or 11 letters and digits.")
        fields, scheduled_for = self._schedule(now)
        for name, value, low, high in (
            ("callback", self.callback, 0, 7),
            ("concat", self.concat, 1, 35),
            ("validity", self.validity_minutes, 1, 10080),
        ):
            if value is not None:
                if (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or not low <= value <= high
                ):
                    raise InvalidMessage(f"{name} must be an integer from {low} to {high}.")
                fields[name] = value
        return fields, scheduled_for

    def _schedule(self, now: datetime) -> tuple[dict[str, Any], datetime | None]:
        minutes, at = self.deliver_in_minutes, self.scheduled_at
        if minutes is not None and at is not None:
            raise InvalidMessage("Give deliver_in_minutes or scheduled_at, not both.")
        if minutes is not None:
            if not MIN_DELAY_MINUTES <= minutes <= MAX_AHEAD.total_seconds() // 60:
                raise InvalidMessage("deliver_in_minutes must be between 10 and 10080 (7 days).")
            return {"deliv_time": minutes}, now + timedelta(minutes=minutes)
        if at is not None:
            if timezone.is_naive(at):
                raise InvalidMessage("scheduled_at must be timezone-aware.")
            if not now < at <= now + MAX_AHEAD:
                raise InvalidMessage("scheduled_at must be in the future and at most 7 days ahead.")
            return {"scheduled_time": int(at.timestamp())}, at
        return {}, None


def normalize_recipient(number: str) -> str:
    digits = normalize_msisdn(number)
    if digits is None:
        raise InvalidMessage(f"Not an international phone number: {number[:32]!r}")
    return digits


def create_messages(
    recipients: str | Sequence[str],
    text: str,
    *,
    climsgid: str | None = None,
    account: str = DEFAULT_ACCOUNT,
    **options: Any,
) -> list[OutboundMessage]:
    """Validate and record one ``QUEUED`` message per recipient; send nothing yet.

    *account* is the alias of the Clickatell account to send through (one of
    ``ACCOUNTS``, or ``"default"``); every later request about the messages
    uses it.  *options* are the fields of :class:`SendOptions` (``sender``,
    ``deliver_in_minutes``, ``scheduled_at``, ``callback``, ``concat``,
    ``validity_minutes``).
    """
    _check_account(account)
    try:
        how = SendOptions(**options)
    except TypeError as exc:
        raise InvalidMessage(str(exc)) from None
    numbers = _recipients(recipients)
    if not text:
        raise InvalidMessage("Empty message.")
    _check_climsgid(climsgid, len(numbers))
    fields, scheduled_for = how.gateway_fields(timezone.now())
    rows = [
        OutboundMessage(
            recipient=number,
            sender=how.sender,
            text=text,
            climsgid=climsgid or uuid.uuid4().hex,
            scheduled_for=scheduled_for,
            send_state=SendState.QUEUED,
            send_options=fields,
            account=account,
        )
        for number in numbers
    ]
    try:
        with transaction.atomic():
            return OutboundMessage.objects.bulk_create(rows)
    except IntegrityError:
        # Another caller took the same climsgid between the check and the insert.
        raise InvalidMessage("climsgid is already used by another message.") from None


def _recipients(recipients: str | Sequence[str]) -> list[str]:
    numbers = [recipients] if isinstance(recipients, str) else list(recipients)
    normalized = [normalize_recipient(n) for n in numbers]
    if not normalized:
        raise InvalidMessage("No recipients.")
    if len(set(normalized)) != len(normalized):
        raise InvalidMessage("A recipient is listed twice.")
    return normalized


def _check_account(account: object) -> None:
    configured = account_aliases()
    if account not in configured:
        raise InvalidMessage(
            f"No Clickatell account named {str(account)[:40]!r} "
            f"(configured: {', '.join(configured)})."
        )


def _check_climsgid(climsgid: str | None, recipients: int) -> None:
    if climsgid is None:
        return
    if recipients > 1:
        raise InvalidMessage("A climsgid names one message: give it for one recipient only.")
    if not is_client_message_id(climsgid):
        raise InvalidMessage("climsgid must be 1 to 32 letters and digits.")
    if OutboundMessage.objects.filter(climsgid=climsgid).exists():
        raise InvalidMessage("climsgid is already used by another message.")
