"""What a Clickatell API can do, not how: the interface every backend implements.

The services talk only to :class:`Backend`; nothing above the gateway layer
knows which of Clickatell's APIs an account speaks.  A backend answers in the
package's own vocabulary:

* results are the protocol's reply types (:class:`SentMessageReply` /
  :class:`ErrorReply` per message sent, :class:`MessageStatusReply` for a
  status or a stop, :class:`BalanceReply`);
* statuses are the package's status codes (``protocol.codes``: Clickatell's
  legacy table, the finest-grained of the three APIs).  A backend whose API has
  a table of its own (the One API) translates *by meaning* through that table,
  never by number, and reports its API's own name in ``gateway_status``;
* failures are the typed errors of :mod:`django_clickatell.exceptions`, with
  the same meaning -- and the same type -- for every API: ``CommandNotSent``
  when nothing was carried out, ``retryable`` only when asking again later can
  help; refused credentials and a wrong ``BASE_URL`` become
  ``CredentialsRefused`` and ``WrongBaseUrl`` through :meth:`Backend.failures`,
  naming the account and the setting to fix.

Commands are logged under the legacy names (``sendmsg``, ``querymsg``,
``delmsg``, ``getbalance``) whatever the API, so the exchange log and the
admin read the same for every account.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, ClassVar

from django.core.cache import caches

from ...conf.accounts import DEFAULT_ACCOUNT
from ...conf.errors import AccountKey, describe
from ...exceptions import (
    AccountMisconfigured,
    AuthenticationError,
    ClickatellError,
    CommandNotSent,
    CredentialsRefused,
    GatewayHTTPError,
    SessionExpired,
    WrongBaseUrl,
)
from ...protocol.redaction import Secret, redact
from ...protocol.replies import BalanceReply, ErrorReply, MessageStatusReply, SentMessageReply
from ..throttle import Throttle

if TYPE_CHECKING:
    from ...conf import ClickatellSettings

#: Commands about one message: a ``404`` to them means that message is unknown, where
#: to any other call it means nothing answers at ``BASE_URL``.
MESSAGE_COMMANDS = frozenset({"querymsg", "delmsg"})

#: What a refusal is about, the settings that hold it, and advice where no setting helps.
Refusal = tuple[str, tuple[str, ...], str]


def legacy_account_refusal(code: int | None) -> Refusal | None:
    """A refusal the legacy codes (HTTP and REST APIs) blame on the account, not a setting."""
    if code == 4:
        return (
            "Clickatell says it is frozen",
            (),
            "ask Clickatell to unfreeze it: no setting here can fix it",
        )
    if code == 7:
        return (
            "its requests from this server's IP address are refused (IP lockdown)",
            (),
            "allow this server's IP address for the API in Clickatell's portal",
        )
    return None


#: One result per message sent, in the order given.
SendResult = SentMessageReply | ErrorReply


@dataclass(frozen=True)
class Capabilities:
    """What an API can do; the services choose their path from these, never from a name.

    ``remote_stop``: a submitted message can be stopped at Clickatell (``delmsg`` /
    ``DELETE``); without it, only messages still held in Django can be stopped.
    ``sessions``: the API logs in and shares a session id (the legacy HTTP API).
    ``native_scheduling``: Clickatell holds a scheduled message until it is due, up
    to ``scheduling_horizon`` ahead; anything later (or any schedule, without it)
    is held in Django and released when due.
    ``batch_size``: messages one send request may carry.
    ``callbacks``: how status callbacks arrive (``"form"``: the legacy GET/POST
    fields; ``"json"``: a JSON POST) or ``""`` (none).
    ``query_by_client_id``: a status can be asked by ``climsgid`` -- what makes a
    send in doubt verifiable before any retry.
    """

    remote_stop: bool
    sessions: bool
    native_scheduling: bool
    scheduling_horizon: timedelta | None
    batch_size: int
    callbacks: str
    query_by_client_id: bool


@dataclass(frozen=True)
class OutgoingSms:
    """One message to submit, as the services recorded it.

    ``options`` are the stored sending options (``deliv_time`` or
    ``scheduled_time``, ``callback``, ``concat``, ``validity``); each backend
    turns them into its API's fields and refuses (``InvalidMessage``) what its
    API cannot carry.
    """

    to: str
    text: str
    climsgid: str
    sender: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)


class Backend(abc.ABC):
    """One Clickatell account, spoken to through one of Clickatell's APIs.

    Built from the account's settings (``ClickatellSettings`` of that account).
    Backends are cheap to build; what must be shared (connections, the session
    id) is shared by the gateway's process-wide transports and the cache.
    """

    #: Short name used in ``BACKEND`` and shown in the docs' capability table.
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    #: What ``BASE_URL`` looks like for this API, said when nothing answers at it.
    base_url_example: ClassVar[str] = ""

    def __init__(self, config: ClickatellSettings, *, alias: str = "default") -> None:
        self.config = config
        self.alias = alias

    def __repr__(self) -> str:
        return f"<{type(self).__name__} account={self.alias!r}>"

    @classmethod
    def current_capabilities(cls) -> Capabilities:
        """What a backend of this class built now would declare, read without building one.

        The selections ask it of every account whenever they decide what can still be
        stopped: no client, no session, no secret is touched for that.  A class whose
        instances may declare otherwise (the test backend's scripted capabilities)
        answers here what its next instance will declare.
        """
        return cls.capabilities

    @cached_property
    def throttle(self) -> Throttle:
        """The account's ``MAX_REQUESTS_PER_SECOND``, shared by every process through the cache.

        Backends call ``self.throttle.acquire(command)`` before each request to
        their API; a request held back too long raises ``CommandNotSent``.
        """
        config = self.config
        return Throttle(
            caches[config.cache_alias],
            f"{config.cache_key_prefix}:throttle:{self.alias}",
            config.max_requests_per_second,
            account=self.alias,
            processes=config.throttle_processes,
        )

    # -- messages --------------------------------------------------------------------------

    @abc.abstractmethod
    def send(self, messages: Sequence[OutgoingSms]) -> list[SendResult]:
        """Submit up to ``capabilities.batch_size`` messages: one result each, in order.

        Raises a typed error when the request as a whole failed; whether it may
        have been carried out is the error's to say (``CommandNotSent``: no).
        """

    @abc.abstractmethod
    def query(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        """The current status of one message; ``UnknownMessage`` if the API has no such message."""

    @abc.abstractmethod
    def stop(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        """Stop a submitted message; status ``006`` means the API said it stopped it.

        Backends without ``capabilities.remote_stop`` raise ``RemoteStopUnsupported``
        without any request.
        """

    @abc.abstractmethod
    def balance(self) -> BalanceReply:
        """The account's remaining credit."""

    # -- the account -----------------------------------------------------------------------

    @abc.abstractmethod
    def check_credentials(self) -> None:
        """Prove the credentials work (a login, or a cheap authenticated call); typed errors."""

    def keep_alive(self) -> None:  # noqa: B027 -- only session APIs have anything to do
        """Keep a shared session alive; nothing to do for APIs without sessions."""

    @property
    def refused_attempts(self) -> list[SessionExpired]:
        """Requests of this thread's last call that were refused for an expired session.

        Each was a real request the API answered without carrying it out; the
        services log it so that the exchange log shows every request made.
        """
        return []

    # -- failures the user must fix ---------------------------------------------------------

    @property
    def request_url(self) -> str:
        """The URL this backend's requests go to (its API's root, from ``BASE_URL``)."""
        return str(self.config.base_url)

    @contextmanager
    def failures(self, command: str) -> Iterator[None]:
        """Inside the block, a failure only the user can fix becomes its one type, on every API.

        Refused credentials become :class:`CredentialsRefused` and a ``404`` at the
        API's root :class:`WrongBaseUrl`, whichever call met them and however the
        API said it; both name this account and the setting to fix.  Anything
        else passes unchanged.
        """
        try:
            yield
        except ClickatellError as exc:
            translated = self.failure(exc, command)
            if translated is exc:
                raise
            raise translated from exc

    def failure(self, exc: ClickatellError, command: str) -> ClickatellError:
        """*exc* as the user should read it: see :meth:`failures`."""
        if isinstance(exc, AccountMisconfigured):
            return exc
        cause = exc.cause if isinstance(exc, CommandNotSent) else exc
        if isinstance(cause, AuthenticationError):
            problem, keys, advice = self.refused_credentials(cause.code)
            return CredentialsRefused(
                command,
                cause,
                account=self.alias,
                problem=problem,
                fix=advice or self._fix(keys),
                settings=tuple(self.setting(key) for key in keys),
            )
        if isinstance(cause, GatewayHTTPError) and cause.status_code == 404:
            return self.wrong_base_url(command, cause)
        return exc

    def wrong_base_url(
        self, command: str, cause: ClickatellError, *, answers_as: str = ""
    ) -> WrongBaseUrl:
        """``BASE_URL`` is wrong: nothing answers there, or *answers_as* another API does."""
        example = f": {self.base_url_example}" if self.base_url_example else ""
        url = redact(self.request_url, self._secrets_of_config())
        return WrongBaseUrl(
            command,
            cause,
            account=self.alias,
            url=url,
            fix=f"{self._fix(('BASE_URL',))}{example}",
            settings=(self.setting("BASE_URL"),),
            problem=f"BASE_URL {url} answers as {answers_as}" if answers_as else "",
        )

    def refused_credentials(self, code: int | None) -> Refusal:
        """What was refused, the settings that hold it, and advice when no setting can fix it.

        The APIs with a key: the ``API_KEY``.  The legacy API overrides this (its
        codes tell a wrong login from a frozen account or an IP lockdown).
        """
        return "its API key was refused", ("API_KEY",), ""

    def setting(self, key: str) -> str:
        """How the docs and the checks name this account's *key*: ``settings.CLICKATELL[...]``."""
        return describe(key if self.alias == DEFAULT_ACCOUNT else AccountKey(key, self.alias))

    def _fix(self, keys: Sequence[str]) -> str:
        if len(keys) == 1:
            return f"fix {self.setting(keys[0])}"
        where = (
            "settings.CLICKATELL"
            if self.alias == DEFAULT_ACCOUNT
            else f"settings.CLICKATELL['ACCOUNTS'][{self.alias!r}]"
        )
        return f"check {', '.join(keys[:-1])} and {keys[-1]} in {where}"

    def _secrets_of_config(self) -> tuple[Secret | str | None, ...]:
        return tuple(getattr(self.config, name, None) for name in ("password", "api_key"))


__all__ = ["MESSAGE_COMMANDS", "Backend", "Capabilities", "OutgoingSms", "SendResult"]
