"""One send run's requests and records: verify what is in doubt, send the rest, log it all.

:class:`SendRun` holds what every request of a run shares (the backend of
each account, who asked, the lease keeper), so each step takes just the message.  The lease is
checked before each request; a stop asked for meanwhile is honoured before
sending; a send in doubt is asked about (``querymsg`` by ``climsgid``) and only
``ERR 104`` makes a send safe.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from ..conf import app_settings
from ..exceptions import (
    ClickatellError,
    CommandNotSent,
    GatewayError,
    GatewayHTTPError,
    InvalidInput,
    ProtocolError,
    UnknownMessage,
)
from ..gateway.backends import Backend, OutgoingSms
from ..models import GatewayExchange, OutboundMessage, SendState
from ..protocol.replies import ErrorReply, SentMessageReply
from . import claims, recording, waiting
from .callbacks import match_unmatched_callbacks
from .recording import clean_text
from .reports import Report
from .status import status_updates
from .withdrawal import withdraw

logger = logging.getLogger("django_clickatell.sending")


@dataclass
class SendReport(Report):
    sent: list[int] = field(default_factory=list)
    rejected: list[int] = field(default_factory=list)
    unknown: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    #: Leased by another run that is alive (or not yet known dead): see ``retry_after``.
    held_elsewhere: list[int] = field(default_factory=list)
    #: The least wait before the next run: another run's lease, or the gateway's Retry-After.
    retry_after: float = 0.0
    transient_error: str = ""
    #: The failure each message of ``retry`` waits on: its own account's, never another's.
    retry_reasons: dict[int, str] = field(default_factory=dict)
    #: Not tried: waiting for their account to be configured again (services/waiting.py).
    waiting: list[int] = field(default_factory=list)


class SendRun:
    """One run's requests and records; ``process`` returns False to stop the run."""

    def __init__(
        self,
        backends: Callable[[OutboundMessage], Backend],
        via: str,
        actor_id: int | None,
        task_id: str,
        report: SendReport,
        keeper: claims.LeaseKeeper,
    ) -> None:
        self.backends, self.via, self.actor_id, self.task_id = backends, via, actor_id, task_id
        self.report, self.keeper, self.token = report, keeper, keeper.token
        #: The backend of the message being processed (its account's).
        self.backend: Backend | None = None

    def _exchange(self, message: OutboundMessage, command: str) -> GatewayExchange:
        return recording.new_exchange(
            message.pk, command, via=self.via, actor_id=self.actor_id, task_id=self.task_id
        )

    def process(self, message: OutboundMessage) -> bool:
        """Verify (if in doubt) and send one message; False stops the run.

        The lease is checked before *each* request, not once per message: a
        verification and the send after it are two requests, and the lease is
        only guaranteed to outlive one.
        """
        if not self.keeper.holds(message.pk):
            return True  # taken over after our lease lapsed: the other run decides it
        self.backend = self.backends(message)
        reason = waiting.send_waits_for(self.backend)
        if reason:  # nothing asked, nothing retried: it goes out once the reason is gone
            waiting.send_waits(message, self.token, reason)
            self.report.waiting.append(message.pk)
            return True
        if message.send_state == SendState.VERIFYING:
            found = self._verify(message)
            if found is not _ABSENT:
                return bool(found)
            if not self.keeper.holds(message.pk):
                return True
        if self._stop_requested(message):
            # Never reached Clickatell, and a stop was asked for (now or earlier, however
            # that stop ended): stop it here rather than send it.
            self._settle(message, SendState.QUEUED, "")
            withdraw(Q(pk=message.pk), via=self.via, any_request=True)
            return True
        return self._send(message)

    @staticmethod
    def _stop_requested(message: OutboundMessage) -> bool:
        """Read now, not at the claim: an operator may have asked while we verified."""
        state = (
            OutboundMessage.objects.filter(pk=message.pk)
            .values_list("cancel_state", flat=True)
            .first()
        )
        return bool(state)

    def _send(self, message: OutboundMessage) -> bool:
        exchange = self._exchange(message, "sendmsg")
        try:
            replies = self._backend.send([outgoing(message)])
        except CommandNotSent as exc:
            # Nothing left this process: the message is simply still queued.
            return self._stop(message, exchange, exc, SendState.QUEUED)
        except InvalidInput as exc:
            # The backend refused the message before any request (its API cannot carry
            # it): nothing left Django, so it is not in doubt -- it failed, with the reason.
            self._log(exchange, error=CommandNotSent("sendmsg", exc))
            self._settle(message, SendState.FAILED, recording.reason("Not sent", str(exc)))
            self.report.rejected.append(message.pk)
            return True
        except GatewayError as exc:
            if exc.retryable:  # "internal error, please retry": it may have been taken
                return self._stop(message, exchange, exc, SendState.VERIFYING)
            self._log(exchange, error=exc)
            self._settle(message, SendState.REJECTED, recording.describe(exc))
            self.report.rejected.append(message.pk)
            return True
        except GatewayHTTPError as exc:
            # A 429, or a 503 naming when to come back: refused, nothing carried out.
            state = SendState.QUEUED if exc.refused_for_now else SendState.VERIFYING
            return self._stop(message, exchange, exc, state)
        except ClickatellError as exc:
            return self._stop(message, exchange, exc, SendState.VERIFYING)
        reply = replies[0] if len(replies) == 1 else None
        if isinstance(reply, SentMessageReply):
            exchange.detail = clean_text(f"Accepted, id {reply.apimsgid}")
            self._log(exchange)
            self._accepted(message, reply.apimsgid, status=None)
        elif isinstance(reply, ErrorReply):
            error = reply.as_exception("sendmsg")
            if error.retryable:  # ERR 901 "please retry", even with a To: -- it may be taken
                return self._stop(message, exchange, error, SendState.VERIFYING)
            self._log(exchange, error=error)
            self._settle(message, SendState.REJECTED, recording.describe(error))
            self.report.rejected.append(message.pk)
        else:  # several lines for one recipient: cannot tell what happened
            unreadable = ProtocolError("sendmsg", "several replies for one recipient", "")
            return self._stop(message, exchange, unreadable, SendState.VERIFYING)
        return True

    @property
    def _backend(self) -> Backend:
        assert self.backend is not None, "process() chooses the backend first"
        return self.backend

    def _log(
        self, exchange: GatewayExchange, *, status: str = "", error: ClickatellError | None = None
    ) -> None:
        """Log the request (after any that met ERR 003 on the way), answered or failed."""
        recording.log_refused_attempts(self._backend, exchange)
        if error is None:
            recording.save(recording.answered(exchange, status))
        else:
            recording.save(recording.failed(exchange, error))

    def _verify(self, message: OutboundMessage) -> object:
        """True/False (go on / stop the run) once resolved; ``_ABSENT`` if never received."""
        if message.apimsgid:
            # A report from Clickatell named it while its send was in doubt (a callback that
            # came while the send was in flight: services.status.settle_send): it has it.
            self._accepted(message, message.apimsgid, status=None)
            return True
        exchange = self._exchange(message, "querymsg")
        try:
            reply = self._backend.query(climsgid=message.climsgid)
        except UnknownMessage as exc:
            self._log(exchange, error=exc)
            return _ABSENT
        except ClickatellError as exc:
            if exc.retryable:
                return self._stop(message, exchange, exc, SendState.VERIFYING)
            # Clickatell will not say (e.g. a refused account): an operator decides.
            self._log(exchange, error=exc)
            reason = recording.reason("Could not check whether Clickatell has it", str(exc))
            self._settle(message, SendState.UNKNOWN, reason)
            self.report.unknown.append(message.pk)
            return True
        self._log(exchange, status=reply.status)
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
        holder = (
            OutboundMessage.objects.filter(apimsgid=apimsgid)
            .exclude(pk=message.pk)
            .values_list("pk", flat=True)
            .first()
        )
        if holder is not None:
            # A replayed or hostile reply: an id we already hold for another message.
            reason = f"Clickatell answered id {apimsgid}, already recorded for message {holder}"
            self._settle(message, SendState.UNKNOWN, clean_text(reason))
            self.report.unknown.append(message.pk)
            return
        recording.write_outcome(message.pk, updates, None, self.token, protect_cancelled=False)
        message.apimsgid, message.send_state = apimsgid, SendState.SENT
        match_unmatched_callbacks(message)
        self.report.sent.append(message.pk)

    def _settle(self, message: OutboundMessage, state: str, error: str) -> None:
        recording.write_outcome(
            message.pk,
            {"send_state": state, "send_error": error, **claims.RELEASED},
            None,
            self.token,
            protect_cancelled=False,
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
        self._log(exchange, error=error)
        reason = recording.describe(error)
        prefix = "Not sent yet" if state == SendState.QUEUED else "Checking after"
        self._settle(message, state, recording.reason(prefix, reason))
        self.report.transient_error = reason
        self.report.waited_for(error)
        return False


_ABSENT = object()


def outgoing(message: OutboundMessage) -> OutgoingSms:
    """The message as the backends take it: what was recorded, options as stored."""
    return OutgoingSms(
        to=message.recipient,
        text=message.text,
        climsgid=message.climsgid,
        sender=message.sender,
        options=dict(message.send_options),
    )
