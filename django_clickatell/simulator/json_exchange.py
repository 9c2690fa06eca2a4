"""What the REST and One API endpoints share: a JSON request as a fault's ``Exchange``.

A fault acts on the request through the exchange -- carry it out, answer,
trickle, reset, close.  Faults answer "200 with the reply they earned"; for a
JSON API that reply goes out with the status the call really earned (``202``,
``207``, ``404``...) and its headers.  Each API says how a call is carried out
(:meth:`JsonExchange.handle`); everything else is here, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .http_server import SimulatorRequestHandler

#: An API's reply: HTTP status, JSON text, extra headers.
Reply = tuple[int, str, dict[str, str]]


class JsonExchange:
    """One JSON request being answered (or faulted) by the simulator's HTTP handler."""

    def __init__(self, handler: SimulatorRequestHandler, command: str, route: str) -> None:
        self.handler = handler
        self.command = command
        self.route = route
        self.counted = False
        self._earned: Reply | None = None

    def handle(self, *, count: bool) -> Reply:
        """Carry the call out at the simulated gateway (``count``: count it as a request)."""
        raise NotImplementedError

    def carry_out(self) -> str:
        self._earned = self.handle(count=not self.counted)
        self.counted = True
        return self._earned[1]

    def answer(
        self,
        status: int,
        text: str,
        content_type: str = "application/json",
        headers: dict[str, str] | None = None,
    ) -> None:
        if self._earned is not None and status == 200 and text == self._earned[1]:
            status, headers = self._earned[0], {**self._earned[2], **(headers or {})}
        self.handler.answer(status, text, content_type, headers)

    def trickle(self, text: str, pause: float) -> None:
        self.handler.trickle(text, pause)

    def reset_connection(self) -> None:
        self.handler.reset_connection()

    def close_when_done(self) -> None:
        self.handler.close_when_done()
