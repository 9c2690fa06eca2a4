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
from typing import Any, NamedTuple
from urllib.parse import urlencode

import requests
from django.views.decorators.debug import sensitive_variables
from requests.structures import CaseInsensitiveDict
from urllib3.exceptions import HTTPError, ReadTimeoutError
from urllib3.util import Timeout

from .. import __version__
from ..conf import require_secure_base_url
from ..exceptions import GatewayTimeout, GatewayUnreachable, TransportError
from ..protocol.errors import http_error
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

    def __init__(
        self, base_url: str, timeout: tuple[float, float], *, key: str = "BASE_URL"
    ) -> None:
        require_secure_base_url(base_url, key)
        self.base_url = base_url
        self.timeout = timeout
        self.session = requests.Session()
        adapter = _GatewayAdapter(pool_connections=1, pool_maxsize=POOL_SIZE, max_retries=0)
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
        self._prepare_sending()

    def _prepare_sending(self) -> None:
        """Work every POST used to redo, done once: what does not depend on the request.

        ``Session.post`` merges the session's settings into each request
        (``prepare_request``, ``merge_environment_settings``: a dozen
        ``typing.Protocol`` ``isinstance`` checks, URL re-parsing, header
        dictionaries rebuilt, cookie jars merged, hooks dispatched).  None of it
        varies between two commands to the same gateway, so the adapter, the
        headers, the proxy and TLS settings and the timeout object are resolved
        here and :meth:`post` hands a prepared request straight to the session's
        own adapter -- still ``requests`` (and ``responses`` in the tests), with
        the same pool, deadlines and error types.  Redirects are never followed:
        the adapter does not follow them and :meth:`post` refuses any status but 200.
        """
        self._adapter = self.session.get_adapter(self.base_url)
        self._headers = {key: str(value) for key, value in self.session.headers.items()}
        self._headers["Content-Type"] = "application/x-www-form-urlencoded"
        connect, read = self.timeout
        self._send_options: dict[str, object] = {
            "timeout": Timeout(connect=connect, read=read),
            "verify": self.session.verify,
            "proxies": dict(self.session.proxies),
            "cert": None,
            "stream": False,
        }

    @sensitive_variables("fields", "body", "request")
    def _send(self, url: str, fields: Mapping[str, FormValue]) -> requests.Response:
        """One POST of *fields* through the session's adapter (see :meth:`_prepare_sending`)."""
        body = urlencode(_revealed(fields))
        request = requests.PreparedRequest()
        request.method = "POST"
        request.url = url
        request.headers = CaseInsensitiveDict(self._headers)
        request.headers["Content-Length"] = str(len(body))
        request.body = body
        request.hooks = {"response": []}
        return self._adapter.send(request, **self._send_options)  # type: ignore[arg-type]

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
        status, body = 0, b""
        try:
            response = self._send(url, fields)
            status = response.status_code
            if status == 200:
                body = _body(response)
            else:
                # Not read: an error page (a proxy's) may echo the form; the connection
                # is closed and handed back to the pool, which reconnects next time.
                response.close()
            # Not kept in this frame: its .request carries the encoded form.
            del response
        except (requests.RequestException, HTTPError) as exc:
            failure = self._failure(command, exc)
        except Exception as exc:  # a bug below us: re-raised as is, without the frames
            failure = exc
        if failure is not None:
            failure.__context__ = failure.__cause__ = None
            raise failure.with_traceback(None)
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            logger.warning("Clickatell %s answered HTTP %s after %.0f ms", command, status, elapsed)
            raise http_error(command, status)
        logger.debug("Clickatell %s answered after %.0f ms", command, elapsed)
        # Served as text/html without a charset; the protocol itself is ASCII.
        return body.decode("utf-8", errors="replace")

    # -- JSON over HTTP (the REST backend) ------------------------------------------------

    @sensitive_variables("credential", "headers")
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

    def _failure(self, command: str, exc: Exception) -> TransportError:
        """The typed, secret-free error for a failure of requests or urllib3 (the body)."""
        kind = type(exc).__name__
        if _is_timeout(exc):
            return GatewayTimeout(command, f"no answer within {self._describe_timeout()} ({kind})")
        return GatewayUnreachable(command, f"connection failed ({kind})")

    def _describe_timeout(self) -> str:
        connect, read = self.timeout
        return f"{connect:g}s to connect + {read:g}s for the whole reply"

    def close(self) -> None:
        self.session.close()


class _GatewayAdapter(DeadlineAdapter):
    """The deadline adapter, minus per-request work that never varies for one gateway.

    ``HTTPAdapter.send`` itself is kept (it maps urllib3's errors to requests'
    and is what ``responses`` replaces in the tests); two of its helpers are
    trimmed: the connection pool is looked up once per gateway instead of
    rebuilding its key on every request (it is looked up again if the pool
    manager closed it), and replies do not feed a cookie jar (Clickatell's
    commands set none, and nothing here would send them back).
    """

    _pool: Any = None  # the urllib3 pool for _pool_key
    _pool_key: tuple[str, object, object] | None = None

    def get_connection_with_tls_context(
        self,
        request: requests.PreparedRequest,
        verify: Any,
        proxies: Mapping[str, str] | None = None,
        cert: Any = None,
    ) -> Any:
        if proxies or not request.url:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        origin = request.url.split("/", 3)[:3]
        key = ("/".join(origin), verify if isinstance(verify, bool | str) else id(verify), cert)
        pool = self._pool
        if pool is None or pool.pool is None or key != self._pool_key:
            pool = super().get_connection_with_tls_context(request, verify, proxies, cert)
            self._pool, self._pool_key = pool, key
        return pool

    def build_response(self, req: requests.PreparedRequest, resp: Any) -> requests.Response:
        response = requests.Response()
        response.status_code = resp.status
        response.headers = CaseInsensitiveDict(resp.headers)
        response.raw = resp
        response.reason = resp.reason
        response.url = req.url or ""
        response.request = req
        response.connection = self
        return response

    def close(self) -> None:
        self._pool = self._pool_key = None
        super().close()


def _body(response: requests.Response) -> bytes:
    """The whole reply body, decoded from gzip/deflate if the gateway compressed it.

    One read of the urllib3 response (which returns the connection to the pool
    once the body is complete) instead of ``Response.content``'s chunk iterator.
    """
    return bytes(response.raw.read(decode_content=True))


def _is_timeout(exc: Exception) -> bool:
    """Whether *exc* is a deadline, as requests classifies it (or urllib3, for the body).

    The body is read from urllib3's response, whose deadline is its own
    ``ReadTimeoutError``.  requests reports a deadline hit while reading the *body* as a
    ``ConnectionError`` wrapping urllib3's ``ReadTimeoutError``; everything else
    it already types as ``requests.Timeout``.  (urllib3's ``NewConnectionError``
    -- a refused connection -- subclasses its timeout class, so the exception's
    chain is not searched for timeouts.)
    """
    if isinstance(exc, requests.Timeout | ReadTimeoutError):
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


def get_transport(
    base_url: str, timeout: tuple[float, float], *, key: str = "BASE_URL"
) -> Transport:
    """The process-wide transport for this gateway URL and timeout.

    *key* names the setting the URL came from (``ClickatellSettings.key("BASE_URL")``),
    for the error that refuses an insecure one."""
    cache_key = (base_url, timeout)
    transport = _transports.get(cache_key)
    if transport is None:
        with _lock:
            transport = _transports.get(cache_key)
            if transport is None:
                transport = _transports[cache_key] = Transport(base_url, timeout, key=key)
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
