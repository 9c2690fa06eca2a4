"""JSON over HTTP for Clickatell's newer APIs (the One API): a request in, status and body out.

The legacy transport (:mod:`.transport`) POSTs forms and wants ``200``; the One API
speaks JSON with ``GET`` and ``POST``, answers ``202``/``207``/``4xx`` with meaning
and authenticates every request by an API key in the ``Authorization`` header.
:class:`JsonTransport` reuses everything :class:`~.transport.Transport` sets up --
the pooled ``requests.Session`` with the :class:`~.deadline.DeadlineAdapter`
(``TIMEOUT`` as two total deadlines), the proxy and CA settings read once, the
secure-URL guard, the rebuild after ``fork`` -- and hands the status and body back
for the protocol's parsers to judge.

The API key is revealed only inside the call to ``requests``; it never travels in
a URL, and no exception or log line carries it (failures are re-raised without
the library's exception or frames, as in :mod:`.transport`).  Kept apart from
``transport.py`` for now; the lead unifies the two JSON clients at merge.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
from django.views.decorators.debug import sensitive_variables

from ..protocol.redaction import Secret
from .transport import Transport, logger

#: Replies longer than this are cut off unread past it (the parsers refuse them).
MAX_REPLY = 1_000_001


@dataclass(frozen=True)
class JsonReply:
    """What the API answered: the HTTP status, the body and its ``Retry-After``, if any."""

    status_code: int
    body: bytes
    retry_after: str | None = None


class JsonTransport(Transport):
    """Sends JSON requests, authenticated by an ``Authorization`` header, to one API root."""

    def __repr__(self) -> str:
        return f"<JsonTransport {self.base_url}>"

    @sensitive_variables("authorization", "headers")
    def request(
        self,
        command: str,
        method: str,
        path: str,
        *,
        authorization: Secret,
        payload: Mapping[str, Any] | None = None,
    ) -> JsonReply:
        """One request; typed, secret-free errors for anything but an HTTP answer.

        *command* is the legacy name the exchange log uses (``sendmsg``...);
        *path* is relative to the API root and never carries a secret.
        """
        url = self.base_url + path
        headers = {
            "Authorization": authorization.reveal(),
            "Accept": "application/json",
        }
        data: bytes | None = None
        if payload is not None:
            headers["Content-Type"] = "application/json"
            # UTF-8 JSON text: a Unicode message goes as itself, not as escapes or UCS-2 hex.
            data = json.dumps(payload, ensure_ascii=False).encode()
        started = time.perf_counter()
        failure: BaseException | None = None
        try:
            response = self.session.request(
                method,
                url,
                data=data,
                headers=headers,
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            )
            try:
                body = _read_bounded(response)
                status, retry_after = response.status_code, response.headers.get("Retry-After")
            finally:
                response.close()
        except requests.RequestException as exc:
            failure = self._failure(command, exc)
        except Exception as exc:  # a bug below us: re-raised as is, without the frames
            failure = exc
        if failure is not None:
            failure.__context__ = failure.__cause__ = None
            raise failure.with_traceback(None)
        # Not kept: its .request carries the Authorization header.
        del response, headers
        elapsed = (time.perf_counter() - started) * 1000
        log = logger.debug if status < 400 else logger.warning
        log("Clickatell %s answered HTTP %s after %.0f ms", command, status, elapsed)
        return JsonReply(status, body, retry_after)


def _read_bounded(response: requests.Response) -> bytes:
    """The body, but no more than :data:`MAX_REPLY` bytes of it (a hostile reply is cut)."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_content(chunk_size=65536):
        chunks.append(chunk)
        size += len(chunk)
        if size >= MAX_REPLY:
            break
    return b"".join(chunks)[:MAX_REPLY]


_lock = threading.Lock()
_transports: dict[tuple[str, tuple[float, float]], JsonTransport] = {}


def get_json_transport(base_url: str, timeout: tuple[float, float]) -> JsonTransport:
    """The process-wide JSON transport for this API root and timeout."""
    key = (base_url, timeout)
    transport = _transports.get(key)
    if transport is None:
        with _lock:
            transport = _transports.get(key)
            if transport is None:
                transport = _transports[key] = JsonTransport(base_url, timeout)
    return transport


def reset_json_transports() -> None:
    """Drop every pooled connection (between tests)."""
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
