"""Validate the fields of a status callback pushed by Clickatell (pure, no I/O).

Fields: ``api_id``, ``apiMsgId``, ``cliMsgId`` (may be empty), ``to``, ``from``,
``timestamp`` (unix seconds), ``status`` (``003``), ``charge`` (``0.300000``).
Anything malformed or out of range raises :class:`InvalidCallback` with a short
reason that is safe to return to the caller.  Whatever is accepted fits the
columns it is stored in (``OutboundMessage`` and ``UnmatchedCallback``), so a
callback is answered 200 or 400, never 500.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

from .codes import normalize_status
from .errors import InvalidCallback
from .msisdn import is_msisdn
from .replies import is_client_message_id, is_message_id

#: The columns the fields land in (``models.py``; a test keeps the two in step).
APIMSGID_MAX_LENGTH = 64
CLIMSGID_MAX_LENGTH = 32
RECIPIENT_MAX_LENGTH = 32
SENDER_MAX_LENGTH = 32
STATUS_MAX_LENGTH = 8
CHARGE_MAX_DIGITS = 12
CHARGE_DECIMAL_PLACES = 6

_API_ID = re.compile(r"[0-9]{1,32}")
_SENDER = re.compile(r"[\w +.-]{0,32}")
# Plain ASCII decimal notation, as Clickatell writes charges (``0.300000``): no sign,
# exponent, underscores or non-ASCII digits, all of which ``Decimal()`` would accept.
_CHARGE = re.compile(r"[0-9]+(?:\.[0-9]*)?|\.[0-9]+")
_CHARGE_QUANTUM = Decimal(1).scaleb(-CHARGE_DECIMAL_PLACES)
_CHARGE_LIMIT = Decimal(10) ** (CHARGE_MAX_DIGITS - CHARGE_DECIMAL_PLACES)
# Room for every storable charge, whatever the thread's decimal context says.
_CHARGE_CONTEXT = Context(prec=CHARGE_MAX_DIGITS + 2, rounding=ROUND_HALF_EVEN)
# Clickatell's HTTP API predates 2001 timestamps by little; refuse nonsense.
_EARLIEST = 946684800  # 2000-01-01
_LATEST = 4102444800  # 2100-01-01
MAX_FIELD = 256


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
    if not _API_ID.fullmatch(api_id):
        raise InvalidCallback("missing or malformed api_id")
    apimsgid = params.get("apiMsgId", "")
    if not is_message_id(apimsgid):
        raise InvalidCallback("missing or malformed apiMsgId")
    climsgid = params.get("cliMsgId", "")
    if climsgid and not is_client_message_id(climsgid):
        raise InvalidCallback("malformed cliMsgId")
    to = params.get("to", "")
    if to and not is_msisdn(to):
        raise InvalidCallback("malformed to")
    sender = params.get("from", "")
    if not _SENDER.fullmatch(sender):
        raise InvalidCallback("malformed from")
    callback = StatusCallback(
        api_id=api_id,
        apimsgid=apimsgid,
        climsgid=climsgid,
        to=to,
        sender=sender,
        status=_status(params.get("status", "")),
        reported_at=_timestamp(params.get("timestamp", "")),
        charge=_charge(params.get("charge", "")),
    )
    _check_columns(callback)
    return callback


#: A legacy callback pushed as JSON is one flat object of a few short fields.
MAX_JSON_FIELDS_BODY = 8192


def json_fields(body: bytes) -> dict[str, str]:
    """The fields of a legacy callback pushed as a JSON POST (Clickatell's later option):
    one flat object, numbers given as text (``"timestamp": 1218007814``), read into the
    same fields as the GET/POST form so :func:`parse_callback` checks them alike.

    A body that is not one flat JSON object of strings and numbers raises
    :class:`InvalidCallback`; nested values are never walked (no recursion on input).
    """
    if len(body) > MAX_JSON_FIELDS_BODY:
        raise InvalidCallback("body too large")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InvalidCallback("malformed JSON body") from None
    if not isinstance(data, dict):
        raise InvalidCallback("JSON body is not an object")
    fields: dict[str, str] = {}
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            if value is None:
                continue  # an empty field (a cliMsgId Clickatell does not have)
            raise InvalidCallback(f"malformed {str(key)[:20]}")
        fields[key] = value if isinstance(value, str) else _number(value)
    return fields


def _number(value: int | float) -> str:
    """A JSON number as the form would carry it (``1218007814``, ``0.3``)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _status(value: str) -> str:
    try:
        status = normalize_status(value)
    except ValueError:
        raise InvalidCallback("missing or malformed status") from None
    if len(status) > 3:
        raise InvalidCallback("malformed status")
    return status


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
    """The charge as stored: six decimal places, below 10**6 *after* rounding.

    Checking before rounding let ``999999.9999999`` through; it rounds to
    ``1000000.000000``, which the column cannot hold (a 500 at save time).
    """
    if not value:
        return None
    if not _CHARGE.fullmatch(value):
        raise InvalidCallback("malformed charge")
    charge = Decimal(value)
    if charge >= _CHARGE_LIMIT:
        raise InvalidCallback("charge out of range")
    try:
        charge = charge.quantize(_CHARGE_QUANTUM, context=_CHARGE_CONTEXT)
    except InvalidOperation:  # pragma: no cover - below the limit it always fits
        raise InvalidCallback("charge out of range") from None
    if charge >= _CHARGE_LIMIT:
        raise InvalidCallback("charge out of range")
    return charge


def _check_columns(callback: StatusCallback) -> None:
    """The last word on "can be stored": every text field fits its column."""
    for value, limit, name in (
        (callback.apimsgid, APIMSGID_MAX_LENGTH, "apiMsgId"),
        (callback.climsgid, CLIMSGID_MAX_LENGTH, "cliMsgId"),
        (callback.to, RECIPIENT_MAX_LENGTH, "to"),
        (callback.sender, SENDER_MAX_LENGTH, "from"),
        (callback.status, STATUS_MAX_LENGTH, "status"),
    ):
        if len(value) > limit or "\x00" in value:
            raise InvalidCallback(f"{name} out of range")
