"""A development backend that prints each SMS instead of sending it: ``BACKEND = "console"``.

Like Django's console e-mail backend: each message is written to a stream
(standard output unless given), nothing leaves the machine, nothing is
charged.  Messages get fake ids and stay queued (``002``) -- nothing will
deliver them -- until stopped (``006``, as Clickatell answers a stop of a
message that is not final).  What is written is the message and its options,
never the account's settings: no password, API key or session id can appear.

The ids carry everything ``query`` needs, so a development server restarted
between a send and a refresh still answers ``002`` for its own messages; only
the stops made since the start of the process are remembered.
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, TextIO

from ...exceptions import UnknownMessage
from ...protocol.replies import BalanceReply, MessageStatusReply, SentMessageReply
from .base import Backend, Capabilities, OutgoingSms, SendResult
from .locmem import QUEUED, STOPPED, check_reference

if TYPE_CHECKING:
    from ...conf import ClickatellSettings

#: What ``balance`` answers: a development account never runs out.
CONSOLE_CREDIT = Decimal("1000.000000")

_PREFIX = "console-"
_LINE = "-" * 79
_lock = threading.Lock()
_ids = itertools.count(1)
_sent: dict[str, str] = {}  # climsgid -> apimsgid, this process's sends
_stopped: set[str] = set()


class ConsoleBackend(Backend):
    """Writes every message to ``stream`` (``sys.stdout`` when the backend is built)."""

    name = "console"
    capabilities = Capabilities(
        remote_stop=True,
        sessions=False,
        native_scheduling=True,
        scheduling_horizon=timedelta(days=7),
        batch_size=200,
        callbacks="",
        query_by_client_id=True,
    )

    def __init__(
        self, config: ClickatellSettings, *, alias: str = "default", stream: TextIO | None = None
    ) -> None:
        super().__init__(config, alias=alias)
        self.stream = stream or sys.stdout

    def send(self, messages: Sequence[OutgoingSms]) -> list[SendResult]:
        results: list[SendResult] = []
        with _lock:
            for message in messages:
                apimsgid = f"{_PREFIX}{os.getpid():x}-{next(_ids):08x}"
                if message.climsgid:
                    _sent[message.climsgid] = apimsgid
                self._write(_render(self.alias, apimsgid, message))
                results.append(SentMessageReply(apimsgid))
            self.stream.flush()
        return results

    def query(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        found = self._find("querymsg", apimsgid, climsgid)
        with _lock:
            return MessageStatusReply(found, STOPPED if found in _stopped else QUEUED)

    def stop(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        found = self._find("delmsg", apimsgid, climsgid)
        with _lock:
            _stopped.add(found)
            self._write(f"{_LINE}\nSMS {found} stopped (account {self.alias!r})\n")
            self.stream.flush()
        return MessageStatusReply(found, STOPPED)

    def balance(self) -> BalanceReply:
        return BalanceReply(CONSOLE_CREDIT)

    def check_credentials(self) -> None:
        """Nothing to check: the console needs no credentials."""

    def _find(self, command: str, apimsgid: str | None, climsgid: str | None) -> str:
        """The console's own message the ids name; ``UnknownMessage`` for any other."""
        reference = check_reference(apimsgid, climsgid)
        if apimsgid:
            if apimsgid.startswith(_PREFIX):
                return apimsgid
            raise UnknownMessage(103, command=command)
        with _lock:
            found = _sent.get(reference)
        if found is None:
            raise UnknownMessage(104, command=command)
        return found

    def _write(self, text: str) -> None:
        self.stream.write(text)


def _render(account: str, apimsgid: str, message: OutgoingSms) -> str:
    """One message as the console shows it: the envelope, then the text."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    lines = [
        _LINE,
        f"SMS {apimsgid} (account {account!r}, {now})",
        f"To: {message.to}",
    ]
    if message.sender:
        lines.append(f"From: {message.sender}")
    if message.climsgid:
        lines.append(f"Client id: {message.climsgid}")
    options = ", ".join(f"{key}={value}" for key, value in sorted(message.options.items()))
    if options:
        lines.append(f"Options: {options}")
    lines += ["", message.text, ""]
    return "\n".join(lines)


__all__ = ["CONSOLE_CREDIT", "ConsoleBackend"]
