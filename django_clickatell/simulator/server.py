"""A real HTTP server on 127.0.0.1 that speaks Clickatell's legacy HTTP API.

It authenticates, expires idle sessions, keeps scheduled messages, answers
``auth``, ``ping``, ``delmsg``, ``querymsg``, ``sendmsg``, ``getbalance`` and
``getmsgcharge`` with the documented reply shapes (and the legacy REST API's
calls under ``/rest/`` and the One API's under ``/v1/`` on the same messages, see
``rest`` and ``one_api``), counts requests per command
and TCP connections, and injects faults on demand.  Tests drive it in-process;
other processes use the JSON control endpoints under ``/_simulator/``.

:class:`ClickatellSimulator` puts the pieces together, one module a job:
``state`` (the account, sessions, messages and counters), ``commands`` (the
API's replies), ``faults``, ``http_server``, ``controls`` (the ``/_simulator/``
endpoints), ``callbacks`` (status callbacks pushed out) and ``duplicates``.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from .callbacks import push_callbacks
from .commands import handle
from .faults import Fault, FaultQueue
from .http_server import SimulatorHTTPServer
from .one_api import OneApiGateway
from .state import GatewayState, SimulatedMessage

__all__ = ["ClickatellSimulator", "Fault", "SimulatedMessage"]


class ClickatellSimulator(GatewayState):
    """Start with :meth:`start` (or ``with``); put ``base_url`` in ``CLICKATELL["BASE_URL"]``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        username: str = "demo",
        password: str = "demo-password",  # noqa: S107 (a local test double's default)
        api_id: str = "1234567",
        session_idle_timeout: float = 900.0,
        latency: float = 0.0,
        balance: str = "1000.0",
        certfile: str | None = None,
        keyfile: str | None = None,
        handset_delay: float = 1.0,
        callback_url: str | None = None,
        callback_auth: tuple[str, str] | None = None,
        callback_method: str = "POST",
        callback_retry_delays: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0),
        api_token: str = "demo-rest-api-key",  # noqa: S107 (a local test double's default)
    ) -> None:
        super().__init__(
            username=username,
            password=password,
            api_id=api_id,
            session_idle_timeout=session_idle_timeout,
            latency=latency,
            balance=Decimal(balance),
            handset_delay=handset_delay,
            callback_url=callback_url,
            callback_auth=callback_auth,
            callback_method=callback_method,
            callback_retry_delays=callback_retry_delays,
            api_token=api_token,
        )
        self.host = host
        #: The One API under ``/v1/`` (its key, JSON callbacks and test switches).
        self.one_api = OneApiGateway(self)
        #: Faults waiting for requests: :meth:`inject` adds, :meth:`clear_faults` empties.
        self.faults = FaultQueue()
        self._server = SimulatorHTTPServer((host, port), self)
        self._tls = certfile is not None
        if certfile is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(certfile, keyfile)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def root_url(self) -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{self.host}:{self.port}/"

    @property
    def base_url(self) -> str:
        return self.root_url + "http/"

    @property
    def rest_url(self) -> str:
        """Root of the legacy REST API (``/rest/message``, ``/rest/account/balance``)."""
        return self.root_url + "rest/"

    def start(self) -> ClickatellSimulator:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="clickatell-simulator", daemon=True
        )
        self._thread.start()
        self._start_background()
        return self

    def serve_forever(self) -> None:
        self._start_background()
        self._server.serve_forever()

    def _start_background(self) -> None:
        for target, name in ((self._tick, "ticker"), (self._push_callbacks, "callbacks")):
            threading.Thread(
                target=target, name=f"clickatell-simulator-{name}", daemon=True
            ).start()

    def _tick(self) -> None:
        """Move messages along when their time comes (and so queue their callbacks)."""
        while not self._stopping.wait(0.05):
            self._advance_due()

    def _push_callbacks(self) -> None:
        push_callbacks(self)

    def stop(self) -> None:
        self._stopping.set()
        self._pending_callbacks.put(None)
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ClickatellSimulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """A ``CLICKATELL`` settings dict pointing at this simulator."""
        return {
            "USERNAME": self.username,
            "PASSWORD": self.password,
            "API_ID": self.api_id,
            "BASE_URL": self.base_url,
            **overrides,
        }

    def rest_settings(self, **overrides: Any) -> dict[str, Any]:
        """A ``CLICKATELL`` settings dict for the REST backend pointing at this simulator."""
        return {
            "BACKEND": "rest",
            "API_KEY": self.api_token,
            "BASE_URL": self.rest_url,
            **overrides,
        }

    def one_api_settings(self, **overrides: Any) -> dict[str, Any]:
        """A ``CLICKATELL`` settings dict for the One API backend pointing at this simulator."""
        return {
            "BACKEND": "one_api",
            "API_KEY": self.one_api.api_key,
            "BASE_URL": self.root_url,
            **overrides,
        }

    # -- test controls (the rest, on the state, are inherited) -----------------------------

    def inject(self, fault: Fault | str, **kwargs: Any) -> None:
        """Queue a fault: ``inject("http_502", command="delmsg", times=3)``."""
        self.faults.add(fault if isinstance(fault, Fault) else Fault(fault, **kwargs))

    def clear_faults(self) -> None:
        self.faults.clear()

    @contextmanager
    def latency_of(self, seconds: float) -> Iterator[None]:
        previous, self.latency = self.latency, seconds
        try:
            yield
        finally:
            self.latency = previous

    def handle(self, command: str, fields: dict[str, str], *, count: bool = True) -> str:
        """The reply body for one command (thread-safe), as if no fault were queued."""
        return handle(self, command, fields, count=count)
