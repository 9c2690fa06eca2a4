r"""What can go wrong talking to Clickatell, as types a caller can act on.

Every exception describes itself without secrets.  ``retryable`` tells a task
whether trying again later can help; ``kind`` names the outcome an exchange
log records for it.  Mistakes in the caller's input (:class:`InvalidInput`)
are also ``ValueError``\ s, as in django-anymail.  Configuration mistakes are
Django's ``ImproperlyConfigured`` and deliberately outside this hierarchy.

The hierarchy lives in the protocol layer (pure, no I/O) so that the parsers
can raise it without importing anything above them; import it from
:mod:`django_clickatell.exceptions`.
"""

from __future__ import annotations

import json
from typing import ClassVar

from .codes import (
    AUTHENTICATION_ERRORS,
    RETRYABLE_ERRORS,
    SESSION_ERRORS,
    UNKNOWN_MESSAGE_ERRORS,
    describe_error,
)


class ClickatellError(Exception):
    """Base class of everything the package raises about Clickatell or its input."""

    retryable: ClassVar[bool] = False

    #: The outcome an exchange log records for this error (``GatewayExchange.outcome``).
    kind: ClassVar[str] = "transport_error"


class InvalidInput(ClickatellError, ValueError):
    """The caller's input cannot be used; nothing was recorded or sent.

    ``str(exc)`` is a short reason that is safe to show to whoever gave the input.
    """


class InvalidMessage(InvalidInput):
    """The message cannot be sent as asked; nothing was recorded or sent."""


class GuardTripped(InvalidMessage):
    """A guard against runaway sending refused the send (issue 22): nothing was recorded.

    ``guard`` names the guard (``max_per_hour``, ``max_per_day``,
    ``max_per_recipient_per_hour``, ``destinations``, ``opt_out``, or
    ``cache`` while the counting guards cannot count), ``key`` the setting that
    sets it (``GUARD_MAX_PER_HOUR`` ...), ``account`` the account's alias;
    ``str(exc)`` says what tripped and how to raise it.
    """

    def __init__(self, message: str, *, guard: str, key: str, account: str) -> None:
        self.guard, self.key, self.account = guard, key, account
        super().__init__(message)


class InvalidCallback(InvalidInput):
    """A status callback cannot be accepted; ``str(exc)`` is a short, safe reason."""


#: The error code that means "the recipient opted out", by error table: the legacy table's
#: 122 "Destination mobile opted out" (HTTP and REST APIs), the One API's 26.
OPTED_OUT_CODES = {"legacy": 122, "one_api": 26}


class GatewayError(ClickatellError):
    """Clickatell answered ``ERR: <code>, <description>``."""

    kind = "gateway_error"

    def __init__(
        self,
        code: int | None,
        description: str = "",
        *,
        command: str | None = None,
        to: str | None = None,
        table: str = "legacy",
    ) -> None:
        self.code = code
        #: Whose error table ``code`` is from: ``"legacy"`` (HTTP and REST APIs) or ``"one_api"``.
        self.table = table
        self.description = description or (str(describe_error(code).label) if code else "")
        self.command = command
        self.to = to
        super().__init__(str(self))

    @property
    def opted_out(self) -> bool:
        """Clickatell refused the recipient as opted out: legacy/REST ``122``, One API ``26``."""
        return self.code == OPTED_OUT_CODES.get(self.table)

    @property
    def code_str(self) -> str:
        return f"{self.code:03d}" if self.code is not None else "---"

    def __str__(self) -> str:
        where = f"Clickatell {self.command}" if self.command else "Clickatell"
        recipient = f" (to {self.to})" if self.to else ""
        return f"{where} answered ERR {self.code_str}: {self.description}{recipient}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, description={self.description!r})"


class AuthenticationError(GatewayError):
    """The account was refused (001, 002, 004, 007, 108): retrying cannot help."""


class SessionExpired(GatewayError):
    """The session id expired or was missing (003, 005)."""


class UnknownMessage(GatewayError):
    """``apimsgid``/``climsgid`` unknown to Clickatell (103, 104)."""


class GatewayBusy(GatewayError):
    """Clickatell reported an internal error and asks to be retried (901)."""

    retryable = True


class TransientError(ClickatellError):
    """The gateway could not be reached or did not answer usefully; try again later."""

    retryable = True
    kind = "transport_error"


class TransportError(TransientError):
    """The HTTP exchange itself failed."""

    kind = "transport_error"

    def __init__(self, command: str, detail: str) -> None:
        self.command = command
        self.detail = detail
        super().__init__(f"Clickatell {command}: {detail}")


class GatewayTimeout(TransportError):
    """Connecting, or the whole reply after it, took longer than ``TIMEOUT`` allows.

    ``TIMEOUT = (connect, read)`` is two total deadlines, not per socket read:
    see :mod:`django_clickatell.gateway.transport`.
    """


class GatewayUnreachable(TransportError):
    """The connection was refused, reset or could not be made."""


class GatewayHTTPError(TransportError):
    """An HTTP status other than 200 (the protocol answers 200 even for errors).

    ``retry_after``: the seconds the gateway asked to wait before asking again
    (a ``Retry-After`` header on a 429 or 503 of the REST APIs, already bounded),
    or None when it said nothing.  It is advice for the caller's next attempt;
    the error itself never waits.
    """

    def __init__(self, command: str, status_code: int, *, retry_after: float | None = None) -> None:
        self.status_code = status_code
        self.retry_after = retry_after
        super().__init__(command, f"HTTP {status_code}")

    @property
    def refused_for_now(self) -> bool:
        """Whether the gateway refused the request before carrying it out: a ``429``, or
        a ``503`` that says when to come back (``Retry-After``).

        Such a send is still simply queued -- resending it repeats nothing -- where any
        other failure leaves it in doubt (a One API message in doubt cannot be checked
        and would end ``unknown``, never sent, for a mere rate limit).
        """
        return self.status_code == 429 or (self.status_code == 503 and self.retry_after is not None)


class GatewayServerError(GatewayHTTPError):
    """Clickatell (or a proxy in front of it) answered ``5xx``: its trouble, try again later.

    The same type on every API.  Whether the request was carried out is unknown
    unless :attr:`refused_for_now` (a ``503`` naming when to come back).
    """


class GatewayRateLimited(GatewayHTTPError):
    """Clickatell answered ``429 Too Many Requests``: nothing was carried out.

    The same type on every API; ``retry_after`` is the wait it asked for, if
    any.  Lower ``MAX_REQUESTS_PER_SECOND`` if it happens often.
    """


def http_error(
    command: str, status_code: int, *, retry_after: float | None = None
) -> GatewayHTTPError:
    """The :class:`GatewayHTTPError` of the right kind for an unexpected HTTP status.

    One rule for every API, so a server error or a rate limit has one type
    whichever backend met it.
    """
    if status_code == 429:
        return GatewayRateLimited(command, status_code, retry_after=retry_after)
    if status_code >= 500:
        return GatewayServerError(command, status_code, retry_after=retry_after)
    return GatewayHTTPError(command, status_code, retry_after=retry_after)


#: Largest 404 body read to tell the API's own answer from a URL where no API answers.
_MAX_NOT_FOUND_BODY = 100_000


def answered_by_the_api(body: str | bytes) -> bool:
    """Whether a ``404`` body is the JSON APIs' own error document (``{"error": ...}``, or the
    Platform API's flat ``errorCode``): a message command's "unknown message".

    Anything else -- a web server's or a framework's page, plain text, JSON without an
    error -- came from a URL where no Clickatell API answers: the ``BASE_URL`` is wrong,
    and nothing may be concluded about the message (a send in doubt read as "not there"
    would be sent twice).
    """
    if len(body) > _MAX_NOT_FOUND_BODY:
        return False
    try:
        document = json.loads(body)
    except (ValueError, RecursionError):
        return False
    return isinstance(document, dict) and (
        isinstance(document.get("error"), dict) or "errorCode" in document
    )


class SessionUnavailable(TransientError):
    """No session id could be obtained in time (another process holds the auth lock)."""


class CommandNotSent(TransientError):
    """The command was never carried out at Clickatell: no usable session could be had.

    Raised before the request left (login refused now or remembered as refused,
    the login failing in transit or unreadable, the session cache unreachable,
    another process's login not finished in time), when the account was refused
    on the command itself (ERR 001/002/004/007/108: answered, nothing carried
    out), or when Clickatell refused the session again right after the one
    renewal a call makes (ERR 003/005 twice), which also executes nothing.
    Nothing happened to the message, so the caller records "not sent" -- never
    the gateway's answer -- and may try again later.  ``cause`` is the
    underlying error; ``code`` its gateway code, if it has one.
    """

    kind = "not_sent"

    def __init__(self, command: str, cause: ClickatellError) -> None:
        self.command = command
        self.cause = cause
        self.code: int | None = getattr(cause, "code", None)
        super().__init__(f"Clickatell {command} was not sent: {cause}")


#: How much of the gateway's own words a self-describing error quotes: short, so that the
#: fix still fits the 255 characters a message's recorded reason keeps.
_SAID = 80


class AccountMisconfigured(CommandNotSent):
    """Only the user can fix this: a setting of the account is wrong (or Clickatell's side of it).

    Raised the same way by every backend, for any command, and carried out
    nothing -- so it is also a :class:`CommandNotSent`: the services keep the
    message waiting and it goes out once the setting is fixed.  It describes
    itself in one line that names the account (``account``), what to fix
    (``fix``: the settings, as ``settings.CLICKATELL[...]`` references, in
    ``settings``) and the gateway's own code and words (``code``,
    ``description``) -- never a secret's value.
    """

    kind = "not_sent"

    def __init__(
        self,
        command: str,
        cause: ClickatellError,
        *,
        account: str,
        problem: str,
        fix: str,
        settings: tuple[str, ...] = (),
    ) -> None:
        self.account = account
        self.problem = problem
        self.fix = fix
        self.settings = settings
        self.command = command
        self.cause = cause
        self.code = getattr(cause, "code", None)
        # Not CommandNotSent's "was not sent: <cause>" (nor, for CredentialsRefused, the
        # GatewayError initialiser next in line): this error says it in its own words.
        Exception.__init__(self, self._describe())

    def _describe(self) -> str:
        return (
            f"Clickatell account {self.account!r}: {self.problem} ({self.answer}); "
            f"{self.fix}. Nothing was carried out."
        )

    @property
    def answer(self) -> str:
        """What the gateway said, in a few words."""
        return str(self.cause)

    def __str__(self) -> str:
        return str(self.args[0])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(account={self.account!r}, command={self.command!r}, "
            f"code={self.code!r})"
        )


class CredentialsRefused(AccountMisconfigured, AuthenticationError):  # type: ignore[misc]
    """Clickatell refused the account's credentials: the same type on every API, every call.

    Both an :class:`AuthenticationError` (``except AuthenticationError`` catches
    it whatever the backend) and a :class:`CommandNotSent` (nothing was carried
    out; a message waits until the credentials are fixed).  ``code`` and
    ``description`` are the gateway's (``001``, ``"Authentication failed"``...).
    """

    def __init__(
        self,
        command: str,
        cause: ClickatellError,
        *,
        account: str,
        problem: str,
        fix: str,
        settings: tuple[str, ...] = (),
    ) -> None:
        self.description = getattr(cause, "description", "") or str(cause)
        self.to = None
        super().__init__(
            command, cause, account=account, problem=problem, fix=fix, settings=settings
        )

    @property
    def answer(self) -> str:
        cause = self.cause
        if isinstance(cause, GatewayError):
            said = f"ERR {cause.code_str}: " if cause.code is not None else ""
            return f"{cause.command or self.command} answered {said}{cause.description[:_SAID]}"
        return str(cause)[:_SAID]


class WrongBaseUrl(AccountMisconfigured):
    """Nothing answers at the account's ``BASE_URL`` (HTTP 404): the URL is wrong.

    Never reported as refused credentials.  ``url`` is the URL the requests went
    to (a ``BASE_URL`` carries no secret: the checks refuse one with
    credentials or a query).
    """

    def __init__(
        self,
        command: str,
        cause: ClickatellError,
        *,
        account: str,
        url: str,
        fix: str,
        settings: tuple[str, ...] = (),
        problem: str = "",
    ) -> None:
        self.url = url
        super().__init__(
            command,
            cause,
            account=account,
            problem=problem or f"nothing answers at BASE_URL {url}",
            fix=fix,
            settings=settings,
        )

    @property
    def answer(self) -> str:
        status = getattr(self.cause, "status_code", None)
        command = getattr(self.cause, "command", None) or self.command  # the login's, if it was
        return f"{command} answered HTTP {status}" if status else str(self.cause)[:_SAID]


class RemoteStopUnsupported(ClickatellError):
    """The account's API has no call that stops a submitted message (the One API).

    Raised before any request: nothing was asked, nothing was carried out.  The
    cancel service checks the backend's capabilities first and records "too
    late: already handed over" instead; this error is the gateway's guard.
    """

    kind = "not_sent"

    def __init__(self, backend: str) -> None:
        self.backend = backend
        super().__init__(f"The {backend} API cannot stop a message it has accepted.")


class QueryByClientIdUnsupported(ClickatellError):
    """The account's API cannot look a message up by its ``climsgid`` (the One API).

    Raised before any request.  A send in doubt (no answer to a send request)
    therefore cannot be verified on such an account: the caller records it
    ``unknown`` for an operator, and never sends it again blindly -- it may have
    been accepted.  Not retryable: asking again cannot help.
    """

    kind = "not_sent"

    def __init__(self, backend: str) -> None:
        self.backend = backend
        super().__init__(f"The {backend} API cannot look a message up by its client message id.")


class ProtocolError(ClickatellError):
    """A reply that does not follow the protocol; carries a short redacted excerpt.

    Retryable: a proxy's error page or a truncated body says nothing about the
    message, so asking again is the only way to learn its state.
    """

    retryable = True
    kind = "protocol_error"

    def __init__(self, command: str, reason: str, excerpt: str) -> None:
        self.command = command
        self.reason = reason
        self.excerpt = excerpt
        super().__init__(f"Clickatell {command}: {reason}: {excerpt!r}")


def error_for_code(
    code: int | None, description: str, *, command: str | None = None, to: str | None = None
) -> GatewayError:
    """The most specific :class:`GatewayError` for an ``ERR`` reply."""
    cls: type[GatewayError] = GatewayError
    if code in AUTHENTICATION_ERRORS:
        cls = AuthenticationError
    elif code in SESSION_ERRORS:
        cls = SessionExpired
    elif code in UNKNOWN_MESSAGE_ERRORS:
        cls = UnknownMessage
    elif code in RETRYABLE_ERRORS:
        cls = GatewayBusy
    return cls(code, description, command=command, to=to)
