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
    SessionExpired,
)
from ..gateway.backends import Backend
from ..models import CancelState, GatewayExchange, OutboundMessage, SendState
from ..protocol.codes import CANCELLED_STATUS, describe_status
from ..protocol.replies import MessageStatusReply
from ..signals import message_cancelled, message_status_changed
from . import claims, recording, waiting
from .recording import OutcomeWriter
from .reports import Report
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
    #: Not asked: waiting for their account to be configured again (services/waiting.py).
    waiting: list[int] = field(default_factory=list)


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

    def stop_request(self, backend: Backend, message: OutboundMessage) -> MessageStatusReply:
        """The one gateway request about *message* (thread-safe, as the backends are)."""
        if message.apimsgid:
            return backend.stop(apimsgid=message.apimsgid)
        return backend.stop(climsgid=message.climsgid)

    def attempt(self, message: OutboundMessage) -> Attempt:
        """Make the request and time it; no database access, so any thread may run it.

        The requests that met ERR 003/005 first are read here, on the thread that
        made them (the client keeps them per thread).
        """
        exchange = recording.new_exchange(
            message.pk,
            "delmsg",
            via=self.via,
            actor_id=self.actor_id or message.cancel_requested_by_id,
            task_id=self.task_id,
        )
        backend = self.backends(message)
        reason = waiting.request_waits_for(backend)
        if reason:
            return Attempt(message, exchange, waiting=reason)
        if not backend.capabilities.remote_stop:
            return self._ask_instead(backend, message)
        try:
            reply = self.stop_request(backend, message)
            if message.apimsgid and reply.apimsgid != message.apimsgid:
                raise ProtocolError("delmsg", "reply names another message", reply.apimsgid)
        except ValueError as exc:
            # An id Clickatell could not know: rejected before any request was made.
            recording.failed(exchange, CommandNotSent("delmsg", InvalidInput(str(exc))))
            return Attempt(message, exchange, invalid=str(exc))
        except RemoteStopUnsupported:
            return Attempt(message, exchange, handed_over=True)  # the gateway's guard
        except ClickatellError as exc:
            recording.failed(exchange, exc)
            return Attempt(message, exchange, error=exc, refused=backend.refused_attempts)
        recording.answered(exchange, reply.status)
        return Attempt(message, exchange, reply=reply, refused=backend.refused_attempts)

    def _ask_instead(self, backend: Backend, message: OutboundMessage) -> Attempt:
        """No stop call exists: nothing is stopped, but what became of it is asked.

        The record then says "too late" with the message's real status (a
        ``querymsg``, logged like any request) rather than with none -- unless
        the message has no id to ask by, or asking fails: "too late" still, the
        status left as it was (a refresh or a callback tells it later).
        """
        exchange = recording.new_exchange(
            message.pk,
            "querymsg",
            via=self.via,
            actor_id=self.actor_id or message.cancel_requested_by_id,
            task_id=self.task_id,
        )
        if not message.apimsgid:
            return Attempt(message, exchange, handed_over=True)
        try:
            reply = backend.query(apimsgid=message.apimsgid)
        except ValueError:
            return Attempt(message, exchange, handed_over=True)  # not asked: nothing to log
        except ClickatellError as exc:
            recording.failed(exchange, exc)
            return Attempt(message, exchange, handed_over=True, asked=True)
        if reply.apimsgid != message.apimsgid:
            recording.failed(
                exchange, ProtocolError("querymsg", "reply names another message", reply.apimsgid)
            )
            return Attempt(message, exchange, handed_over=True, asked=True)
        recording.answered(exchange, reply.status)
        return Attempt(message, exchange, handed_over=True, asked=True, reply=reply)

    def record(self, attempt: Attempt) -> ClickatellError | None:
        """Record *attempt* (on the run's thread); returns a transient error that stops the run."""
        message, exchange = attempt.message, attempt.exchange
        if attempt.waiting:  # no request made or logged; still queued, with the reason
            updates = waiting.stop_wait_updates(attempt.waiting)
            key = ("waiting", attempt.waiting)
            self.writer.write(recording.Outcome(message.pk, key, lambda: updates, []))
            self.report.waiting.append(message.pk)
            return None
        if attempt.handed_over:
            self._handed_over(message, attempt)
            return None
        logged = [*recording.refusal_rows(attempt.refused, exchange), exchange]
        if attempt.invalid:
            # Not a refusal by Clickatell: no request was made. Given up on, with the reason.
            reason = f"Not sent: {attempt.invalid}"
            self._settle(message, CancelState.GAVE_UP, reason, self.report.gave_up, logged)
            return None
        if attempt.error is not None:
            exc = attempt.error
            if exc.retryable:  # includes CommandNotSent: never the gateway's answer
                return self._transient(message, logged, exc)
            self._settle(message, CancelState.REFUSED, str(exc), self.report.refused, logged)
            return None
        assert attempt.reply is not None
        self._record_reply(message, attempt.reply, logged)
        return None

    def _record_reply(
        self, message: OutboundMessage, reply: MessageStatusReply, logged: list[GatewayExchange]
    ) -> None:
        status = reply.status
        cancelled = status == CANCELLED_STATUS

        def updates() -> dict[str, Any]:
            return {
                # Through the lifecycle rule: a final status recorded by a callback while
                # this request was in flight is not replaced by the reply's older news.
                **status_updates(status, reply.reported_at),
                "cancel_state": CancelState.CANCELLED if cancelled else CancelState.TOO_LATE,
                "cancel_completed_at": timezone.now(),
                "cancel_attempts": F("cancel_attempts") + 1,
                "cancel_error": "" if cancelled else _too_late_reason(status),
                **claims.RELEASED,
            }

        # The values are built once per group: replies stamped with different times (the
        # One API's) are different groups.
        key: tuple[Any, ...] = ("reply", status, reply.reported_at)
        build = updates
        if not message.apimsgid and not (
            OutboundMessage.objects.filter(apimsgid=reply.apimsgid).exclude(pk=message.pk).exists()
        ):
            # Found by climsgid: Clickatell has it, whatever the sending record doubted.
            def build() -> dict[str, Any]:
                return {
                    **updates(),
                    "apimsgid": reply.apimsgid,
                    "send_state": _SETTLED_IF_UNKNOWN,
                }

            key = ("found", message.pk)
        self.writer.write(recording.Outcome(message.pk, key, build, logged))
        self._news.append((message, message.status, status))
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

    def _handed_over(self, message: OutboundMessage, attempt: Attempt | None = None) -> None:
        """Too late: the account's API has no call that stops a message.

        No stop was asked and no stop attempt is counted; the status is the one
        the API reported when asked (through the lifecycle rule), else left as it
        was.  Should the API report it stopped already (One API
        ``STOPPED_BY_USER``, stopped in Clickatell's portal), it is recorded as
        stopped: the gateway said so.
        """
        logged = [attempt.exchange] if attempt is not None and attempt.asked else []
        reply = attempt.reply if attempt is not None else None
        if reply is not None and reply.status == CANCELLED_STATUS:
            self._record_reply(message, reply, logged)
            return
        # Asked by its id and answered: Clickatell has it, whatever the sending record doubted.
        found = reply is not None
        unknown = message.send_state == SendState.UNKNOWN and not found
        error = recording.clean_text(HANDED_OVER_OR_NOT if unknown else HANDED_OVER)
        status = reply.status if reply is not None else ""
        reported_at = reply.reported_at if reply is not None else None

        def updates() -> dict[str, Any]:
            return {
                **(status_updates(status, reported_at) if status else {}),
                **({"send_state": _SETTLED_IF_UNKNOWN} if found else {}),
                "cancel_state": CancelState.TOO_LATE,
                "cancel_error": error,
                "cancel_completed_at": timezone.now(),
                **claims.RELEASED,
            }

        key = ("settled", CancelState.TOO_LATE, error, "no stop", status, reported_at, found)
        self.writer.write(recording.Outcome(message.pk, key, updates, logged))
        if status:
            self._news.append((message, message.status, status))
        self.report.too_late.append(message.pk)

    def _settle(
        self,
        message: OutboundMessage,
        state: str,
        reason: str,
        bucket: list[int],
        logged: list[GatewayExchange],
    ) -> None:
        error = recording.clean_text(reason)

        def updates() -> dict[str, Any]:
            return {
                "cancel_state": state,
                "cancel_error": error,
                "cancel_attempts": F("cancel_attempts") + 1,
                "cancel_completed_at": timezone.now(),
                **claims.RELEASED,
            }

        key = ("settled", state, error)
        self.writer.write(recording.Outcome(message.pk, key, updates, logged))
        bucket.append(message.pk)

    def _transient(
        self, message: OutboundMessage, logged: list[GatewayExchange], exc: ClickatellError
    ) -> ClickatellError:
        state = CancelState.GAVE_UP if self.give_up else CancelState.RETRYING
        reason = recording.describe(exc)
        logger.warning("Could not cancel message %s: %s", message.pk, reason)
        bucket = self.report.gave_up if self.give_up else self.report.retry
        self._settle(message, state, reason, bucket, logged)
        self.report.transient_error = reason
        self.report.waited_for(exc)
        return exc


@dataclass
class Attempt:
    """One ``delmsg`` as the thread that made it hands it to the run: nothing written yet."""

    message: OutboundMessage
    #: Finished (outcome and duration set), unsaved.
    exchange: GatewayExchange
    reply: MessageStatusReply | None = None
    error: ClickatellError | None = None
    #: Why no request could be made (an id Clickatell could not know).
    invalid: str = ""
    #: The account's API cannot stop a submitted message: no stop was asked.
    handed_over: bool = False
    #: ... but its status was asked instead (``exchange`` is that ``querymsg``).
    asked: bool = False
    #: Why the stop waits instead (its account is not in the settings): nothing asked.
    waiting: str = ""
    #: The requests of this call that met ERR 003/005 before the repeat (each logged).
    refused: list[SessionExpired] = field(default_factory=list)


#: A reply about the message proves Clickatell has it: a send given up as unknown is sent.
_SETTLED_IF_UNKNOWN = Case(
    When(send_state=SendState.UNKNOWN, then=Value(SendState.SENT)), default=F("send_state")
)

#: Why a message of an account without remote stop is "too late".
HANDED_OVER = (
    "too late: already handed over to Clickatell "
    "(this account's API cannot stop a submitted message)"
)


#: The same, for a message whose send is in doubt: whether it was handed over is unknown.
HANDED_OVER_OR_NOT = (
    "cannot be stopped: whether Clickatell got it is unknown, and this account's API "
    "cannot stop a submitted message"
)


def _too_late_reason(status: str) -> str:
    return f"Clickatell reported status {status} ({describe_status(status).label})"
