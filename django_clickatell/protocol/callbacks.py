"""Validate the fields of a status callback pushed by Clickatell (pure, no I/O).

Fields: ``api_id``, ``apiMsgId``, ``cliMsgId`` (may be empty), ``to``, ``from``,
``timestamp`` (unix seconds), ``status`` (``003``), ``charge`` (``0.300000``).
Anything malformed raises :class:`InvalidCallback` with a short reason that is
safe to return to the caller.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

from .codes import normalize_status
from .replies import is_client_message_id, is_message_id

_MSISDN = re.compile(r"\+?[0-9]{3,20}")
_SENDER = re.compile(r"[\w +.-]{0,32}")
# Clickatell's HTTP API predates 2001 timestamps by little; refuse nonsense.
_EARLIEST = 946684800  # 2000-01-01
_LATEST = 4102444800  # 2100-01-01
MAX_FIELD = 256


class InvalidCallback(ValueError):
    """The callback cannot be accepted; ``str(exc)`` is a short, safe reason."""


@dataclass(frozen=True)
class StatusCallback:
    api_id: str
    apimsgid: str
    climsgid: str
    to: str
    sender: str
    status: str
    reported_at: datetime | None
    charge: Decimal | None


def parse_callback(params: Mapping[str, str]) -> StatusCallback:
    for key, value in params.items():
        if len(key) > 32 or len(value) > MAX_FIELD:
            raise InvalidCallback("field too long")
    api_id = params.get("api_id", "")
    if not api_id.isascii() or not api_id.isdigit():
        raise InvalidCallback("missing or malformed api_id")
    apimsgid = params.get("apiMsgId", "")
    if not is_message_id(apimsgid):
        raise InvalidCallback("missing or malformed apiMsgId")
    climsgid = params.get("cliMsgId", "")
    if climsgid and not is_client_message_id(climsgid):
        raise InvalidCallback("malformed cliMsgId")
    try:
        status = normalize_status(params.get("status", ""))
    except ValueError:
        raise InvalidCallback("missing or malformed status") from None
    if len(status) > 3:
        raise InvalidCallback("malformed status")
    to = params.get("to", "")
    if to and not _MSISDN.fullmatch(to):
        raise InvalidCallback("malformed to")
    sender = params.get("from", "")
    if not _SENDER.fullmatch(sender):
        raise InvalidCallback("malformed from")
    return StatusCallback(
        api_id=api_id,
        apimsgid=apimsgid,
        climsgid=climsgid,
        to=to,
        sender=sender,
        status=status,
        reported_at=_timestamp(params.get("timestamp", "")),
        charge=_charge(params.get("charge", "")),
    )


def _timestamp(value: str) -> datetime | None:
    if not value:
        return None
    if not value.isascii() or not value.isdigit():
        raise InvalidCallback("malformed timestamp")
    seconds = int(value)
    if not _EARLIEST <= seconds <= _LATEST:
        raise InvalidCallback("timestamp out of range")
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


def _charge(value: str) -> Decimal | None:
    if not value:
        return None
    try:
        charge = Decimal(value)
    except InvalidOperation:
        raise InvalidCallback("malformed charge") from None
    if not charge.is_finite() or charge < 0 or charge >= 10**6:
        raise InvalidCallback("malformed charge")
    return charge.quantize(Decimal("0.000001"))
