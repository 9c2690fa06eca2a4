"""Clickatell's One API (Platform accounts, ``platform.clickatell.com``) as a backend.

Every request carries the raw API key in the ``Authorization`` header (no
``Bearer``) and JSON.  What the API can and cannot do decides the capabilities:

* **send**: ``POST /v1/message`` with up to 200 messages; ``202``/``207`` give one
  result per message, matched to its message by ``clientMessageId`` (or by
  recipient) whatever order they come back in (a result list that does not
  match the request is a ``ProtocolError``: nothing is guessed).
* **query**: ``GET /v1/message/{apiMessageId}``.  Its status table is its own; the
  reply is translated *by meaning* into the package's codes
  (:data:`~django_clickatell.protocol.one_api.STATUSES`) and the API's own name
  is kept in ``gateway_status``.
* **no query by ``clientMessageId``**: none is documented.  A send in doubt
  (no answer) therefore cannot be verified: :meth:`query` raises
  ``QueryByClientIdUnsupported`` without a request, and the services must record
  the message ``unknown`` for an operator and never send it again blindly.
* **no stop**: no call stops an accepted message; :meth:`stop` raises
  ``RemoteStopUnsupported`` without a request.  Scheduled messages are held in
  Django and handed over when due; once handed over, a cancel is "too late".
* **no scheduling**: a message with ``deliv_time``/``scheduled_time`` is refused
  (``InvalidMessage``) -- the hold-and-release loop sends held messages without one.
* **balance**: ``GET /v1/balance`` (also the credentials check).

``401`` is ``CredentialsRefused`` (a ``CommandNotSent``: the API carried nothing
out) and a ``404`` to a call that names no message ``WrongBaseUrl``, the types
every backend raises, naming the account and the setting to fix.  ``400``/``402``
are the request's fault (``404`` to a query is ``UnknownMessage``);
``429``/``503``/other ``5xx`` are transient and carry their ``Retry-After`` as
``retry_after``.  The API key is never in a URL, a log, an exception or a repr.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured

from ...exceptions import (
    AuthenticationError,
    ClickatellError,
    CommandNotSent,
    InvalidMessage,
    ProtocolError,
    QueryByClientIdUnsupported,
    RemoteStopUnsupported,
)
from ...protocol import one_api
from ...protocol.errors import answered_by_the_api, http_error
from ...protocol.redaction import Secret, excerpt
from ...protocol.replies import (
    BalanceReply,
    ErrorReply,
    MessageStatusReply,
    SentMessageReply,
    is_message_id,
)
from ...protocol.retry_after import retry_after
from ..transport import JsonReply, Transport, get_transport
from .base import MESSAGE_COMMANDS, Backend, Capabilities, OutgoingSms, SendResult

if TYPE_CHECKING:
    from ...conf import ClickatellSettings

#: Where Platform accounts live; used when ``BASE_URL`` is left at the legacy default.
PLATFORM_URL = "https://platform.clickatell.com/"
_LEGACY_DEFAULT_URL = "https://api.clickatell.com/http/"
#: Stored sending options this API cannot carry: refused rather than dropped.
_REFUSED_OPTIONS = {
    "deliv_time": "scheduling",
    "scheduled_time": "scheduling",
    "validity": "a validity period",
}
#: Stored options that mean nothing here: callbacks are set per integration in the
#: portal, and long texts are split by the API itself.
_IGNORED_OPTIONS = frozenset({"callback", "concat"})


class OneApiBackend(Backend):
    """Platform accounts (created since about November 2016), through the One API."""

    name = "one_api"
    base_url_example = "the One API's root, without /v1/, e.g. https://platform.clickatell.com/"
    capabilities = Capabilities(
        remote_stop=False,
        sessions=False,
        native_scheduling=False,
        scheduling_horizon=None,
        batch_size=one_api.MAX_BATCH,
        callbacks="json",
        query_by_client_id=False,
    )

    def __init__(
        self,
        config: ClickatellSettings,
        *,
        alias: str = "default",
        transport: Transport | None = None,
    ) -> None:
        super().__init__(config, alias=alias)
        self._transport = transport

    @property
    def base_url(self) -> str:
        url = self.config.base_url
        return PLATFORM_URL if url == _LEGACY_DEFAULT_URL else url

    @property
    def request_url(self) -> str:
        return self.base_url

    @property
    def transport(self) -> Transport:
        if self._transport is None:
            self._transport = get_transport(
                self.base_url, self.config.timeout, key=self.config.key("BASE_URL")
            )
        return self._transport

    # -- messages --------------------------------------------------------------------------

    def send(self, messages: Sequence[OutgoingSms]) -> list[SendResult]:
        if not messages:
            return []
        if len(messages) > self.capabilities.batch_size:
            raise InvalidMessage(
                f"The One API takes at most {self.capabilities.batch_size} messages a request."
            )
        payload = {"messages": [message_fields(message) for message in messages]}
        reply = self._call("sendmsg", "POST", "v1/message", payload)
        submissions = one_api.parse_send(
            reply.status_code,
            reply.body,
            self._secrets(),
            retry_after=retry_after(_header(reply, "Retry-After")),
        )
        return match_results(messages, submissions, reply.body, self._secrets())

    def query(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        if not apimsgid:
            raise QueryByClientIdUnsupported(self.name)
        if not is_message_id(apimsgid):
            raise InvalidMessage("Not a Clickatell message id.")
        reply = self._call("querymsg", "GET", f"v1/message/{apimsgid}")
        if reply.status_code != 200:
            raise self._error("querymsg", reply)
        event = one_api.parse_status(reply.body, apimsgid, self._secrets())
        return one_api.status_reply(event)

    def stop(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        raise RemoteStopUnsupported(self.name)

    def balance(self) -> BalanceReply:
        reply = self._call("getbalance", "GET", "v1/balance")
        if reply.status_code != 200:
            raise self._error("getbalance", reply)
        try:
            return one_api.parse_balance(reply.body, self._secrets())
        except ProtocolError as exc:
            if not one_api.is_legacy_http_reply(exc.excerpt):
                raise
            # A One API key pasted beside the legacy account's BASE_URL (…/http/): say
            # so, rather than "not JSON". Only here: a balance changes nothing.
            raise self.wrong_base_url("getbalance", exc, answers_as="the legacy HTTP API") from None

    # -- the account -----------------------------------------------------------------------

    def check_credentials(self) -> None:
        self.balance()

    # -- one request -----------------------------------------------------------------------

    def _api_key(self) -> Secret:
        key = self.config.api_key
        if not key:
            raise ImproperlyConfigured(
                f"Clickatell account {self.alias!r} uses the one_api backend but has no API_KEY."
            )
        return key if isinstance(key, Secret) else Secret(str(key))

    def _secrets(self) -> tuple[Secret]:
        return (self._api_key(),)

    def _call(
        self, command: str, method: str, path: str, payload: dict[str, Any] | None = None
    ) -> JsonReply:
        self.throttle.acquire(command)
        with self.failures(command):
            reply = self.transport.request(
                method,
                path,
                command=command,
                credential=self._api_key(),
                scheme="",  # the One API takes the raw key, no "Bearer"
                json_body=payload,
            )
            if reply.status_code == 401:
                # Refused before anything was carried out: nothing happened to any message.
                raise CommandNotSent(command, self._error(command, reply))
            if reply.status_code == 404 and (
                command not in MESSAGE_COMMANDS or not answered_by_the_api(reply.body)
            ):
                # Calls that name no message are never "not found", nor is a 404 that is
                # not the API's own error document: the URL is wrong.
                raise http_error(command, 404)
        return reply

    def _error(self, command: str, reply: JsonReply) -> ClickatellError:
        error = one_api.error_for_status(
            command,
            reply.status_code,
            reply.body,
            self._secrets(),
            retry_after=retry_after(_header(reply, "Retry-After")),
        )
        if reply.status_code == 401 and not isinstance(error, AuthenticationError):
            error = AuthenticationError(None, "Unauthorized", command=command)
        return error


def _header(reply: JsonReply, name: str) -> str | None:
    """A header of the reply, whatever case the server wrote it in."""
    wanted = name.lower()
    return next((value for key, value in reply.headers.items() if key.lower() == wanted), None)


def message_fields(message: OutgoingSms) -> dict[str, str]:
    """One message of ``POST /v1/message``; Unicode text goes as JSON text, unencoded."""
    for key in message.options:
        if key in _REFUSED_OPTIONS:
            raise InvalidMessage(
                f"The One API has no {_REFUSED_OPTIONS[key]}: hold the message in Django instead."
            )
        if key not in _IGNORED_OPTIONS:
            raise InvalidMessage(f"The One API backend does not know the option {key[:32]!r}.")
    fields = {
        "channel": "sms",
        "to": message.to.removeprefix("+"),
        "content": message.text,
        "clientMessageId": message.climsgid,
    }
    if message.sender:
        fields["from"] = message.sender
    return fields


def match_results(
    messages: Sequence[OutgoingSms],
    submissions: Sequence[one_api.Submission],
    body: bytes,
    secrets: tuple[Secret, ...],
) -> list[SendResult]:
    """One result per message sent, in the order sent, whatever order the reply gives them.

    Each result is matched to its message by the ``clientMessageId`` it names, else
    by its recipient where only one message of the request goes to it, else -- the
    recipient's messages read in the order sent -- by position among that recipient's
    results, which is sure only when the reply keeps the request's order; otherwise
    nothing is guessed.  A result for no message, two results for one, or a message
    without one is a ``ProtocolError``: the request's messages are then in doubt
    (an id is never recorded against the wrong message).
    """

    def mismatch(why: str) -> ProtocolError:
        return ProtocolError(
            "sendmsg",
            f"the results do not match the messages sent ({why})",
            excerpt(body.decode("utf-8", "replace"), secrets),
        )

    if len(submissions) != len(messages):
        raise mismatch(f"{len(submissions)} results for {len(messages)} messages")
    recipients = [message.to.removeprefix("+") for message in messages]
    in_order = [submission.to for submission in submissions] == recipients
    by_climsgid = {message.climsgid: index for index, message in enumerate(messages)}
    by_recipient: dict[str, list[int]] = {}
    for index, recipient in enumerate(recipients):
        by_recipient.setdefault(recipient, []).append(index)
    matched: list[one_api.Submission | None] = [None] * len(messages)
    for position, submission in enumerate(submissions):
        if submission.climsgid:
            named = by_climsgid.get(submission.climsgid)
            if named is None or recipients[named] != submission.to:
                raise mismatch("a result names a message not sent")
            index = named
        elif in_order:
            index = position
        else:
            candidates = by_recipient.get(submission.to, [])
            if len(candidates) != 1:
                # Several messages to that recipient, reordered, unnamed: cannot tell.
                raise mismatch("a result cannot be told apart")
            index = candidates[0]
        if matched[index] is not None:
            raise mismatch("two results for one message")
        matched[index] = submission
    results: list[SendResult] = []
    for found in matched:
        assert found is not None  # as many results as messages, none twice
        submission = found
        if submission.accepted and submission.apimsgid:
            results.append(SentMessageReply(submission.apimsgid, submission.to))
        else:
            # The message's own code is kept (26: opted out), marked as the One API's: its
            # numbers are not the legacy table's.
            description = submission.error_description or "not accepted"
            results.append(
                ErrorReply(submission.error_code, description[:200], submission.to, table="one_api")
            )
    return results


__all__ = ["PLATFORM_URL", "OneApiBackend", "match_results", "message_fields"]
