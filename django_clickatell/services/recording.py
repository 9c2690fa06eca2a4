"""Recording what happened: one exchange-log row per request, and the message's outcome.

Every service logs its requests through :func:`new_exchange` and
:func:`answered` / :func:`failed`: the outcome is chosen from the error's type
in one place, and every text that came from the gateway is sanitised and
redacted again before it is stored (defence in depth: the parser already did).

Outcomes are two statements per message and no transaction: the exchange row
first, then the message.  If the process dies between them, the reply is
already in the log and the message is still leased, so the next run finishes
it.  (A transaction would add ``BEGIN``/``COMMIT`` round trips and a second WAL
flush per message.)

In a worker (autocommit), the writes run on a background thread so that the
next request is already on the wire while the database records the last one:
the gateway's round trip, not the database, sets the pace.  Inside a caller's
transaction (``TestCase``, ``ATOMIC_REQUESTS``) they run inline on the caller's
connection, so the caller sees them.  Either way, signals are sent on the
calling thread after the writes are saved, and a failed write stops the run
before another request is made -- while every outcome already received is
still written (one failure never discards the others).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from ..exceptions import (
    ClickatellError,
    CommandNotSent,
    GatewayError,
    ProtocolError,
    TransportError,
)
from ..gateway.backends import Backend
from ..models import CancelState, GatewayExchange, OutboundMessage
from ..protocol.redaction import clean

logger = logging.getLogger("django_clickatell.recording")

Write = tuple[int, dict[str, Any], GatewayExchange | None, str]

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
    if isinstance(error, CommandNotSent):
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
    refusals = backend.refused_attempts
    if not refusals:
        return
    GatewayExchange.objects.bulk_create(
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
    )


def reason(what: str, detail: str) -> str:
    """A stored reason: what happened, and the detail when there is one."""
    return clean_text(f"{what}: {detail}" if detail else what)


def describe(error: ClickatellError) -> str:
    """The reason stored on a message (``send_error``, ``cancel_error``)."""
    return clean_text(str(error))


def save(exchange: GatewayExchange) -> None:
    exchange.save(force_insert=True)


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


class OutcomeWriter:
    """Writes inline; :class:`BackgroundOutcomeWriter` overlaps writes with requests."""

    def __init__(self, token: str = "") -> None:
        self.token = token
        self._after: list[Callable[[], None]] = []

    def write(
        self,
        pk: int,
        updates: dict[str, Any],
        exchange: GatewayExchange | None,
        after: Callable[[], None] | None = None,
    ) -> None:
        self.check()
        self._write((pk, updates, exchange, self.token))
        if after is not None:
            self._after.append(after)

    def _write(self, item: Write) -> None:
        write_outcome(*item)

    def check(self) -> None:
        """Raise the error of a failed earlier write (before making another request)."""

    def close(self) -> None:
        """Wait for every write, re-raise a failure, then run the ``after`` callbacks."""
        self.check()
        after, self._after = self._after, []
        for callback in after:
            callback()


class BackgroundOutcomeWriter(OutcomeWriter):
    _STOP = None

    def __init__(self, token: str = "") -> None:
        super().__init__(token)
        # One outcome waits at most: the pipeline overlaps a write with the next request,
        # but a killed process can lose no more than the reply being written, the one
        # waiting here and the request in flight (each asked again by the next run).
        self._queue: queue.Queue[Write | None] = queue.Queue(maxsize=1)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="clickatell-recorder", daemon=True)
        self._thread.start()

    def _write(self, item: Write) -> None:
        self._queue.put(item)

    def _run(self) -> None:
        try:
            while (item := self._queue.get()) is not None:
                # After a failure keep writing what was already received: one row the
                # database refuses must not take the others with it.  (The run stops
                # making requests at its next check(), so nothing new arrives.)
                try:
                    write_outcome(*item)
                except BaseException as exc:
                    logger.error("Could not record the outcome for message %s: %r", item[0], exc)
                    if self._error is None:
                        self._error = exc
                    if not _usable(connections["default"]):
                        connections["default"].close()
        finally:
            connections.close_all()  # this thread's own connections

    def check(self) -> None:
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        super().close()


def _usable(connection: Any) -> bool:
    try:
        return bool(connection.is_usable())
    except Exception:
        return False


def outcome_writer(token: str = "") -> OutcomeWriter:
    """The writer that fits the caller: background in autocommit, inline in a transaction.

    With a *token*, a message is updated only while that run still holds it.
    """
    if transaction.get_connection().in_atomic_block:
        return OutcomeWriter(token)
    return BackgroundOutcomeWriter(token)
