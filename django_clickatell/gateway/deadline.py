"""Whole-request deadlines for ``requests``: one for connecting, one for the entire reply.

``TIMEOUT = (connect, read)`` means, for one request:

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
replaced, and :class:`DeadlineAdapter` is what a ``requests.Session`` mounts.
"""

from __future__ import annotations

import functools
import http.client
import io
import socket
import sys
import time
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, PoolManager, ProxyManager
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util.connection import allowed_gai_family


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

    _body_with_headers: bytes | None = None

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        **kwargs: Any,
    ) -> None:
        self._request_started = time.monotonic()
        if isinstance(body, str):
            body = body.encode("utf-8")  # what urllib3 would do with it
        if (
            isinstance(body, bytes)
            and body
            and not kwargs.get("chunked")
            and headers is not None
            and any(key.lower() == "content-length" for key in headers)
        ):
            # A small form body leaves in the same write as the headers: one segment and
            # one wake-up of the gateway instead of two (http.client sends them apart).
            self._body_with_headers = body
            try:
                super().request(method, url, None, headers, **kwargs)
            finally:
                self._body_with_headers = None
            return
        super().request(method, url, body, headers, **kwargs)

    def send(self, data: Any) -> None:
        body, self._body_with_headers = self._body_with_headers, None
        if body is not None:  # the first write of a request is its headers (see request)
            if isinstance(data, bytes):
                data += body
            else:
                super().send(data)
                data = body
        super().send(data)

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


class DeadlineAdapter(HTTPAdapter):
    """requests' adapter, with connections that keep ``(connect, read)`` as two total deadlines."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_deadline_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        return _use_deadline_pools(super().proxy_manager_for(proxy, **proxy_kwargs))
