"""One cancellation run's requests and records: a ``delmsg`` per message, every answer kept.

:class:`CancelRun` holds what every request of a run shares (the backend of
each account, the outcome writer, who asked and how), so each step takes just
the message.
Outcomes: ``006`` is cancelled; any other status is "too late" with that status
(written through the lifecycle rule, so it never replaces a newer or final
one); an ``ERR`` is "refused" with its code; a transient failure -- including a
command that was never sent -- is "retrying" (or "gave up" on the last try) and
stops the run.  An account whose API cannot stop a submitted message (no
``capabilities.remote_stop``) is asked nothing: the message is "too late",
already handed over, and no exchange row is written, since no request was made.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, F, Value, When
from django.utils import timezone

from ..exceptions import (
    ClickatellError,
    CommandNotSent,
    InvalidInput,
    ProtocolError,
    RemoteStopUnsupported,
)
from ..gateway.backends import Backend
from ..models import CancelState, GatewayExchange, OutboundMessage, SendState
from ..protocol.codes import CANCELLED_STATUS, describe_status
from ..protocol.replies import MessageStatusReply
from ..signals import message_cancelled, message_status_changed
from . import claims, recording
from .recording import OutcomeWriter
from .reports import Report
from .send_run import gateway_wait
from .status import status_updates

logger = logging.getLogger("django_clickatell.cancellation")


@dataclass
class CancelReport(Report):
    """What one cancellation run did, by message primary key."""

    cancelled: list[int] = field(default_factory=list)
    too_late: list[int] = field(default_factory=list)
    refused: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    gave_up: list[int] = field(default_factory=list)
    not_claimed: list[int] = field(default_factory=list)
    #: Claimed by another run whose lease is still alive: it is working on them, or it died
    #: and they can be taken once the lease expires in ``retry_after`` seconds (or later:
    #: the gateway's Retry-After).
    held_elsewhere: list[int] = field(default_factory=list)
    retry_after: float = 0.0
    #: Messages that turned final before a worker reached them: no request made.
    skipped: int = 0
    #: Never handed to Clickatell: stopped here, no request made.
    withdrawn: list[int] = field(default_factory=list)
    transient_error: str = ""


class CancelRun:
    def __init__(
        self,
        backends: Callable[[OutboundMessage], Backend],
        writer: OutcomeWriter,
        report: CancelReport,
        *,
        via: str,
        actor_id: int | None,
        task_id: str,
        give_up: bool,
    ) -> None:
        self.backends, self.writer, self.report = backends, writer, report
        self.via, self.actor_id, self.task_id, self.give_up = via, actor_id, task_id, give_up
        self._news: list[tuple[OutboundMessage, str, str]] = []

    def cancel_one(self, message: OutboundMessage) -> ClickatellError | None:
        """Ask Clickatell to stop *message*; returns the transient error that stops the run."""
        backend = self.backends(message)
        if not backend.capabilities.remote_stop:
            self._handed_over(message)
            return None
        exchange = recording.new_exchange(
            message.pk,
            "delmsg",
            via=self.via,
            actor_id=self.actor_id or message.cancel_requested_by_id,
            task_id=self.task_id,
        )
        try:
            if message.apimsgid:
                reply = backend.stop(apimsgid=message.apimsgid)
            else:
                reply = backend.stop(climsgid=message.climsgid)
            if message.apimsgid and reply.apimsgid != message.apimsgid:
                raise ProtocolError("delmsg", "reply names another message", reply.apimsgid)
        except ValueError as exc:
            # An id Clickatell could not know: no request was made, so this is not a
            # refusal by Clickatell -- it is given up on, with the reason, and logged.
            recording.failed(exchange, CommandNotSent("delmsg", InvalidInput(str(exc))))
            reason = f"Not sent: {exc}"
            self._settle(message, CancelState.GAVE_UP, reason, self.report.gave_up, exchange)
            return None
        except RemoteStopUnsupported:
            self._handed_over(message)  # the gateway's guard: nothing was asked
            return None
        except ClickatellError as exc:
            recording.log_refused_attempts(backend, exchange)
            recording.failed(exchange, exc)
            if exc.retryable:  # includes CommandNotSent: never the gateway's answer
                return self._transient(message, exchange, exc)
            self._settle(message, CancelState.REFUSED, str(exc), self.report.refused, exchange)
            return None
        recording.log_refused_attempts(backend, exchange)
        self._record_reply(message, reply, recording.answered(exchange, reply.status))
        return None

    def _handed_over(self, message: OutboundMessage) -> None:
        """Too late without a request: the account's API has no call that stops a message.

        Recorded as what it is -- no exchange row (nothing was asked, nothing
        answered), no attempt counted, the status left as it was.
        """
        self._settle(message, CancelState.TOO_LATE, HANDED_OVER, self.report.too_late)

    def _record_reply(
        self, message: OutboundMessage, reply: MessageStatusReply, exchange: GatewayExchange
    ) -> None:
        cancelled = reply.status == CANCELLED_STATUS
        updates: dict[str, Any] = {
            # Through the lifecycle rule: a final status recorded by a callback while this
            # request was in flight is not replaced by the reply's older news.
            **status_updates(reply.status, None),
            "cancel_state": CancelState.CANCELLED if cancelled else CancelState.TOO_LATE,
            "cancel_completed_at": timezone.now(),
            "cancel_attempts": F("cancel_attempts") + 1,
            "cancel_error": "" if cancelled else _too_late_reason(reply.status),
            **claims.RELEASED,
        }
        clash = (
            not message.apimsgid
            and OutboundMessage.objects.filter(apimsgid=reply.apimsgid)
            .exclude(pk=message.pk)
            .exists()
        )
        if not message.apimsgid and not clash:
            # Found by climsgid: Clickatell has it, whatever the sending record doubted.
            updates["apimsgid"] = reply.apimsgid
            updates["send_state"] = Case(
                When(send_state=SendState.UNKNOWN, then=Value(SendState.SENT)),
                default=F("send_state"),
            )
        self.writer.write(message.pk, updates, exchange)
        self._news.append((message, message.status, reply.status))
        (self.report.cancelled if cancelled else self.report.too_late).append(message.pk)

    def announce(self) -> None:
        """Send the signals for what the record now says -- read back, not assumed.

        A final status that a callback recorded while a ``delmsg`` was in flight
        stays, and no listener hears of the reply's older status.  One query for
        the whole run.
        """
        news, self._news = self._news, []
        if not news:
            return
        recorded = {
            pk: (status, state)
            for pk, status, state in OutboundMessage.objects.filter(
                pk__in=[message.pk for message, _, _ in news]
            ).values_list("pk", "status", "cancel_state")
        }
        for message, old, new in news:
            status, state = recorded.get(message.pk, ("", ""))
            if status == new and old != new:
                message.status = new
                message_status_changed.send(
                    sender=OutboundMessage,
                    message=message,
                    old_status=old,
                    new_status=new,
                    via=self.via,
                )
            if new == CANCELLED_STATUS and state == CancelState.CANCELLED:
                message.cancel_state = CancelState.CANCELLED
                message_cancelled.send(sender=OutboundMessage, message=message, via=self.via)

    def _settle(
        self,
        message: OutboundMessage,
        state: str,
        reason: str,
        bucket: list[int],
        exchange: GatewayExchange | None = None,
    ) -> None:
        updates: dict[str, Any] = {
            "cancel_state": state,
            "cancel_error": recording.clean_text(reason),
            "cancel_attempts": F("cancel_attempts") + (1 if exchange else 0),
            "cancel_completed_at": timezone.now(),
            **claims.RELEASED,
        }
        self.writer.write(message.pk, updates, exchange)
        bucket.append(message.pk)

    def _transient(
        self, message: OutboundMessage, exchange: GatewayExchange, exc: ClickatellError
    ) -> ClickatellError:
        state = CancelState.GAVE_UP if self.give_up else CancelState.RETRYING
        reason = recording.describe(exc)
        logger.warning("Could not cancel message %s: %s", message.pk, reason)
        bucket = self.report.gave_up if self.give_up else self.report.retry
        self._settle(message, state, reason, bucket, exchange)
        self.report.transient_error = reason
        self.report.retry_after = max(self.report.retry_after, gateway_wait(exc))
        return exc


#: Why a message of an account without remote stop is "too late".
HANDED_OVER = (
    "too late: already handed over to Clickatell "
    "(this account's API cannot stop a submitted message)"
)


def _too_late_reason(status: str) -> str:
    return f"Clickatell reported status {status} ({describe_status(status).label})"
