"""All HTTP to Clickatell goes through here.

One ``requests.Session`` per process keeps TCP (and TLS) connections alive
across commands; it is rebuilt after ``fork`` so prefork workers never share a
socket.  Only POST form bodies are sent, so credentials and session ids never
appear in a URL, and failures become typed, secret-free exceptions.

Deadlines.  ``TIMEOUT = (connect, read)`` means, for one request:

* ``connect`` bounds connecting: the TCP connection (every address of the
  host together) and the TLS handshake, as one total.  Name resolution is left
  to the system resolver and is not bounded here.
* ``read`` bounds everything after the connection is made -- writing the form,
  waiting, reading the status line, the headers and the body -- as ONE total
  deadline, not per socket read: a gateway (or anything in between) trickling
  its reply a byte at a time is cut off when the deadline passes.

So one request takes at most ``connect + read`` seconds after name resolution
(:attr:`~django_clickatell.conf.ClickatellSettings.request_deadline`); the
leases in :mod:`~django_clickatell.conf` are sized from that.  ``requests``
and ``urllib3`` stay the transport: their connection class is extended, not
replaced.
"""

from __future__ import annotations

import functools
import http.client
import io
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager, ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
    ReadTimeoutError,
)
from urllib3.util.connection import allowed_gai_family

from .. import __version__
from ..conf import require_secure_base_url
from ..exceptions import GatewayHTTPError, GatewayTimeout, GatewayUnreachable, TransportError
from ..protocol.redaction import Secret

logger = logging.getLogger("django_clickatell.gateway")

USER_AGENT = f"django-clickatell/{__version__} python-requests/{requests.__version__}"
#: Connections kept per host: enough for a threaded worker, one per prefork child.
POOL_SIZE = 32

#: A form field's value: secrets stay wrapped until the moment they are encoded.
FormValue = str | Secret


# -- deadlines -----------------------------------------------------------------------------


class _DeadlineReader(io.RawIOBase):
    """Socket reads that all share one deadline (a fresh timeout per read would not)."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        # An unbuffered socket file counts as a user of the socket, exactly like the file
        # http.client would have made: the connection may "close" the socket after the
        # headers (HTTP/1.0, Connection: close) while the body is still being read.
        self._raw = sock.makefile("rb", buffering=0)
        self._sock = sock
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the reply did not arrive within the read deadline")
        self._sock.settimeout(remaining)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """``http.client``'s response, reading through a :class:`_DeadlineReader`."""

    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: str | None = None,
        url: str | None = None,
        *,
        deadline: float | None = None,
    ) -> None:
        super().__init__(sock, debuglevel, method, url)
        if deadline is not None:
            self.fp.close()  # the buffered file http.client made; we read through our own
            self.fp = io.BufferedReader(_DeadlineReader(sock, deadline))


def _connect_within(
    deadline: float,
    address: tuple[str, int],
    source_address: tuple[str, int] | None,
    socket_options: Any,
) -> socket.socket:
    """``urllib3.util.connection.create_connection``, with one deadline for all addresses.

    The socket keeps the remaining time as its timeout, so the TLS handshake that
    follows (which CPython bounds as a whole by the socket timeout) shares the budget.
    """
    host, port = address
    error: OSError | None = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(
        host.strip("[]"), port, allowed_gai_family(), socket.SOCK_STREAM
    ):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        sock = socket.socket(family, kind, proto)
        try:
            for option in socket_options or ():
                sock.setsockopt(*option)
            sock.settimeout(remaining)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    if error is not None and not isinstance(error, TimeoutError):
        raise error
    raise TimeoutError("no connection within the connect deadline")


class _DeadlineConnection(HTTPConnection):
    """urllib3's connection with ``(connect, read)`` as two total deadlines (module doc)."""

    _request_started = 0.0
    _connected_at = 0.0

    def _new_conn(self) -> socket.socket:
        budget = self.timeout  # the connect timeout: the pool sets it before connecting
        if not isinstance(budget, int | float):
            return super()._new_conn()
        try:
            sock = _connect_within(
                time.monotonic() + budget,
                (self._dns_host, self.port),
                self.source_address,
                self.socket_options,
            )
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        except TimeoutError as exc:
            raise ConnectTimeoutError(
                self, f"Connection to {self.host} timed out. (connect timeout={budget})"
            ) from exc
        except OSError as exc:
            raise NewConnectionError(self, f"Failed to establish a new connection: {exc}") from exc
        sys.audit("http.client.connect", self, self.host, self.port)
        return sock

    def connect(self) -> None:
        super().connect()
        self._connected_at = time.monotonic()

    def request(self, *args: Any, **kwargs: Any) -> None:
        self._request_started = time.monotonic()
        super().request(*args, **kwargs)

    def getresponse(self) -> Any:
        read_budget = self.timeout  # the read timeout: the pool sets it before this call
        if isinstance(read_budget, int | float):
            started = max(self._request_started, self._connected_at)
            self.response_class = functools.partial(  # type: ignore[assignment]
                _DeadlineResponse, deadline=started + read_budget
            )
        try:
            return super().getresponse()
        finally:
            self.__dict__.pop("response_class", None)


class _DeadlineHTTPSConnection(_DeadlineConnection, HTTPSConnection):
    pass


class _DeadlineHTTPPool(HTTPConnectionPool):
    ConnectionCls = _DeadlineConnection


class _DeadlineHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _DeadlineHTTPSConnection


def _use_deadline_pools(manager: PoolManager) -> PoolManager:
    if type(manager) in (PoolManager, ProxyManager):  # SOCKS managers keep their own pools
        manager.pool_classes_by_scheme = {"http": _DeadlineHTTPPool, "https": _DeadlineHTTPSPool}
    return manager


class _DeadlineAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_deadline_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        return _use_deadline_pools(super().proxy_manager_for(proxy, **proxy_kwargs))


def _is_timeout(exc: requests.RequestException) -> bool:
    """Whether *exc* is a deadline, as requests classifies it.

    requests reports a deadline hit while reading the *body* as a
    ``ConnectionError`` wrapping urllib3's ``ReadTimeoutError``; everything else
    it already types as ``requests.Timeout``.  (urllib3's ``NewConnectionError``
    -- a refused connection -- subclasses its timeout class, so the exception's
    chain is not searched for timeouts.)
    """
    if isinstance(exc, requests.Timeout):
        return True
    return isinstance(exc, requests.ConnectionError) and any(
        isinstance(arg, ReadTimeoutError) for arg in exc.args
    )


# -- the transport -------------------------------------------------------------------------


class Transport:
    """POSTs a command's form fields and returns the reply text."""

    def __init__(self, base_url: str, timeout: tuple[float, float]) -> None:
        require_secure_base_url(base_url)
        self.base_url = base_url
        self.timeout = timeout
        self.session = requests.Session()
        adapter = _DeadlineAdapter(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.session.headers["User-Agent"] = USER_AGENT
        # Read proxy and CA-bundle settings from the environment once, here, instead of
        # on every request (requests rescans os.environ per call when trust_env is on,
        # which cost a third of a millisecond per command in the benchmarks).
        self.session.proxies.update(requests.utils.get_environ_proxies(base_url))
        bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if bundle and base_url.startswith("https://"):
            self.session.verify = bundle  # (a path costs a stat per request: https only)
        self.session.trust_env = False

    def __repr__(self) -> str:
        return f"<Transport {self.base_url}>"

    @sensitive_variables("fields")
    def post(self, command: str, fields: Mapping[str, FormValue]) -> str:
        """The reply body; secrets in *fields* are revealed only inside the call to requests.

        Failures are raised outside the handler, so neither the library's
        exception nor its frames (which hold the encoded form, password
        included) are chained to ours; the library's type name is kept.
        """
        url = self.base_url + command
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            response = self.session.post(
                url, data=_revealed(fields), timeout=self.timeout, allow_redirects=False
            )
        except requests.RequestException as exc:
            failure = self._failure(command, exc)
        except Exception as exc:  # a bug below us: re-raised as is, without the frames
            failure = exc
        if failure is not None:
            failure.__context__ = failure.__cause__ = None
            raise failure.with_traceback(None)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            status = response.status_code
            # Not kept in this frame: its .request carries the encoded form, and an error
            # page (a proxy's) may echo it.
            del response
            logger.warning("Clickatell %s answered HTTP %s after %.0f ms", command, status, elapsed)
            raise GatewayHTTPError(command, status)
        logger.debug("Clickatell %s answered after %.0f ms", command, elapsed)
        # Served as text/html without a charset; the protocol itself is ASCII.
        return response.content.decode("utf-8", errors="replace")

    def _failure(self, command: str, exc: requests.RequestException) -> TransportError:
        kind = type(exc).__name__
        if _is_timeout(exc):
            return GatewayTimeout(command, f"no answer within {self._describe_timeout()} ({kind})")
        return GatewayUnreachable(command, f"connection failed ({kind})")

    def _describe_timeout(self) -> str:
        connect, read = self.timeout
        return f"{connect:g}s to connect + {read:g}s for the whole reply"

    def close(self) -> None:
        self.session.close()


@sensitive_variables()
def _revealed(fields: Mapping[str, FormValue]) -> dict[str, str]:
    return {
        key: value.reveal() if isinstance(value, Secret) else value for key, value in fields.items()
    }


_lock = threading.Lock()
_transports: dict[tuple[str, tuple[float, float]], Transport] = {}


def get_transport(base_url: str, timeout: tuple[float, float]) -> Transport:
    """The process-wide transport for this gateway URL and timeout."""
    key = (base_url, timeout)
    transport = _transports.get(key)
    if transport is None:
        with _lock:
            transport = _transports.get(key)
            if transport is None:
                transport = _transports[key] = Transport(base_url, timeout)
    return transport


def reset_transports() -> None:
    """Drop every pooled connection and memoised session id (between tests)."""
    from .session import forget_local_sessions

    forget_local_sessions()
    with _lock:
        for transport in _transports.values():
            transport.close()
        _transports.clear()


def _forget_inherited_transports() -> None:
    # The child must not close the parent's sockets, only stop using them.
    global _lock
    _lock = threading.Lock()
    _transports.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_inherited_transports)
