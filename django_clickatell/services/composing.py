"""Composing messages: validate what the caller asked for and record it, sending nothing.

One ``OutboundMessage`` per recipient, each with its own ``climsgid`` (the
caller's, for one recipient, or a generated one) that the database keeps
unique.  Whatever is wrong with the request raises :class:`InvalidMessage` and
records nothing.

A message is ``QUEUED`` (to be handed to a send run now), or -- scheduled
further ahead than Clickatell is to hold it (:mod:`.scheduling`) -- ``HELD``
here with the time it is handed over (``release_at``); the caller queues only
the former (:func:`to_send`).  Any schedule from 10 minutes to
:data:`~.scheduling.MAX_AHEAD` (a year) is accepted, whatever the backend.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..conf import DEFAULT_ACCOUNT, account_aliases, app_settings
from ..exceptions import InvalidMessage
from ..models import MessageTag, OutboundMessage, SendState
from ..protocol.msisdn import parse_recipient
from ..protocol.replies import is_client_message_id
from . import guards
from .scheduling import MAX_AHEAD, SCHEDULE_OPTIONS, HoldPolicy, current_policy

_SENDER = re.compile(r"[0-9]{1,16}|[A-Za-z0-9 ]{1,11}")
MIN_DELAY_MINUTES = 10
MAX_AHEAD_MINUTES = int(MAX_AHEAD.total_seconds() // 60)

#: Tags of one message, at most; each 1 to ``MAX_TAG_LENGTH`` printable characters.
MAX_TAGS = 10
MAX_TAG_LENGTH = 50
#: Metadata: at most this many keys (1 to ``MAX_METADATA_KEY_LENGTH`` characters each),
#: values a string of at most ``MAX_METADATA_VALUE_LENGTH`` characters or a finite number,
#: at most ``MAX_METADATA_BYTES`` as JSON.
MAX_METADATA_KEYS = 20
MAX_METADATA_KEY_LENGTH = 50
MAX_METADATA_VALUE_LENGTH = 500
MAX_METADATA_BYTES = 4000


@dataclass(frozen=True)
class SendOptions:
    """How a message is to be sent: sender, schedule and ``sendmsg`` options."""

    sender: str = ""
    deliver_in_minutes: int | None = None
    scheduled_for: datetime | None = None
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
        minutes, at = self.deliver_in_minutes, self.scheduled_for
        if minutes is not None and at is not None:
            raise InvalidMessage("Give deliver_in_minutes or scheduled_for, not both.")
        if minutes is not None:
            if (
                isinstance(minutes, bool)
                or not isinstance(minutes, int)
                or not MIN_DELAY_MINUTES <= minutes <= MAX_AHEAD_MINUTES
            ):
                raise InvalidMessage(
                    f"deliver_in_minutes must be between {MIN_DELAY_MINUTES} and "
                    f"{MAX_AHEAD_MINUTES} (a year)."
                )
            return {"deliv_time": minutes}, now + timedelta(minutes=minutes)
        if at is not None:
            if timezone.is_naive(at):
                raise InvalidMessage("scheduled_for must be timezone-aware.")
            if not now < at <= now + MAX_AHEAD:
                raise InvalidMessage(
                    "scheduled_for must be in the future and at most a year ahead."
                )
            return {"scheduled_time": int(at.timestamp())}, at
        return {}, None


def normalize_recipient(number: str, region: str | None = None) -> str:
    """*number* in the form stored and sent (E.164 digits, ``27831234567``), or InvalidMessage.

    The one MSISDN rule (:mod:`~django_clickatell.protocol.msisdn`), read with
    ``DEFAULT_REGION`` for national numbers unless *region* is given.
    """
    return parse_recipient(number, region or default_region())


def as_recipient(text: str) -> str | None:
    """*text* as a stored recipient if it is a whole phone number, else None (for searches)."""
    try:
        return normalize_recipient(text)
    except InvalidMessage:
        return None


def default_region() -> str | None:
    """``DEFAULT_REGION``: the region national numbers are read in, or None (refused)."""
    return app_settings.default_region or None


def create_messages(
    recipients: str | Sequence[str],
    text: str,
    *,
    climsgid: str | None = None,
    account: str = DEFAULT_ACCOUNT,
    policy: HoldPolicy | None = None,
    tags: Sequence[str] | None = None,
    metadata: dict[str, Any] | None = None,
    **options: Any,
) -> list[OutboundMessage]:
    """Validate and record one message per recipient, ``QUEUED`` or ``HELD``; send nothing.

    *account* is the alias of the Clickatell account to send through (one of
    ``ACCOUNTS``, or ``"default"``); every later request about the messages
    uses it.  *options* are the fields of :class:`SendOptions` (``sender``,
    ``deliver_in_minutes``, ``scheduled_for``, ``callback``, ``concat``,
    ``validity_minutes``).  A message due further ahead than *policy* lets
    Clickatell hold it (default: the account's backend and ``HOLD_LEAD_TIME``)
    is ``HELD``: its options keep no schedule (a relative ``deliv_time`` would
    count again from the release), ``scheduled_for`` is its due time and
    ``release_at`` when the release loop hands it over.  Hand :func:`to_send`
    of the result to the send path, never the held ones.

    The account's guards (:mod:`.guards`) refuse the whole call with
    ``GuardTripped`` (an ``InvalidMessage``) before anything is recorded.

    *tags* (the campaign handle: :func:`check_tags`) and *metadata* (a small JSON
    object: :func:`check_metadata`) are stored with every message, in the same
    transaction.
    """
    _check_account(account)
    tag_list = check_tags(tags)
    meta = check_metadata(metadata)
    try:
        how = SendOptions(**options)
    except TypeError as exc:
        raise InvalidMessage(str(exc)) from None
    numbers = _recipients(recipients)
    if not text:
        raise InvalidMessage("Empty message.")
    _check_climsgid(climsgid, len(numbers))
    now = timezone.now()
    fields, scheduled_for = how.gateway_fields(now)
    policy = policy or current_policy(account)
    state, release_at = SendState.QUEUED, None
    if scheduled_for is not None and policy.holds(scheduled_for, now):
        state, release_at = SendState.HELD, policy.release_at(scheduled_for)
        fields = {key: value for key, value in fields.items() if key not in SCHEDULE_OPTIONS}
    # The guards against runaway sending refuse the whole call, before anything is recorded.
    guards.check_compose(account, numbers, now_due=state == SendState.QUEUED)
    rows = [
        OutboundMessage(
            recipient=number,
            sender=how.sender,
            text=text,
            climsgid=climsgid or uuid.uuid4().hex,
            scheduled_for=scheduled_for,
            release_at=release_at,
            send_state=state,
            send_options=fields,
            account=account,
            metadata=meta,
        )
        for number in numbers
    ]
    try:
        with transaction.atomic():
            created = OutboundMessage.objects.bulk_create(rows)
            if tag_list:
                MessageTag.objects.bulk_create(
                    [MessageTag(message=m, tag=tag) for m in created for tag in tag_list]
                )
            return created
    except IntegrityError:
        # Another caller took the same climsgid between the check and the insert.
        raise InvalidMessage("climsgid is already used by another message.") from None


def check_tags(tags: object) -> list[str]:
    """*tags* as stored: a list of distinct tags in the given order, or InvalidMessage.

    A list (or tuple) of at most :data:`MAX_TAGS` strings, each 1 to
    :data:`MAX_TAG_LENGTH` printable characters without space at either end
    (``"promo-2026-12"``, ``"order:1234"``).  A tag given twice is kept once.
    A lone string is refused: ``tags="promo"`` would otherwise be five tags.
    """
    if tags is None:
        return []
    if isinstance(tags, (str, bytes)) or not isinstance(tags, (list, tuple)):
        raise InvalidMessage("tags must be a list of strings, e.g. tags=['promo'].")
    if len(tags) > MAX_TAGS:
        raise InvalidMessage(f"At most {MAX_TAGS} tags per message (got {len(tags)}).")
    kept: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise InvalidMessage(f"A tag must be a string, not {type(tag).__name__}.")
        if not 1 <= len(tag) <= MAX_TAG_LENGTH:
            raise InvalidMessage(
                f"A tag must be 1 to {MAX_TAG_LENGTH} characters: {tag[:MAX_TAG_LENGTH]!r}…"
                if tag
                else "A tag must not be empty."
            )
        if not tag.isprintable() or tag != tag.strip():
            raise InvalidMessage(f"A tag must be printable, without space at either end: {tag!r}.")
        if tag not in kept:
            kept.append(tag)
    return kept


def check_metadata(metadata: object) -> dict[str, Any]:
    """*metadata* as stored, or InvalidMessage naming what is wrong.

    A dict of at most :data:`MAX_METADATA_KEYS` keys, each a string of 1 to
    :data:`MAX_METADATA_KEY_LENGTH` characters, whose values are strings (at
    most :data:`MAX_METADATA_VALUE_LENGTH` characters) or finite numbers -- what
    links a message to an order or a user (``{"order": "A-1234", "user": 42}``),
    not a document: at most :data:`MAX_METADATA_BYTES` bytes as JSON.
    """
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise InvalidMessage("metadata must be a dict of str -> str or number.")
    if len(metadata) > MAX_METADATA_KEYS:
        raise InvalidMessage(
            f"metadata has {len(metadata)} keys; at most {MAX_METADATA_KEYS} are kept."
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY_LENGTH:
            raise InvalidMessage(
                f"metadata keys must be strings of 1 to {MAX_METADATA_KEY_LENGTH} "
                f"characters: {str(key)[:MAX_METADATA_KEY_LENGTH]!r}."
            )
        if isinstance(value, str):
            if len(value) > MAX_METADATA_VALUE_LENGTH:
                raise InvalidMessage(
                    f"metadata[{key!r}] is longer than {MAX_METADATA_VALUE_LENGTH} characters."
                )
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidMessage(
                f"metadata[{key!r}] must be a string or a number, not {type(value).__name__}."
            )
        elif isinstance(value, float) and not math.isfinite(value):
            raise InvalidMessage(f"metadata[{key!r}] must be a finite number.")
    size = len(json.dumps(metadata, ensure_ascii=False).encode())
    if size > MAX_METADATA_BYTES:
        raise InvalidMessage(
            f"metadata is {size} bytes as JSON; at most {MAX_METADATA_BYTES} are kept."
        )
    return dict(metadata)


def to_send(messages: Sequence[OutboundMessage]) -> list[int]:
    """The keys of the composed messages to hand to the send path now (not the held ones)."""
    return [m.pk for m in messages if m.send_state == SendState.QUEUED]


def _recipients(recipients: str | Sequence[str]) -> list[str]:
    """Every recipient normalised, before anything is recorded: one bad number refuses all."""
    numbers = [recipients] if isinstance(recipients, str) else list(recipients)
    region = default_region()
    normalized = [parse_recipient(n, region) for n in numbers]
    if not normalized:
        raise InvalidMessage("No recipients.")
    seen: set[str] = set()
    for number in normalized:
        if number in seen:
            raise InvalidMessage(f"A recipient is listed twice: +{number}.")
        seen.add(number)
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
