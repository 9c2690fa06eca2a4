"""Clickatell's legacy REST API (``/rest/...``) in pure functions: replies to typed results.

The REST API of the legacy ("Developers' Central") accounts is the HTTP API's
commands as JSON over proper HTTP status codes; its status and error codes
**are** the legacy tables (``006`` = user cancelled, ``103`` = unknown
message), so its replies become the same reply types the HTTP API's parsers
return (:mod:`.replies`), and the backends above cannot tell them apart.

Every parser takes the whole HTTP answer -- status code, headers, body -- and
returns a typed result or raises a typed error:

* ``2xx`` with the documented ``{"data": ...}`` body: the reply;
* ``401``: :class:`~.errors.AuthenticationError` (refused, nothing carried out);
* ``400``/``402``/``404``/``405``/``410``: the :class:`~.errors.GatewayError`
  the error object's legacy code stands for (``404`` on a status or a stop:
  :class:`~.errors.UnknownMessage`);
* ``429``, ``5xx`` and any other status: a transient
  :class:`~.errors.GatewayHTTPError` carrying ``Retry-After`` as
  ``retry_after`` seconds;
* anything unreadable: :class:`~.errors.ProtocolError` with a redacted excerpt.

Bodies over :data:`MAX_BODY` are refused unread; JSON parsing is linear and its
recursion bounded by the interpreter (a ``RecursionError`` is a malformed reply).
Gateway text reaches results and errors only through
:func:`~.redaction.clean`, with the API key among the secrets.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from .codes import SESSION_ERRORS, normalize_status
from .errors import (
    AuthenticationError,
    ClickatellError,
    GatewayError,
    ProtocolError,
    UnknownMessage,
    error_for_code,
    http_error,
)
from .msisdn import is_msisdn
from .redaction import Secret, clean, excerpt, redact
from .replies import BalanceReply, ErrorReply, MessageStatusReply, SentMessageReply, is_message_id
from .retry_after import MAX_RETRY_AFTER, retry_after

Secrets = Iterable[str | Secret | None]
Headers = Mapping[str, str]

#: Replies larger than this are refused unread (a send reply for 100 recipients is ~10 KB).
MAX_BODY = 1_000_000
#: Per-recipient results one send reply may carry (the API takes up to 100 recipients).
MAX_RESULTS = 1000
#: The longest wait a ``Retry-After`` may ask for; a longer one is cut to this.

#: Request-level errors that are the request's fault: asking again cannot help.
CLIENT_ERRORS = frozenset({400, 402, 404, 405, 410})
#: Legacy code of a 402 without an error object: "No credit left".
_NO_CREDIT = 301

_DECIMAL = re.compile(r"[+-]?(?:[0-9]{1,18}(?:\.[0-9]{0,18})?|\.[0-9]{1,18})")


class _Malformed(Exception):
    """Internal: the reply does not follow the REST API; becomes a ProtocolError."""


# -- one parser per call -------------------------------------------------------------------


def parse_send(
    status_code: int, body: str | bytes, headers: Headers | None = None, secrets: Secrets = ()
) -> list[SentMessageReply | ErrorReply]:
    """``POST /rest/message``: ``202`` (or ``207``, some recipients refused) per recipient.

    Each entry ``{"accepted", "to", "apiMessageId", "error": {"code", "description"}}``
    becomes a :class:`SentMessageReply` (accepted, with its id) or an
    :class:`ErrorReply` with the legacy error code.  An accepted entry without
    a usable id is unreadable: it could never be asked about.
    """
    secrets = tuple(secrets)
    if status_code not in (200, 202, 207):
        raise error_for_status("sendmsg", status_code, body, headers, secrets)
    text = _text("sendmsg", body)
    try:
        data = _data(text)
        entries = data.get("message", data.get("messages"))
        if not isinstance(entries, list) or not entries or len(entries) > MAX_RESULTS:
            raise _Malformed("no message results")
        return [_send_result(entry, secrets) for entry in entries]
    except _Malformed as exc:
        raise _protocol_error("sendmsg", str(exc), text, secrets) from None


def parse_message_status(
    status_code: int,
    body: str | bytes,
    command: str = "querymsg",
    headers: Headers | None = None,
    secrets: Secrets = (),
    *,
    by_client_id: bool = False,
) -> MessageStatusReply:
    """``GET``/``DELETE /rest/message/{id}``: ``{"data": {"apiMessageId", "messageStatus"}}``.

    ``querymsg`` (a status) and ``delmsg`` (a stop: ``006`` means stopped) share
    the reply.  A status asked by ``clientMessageId`` may come as a list
    (*unverified*): one entry is the message, none is ``UnknownMessage``.
    """
    secrets = tuple(secrets)
    if status_code != 200:
        raise error_for_status(
            command, status_code, body, headers, secrets, by_client_id=by_client_id
        )
    text = _text(command, body)
    try:
        data: object = _data(text, allow_list=True)
        if isinstance(data, list):
            if not data:
                raise UnknownMessage(104, command=command)
            if len(data) > 1:
                raise _Malformed("several messages")
            data = data[0]
        if not isinstance(data, Mapping):
            raise _Malformed("no message status")
        return MessageStatusReply(
            _message_id(data.get("apiMessageId"), secrets), _status(data.get("messageStatus"))
        )
    except _Malformed as exc:
        raise _protocol_error(command, str(exc), text, secrets) from None


def parse_balance(
    status_code: int, body: str | bytes, headers: Headers | None = None, secrets: Secrets = ()
) -> BalanceReply:
    """``GET /rest/account/balance``: ``{"data": {"balance": "300.50"}}``."""
    secrets = tuple(secrets)
    if status_code != 200:
        raise error_for_status("getbalance", status_code, body, headers, secrets)
    text = _text("getbalance", body)
    try:
        return BalanceReply(_decimal(_data(text).get("balance")))
    except _Malformed as exc:
        raise _protocol_error("getbalance", str(exc), text, secrets) from None


# -- request-level errors ------------------------------------------------------------------


def error_for_status(
    command: str,
    status_code: int,
    body: str | bytes,
    headers: Headers | None = None,
    secrets: Secrets = (),
    *,
    by_client_id: bool = False,
    now: float | None = None,
) -> ClickatellError:
    """The typed error for a request-level answer (anything but the call's success status).

    The legacy code comes from the error object when there is a readable one;
    the class follows the HTTP status first (``401`` is always a refusal,
    ``404`` on ``querymsg``/``delmsg`` always an unknown message), then the code.
    """
    secrets = tuple(secrets)
    code, description = _error_detail(body, secrets)
    if status_code == 401:
        return AuthenticationError(code, description or "HTTP 401 Unauthorized", command=command)
    if status_code == 404 and command in ("querymsg", "delmsg"):
        return UnknownMessage(code or (104 if by_client_id else 103), description, command=command)
    if status_code in CLIENT_ERRORS:
        if code is None and status_code == 402:
            code = _NO_CREDIT
        if code is None:
            return GatewayError(None, description or f"HTTP {status_code}", command=command)
        error = error_for_code(code, description, command=command)
        # No sessions in this API: a session code here is an ordinary refusal of the request.
        return GatewayError(code, description, command=command) if code in SESSION_ERRORS else error
    wait = retry_after(_header(headers, "Retry-After"), now=now)
    return http_error(command, status_code, retry_after=wait)


# -- reading a reply -----------------------------------------------------------------------


def _text(command: str, body: str | bytes) -> str:
    if len(body) > MAX_BODY:
        raise ProtocolError(command, "reply too large", "")
    return body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body


def _load(text: str) -> object:
    """JSON, or ``_Malformed``; ``NaN``/``Infinity`` are not JSON and are refused."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=Decimal)
    except (ValueError, RecursionError):
        raise _Malformed("not JSON") from None


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")


def _data(text: str, *, allow_list: bool = False) -> Any:
    document = _load(text)
    if not isinstance(document, Mapping):
        raise _Malformed("not a JSON object")
    data = document.get("data")
    if isinstance(data, Mapping) or (allow_list and isinstance(data, list)):
        return data
    raise _Malformed("no data")


def _protocol_error(command: str, reason: str, text: str, secrets: Secrets) -> ProtocolError:
    return ProtocolError(command, clean(reason, secrets, limit=80), excerpt(text, secrets))


def _error_detail(body: str | bytes, secrets: tuple[Any, ...]) -> tuple[int | None, str]:
    """The legacy code and cleaned description of ``{"error": {...}}``, if readable."""
    if len(body) > MAX_BODY:
        return None, ""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        document = _load(text)
    except _Malformed:
        return None, ""
    if not isinstance(document, Mapping):
        return None, ""
    return _error_fields(document.get("error"), secrets)


def _error_fields(error: object, secrets: tuple[Any, ...]) -> tuple[int | None, str]:
    if not isinstance(error, Mapping):
        return None, ""
    description = error.get("description")
    return (
        _code(error.get("code")),
        clean(description, secrets) if isinstance(description, str) else "",
    )


def _code(value: object) -> int | None:
    """A legacy error code written ``"105"``, ``"00105"`` or ``105``; None otherwise."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**6:
        return value
    return None


def _header(headers: Headers | None, name: str) -> str | None:
    if not headers:
        return None
    value = headers.get(name)
    if value is None:  # a plain dict is case-sensitive; HTTP header names are not
        lowered = name.lower()
        value = next((v for k, v in headers.items() if k.lower() == lowered), None)
    return value if isinstance(value, str) else None


def _send_result(entry: object, secrets: tuple[Any, ...]) -> SentMessageReply | ErrorReply:
    if not isinstance(entry, Mapping):
        raise _Malformed("unreadable message result")
    to, accepted = entry.get("to"), entry.get("accepted")
    if not isinstance(to, str) or not isinstance(accepted, bool):
        raise _Malformed("unreadable message result")
    to = to.removeprefix("+")
    if not is_msisdn(to) or _carries_secret(to, secrets):
        raise _Malformed("unreadable recipient")
    if accepted:
        return SentMessageReply(_message_id(entry.get("apiMessageId"), secrets), to)
    code, description = _error_fields(entry.get("error"), secrets)
    return ErrorReply(code, description, to)


def _carries_secret(value: str, secrets: Secrets) -> bool:
    return redact(value, secrets) != value


def _message_id(value: object, secrets: Secrets) -> str:
    """An id as the gateway wrote it; one that carries a secret is refused, not redacted."""
    if not isinstance(value, str) or not is_message_id(value) or _carries_secret(value, secrets):
        raise _Malformed("unreadable message id")
    return value


def _status(value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _Malformed("unreadable status code")
    try:
        return normalize_status(value)
    except ValueError:
        raise _Malformed("unreadable status code") from None


def _decimal(value: object) -> Decimal:
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _DECIMAL.fullmatch(value):
        raise _Malformed("unreadable balance")
    try:
        return Decimal(value)
    except InvalidOperation:  # pragma: no cover - the pattern admits only valid numbers
        raise _Malformed("unreadable balance") from None


__all__ = [
    "MAX_BODY",
    "MAX_RETRY_AFTER",
    "error_for_status",
    "parse_balance",
    "parse_message_status",
    "parse_send",
    "retry_after",
]
