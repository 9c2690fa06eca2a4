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
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, QuerySet, Value, When
from django.utils import timezone

from ..conf import app_settings
from ..exceptions import (
    ClickatellError,
    CommandNotSent,
    GatewayError,
    ProtocolError,
    UnknownMessage,
)
from ..gateway.client import ClickatellClient
from ..models import CancelState, GatewayExchange, OutboundMessage, SendState
from ..protocol.encoding import encode_text
from ..protocol.replies import ErrorReply, SentMessageReply, is_client_message_id
from . import claims, recording
from .recording import clean_text
from .reports import Report
from .status import match_unmatched_callbacks, status_updates
from .withdrawal import withdraw

logger = logging.getLogger("django_clickatell.sending")

_MSISDN = re.compile(r"[0-9]{6,20}")
MIN_DELAY_MINUTES = 10
MAX_AHEAD = timedelta(days=7)


class InvalidMessage(ValueError):
    """The message cannot be sent as asked; nothing was recorded or sent."""


@dataclass
class SendReport(Report):
    sent: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    #: Leased by another run that is alive (or not yet known dead): see ``retry_after``.
    held_elsewhere: list[int] = field(default_factory=list)
    retry_after: float = 0.0
    transient_error: str = ""


def normalize_recipient(number: str) -> str:
    digits = number.strip().removeprefix("+").replace(" ", "")
    if not _MSISDN.fullmatch(digits):
        raise InvalidMessage(f"Not an international phone number: {number[:32]!r}")
    return digits


def create_messages(
    recipients: str | Sequence[str],
    text: str,
    *,
    sender: str = "",
    climsgid: str | None = None,
    deliver_in_minutes: int | None = None,
    scheduled_at: datetime | None = None,
    callback: int | None = None,
    concat: int | None = None,
    validity_minutes: int | None = None,
) -> list[OutboundMessage]:
    """Validate and record one ``QUEUED`` message per recipient; send nothing yet."""
    numbers = [recipients] if isinstance(recipients, str) else list(recipients)
    normalized = [normalize_recipient(n) for n in numbers]
    if not normalized:
        raise InvalidMessage("No recipients.")
    if len(set(normalized)) != len(normalized):
        raise InvalidMessage("A recipient is listed twice.")
    if not text:
        raise InvalidMessage("Empty message.")
    if climsgid is not None:
        if len(normalized) > 1:
            raise InvalidMessage("A climsgid names one message: give it for one recipient only.")
        if not is_client_message_id(climsgid):
            raise InvalidMessage("climsgid must be 1 to 32 letters and digits.")
        if OutboundMessage.objects.filter(climsgid=climsgid).exists():
            raise InvalidMessage("climsgid is already used by another message.")
    if sender and not re.fullmatch(r"[0-9]{1,16}|[A-Za-z0-9 ]{1,11}", sender):
        raise InvalidMessage("Sender must be up to 16 digits or 11 letters and digits.")
    options: dict[str, Any] = {}
    now = timezone.now()
    scheduled_for = None
    if deliver_in_minutes is not None and scheduled_at is not None:
        raise InvalidMessage("Give deliver_in_minutes or scheduled_at, not both.")
    if deliver_in_minutes is not None:
        if not MIN_DELAY_MINUTES <= deliver_in_minutes <= MAX_AHEAD.total_seconds() // 60:
            raise InvalidMessage("deliver_in_minutes must be between 10 and 10080 (7 days).")
        options["deliv_time"] = deliver_in_minutes
        scheduled_for = now + timedelta(minutes=deliver_in_minutes)
    if scheduled_at is not None:
        if timezone.is_naive(scheduled_at):
            raise InvalidMessage("scheduled_at must be timezone-aware.")
        if not now < scheduled_at <= now + MAX_AHEAD:
            raise InvalidMessage("scheduled_at must be in the future and at most 7 days ahead.")
        options["scheduled_time"] = int(scheduled_at.timestamp())
        scheduled_for = scheduled_at
    for name, value, low, high in (
        ("callback", callback, 0, 7),
        ("concat", concat, 1, 35),
        ("validity", validity_minutes, 1, 10080),
    ):
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise InvalidMessage(f"{name} must be an integer from {low} to {high}.")
            options[name] = value
    try:
        with transaction.atomic():
            return _record(normalized, text, sender, climsgid, scheduled_for, options)
    except IntegrityError:
        # Another caller took the same climsgid between the check and the insert.
        raise InvalidMessage("climsgid is already used by another message.") from None


def _record(
    numbers: list[str],
    text: str,
    sender: str,
    climsgid: str | None,
    scheduled_for: datetime | None,
    options: dict[str, Any],
) -> list[OutboundMessage]:
    return OutboundMessage.objects.bulk_create(
        OutboundMessage(
            recipient=number,
            sender=sender,
            text=text,
            climsgid=climsgid or uuid.uuid4().hex,
            scheduled_for=scheduled_for,
            send_state=SendState.QUEUED,
            send_options=options,
        )
        for number in numbers
    )


_FIELDS = (
    "pk",
    "recipient",
    "sender",
    "text",
    "climsgid",
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
    client: ClickatellClient | None = None,
) -> SendReport:
    """Send (or first verify) the given messages, each at most once; see the module docstring.

    A transient failure stops the run: the message it concerned and the untried
    ones are handed back and listed in ``report.retry``.  Messages another live
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
    run = _SendRun(client or ClickatellClient(), via, getattr(actor, "pk", None), task_id, report)
    keeper = claims.LeaseKeeper(claim.token)
    for index, message in enumerate(claim.messages):
        keeper.keep_alive()
        if not run.process(message):
            _hand_back([m.pk for m in claim.messages[index + 1 :]], claim.token)
            report.retry = sorted(
                OutboundMessage.objects.filter(
                    pk__in=[m.pk for m in claim.messages[index:]],
                    send_state__in=[SendState.QUEUED, SendState.VERIFYING],
                ).values_list("pk", flat=True)
            )
            break
    return report


def give_up(message_pks: Iterable[int], reason: str) -> int:
    """After the last retry: never-sent messages fail, messages in doubt become unknown.

    Neither is resent automatically; the operator resends (:func:`resend`) or
    asks Clickatell again (:func:`recheck`).
    """
    now = timezone.now()
    mine = OutboundMessage.objects.filter(Q(pk__in=list(message_pks)) & claims.free_for("", now))
    failed = mine.filter(send_state=SendState.QUEUED, cancel_state=CancelState.NOT_REQUESTED)
    count = failed.update(
        send_state=SendState.FAILED, send_error=_reason("Gave up sending", reason), updated_at=now
    )
    return count + mine.filter(send_state=SendState.VERIFYING).update(
        send_state=SendState.UNKNOWN, send_error=_reason("Gave up checking", reason), updated_at=now
    )


def resend(selection: QuerySet[OutboundMessage]) -> list[int]:
    """Queue again the messages Clickatell rejected or never received; returns their keys.

    They keep their ``climsgid``: Clickatell holds no message under it, and if
    it somehow did, the verification before any resend would find it.
    """
    return _move(selection, [SendState.REJECTED, SendState.FAILED], SendState.QUEUED)


def recheck(selection: QuerySet[OutboundMessage]) -> list[int]:
    """Ask Clickatell again about messages whose sending is unknown; returns their keys."""
    return _move(selection, [SendState.UNKNOWN], SendState.VERIFYING)


def stalled_sends() -> list[int]:
    """Sends nobody is working on any more: queued or in doubt and untouched for too long
    (a task lost to a broker outage), or claimed by a run whose lease expired."""
    now = timezone.now()
    overdue = now - timedelta(
        seconds=app_settings.claim_timeout + app_settings.task_retry_backoff_max
    )
    waiting = Q(
        send_state__in=[SendState.QUEUED, SendState.VERIFYING],
        claim_token="",
        updated_at__lt=overdue,
    ) & ~Q(send_state=SendState.QUEUED, cancel_state__gt="")
    orphaned = Q(send_state__in=[SendState.SENDING, SendState.VERIFYING], claim_expires_at__lt=now)
    return list(
        OutboundMessage.objects.filter(waiting | orphaned)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _move(selection: QuerySet[OutboundMessage], states: list[str], to: str) -> list[int]:
    now = timezone.now()
    eligible = Q(send_state__in=states) & claims.free_for("", now)
    pks = list(
        selection.filter(eligible)
        .exclude(cancel_state=CancelState.CANCELLED)
        .values_list("pk", flat=True)
    )
    OutboundMessage.objects.filter(Q(pk__in=pks) & eligible).update(
        send_state=to, send_error="", updated_at=now
    )
    return sorted(
        OutboundMessage.objects.filter(pk__in=pks, send_state=to).values_list("pk", flat=True)
    )


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


def _reason(what: str, detail: str) -> str:
    return clean_text(f"{what}: {detail}" if detail else what)


class _SendRun:
    """One run's requests and records; ``process`` returns False to stop the run."""

    def __init__(
        self,
        client: ClickatellClient,
        via: str,
        actor_id: int | None,
        task_id: str,
        report: SendReport,
    ) -> None:
        self.client, self.via, self.actor_id, self.task_id = client, via, actor_id, task_id
        self.report = report

    def _exchange(self, message: OutboundMessage, command: str) -> GatewayExchange:
        return recording.new_exchange(
            message.pk, command, via=self.via, actor_id=self.actor_id, task_id=self.task_id
        )

    def process(self, message: OutboundMessage) -> bool:
        if message.send_state == SendState.VERIFYING:
            found = self._verify(message)
            if found is not _ABSENT:
                return bool(found)
            if message.cancel_state != CancelState.NOT_REQUESTED:
                # Never reached Clickatell and a stop was asked for: stop it here.
                self._settle(message, SendState.QUEUED, "")
                withdraw(Q(pk=message.pk), via=self.via)
                return True
        return self._send(message)

    def _send(self, message: OutboundMessage) -> bool:
        exchange = self._exchange(message, "sendmsg")
        try:
            replies = self.client.sendmsg(_fields(message))
        except CommandNotSent as exc:
            # Nothing left this process: the message is simply still queued.
            return self._stop(message, exchange, exc, SendState.QUEUED)
        except GatewayError as exc:
            if exc.retryable:  # "internal error, please retry": it may have been taken
                return self._stop(message, exchange, exc, SendState.VERIFYING)
            recording.save(recording.failed(exchange, exc))
            self._settle(message, SendState.REJECTED, recording.describe(exc))
            self.report.rejected.append(message.pk)
            return True
        except ClickatellError as exc:
            return self._stop(message, exchange, exc, SendState.VERIFYING)
        reply = replies[0] if len(replies) == 1 else None
        if isinstance(reply, SentMessageReply):
            recording.save(recording.answered(exchange))
            self._accepted(message, reply.apimsgid, status=None)
        elif isinstance(reply, ErrorReply):
            error = reply.as_exception("sendmsg")
            recording.save(recording.failed(exchange, error))
            self._settle(message, SendState.REJECTED, recording.describe(error))
            self.report.rejected.append(message.pk)
        else:  # several lines for one recipient: cannot tell what happened
            unreadable = ProtocolError("sendmsg", "several replies for one recipient", "")
            return self._stop(message, exchange, unreadable, SendState.VERIFYING)
        return True

    def _verify(self, message: OutboundMessage) -> object:
        """True/False (go on / stop the run) once resolved; ``_ABSENT`` if never received."""
        exchange = self._exchange(message, "querymsg")
        try:
            reply = self.client.querymsg(climsgid=message.climsgid)
        except UnknownMessage as exc:
            recording.save(recording.failed(exchange, exc))
            return _ABSENT
        except ClickatellError as exc:
            if exc.retryable:
                return self._stop(message, exchange, exc, SendState.VERIFYING)
            # Clickatell will not say (e.g. a refused account): an operator decides.
            recording.save(recording.failed(exchange, exc))
            reason = _reason("Could not check whether Clickatell has it", str(exc))
            self._settle(message, SendState.UNKNOWN, reason)
            self.report.unknown.append(message.pk)
            return True
        recording.save(recording.answered(exchange, reply.status))
        self._accepted(message, reply.apimsgid, status=reply.status)
        return True

    def _accepted(self, message: OutboundMessage, apimsgid: str, *, status: str | None) -> None:
        updates: dict[str, Any] = {
            "apimsgid": apimsgid,
            "send_state": SendState.SENT,
            "send_error": "",
            **claims.RELEASED,
        }
        if not app_settings.keep_text:
            updates["text"] = ""
        if status:
            updates.update(status_updates(status, None))
        recording.write_outcome(message.pk, updates, None)
        message.apimsgid, message.send_state = apimsgid, SendState.SENT
        match_unmatched_callbacks(message)
        self.report.sent.append(message.pk)

    def _settle(self, message: OutboundMessage, state: str, error: str) -> None:
        recording.write_outcome(
            message.pk, {"send_state": state, "send_error": error, **claims.RELEASED}, None
        )
        message.send_state = state

    def _stop(
        self,
        message: OutboundMessage,
        exchange: GatewayExchange,
        error: ClickatellError,
        state: str,
    ) -> bool:
        """A transient failure: record it, leave the message waiting in *state*, stop the run."""
        recording.save(recording.failed(exchange, error))
        reason = recording.describe(error)
        prefix = "Not sent yet" if state == SendState.QUEUED else "Checking after"
        self._settle(message, state, _reason(prefix, reason))
        self.report.transient_error = reason
        return False


_ABSENT = object()


def _fields(message: OutboundMessage) -> dict[str, str]:
    fields = {
        "to": message.recipient,
        "climsgid": message.climsgid,
        **encode_text(message.text).fields(),
    }
    if message.sender:
        fields["from"] = message.sender
    for key, value in message.send_options.items():
        fields[key] = str(value)
    return fields
