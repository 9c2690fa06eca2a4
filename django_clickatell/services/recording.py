"""Recording each message's outcome: the exchange row first, then the message.

Two statements per message and no transaction: if the process dies between
them, the reply is already in the log and the message is still claimed by the
same token, so a redelivered task finishes it.  (A transaction would add
``BEGIN``/``COMMIT`` round trips and a second WAL flush per message.)

In a worker (autocommit), the writes run on a background thread so that the
next ``delmsg`` is already on the wire while the database records the last
one: the gateway's round trip, not the database, sets the pace.  Inside a
caller's transaction (``TestCase``, ``ATOMIC_REQUESTS``) they run inline on the
caller's connection, so the caller sees them.  Either way, signals are sent on
the calling thread after the writes are saved, and a failed write stops the
run before another request is made.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from django.db import connections, transaction

from ..models import CancelState, GatewayExchange, OutboundMessage

Write = tuple[int, dict[str, Any], GatewayExchange | None]


def write_outcome(pk: int, updates: dict[str, Any], exchange: GatewayExchange | None) -> None:
    if exchange is not None:
        exchange.save(force_insert=True)
    # Never overwrite a recorded 006 (a stale worker answering late).
    OutboundMessage.objects.filter(pk=pk).exclude(cancel_state=CancelState.CANCELLED).update(
        **updates
    )


class OutcomeWriter:
    """Writes inline; :class:`BackgroundOutcomeWriter` overlaps writes with requests."""

    def __init__(self) -> None:
        self._after: list[Callable[[], None]] = []

    def write(
        self,
        pk: int,
        updates: dict[str, Any],
        exchange: GatewayExchange | None,
        after: Callable[[], None] | None = None,
    ) -> None:
        self.check()
        self._write((pk, updates, exchange))
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

    def __init__(self) -> None:
        super().__init__()
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
                if self._error is None:  # after a failure, drain without writing
                    try:
                        write_outcome(*item)
                    except BaseException as exc:
                        self._error = exc
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


def outcome_writer() -> OutcomeWriter:
    """The writer that fits the caller: background in autocommit, inline in a transaction."""
    if transaction.get_connection().in_atomic_block:
        return OutcomeWriter()
    return BackgroundOutcomeWriter()
