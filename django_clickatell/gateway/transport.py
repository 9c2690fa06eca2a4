"""All HTTP to Clickatell goes through here.

One ``requests.Session`` per process keeps TCP (and TLS) connections alive
across commands; it is rebuilt after ``fork`` so prefork workers never share a
socket.  Credentials and session ids never appear in a URL: the HTTP API gets
POST form bodies (:meth:`Transport.post`), the REST API JSON with its key in
the ``Authorization`` header (:meth:`Transport.request`, kept apart).  Failures
become typed, secret-free exceptions.

``TIMEOUT = (connect, read)`` is two total deadlines, one for connecting and
one for the whole reply, not a timeout per socket read: see :mod:`.deadline`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Mapping
from typing import NamedTuple

import requests
from django.views.decorators.debug import sensitive_variables
from urllib3.exceptions import ReadTimeoutError

from .. import __version__
from ..conf import require_secure_base_url
from ..exceptions import GatewayHTTPError, GatewayTimeout, GatewayUnreachable, TransportError
from ..protocol.redaction import Secret
from .deadline import DeadlineAdapter

logger = logging.getLogger("django_clickatell.gateway")

USER_AGENT = f"django-clickatell/{__version__} python-requests/{requests.__version__}"
#: Connections kept per host: enough for a threaded worker, one per prefork child.
POOL_SIZE = 32

#: A form field's value: secrets stay wrapped until the moment they are encoded.
FormValue = str | Secret
#: Largest JSON reply body read (the REST parsers refuse anything larger).
MAX_JSON_BODY = 1_000_000


class Transport:
    """POSTs a command's form fields and returns the reply text."""

    def __init__(self, base_url: str, timeout: tuple[float, float]) -> None:
        require_secure_base_url(base_url)
        self.base_url = base_url
        self.timeout = timeout
        self.session = requests.Session()
        adapter = DeadlineAdapter(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
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

    # -- JSON over HTTP (the REST backend) ------------------------------------------------

    @sensitive_variables("bearer", "headers")
    def request(
        self,
        method: str,
        path: str,
        *,
        command: str,
        credential: Secret,
        scheme: str = "Bearer",
        json_body: object = None,
        params: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        max_body: int = MAX_JSON_BODY,
    ) -> JsonReply:
        """One JSON request; every HTTP status is returned, the caller's parser decides.

        Kept apart from :meth:`post` (whose behaviour the legacy API relies on).
        The API key travels only in the ``Authorization`` header (``Bearer <key>``
        for the REST API; the raw key, ``scheme=""``, for the One API), revealed
        inside this call; *params* are for message references, never credentials.  A
        body over *max_body* bytes is cut there (the parser refuses it as too
        large) and the connection dropped.  Failures are the same secret-free
        :class:`TransportError` types as :meth:`post`, under *command*.
        """
        url = self.base_url + path.lstrip("/")
        headers = {
            "Accept": "application/json",
            **(extra_headers or {}),
            "Authorization": f"{scheme} {credential.reveal()}" if scheme else credential.reveal(),
        }
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            response = self.session.request(
                method,
                url,
                params=params,
                data=None if json_body is None else _json_bytes(json_body),
                headers=headers if json_body is None else {**headers, **_JSON_CONTENT},
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
            status, reply_headers = response.status_code, dict(response.headers.items())
            body = _bounded_body(response, max_body)
            del response  # its .request carries the Authorization header
        except requests.RequestException as exc:
            failure = self._failure(command, exc)
        except Exception as exc:  # a bug below us: re-raised as is, without the frames
            failure = exc
        del headers
        if failure is not None:
            failure.__context__ = failure.__cause__ = None
            raise failure.with_traceback(None)
        elapsed = (time.perf_counter() - started) * 1000
        # 4xx are answers (unknown message, refused recipient); 429 and 5xx are trouble.
        level = logging.WARNING if status == 429 or status >= 500 else logging.DEBUG
        logger.log(level, "Clickatell %s answered HTTP %s after %.0f ms", command, status, elapsed)
        return JsonReply(status, reply_headers, body)

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


_JSON_CONTENT = {"Content-Type": "application/json"}


def _json_bytes(document: object) -> bytes:
    """UTF-8 JSON: Unicode text travels as itself, not as ``\\u`` escapes (a third the size)."""
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()


class JsonReply(NamedTuple):
    """An HTTP answer as :meth:`Transport.request` returns it: status, headers, body."""

    status_code: int
    headers: dict[str, str]
    body: bytes


def _bounded_body(response: requests.Response, limit: int) -> bytes:
    """At most ``limit + 1`` bytes of the body: enough for the parser to see it is too large.

    A body read to its end hands the connection back to the pool; one cut short
    closes it (the rest is never read).
    """
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:
            response.close()
            break
    return b"".join(chunks)[: limit + 1]


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
