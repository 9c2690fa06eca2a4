"""One send run's requests and records: verify what is in doubt, send the rest, log it all.

:class:`SendRun` holds what every request of a run shares (the backend of each
account, who asked, the lease keeper, the outcome writer) and splits each
request in two, for :mod:`.pipeline`: :meth:`SendRun.attempt` makes the request
(no database access: a pipeline thread may run it) and :meth:`SendRun.record`
writes what it learnt, on the run's own thread, in groups
(:class:`~.recording.OutcomeWriter`).  Up to ``MAX_IN_FLIGHT`` requests are on
the wire at once.

Where the account's API takes several messages a request (the One API), a run
sends its messages of one account in requests of ``SEND_BATCH_SIZE``
(:class:`Request`, :func:`batch_size`): each message of a request is admitted on
its own and refused ones are dropped from it, each gets its own result and log
row, and a request that fails as a whole (a lost reply, a ``5xx``) puts exactly
its own messages in doubt.  A ``400`` -- refused whole, nothing carried out --
sends them again one by one, so only the culprit is refused.

The lease is checked before each message of each request (:meth:`SendRun.admit`).  A send in
doubt is asked about first (``querymsg`` by ``climsgid``) and only ``ERR 104``
makes a send safe; a stop asked for meanwhile is honoured before sending.

What a killed run leaves in doubt is bounded: a claimed message stays
``QUEUED`` (under the run's lease) until it is about to be sent, and is marked
``SENDING`` only then, a few at a time (:data:`MARK_STEP`, one ``UPDATE`` that
also reads whether a stop was asked for).  So the messages a dead run leaves ``SENDING``
-- each verified by ``querymsg`` before any resend -- are at most its unwritten
outcome group, its requests in flight and the rest of its marked step: fewer
than ``GROUP_SIZE + MAX_IN_FLIGHT`` x the batch size (:func:`doubt_bound`), whatever
the chunk size.  The untried rest are ``QUEUED`` and simply sent by the next run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db import DatabaseError
from django.db.models import Case, F, Q, Value, When

from ..conf import app_settings
from ..exceptions import (
    ClickatellError,
    CommandNotSent,
    GatewayError,
    GatewayHTTPError,
    InvalidInput,
    ProtocolError,
    SessionExpired,
    UnknownMessage,
)
from ..gateway.backends import Backend, OutgoingSms, SendResult
from ..models import (
    CancelState,
    GatewayExchange,
    OutboundMessage,
    SendState,
    UnmatchedCallback,
    WaitingFor,
)
from ..protocol.replies import ErrorReply, MessageStatusReply, SentMessageReply
from . import claims, guards, pausing, pipeline, recording, waiting
from .callbacks import match_unmatched_callbacks
from .recording import GROUP_SIZE, Outcome, OutcomeWriter, clean_text
from .reports import Report
from .status import status_updates
from .withdrawal import withdraw

logger = logging.getLogger("django_clickatell.sending")


#: Messages marked ``SENDING`` together, just before their requests leave (one ``UPDATE``,
#: which also reads whether a stop was asked for).  A third of ``GROUP_SIZE``: the run
#: writes its outcomes in groups of the other two thirds, so that a dead run's unwritten
#: outcomes and unsent marked step together stay within one ``GROUP_SIZE`` -- and the
#: bookkeeping costs the fewest queries per message (about 0.06 for marking, 0.12 for
#: writing, at the defaults).
MARK_STEP = GROUP_SIZE // 3


def doubt_bound(batch: int = 1) -> int:
    """The most messages a killed send run can leave in doubt (``SENDING``): its unwritten
    outcome group (``GROUP_SIZE - MARK_STEP``), the rest of its marked step and its
    requests in flight, each of up to *batch* messages (the account's :func:`batch_size`)
    -- below ``GROUP_SIZE + MAX_IN_FLIGHT x batch``, and never more than the run holds
    (its task's ``TASK_CHUNK_SIZE``).  A lost reply alone puts in doubt exactly the
    messages of its request: at most *batch*."""
    return GROUP_SIZE + app_settings.max_in_flight * batch - 1


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
    #: Not tried: waiting for their account (configured again, or resumed): services/waiting.py.
    waiting: list[int] = field(default_factory=list)


@dataclass
class SendAttempt:
    """One request as the thread that made it hands it to the run: nothing written yet."""

    message: OutboundMessage
    #: Finished (outcome and duration set), unsaved.
    exchange: GatewayExchange
    #: A ``querymsg`` by ``climsgid`` (the send was in doubt), not a ``sendmsg``.
    verify: bool
    results: list[SendResult] = field(default_factory=list)
    status: MessageStatusReply | None = None
    error: ClickatellError | None = None
    #: The requests of this call that met ERR 003/005 before the repeat (each logged).
    refused: list[SessionExpired] = field(default_factory=list)


@dataclass(eq=False)
class Request:
    """One request of a run (one pipeline item): a verification of one message in doubt,
    or a send of up to the account's batch size (:func:`batch_size`) of its messages.

    :meth:`SendRun.admit_request` drops from :attr:`messages` each one :meth:`SendRun.admit`
    refuses, before the request leaves."""

    messages: list[OutboundMessage]
    verify: bool = False
    #: Send each message alone: the API refused the request as a whole (a ``400``, or a
    #: message it cannot carry) and nothing was carried out -- only the culprit is refused.
    alone: bool = False

    @property
    def account(self) -> str:
        return self.messages[0].account


def batch_size(backend: Backend) -> int:
    """Messages one send request of *backend* carries: ``SEND_BATCH_SIZE``, up to what its
    API takes (``Capabilities.batch_size``: one, on the legacy HTTP and REST APIs)."""
    most = backend.capabilities.batch_size
    if most <= 1:
        return 1
    try:
        wanted = int(backend.config.send_batch_size)
    except Exception:  # an account whose settings are unusable: it sends nothing anyway
        return 1
    return max(1, min(most, wanted))


class SendRun:
    """One run's requests and records (see the module docstring)."""

    def __init__(
        self,
        backends: Callable[[OutboundMessage], Backend],
        via: str,
        actor_id: int | None,
        task_id: str,
        report: SendReport,
        keeper: claims.LeaseKeeper,
        messages: Sequence[OutboundMessage],
    ) -> None:
        self.backends, self.via, self.actor_id, self.task_id = backends, via, actor_id, task_id
        self.report, self.keeper, self.token = report, keeper, keeper.token
        self.messages = list(messages)
        self._index = {m.pk: i for i, m in enumerate(self.messages)}
        self._by_pk = {m.pk: m for m in self.messages}
        #: Written in groups a marking step smaller than ``GROUP_SIZE``: see doubt_bound().
        self.writer = OutcomeWriter(
            self.token,
            GROUP_SIZE - MARK_STEP,
            protect_cancelled=False,  # a send's outcome is about the sending, whatever the stop
            before_write=self._distinct_ids,
            after_write=self._match_callbacks,
        )
        #: In doubt, asked, and not at Clickatell: the next request about them is a send.
        self._absent: set[int] = set()
        #: Exchanges logged before the message's outcome (a ``querymsg`` before the send).
        self._earlier: dict[int, list[GatewayExchange]] = {}

    def run(self) -> pipeline.Stopped[OutboundMessage]:
        """Every claimed message, up to ``MAX_IN_FLIGHT`` requests at once; returns, by
        account a transient error stopped, its untried messages and that error (a
        release or a requeue hands several accounts' messages on in one task: one
        account's outage or refused key neither holds back nor fails another's)."""
        try:
            stopped = pipeline.run(
                self.requests(),
                width=app_settings.max_in_flight,
                attempt=self.attempt,
                record=self.record,
                admit=self.admit_request,
                check=self.writer.check,
                name="sendmsg",
                group=lambda request: request.account,
            )
            return {
                account: ([m for request in requests for m in request.messages], error)
                for account, (requests, error) in stopped.items()
            }
        finally:
            try:
                self.writer.close()
            finally:
                try:
                    self._log_earlier()
                except DatabaseError:  # the run stops with the writer's error, if any
                    logger.exception("Could not log the verifications of an unfinished run")

    def requests(self) -> list[Request]:
        """The run's requests, in the order of its messages: each message in doubt verified
        alone, the others sent in batches of their account's :func:`batch_size`."""
        requests: list[Request] = []
        filling: dict[str, Request] = {}
        for message in self.messages:
            if message.send_state == SendState.VERIFYING:
                requests.append(Request([message], verify=True))
                continue
            size = batch_size(self.backends(message))
            request = filling.get(message.account)
            if request is None or len(request.messages) >= size:
                request = filling[message.account] = Request([])
                requests.append(request)
            request.messages.append(message)
        return requests

    # -- before a request: the run's thread -------------------------------------------------

    def admit_request(self, request: Request) -> bool:
        """May *request* leave now?  :meth:`admit` asks about each of its messages; the
        ones refused are dropped from it (each is marked, handed back or stopped there),
        and a request left with none is not made."""
        request.messages[:] = [message for message in request.messages if self.admit(message)]
        return bool(request.messages)

    def admit(self, message: OutboundMessage) -> bool:
        """May a request about *message* leave now?  Its lease is still ours, and a queued
        one is marked ``SENDING`` (with the messages after it, up to a step) -- unless a
        stop was asked for: then it is stopped here instead, never sent.

        Asked on the run's thread before *every* request of the run (a send, a
        verification, the send after it): the one place for any check that must hold
        before a request leaves.  Refusing here makes no request and skips the message:
        a check that refuses must also say what the message waits in (hand it back with
        :func:`.claims.release`), or it waits under this run's lease until that expires.
        """
        if not self.keeper.holds(message.pk):
            return False  # taken over after our lease lapsed: the other run decides it
        backend = self.backends(message)
        reason = waiting.request_waits_for(backend)
        if reason:  # nothing asked, nothing retried: it goes out once the reason is gone
            waiting.send_waits(message, self.token, reason)
            self.report.waiting.append(message.pk)
            return False
        absent = message.pk in self._absent
        if message.send_state == SendState.VERIFYING and message.apimsgid and not absent:
            self._known(message)
            return False
        if message.send_state in (SendState.QUEUED, SendState.SENDING) or absent:
            reason = waiting.send_waits_for(backend)  # e.g. paused: asked right before it leaves
            if reason:
                waiting.send_held_back(message, self.token, reason)
                self.report.waiting.append(message.pk)
                return False
            if not guards.lets_go(message, self.token, self.report):  # settled, or it waits
                return False
        if message.send_state == SendState.QUEUED:
            self._mark_from(message)
        return message.send_state in (SendState.SENDING, SendState.VERIFYING)

    def _mark_from(self, first: OutboundMessage) -> None:
        start = self._index[first.pk]
        step = [m for m in self.messages[start:] if m.send_state == SendState.QUEUED][:MARK_STEP]
        pks = [m.pk for m in step]
        ours = OutboundMessage.objects.filter(
            pk__in=pks,
            claim_token=self.token,
            send_state=SendState.QUEUED,
            cancel_state=CancelState.NOT_REQUESTED,  # read now, not at the claim
        )
        # A pause committed before this statement is seen here, in the database, with no
        # query of its own: at most this step and the requests on the wire leave after
        # it (the cached view admit() reads may be a second late).
        marked = ours.exclude(pausing.holds_back()).update(send_state=SendState.SENDING)
        paused: set[int] = set()
        if marked == len(pks):
            going = set(pks)
        else:
            going = set(
                OutboundMessage.objects.filter(
                    pk__in=pks, claim_token=self.token, send_state=SendState.SENDING
                ).values_list("pk", flat=True)
            )
            paused = set(
                ours.filter(pk__in=[pk for pk in pks if pk not in going]).values_list(
                    "pk", flat=True
                )
            )
            self._withdraw([pk for pk in pks if pk not in going and pk not in paused])
        for message in step:
            if message.pk in paused:
                waiting.send_held_back(message, self.token, WaitingFor.PAUSED)
                self.report.waiting.append(message.pk)
                message.send_state = ""  # handed back: no request from this run
                continue
            # Not marked: stopped here, or no longer ours. Either way, no request.
            message.send_state = SendState.SENDING if message.pk in going else ""

    def _withdraw(self, pks: list[int]) -> None:
        """Never sent, and a stop was asked for: stop them here rather than send them."""
        if pks:
            claims.release(pks, self.token)
            withdraw(Q(pk__in=pks), via=self.via, any_request=True)

    # -- the request: any thread, no database -----------------------------------------------

    def attempt(self, request: Request) -> list[SendAttempt]:
        """Make *request*: one verification, or one send of its messages (each alone when
        the API refused them together); timed, nothing written."""
        message = request.messages[0]
        if request.verify and message.pk not in self._absent:
            return [self._verify(message)]
        if request.alone:
            return [self._send([one])[0] for one in request.messages]
        return self._send(request.messages)

    def _verify(self, message: OutboundMessage) -> SendAttempt:
        backend = self.backends(message)
        attempt = SendAttempt(message, self._exchange(message, "querymsg"), verify=True)
        try:
            attempt.status = backend.query(climsgid=message.climsgid)
        except ClickatellError as exc:
            attempt.error = exc
        attempt.refused = backend.refused_attempts  # this thread's, read on this thread
        return attempt

    def _send(self, messages: Sequence[OutboundMessage]) -> list[SendAttempt]:
        """One send request for *messages* (one account's): each its own log row, its own
        result -- or, if the request failed as a whole, the same error."""
        backend = self.backends(messages[0])
        attempts = [SendAttempt(m, self._exchange(m, "sendmsg"), verify=False) for m in messages]
        try:
            results = backend.send([outgoing(m) for m in messages])
        except InvalidInput as exc:
            # Refused before any request (the API cannot carry it): nothing left Django.
            error: ClickatellError = CommandNotSent("sendmsg", exc)
            error.__cause__ = exc
            for attempt in attempts:
                attempt.error = error
        except ClickatellError as exc:
            for attempt in attempts:
                attempt.error = exc
        else:
            if len(results) == len(attempts):
                for attempt, result in zip(attempts, results, strict=True):
                    attempt.results = [result]
            else:  # a backend broke its promise: nothing can be told about any of them
                for attempt in attempts:
                    attempt.results = list(results)
        attempts[0].refused = backend.refused_attempts  # this thread's, read on this thread
        return attempts

    def _exchange(self, message: OutboundMessage, command: str) -> GatewayExchange:
        return recording.new_exchange(
            message.pk, command, via=self.via, actor_id=self.actor_id, task_id=self.task_id
        )

    # -- the record: the run's thread -------------------------------------------------------

    def record(self, attempts: list[SendAttempt]) -> pipeline.Next[Request]:
        """Record what one request learnt, message by message; returns the transient error
        that stops the run for the account, or another request to make: a send after
        ``ERR 104``, or each message alone when the API refused them together."""
        if len(attempts) > 1 and _refused_together(attempts):
            # A 400 (or a message the API cannot carry) refuses the whole request, nothing
            # carried out: each goes again alone, so only the culprit is refused.  The
            # refused request is logged with each message's own (if it left at all).
            if not isinstance(attempts[0].error, CommandNotSent):
                for attempt in attempts:
                    assert attempt.error is not None
                    failed = recording.failed(attempt.exchange, attempt.error)
                    self._earlier[attempt.message.pk] = [*self._logged(attempt), failed]
            return pipeline.Again(Request([a.message for a in attempts], alone=True))
        step: pipeline.Next[Request] = None
        for attempt in attempts:
            if attempt.verify:
                found = self._record_verification(attempt)
            else:
                found = self._record_send(attempt)
            step = step or found
        return step

    def _logged(self, attempt: SendAttempt) -> list[GatewayExchange]:
        earlier = self._earlier.pop(attempt.message.pk, [])
        return [*earlier, *recording.refusal_rows(attempt.refused, attempt.exchange)]

    def _record_send(self, attempt: SendAttempt) -> pipeline.Next[Request]:
        exchange, exc = attempt.exchange, attempt.error
        if isinstance(exc, CommandNotSent) and isinstance(exc.__cause__, InvalidInput):
            # The backend refused the message before any request (its API cannot carry
            # it): nothing left Django, so it is not in doubt -- it failed, with the reason.
            reason = recording.reason("Not sent", str(exc.__cause__))
            self._settle(attempt, recording.failed(exchange, exc), SendState.FAILED, reason)
            self.report.rejected.append(attempt.message.pk)
            return None
        if isinstance(exc, CommandNotSent):
            # Nothing left this process: the message is simply still queued.
            return self._stop(attempt, exc, SendState.QUEUED)
        if isinstance(exc, GatewayError):
            if exc.retryable:  # "internal error, please retry": it may have been taken
                return self._stop(attempt, exc, SendState.VERIFYING)
            self._reject(attempt, exc)
            return None
        if isinstance(exc, GatewayHTTPError):
            # A 429, or a 503 naming when to come back: refused, nothing carried out.
            state = SendState.QUEUED if exc.refused_for_now else SendState.VERIFYING
            return self._stop(attempt, exc, state)
        if exc is not None:
            return self._stop(attempt, exc, SendState.VERIFYING)
        reply = attempt.results[0] if len(attempt.results) == 1 else None
        if isinstance(reply, SentMessageReply):
            exchange.detail = clean_text(f"Accepted, id {reply.apimsgid}")
            recording.answered(exchange)
            self._accepted(attempt, reply.apimsgid, status="")
            return None
        if isinstance(reply, ErrorReply):
            error = reply.as_exception("sendmsg")
            if error.retryable:  # ERR 901 "please retry", even with a To: -- it may be taken
                return self._stop(attempt, error, SendState.VERIFYING)
            self._reject(attempt, error)
            return None
        # Several lines for one recipient: cannot tell what happened.
        unreadable = ProtocolError("sendmsg", "several replies for one recipient", "")
        return self._stop(attempt, unreadable, SendState.VERIFYING)

    def _record_verification(self, attempt: SendAttempt) -> pipeline.Next[Request]:
        message, exchange, exc = attempt.message, attempt.exchange, attempt.error
        if isinstance(exc, UnknownMessage):
            # Clickatell never received it: sending is safe -- unless a stop was asked for
            # meanwhile (read now: an operator may have asked while we verified).
            recording.failed(exchange, exc)
            if self._stop_requested(message):
                self._settle(attempt, exchange, SendState.QUEUED, "")
                self.writer.flush()
                self._withdraw([message.pk])
                return None
            self._earlier[message.pk] = [*self._logged(attempt), exchange]
            self._absent.add(message.pk)
            return pipeline.Again(Request([message]))
        if exc is not None:
            if exc.retryable:
                return self._stop(attempt, exc, SendState.VERIFYING)
            # Clickatell will not say (e.g. a refused account): an operator decides.
            reason = recording.reason("Could not check whether Clickatell has it", str(exc))
            self._settle(attempt, recording.failed(exchange, exc), SendState.UNKNOWN, reason)
            self.report.unknown.append(message.pk)
            return None
        assert attempt.status is not None
        recording.answered(exchange, attempt.status.status)
        self._accepted(attempt, attempt.status.apimsgid, status=attempt.status.status)
        return None

    @staticmethod
    def _stop_requested(message: OutboundMessage) -> bool:
        state = (
            OutboundMessage.objects.filter(pk=message.pk)
            .values_list("cancel_state", flat=True)
            .first()
        )
        return bool(state)

    def _accepted(self, attempt: SendAttempt, apimsgid: str, *, status: str) -> None:
        """Sent (or found): written with the group, its id checked against the record then."""
        logged = [*self._logged(attempt), attempt.exchange]
        self._write_sent(attempt.message, apimsgid, status, logged)

    def _known(self, message: OutboundMessage) -> None:
        """In doubt, but a report from Clickatell named it meanwhile (a callback that came
        while its send was in flight: :func:`.status.settle_send` recorded the id): it has
        it.  Settled with no request, so nothing is logged as asked."""
        assert message.apimsgid
        self._write_sent(message, message.apimsgid, "", self._earlier.pop(message.pk, []))

    def _write_sent(
        self, message: OutboundMessage, apimsgid: str, status: str, logged: list[GatewayExchange]
    ) -> None:
        def updates() -> dict[str, Any]:
            values: dict[str, Any] = {
                "send_state": SendState.SENT,
                "send_error": "",
                **claims.RELEASED,
            }
            if not app_settings.keep_text:
                values["text"] = ""
            if status:
                values.update(status_updates(status, None))
            return values

        outcome = Outcome(message.pk, ("sent", status), updates, logged, own={"apimsgid": apimsgid})
        self.report.sent.append(message.pk)
        self.writer.write(outcome)

    def _reject(self, attempt: SendAttempt, error: GatewayError) -> None:
        guards.refused_as_opted_out(attempt.message, error)  # 122 / One API 26: listed
        failed = recording.failed(attempt.exchange, error)
        self._settle(attempt, failed, SendState.REJECTED, recording.describe(error))
        self.report.rejected.append(attempt.message.pk)

    def _settle(
        self, attempt: SendAttempt, exchange: GatewayExchange, state: str, error: str
    ) -> None:
        message = attempt.message
        logged = [*self._logged(attempt), exchange]

        def updates() -> dict[str, Any]:
            return {"send_state": state, "send_error": error, **claims.RELEASED}

        self.writer.write(Outcome(message.pk, ("settled", state, error), updates, logged))
        message.send_state = state

    def _stop(self, attempt: SendAttempt, error: ClickatellError, state: str) -> ClickatellError:
        """A transient failure: record it, leave the message waiting in *state*, stop the run."""
        reason = recording.describe(error)
        prefix = "Not sent yet" if state == SendState.QUEUED else "Checking after"
        failed = recording.failed(attempt.exchange, error)
        self._settle(attempt, failed, state, recording.reason(prefix, reason))
        self.report.transient_error = reason
        self.report.waited_for(error)
        return error

    # -- the writer's hooks: once per group -------------------------------------------------

    def _distinct_ids(self, outcomes: list[Outcome]) -> list[Outcome]:
        """An id already recorded for another message (a replayed or hostile reply) makes
        the send unknown, not sent: one query for the group."""
        accepted = [o for o in outcomes if o.own.get("apimsgid")]
        if not accepted:
            return outcomes
        held = dict(
            OutboundMessage.objects.filter(apimsgid__in=[o.own["apimsgid"] for o in accepted])
            .exclude(pk__in=[o.pk for o in accepted])
            .values_list("apimsgid", "pk")
        )
        checked: list[Outcome] = []
        for outcome in outcomes:
            apimsgid = outcome.own.get("apimsgid")
            holder = held.get(apimsgid) if apimsgid else None
            if apimsgid:
                held.setdefault(apimsgid, outcome.pk)  # twice in one group: the first keeps it
            if holder is None or holder == outcome.pk:
                checked.append(outcome)
                continue
            reason = clean_text(
                f"Clickatell answered id {apimsgid}, already recorded for message {holder}"
            )
            checked.append(_unknown(outcome, reason))
            self.report.sent.remove(outcome.pk)
            self.report.unknown.append(outcome.pk)
        return checked

    def _match_callbacks(self, outcomes: list[Outcome]) -> None:
        """Callbacks that arrived before the send recorded its id: one query for the group,
        and the few it finds applied one by one."""
        ids = {o.own["apimsgid"]: o.pk for o in outcomes if o.own.get("apimsgid")}
        if not ids:
            return
        waiting = set(
            UnmatchedCallback.objects.filter(
                apimsgid__in=list(ids), matched_message__isnull=True
            ).values_list("apimsgid", flat=True)
        )
        for apimsgid in waiting:
            message = self._by_pk[ids[apimsgid]]
            message.apimsgid, message.send_state = apimsgid, SendState.SENT
            match_unmatched_callbacks(message)

    def _log_earlier(self) -> None:
        """Verifications whose send never followed (the run stopped first): logged still."""
        rows = [row for rows in self._earlier.values() for row in rows]
        self._earlier.clear()
        if rows:
            GatewayExchange.objects.bulk_create(rows)


def _refused_together(attempts: list[SendAttempt]) -> bool:
    """The request of several messages was refused as a whole with nothing carried out:
    a message it cannot carry, or the request's own fault (``400``), not a transient one."""
    error = attempts[0].error
    if isinstance(error, CommandNotSent):
        return isinstance(error.__cause__, InvalidInput)
    return isinstance(error, GatewayError) and not error.retryable


def _unknown(outcome: Outcome, reason: str) -> Outcome:
    def updates() -> dict[str, Any]:
        return {"send_state": SendState.UNKNOWN, "send_error": reason, **claims.RELEASED}

    return Outcome(outcome.pk, ("settled", SendState.UNKNOWN, reason), updates, outcome.exchanges)


def outgoing(message: OutboundMessage) -> OutgoingSms:
    """The message as the backends take it: what was recorded, options as stored."""
    return OutgoingSms(
        to=message.recipient,
        text=message.text,
        climsgid=message.climsgid,
        sender=message.sender,
        options=dict(message.send_options),
    )


#: Untried messages go back to waiting: marked ones to the queue, doubtful ones in doubt.
HAND_BACK = {
    "send_state": Case(
        When(send_state=SendState.SENDING, then=Value(SendState.QUEUED)),
        default=F("send_state"),
    )
}
