"""The legacy REST API (``api.clickatell.com/rest/``) as a backend.

Same accounts, same message store, same status and error tables as the HTTP
API -- only the wire differs: JSON over HTTP status codes, an API key in
``Authorization: Bearer`` instead of a session.  Parsing lives in
:mod:`django_clickatell.protocol.rest` (pure); this class builds requests,
sends them through the process-wide transport and maps failures onto the
package's meanings:

* a refused key (``401``, or a legacy authentication code) becomes
  :class:`CredentialsRefused` (a :class:`CommandNotSent`: answered, nothing
  carried out), and a ``404`` to a call that names no message
  :class:`WrongBaseUrl` -- the types every backend raises, naming the account
  and the setting to fix;
* ``429`` (:class:`GatewayRateLimited`), ``503`` and other ``5xx``
  (:class:`GatewayServerError`) are transient; ``retry_after`` is the
  gateway's ``Retry-After`` (bounded), for the caller's
  next attempt -- the backend itself never retries, a send or a stop is never
  repeated blindly;
* a stop by ``climsgid`` first asks for the message by ``clientMessageId``
  (``DELETE`` needs the ``apiMessageId``); if that lookup fails, no ``DELETE``
  was sent and the error says so (:class:`CommandNotSent`, or
  :class:`UnknownMessage` when the gateway has no such message).

``BASE_URL`` is the REST root; one that ends in ``/http/`` (the default, the
HTTP API's root) is read as its sibling ``/rest/``, so switching ``BACKEND``
alone is enough for the real gateway.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from ...exceptions import (
    AuthenticationError,
    ClickatellError,
    CommandNotSent,
    CredentialsRefused,
    InvalidMessage,
    ProtocolError,
    UnknownMessage,
)
from ...protocol import rest
from ...protocol.encoding import encode_text
from ...protocol.errors import answered_by_the_api, http_error
from ...protocol.redaction import Secret
from ...protocol.replies import (
    BalanceReply,
    MessageStatusReply,
    is_client_message_id,
    is_message_id,
)
from ..transport import JsonReply, Transport, get_transport
from .base import (
    MESSAGE_COMMANDS,
    Backend,
    Capabilities,
    OutgoingSms,
    Refusal,
    SendResult,
    legacy_account_refusal,
)

if TYPE_CHECKING:
    from ...conf import ClickatellSettings

R = TypeVar("R")

#: Headers of every call besides ``Authorization`` (``Content-Type`` comes with the JSON body).
HEADERS = {"X-Version": "1", "Accept": "application/json"}


class RestBackend(Backend):
    """Legacy ("Developers' Central") accounts with the REST API product and its API key."""

    name = "rest"
    base_url_example = "the REST API's root, e.g. https://api.clickatell.com/rest/"
    capabilities = Capabilities(
        remote_stop=True,  # DELETE /rest/message/{id}, with delmsg's limits
        sessions=False,
        native_scheduling=True,
        scheduling_horizon=timedelta(days=7),  # the legacy accounts' limit
        # One message per request, each with its own clientMessageId: a send in doubt
        # is then verifiable on its own by querying that id, and a per-request failure
        # concerns exactly one message.
        batch_size=1,
        # Callbacks of legacy accounts are set up per API product at Clickatell and
        # arrive as the legacy fields (unverified for REST products).
        callbacks="form",
        query_by_client_id=True,
    )

    def __init__(
        self,
        config: ClickatellSettings,
        *,
        alias: str = "default",
        transport: Transport | None = None,
    ) -> None:
        super().__init__(config, alias=alias)
        self._api_key: Secret = config.api_key
        self.transport = transport or get_transport(
            rest_root(config.base_url), config.timeout, key=config.key("BASE_URL")
        )

    # -- messages --------------------------------------------------------------------------

    def send(self, messages: Sequence[OutgoingSms]) -> list[SendResult]:
        if len(messages) != 1:
            raise InvalidMessage("The REST API backend sends one message per request.")
        message = messages[0]
        reply = self._call(
            "sendmsg",
            "POST",
            "message",
            lambda r, s: rest.parse_send(r.status_code, r.body, r.headers, s),
            json_body=message_body(message),
        )
        if len(reply) != 1 or (reply[0].to is not None and reply[0].to != message.to.lstrip("+")):
            raise ProtocolError("sendmsg", "a result for another recipient", "")
        return reply

    def query(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        path, params = _reference(apimsgid, climsgid)
        return self._status("querymsg", "GET", path, params, by_client_id=bool(climsgid))

    def stop(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        _reference(apimsgid, climsgid)  # validated before any request
        if not apimsgid:
            try:
                apimsgid = self.query(climsgid=climsgid).apimsgid
            except UnknownMessage as exc:
                raise UnknownMessage(exc.code, exc.description, command="delmsg") from None
            except CommandNotSent as exc:
                raise self.failure(CommandNotSent("delmsg", exc.cause), "delmsg") from None
            except ClickatellError as exc:
                # The lookup failed: no DELETE was sent, nothing was stopped.
                raise CommandNotSent("delmsg", exc) from None
        return self._status("delmsg", "DELETE", f"message/{apimsgid}", None)

    def balance(self) -> BalanceReply:
        return self._call(
            "getbalance",
            "GET",
            "account/balance",
            lambda r, s: rest.parse_balance(r.status_code, r.body, r.headers, s),
        )

    # -- the account -----------------------------------------------------------------------

    def check_credentials(self) -> None:
        """The cheapest authenticated call: the balance.

        A refused key raises :class:`CredentialsRefused`, as on every API.
        """
        self.balance()

    @property
    def request_url(self) -> str:
        return rest_root(str(self.config.base_url))

    def refused_credentials(self, code: int | None) -> Refusal:
        """The REST API's codes are the legacy ones: a frozen account, an IP lockdown."""
        return legacy_account_refusal(code) or super().refused_credentials(code)

    # -- plumbing --------------------------------------------------------------------------

    def _status(
        self,
        command: str,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        *,
        by_client_id: bool = False,
    ) -> MessageStatusReply:
        def parse(reply: JsonReply, secrets: tuple[Secret, ...]) -> MessageStatusReply:
            return rest.parse_message_status(
                reply.status_code,
                reply.body,
                command,
                reply.headers,
                secrets,
                by_client_id=by_client_id,
            )

        return self._call(command, method, path, parse, params=params)

    def _call(
        self,
        command: str,
        method: str,
        path: str,
        parse: Callable[[JsonReply, tuple[Secret, ...]], R],
        *,
        json_body: object = None,
        params: Mapping[str, str] | None = None,
    ) -> R:
        if not self._api_key:
            # Never sent: a request without a key can only be refused.
            raise CredentialsRefused(
                command,
                AuthenticationError(None, "API_KEY is not set"),
                account=self.alias,
                problem="it has no API key",
                fix=self._fix(("API_KEY",)),
                settings=(self.setting("API_KEY"),),
            )
        self.throttle.acquire(command)
        with self.failures(command):
            reply = self.transport.request(
                method,
                path,
                command=command,
                credential=self._api_key,
                json_body=json_body,
                params=params,
                extra_headers=HEADERS,
            )
            if reply.status_code == 404 and (
                command not in MESSAGE_COMMANDS or not answered_by_the_api(reply.body)
            ):
                # Calls that name no message are never "not found", nor is a 404 that is
                # not the API's own error document: the URL is wrong.
                raise http_error(command, 404)
            try:
                return _parsed(parse, reply, (self._api_key,))
            except AuthenticationError as exc:
                # The key was refused: answered, nothing carried out (as the HTTP client does).
                raise CommandNotSent(command, exc) from exc


def rest_root(base_url: str) -> str:
    """The REST API's root for ``BASE_URL`` (``…/http/`` is read as ``…/rest/``)."""
    return base_url[: -len("http/")] + "rest/" if base_url.endswith("/http/") else base_url


def message_body(message: OutgoingSms, *, now: float | None = None) -> dict[str, Any]:
    """The JSON of ``POST /rest/message`` for one message.

    Text outside GSM 03.38 goes as the HTTP API sends it: ``unicode`` set and
    the text as UCS-2 hex (the REST API takes the HTTP API's parameters; that it
    keeps this encoding is *unverified*, and this is the one place to change).
    ``deliv_time`` (minutes from now) becomes an absolute ``scheduledDeliveryTime``
    here, at the moment of the request, as the gateway would have counted it.
    """
    encoded = encode_text(message.text)
    body: dict[str, Any] = {
        "text": encoded.text,
        "to": [message.to.lstrip("+")],
        "clientMessageId": message.climsgid,
    }
    if encoded.unicode:
        body["unicode"] = 1
    if message.sender:
        body["from"] = message.sender
    options = message.options
    when: float | None = None
    if options.get("scheduled_time") not in (None, ""):
        when = float(_integer(options["scheduled_time"], "scheduled_time"))
    elif options.get("deliv_time") not in (None, ""):
        minutes = _integer(options["deliv_time"], "deliv_time")
        when = (time.time() if now is None else now) + minutes * 60
    if when is not None:
        body["scheduledDeliveryTime"] = iso_time(when)
    for option, field in (
        ("callback", "callback"),
        ("concat", "maxMessageParts"),
        ("validity", "validityPeriod"),
    ):
        if options.get(option) not in (None, ""):
            body[field] = _integer(options[option], option)
    return body


def iso_time(unix: float) -> str:
    """``scheduledDeliveryTime`` as ISO 8601 in UTC (the format is *unverified*)."""
    return datetime.fromtimestamp(int(unix), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _integer(value: object, option: str) -> int:
    try:
        return int(str(value))
    except ValueError:
        raise InvalidMessage(f"The sending option {option} must be a whole number.") from None


def _reference(apimsgid: str | None, climsgid: str | None) -> tuple[str, dict[str, str] | None]:
    """Exactly one message id, validated before any request: the path and query it makes."""
    if bool(apimsgid) == bool(climsgid):
        raise ValueError("Pass exactly one of apimsgid or climsgid.")
    if apimsgid:
        if not is_message_id(apimsgid):
            raise ValueError(f"Not a Clickatell message id: {apimsgid[:40]!r}")
        return f"message/{apimsgid}", None
    assert climsgid is not None
    if not is_client_message_id(climsgid):
        raise ValueError(f"Not a client message id (1-32 letters and digits): {climsgid[:40]!r}")
    return "message", {"clientMessageId": climsgid}


def _parsed(
    parse: Callable[[JsonReply, tuple[Secret, ...]], R],
    reply: JsonReply,
    secrets: tuple[Secret, ...],
) -> R:
    """``parse(reply)``, with the parser's frames (which hold the raw body) cut from its error."""
    try:
        return parse(reply, secrets)
    except Exception as exc:  # re-raised below: the same object, without the frames
        error = exc
    del reply
    error.__cause__ = error.__context__ = None
    raise error.with_traceback(None)


__all__ = ["HEADERS", "RestBackend", "iso_time", "message_body", "rest_root"]
