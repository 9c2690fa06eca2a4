"""Pushing status callbacks to the account's callback URL, as Clickatell does.

The gateway's state queues the form of each status change a message asked to
hear of; :func:`push_callbacks`, a background thread, sends them, and
retries one the receiver refused after each of ``callback_retry_delays`` in turn.
"""

from __future__ import annotations

import base64
import logging
import threading
from urllib.error import HTTPError, URLError
from urllib.parse import urlencode
from urllib.request import Request, urlopen

from .state import GatewayState, JsonPush

logger = logging.getLogger("django_clickatell.simulator")

#: What a receiver's refusal usually means, said once per callback (not per retry): a
#: newcomer's runserver shows only "Unauthorized" and the simulator retried in silence.
_REFUSED_HINTS = {
    False: "do --callback-username and $CLICKATELL_CALLBACK_PASSWORD match the "
    "account's CALLBACK_USERNAME and CALLBACK_PASSWORD, and --api-id its API_ID?",
    True: "does the secret in --one-api-callback-url match the account's CALLBACK_SECRET, "
    "and the alias in it the account's?",
}


def push_callbacks(state: GatewayState) -> None:
    """Send queued callbacks until the simulator stops (a ``None`` in the queue wakes it)."""
    while True:
        item = state._pending_callbacks.get()
        if item is None or state._stopping.is_set():
            return
        fields, attempt = item
        if deliver(state, fields, first=attempt == 0):
            with state.lock:
                state.callbacks_sent += 1
        else:
            _retry_later(state, fields, attempt)


def _retry_later(state: GatewayState, fields: dict[str, str] | JsonPush, attempt: int) -> None:
    """Queue a refused callback again after its pause, or give up once the pauses run out."""
    with state.lock:
        state.callback_refusals += 1
    if attempt >= len(state.callback_retry_delays):
        with state.lock:
            state.callbacks_failed += 1
        return
    delay = state.callback_retry_delays[attempt]
    timer = threading.Timer(delay, state._pending_callbacks.put, args=((fields, attempt + 1),))
    timer.daemon = True
    timer.start()


def deliver(state: GatewayState, fields: dict[str, str] | JsonPush, *, first: bool = True) -> bool:
    """One attempt; True when the receiver took it (or callbacks were switched off).

    A refusal (an HTTP 4xx) of a callback's *first* attempt is logged with what to
    check; the URL is shown without its last segment (a One API URL's secret).
    """
    url = fields.url if isinstance(fields, JsonPush) else state.callback_url
    if url is None:  # switched off meanwhile: drop it
        return True
    with state.lock:
        state.callback_attempts += 1
    if isinstance(fields, JsonPush):
        request = _json_request(fields)
    else:
        request = _request(state, url, fields)
    try:
        with urlopen(request, timeout=5) as response:  # noqa: S310 (http(s) checked)
            return bool(200 <= response.status < 300)
    except HTTPError as exc:
        if first and 400 <= exc.code < 500:
            json = isinstance(fields, JsonPush)
            shown = url.rstrip("/").rpartition("/")[0] + "/<secret>/" if json else url
            logger.warning(
                "Status callback to %s refused (HTTP %s): %s",
                shown,
                exc.code,
                _REFUSED_HINTS[json],
            )
        return False
    except (URLError, OSError):
        return False


def _json_request(push: JsonPush) -> Request:
    """A One API callback: JSON POST, Basic credentials where the integration has them."""
    request = Request(push.url, data=push.body, method="POST")  # noqa: S310
    request.add_header("Content-Type", "application/json")
    if push.auth:
        token = base64.b64encode(":".join(push.auth).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request


def _request(state: GatewayState, url: str, fields: dict[str, str]) -> Request:
    body = urlencode(fields)
    if state.callback_method == "GET":
        request = Request(f"{url}?{body}", method="GET")  # noqa: S310
    else:
        request = Request(url, data=body.encode(), method="POST")  # noqa: S310
        request.add_header("Content-Type", "application/x-www-form-urlencoded")
    if state.callback_auth:
        token = base64.b64encode(":".join(state.callback_auth).encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    return request
