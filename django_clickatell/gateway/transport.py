"""All HTTP to Clickatell goes through here.

One ``requests.Session`` per process keeps TCP (and TLS) connections alive
across commands; it is rebuilt after ``fork`` so prefork workers never share a
socket.  Only POST form bodies are sent, so credentials and session ids never
appear in a URL, and failures become typed, secret-free exceptions.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping

import requests
from requests.adapters import HTTPAdapter

from .. import __version__
from ..exceptions import GatewayHTTPError, GatewayTimeout, GatewayUnreachable

logger = logging.getLogger("django_clickatell.gateway")

USER_AGENT = f"django-clickatell/{__version__} python-requests/{requests.__version__}"
#: Connections kept per host: enough for a threaded worker, one per prefork child.
POOL_SIZE = 32


class Transport:
    """POSTs a command's form fields and returns the reply text."""

    def __init__(self, base_url: str, timeout: tuple[float, float]) -> None:
        self.base_url = base_url
        self.timeout = timeout
        self.session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
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

    def post(self, command: str, fields: Mapping[str, str]) -> str:
        url = self.base_url + command
        started = time.perf_counter()
        try:
            response = self.session.post(
                url, data=dict(fields), timeout=self.timeout, allow_redirects=False
            )
        except requests.Timeout as exc:
            raise GatewayTimeout(command, f"no answer within {self._describe_timeout()}") from exc
        except requests.RequestException as exc:
            raise GatewayUnreachable(command, f"connection failed ({type(exc).__name__})") from exc
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            logger.warning(
                "Clickatell %s answered HTTP %s after %.0f ms",
                command,
                response.status_code,
                elapsed,
            )
            raise GatewayHTTPError(command, response.status_code)
        logger.debug("Clickatell %s answered after %.0f ms", command, elapsed)
        # Served as text/html without a charset; the protocol itself is ASCII.
        return response.content.decode("utf-8", errors="replace")

    def _describe_timeout(self) -> str:
        connect, read = self.timeout
        return f"{connect:g}s to connect / {read:g}s to read"

    def close(self) -> None:
        self.session.close()


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
