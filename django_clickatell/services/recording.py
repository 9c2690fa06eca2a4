"""Recording what happened: one exchange-log row per request, and the message's outcome.

Every service logs its requests through :func:`new_exchange` and
:func:`answered` / :func:`failed`: the outcome is chosen from the error's type
in one place, and every text that came from the gateway is sanitised and
redacted again before it is stored (defence in depth: the parser already did).

Outcomes are written without a transaction: the exchange rows first, then the
message.  If the process dies between them, the reply is already in the log
and the message is still leased, so the next run finishes it.  (A transaction
would add ``BEGIN``/``COMMIT`` round trips and a second WAL flush.)

A cancellation run writes its outcomes in groups (:class:`OutcomeWriter`): one
bulk ``INSERT`` of the exchanges and one ``UPDATE`` per outcome group, on the
run's own thread and connection, while its requests are on the wire on other
threads.  What a killed worker had received but not written is at most one
group; those messages are still leased to the dead run and are asked again
after its lease expires, which is harmless: a stopped message answers ``006``
(or its final status) again, a status never moves backwards, and a ``006``
already logged is finished from the log without a request.  Signals are sent
on the calling thread after the writes are saved, and a failed write stops the
run before another request is made.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Case, F, Value, When
from django.utils import timezone

from ..exceptions import (
    AccountMisconfigured,
    ClickatellError,
    CommandNotSent,
    GatewayError,
    ProtocolError,
    SessionExpired,
    TransportError,
)
from ..gateway.backends import Backend
from ..models import CancelState, GatewayExchange, OutboundMessage
from ..protocol.redaction import clean

logger = logging.getLogger("django_clickatell.recording")


_TEXT_LIMIT = 255


def clean_text(text: str) -> str:
    """Printable, redacted, at most 255 characters: safe for a column, a log, a page."""
    return clean(text, (), _TEXT_LIMIT)


def new_exchange(
    message_pk: int,
    command: str,
    *,
    via: str,
    actor_id: int | None = None,
    task_id: str = "",
) -> GatewayExchange:
    """An unsaved exchange row for a request about to be made (its clock starts now)."""
    exchange = GatewayExchange(
        message_id=message_pk, command=command, via=via, actor_id=actor_id, task_id=task_id
    )
    exchange._started = time.perf_counter()  # type: ignore[attr-defined]
    return exchange


def _finish(exchange: GatewayExchange) -> None:
    started = getattr(exchange, "_started", None)
    if started is not None:
        exchange.duration_ms = round((time.perf_counter() - started) * 1000)


def answered(exchange: GatewayExchange, status: str = "") -> GatewayExchange:
    """The gateway answered the request (with a status, or an id for ``sendmsg``)."""
    _finish(exchange)
    exchange.outcome = GatewayExchange.Outcome.STATUS
    exchange.status = status
    return exchange


def failed(exchange: GatewayExchange, error: ClickatellError) -> GatewayExchange:
    """The request failed, was refused, or was never sent: the outcome is the error's kind."""
    _finish(exchange)
    exchange.outcome = error.kind
    if isinstance(error, AccountMisconfigured):
        # Says what to fix (the account and its setting), never only the gateway's words.
        exchange.error_code = error.code
        exchange.detail = clean_text(str(error))
    elif isinstance(error, CommandNotSent):
        exchange.error_code = error.code
        exchange.detail = clean_text(str(error.cause))
    elif isinstance(error, GatewayError):
        exchange.error_code = error.code
        exchange.error_description = clean_text(error.description)
    elif isinstance(error, ProtocolError):
        exchange.detail = clean_text(f"{error.reason}: {error.excerpt}")
    elif isinstance(error, TransportError):
        exchange.detail = clean_text(error.detail)
    else:
        exchange.detail = clean_text(str(error))
    return exchange


def log_refused_attempts(backend: Backend, exchange: GatewayExchange) -> None:
    """Log the requests of the backend's last call that met ERR 003/005 before it.

    They were real requests, answered and not carried out; the session was
    renewed and the command repeated -- the repeat is *exchange* itself.  Only
    session APIs have any (``Backend.refused_attempts``).
    """
    rows = refusal_rows(backend.refused_attempts, exchange)
    if rows:
        GatewayExchange.objects.bulk_create(rows)


def refusal_rows(
    refusals: Iterable[SessionExpired], exchange: GatewayExchange
) -> list[GatewayExchange]:
    """Unsaved log rows for *refusals* (ERR 003/005 met before *exchange* was repeated)."""
    return [
        GatewayExchange(
            message_id=exchange.message_id,
            command=exchange.command,
            via=exchange.via,
            actor_id=exchange.actor_id,
            task_id=exchange.task_id,
            occurred_at=exchange.occurred_at,
            outcome=GatewayExchange.Outcome.GATEWAY_ERROR,
            error_code=refusal.code,
            error_description=clean_text(refusal.description),
            detail="Session refused: renewed it and repeated the command (next entry)",
        )
        for refusal in refusals
    ]


def reason(what: str, detail: str) -> str:
    """A stored reason: what happened, and the detail when there is one."""
    return clean_text(f"{what}: {detail}" if detail else what)


def describe(error: ClickatellError) -> str:
    """The reason stored on a message (``send_error``, ``cancel_error``)."""
    return clean_text(str(error))


def save(exchange: GatewayExchange) -> None:
    exchange.save(force_insert=True)


def save_many(exchanges: Sequence[GatewayExchange]) -> None:
    """Save many exchange rows in one ``INSERT`` (the callbacks of one POST, say)."""
    if exchanges:
        GatewayExchange.objects.bulk_create(exchanges)


def write_outcome(
    pk: int,
    updates: dict[str, Any],
    exchange: GatewayExchange | None,
    token: str = "",
    *,
    protect_cancelled: bool = True,
) -> int:
    """Save the exchange, then update the message -- only while *token* still holds it.

    A run whose lease lapsed and was taken over must not overwrite what the
    other run records: its exchange row is kept (the log is the truth), the
    message is left to the run that holds it, which asks Clickatell again.
    """
    if exchange is not None:
        save(exchange)
    held = OutboundMessage.objects.filter(pk=pk)
    if token:
        held = held.filter(claim_token=token)
    if protect_cancelled:
        # A stop's outcome never overwrites a recorded 006 (a stale worker answering late).
        # A send's outcome is recorded whatever the stop said: it is about the sending.
        held = held.exclude(cancel_state=CancelState.CANCELLED)
    written = held.update(**updates, updated_at=timezone.now())
    if token and not written:
        logger.warning("Message %s was taken over by another run; its outcome is logged only", pk)
    return written


#: Outcomes written together: one bulk ``INSERT`` of their exchanges, then one ``UPDATE``
#: per outcome group.  Also the loss window: what a killed worker had received but not
#: yet written is at most this many replies (plus the requests still on the wire).
GROUP_SIZE = 50


@dataclass
class Outcome:
    """What to record about one message: its exchange rows, then its new values.

    Outcomes with equal ``key`` get the same values (``updates`` is built once
    per group, when the group is written), so one ``UPDATE`` records them all.
    """

    pk: int
    key: Hashable
    updates: Callable[[], dict[str, Any]]
    #: Saved before the message is updated, in this order (refused attempts first).
    exchanges: list[GatewayExchange] = field(default_factory=list)
    #: Values of this message alone (a send's ``apimsgid``), written in the group's one
    #: ``UPDATE`` as ``CASE pk WHEN ... THEN ...``.
    own: dict[str, Any] = field(default_factory=dict)


def write_outcomes(
    outcomes: Sequence[Outcome], token: str, *, protect_cancelled: bool = True
) -> int:
    """Save every exchange (one ``INSERT``), then update the messages *token* still holds.

    One ``UPDATE`` per outcome group.  The exchanges are saved first: a process
    that dies between the two statements leaves the replies logged and the
    messages leased, and the next run finishes a logged ``006`` from the log
    (:func:`~.cancelling._finish_from_log`) and asks again about the others.
    """
    rows = [row for outcome in outcomes for row in outcome.exchanges]
    if rows:
        GatewayExchange.objects.bulk_create(rows)
    groups: dict[Hashable, list[Outcome]] = {}
    for outcome in outcomes:
        groups.setdefault(outcome.key, []).append(outcome)
    written = 0
    now = timezone.now()
    for group in groups.values():
        pks = [outcome.pk for outcome in group]
        held = OutboundMessage.objects.filter(pk__in=pks)
        if token:
            held = held.filter(claim_token=token)
        if protect_cancelled:
            held = held.exclude(cancel_state=CancelState.CANCELLED)
        count = held.update(**group[0].updates(), **_own_values(group), updated_at=now)
        if token and count < len(pks):
            logger.warning(
                "%d of %d messages were taken over by another run (or already cancelled); "
                "their outcome is logged only",
                len(pks) - count,
                len(pks),
            )
        written += count
    return written


def _own_values(group: Sequence[Outcome]) -> dict[str, Any]:
    """Each message's own values as one ``CASE`` per field (none for most groups)."""
    names = {name for outcome in group for name in outcome.own}
    return {
        name: Case(
            *(When(pk=o.pk, then=Value(o.own[name])) for o in group if name in o.own),
            default=F(name),
        )
        for name in sorted(names)
    }


class OutcomeWriter:
    """Records a run's outcomes in groups of :data:`GROUP_SIZE`, on the run's own thread.

    The first outcome is written at once, alone: it proves the database can
    take the run's records before the run puts many requests on the wire.
    After a failed write the run stops: :meth:`check` raises the error before
    another request is made.  Runs inside a caller's transaction write on the
    caller's connection, so the caller sees the writes.
    """

    def __init__(
        self,
        token: str = "",
        group_size: int = GROUP_SIZE,
        *,
        protect_cancelled: bool = True,
        before_write: Callable[[list[Outcome]], list[Outcome]] | None = None,
        after_write: Callable[[list[Outcome]], None] | None = None,
    ) -> None:
        self.token = token
        self.group_size = group_size
        #: A stop's outcome never overwrites a recorded 006; a send's is about the sending.
        self.protect_cancelled = protect_cancelled
        #: Called with each group before it is written (one query for the group's checks),
        #: and after (what follows from the writes).
        self.before_write, self.after_write = before_write, after_write
        self._pending: list[Outcome] = []
        self._error: BaseException | None = None
        self._first = True

    def write(self, outcome: Outcome) -> None:
        self.check()
        self._pending.append(outcome)
        if self._first or len(self._pending) >= self.group_size:
            self._first = False
            self.flush()

    def flush(self) -> None:
        """Write what is pending; a failure is kept and raised now and by :meth:`check`."""
        pending, self._pending = self._pending, []
        if not pending:
            return
        try:
            if self.before_write is not None:
                pending = self.before_write(pending)
            if len(pending) == 1 and len(pending[0].exchanges) <= 1:
                [one] = pending
                exchange = one.exchanges[0] if one.exchanges else None
                updates = {**one.updates(), **one.own}
                write_outcome(
                    one.pk, updates, exchange, self.token, protect_cancelled=self.protect_cancelled
                )
            else:
                write_outcomes(pending, self.token, protect_cancelled=self.protect_cancelled)
            if self.after_write is not None:
                self.after_write(pending)
        except BaseException as exc:
            logger.error("Could not record the outcomes of %d messages: %r", len(pending), exc)
            self._error = exc
            raise

    def check(self) -> None:
        """Raise the error of a failed earlier write (before making another request)."""
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Write what is still pending; re-raise a failure (the run's, or this one)."""
        self.check()
        self.flush()


def outcome_writer(token: str = "") -> OutcomeWriter:
    """The writer for a run whose messages *token* holds (a message is updated only then)."""
    return OutcomeWriter(token)
