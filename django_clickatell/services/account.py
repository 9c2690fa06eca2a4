"""The accounts: their backends, their credentials, their shared sessions.

Faces (commands, tasks, the Python API) use these instead of the gateway, so
the gateway stays an implementation detail of the services.  Every run picks
the backend of each message's account (:class:`BackendPool`): one backend
object per account per run, whatever API the account speaks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

from django.core.exceptions import ImproperlyConfigured

from ..conf import (
    MalformedAccounts,
    SettingError,
    UnknownAccount,
    account_aliases,
    account_settings,
    app_settings,
)
from ..exceptions import AccountMisconfigured, ClickatellError, CommandNotSent, InvalidInput
from ..gateway.backends import (
    DEFAULT_ACCOUNT,
    Backend,
    Capabilities,
    OutgoingSms,
    SendResult,
    account_capabilities,
    backend_class,
    get_backend,
)
from ..protocol.replies import BalanceReply, MessageStatusReply

if TYPE_CHECKING:
    from ..models import OutboundMessage

logger = logging.getLogger("django_clickatell.accounts")


@dataclass(frozen=True)
class Account:
    """Who the credentials name (never the password or the API key)."""

    username: str
    api_id: str
    alias: str = DEFAULT_ACCOUNT


class BackendPool:
    """The backend of each message's account, built once per run and account.

    With *backend*, every message goes through that one (tests, and callers
    that built their own); otherwise through its account's, from the settings.
    """

    def __init__(self, backend: Backend | None = None) -> None:
        self.fixed = backend
        self._built: dict[str, Backend] = {}
        # A pipelined run asks from several threads at once: each account's backend is
        # built once, so every request of the run shares its client and session.
        self._lock = threading.Lock()

    def for_account(self, alias: str) -> Backend:
        """The account's backend; an :class:`Unconfigured` one if its settings are unusable."""
        if self.fixed is not None:
            return self.fixed
        with self._lock:
            return self._build(alias)

    def _build(self, alias: str) -> Backend:
        if alias not in self._built:
            try:
                self._built[alias] = get_backend(alias)
            except (UnknownAccount, MalformedAccounts) as exc:
                # A message recorded for an account since removed from the settings: its
                # work waits, with that reason, until the account is back (services/waiting.py).
                logger.error(
                    "Clickatell account %r is not in the settings: its messages wait until it "
                    "is configured again (%s)",
                    alias[:40],
                    exc,
                )
                self._built[alias] = Unconfigured(alias, str(exc), missing=True)
            except ImproperlyConfigured as exc:
                # There but broken: nothing can be asked; each request is "not sent", to be
                # tried again once the settings are fixed -- never a crash that leaves its
                # claim to expire.
                logger.error("Clickatell account %r is unusable: %s", alias[:40], exc)
                self._built[alias] = Unconfigured(alias, str(exc))
        return self._built[alias]

    def __call__(self, message: OutboundMessage) -> Backend:
        return self.for_account(message.account)


class Unconfigured(Backend):
    """Stands in for an account whose settings are missing or broken: sends nothing.

    Every call raises ``CommandNotSent`` (retryable) with the reason, so the
    services record "not sent" the way they do for a session that could not be
    had.  It claims remote stop so that a stop is retried, never recorded as
    "too late" for a message this account could stop once configured.
    """

    name = "unconfigured"
    capabilities = Capabilities(
        remote_stop=True,
        sessions=False,
        native_scheduling=False,
        scheduling_horizon=None,
        batch_size=1,
        callbacks="",
        query_by_client_id=True,
    )

    def __init__(self, alias: str, reason: str, *, missing: bool = False) -> None:
        super().__init__(app_settings, alias=alias)
        self.reason = reason
        #: The account is not in the settings at all: its work waits rather than retries
        #: (services/waiting.py); nothing is asked of this backend then.
        self.missing = missing

    def _refuse(self, command: str) -> NoReturn:
        if self.missing:
            raise CommandNotSent(command, InvalidInput(self.reason))
        # There but broken: only the user can fix it, so say whose settings and which key
        # (the reason names it), as refused credentials do -- never "retried, nothing to do".
        raise AccountMisconfigured(
            command,
            InvalidInput(self.reason),
            account=self.alias,
            problem="its settings cannot be used",
            fix="fix the setting named here",
        )

    def send(self, messages: Sequence[OutgoingSms]) -> list[SendResult]:
        self._refuse("sendmsg")

    def query(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        self._refuse("querymsg")

    def stop(
        self, *, apimsgid: str | None = None, climsgid: str | None = None
    ) -> MessageStatusReply:
        self._refuse("delmsg")

    def balance(self) -> BalanceReply:
        self._refuse("getbalance")

    def check_credentials(self) -> None:
        self._refuse("auth")


def check_credentials(account: str = DEFAULT_ACCOUNT) -> Account:
    """Prove the account's credentials work (a login, or an authenticated call).

    For the HTTP API the new session becomes the one every process with these
    credentials shares; a refusal is remembered for these credentials only.
    Raises ``ClickatellError``.
    """
    backend = get_backend(account)
    backend.check_credentials()
    return Account(backend.config.username, backend.config.api_id, account)


def keep_session_alive(account: str | None = None) -> None:
    """Keep shared sessions alive (the HTTP API drops one after 15 idle minutes).

    With *account*, that account's; without, every configured account whose API
    has sessions (the ping task and command), each tried even when one fails --
    the first failure is raised afterwards.
    """
    if account is not None:
        get_backend(account).keep_alive()
        return
    first: ClickatellError | None = None
    for alias in account_aliases():
        backend = get_backend(alias)
        if not backend.capabilities.sessions:
            continue
        try:
            backend.keep_alive()
        except ClickatellError as exc:
            logger.warning("Could not keep account %r's session alive: %s", alias, exc)
            first = first or exc
    if first is not None:
        raise first


def backend_problem(alias: str = DEFAULT_ACCOUNT) -> str:
    """Why the account's ``BACKEND`` names no backend class ("" if it does): for the checks."""
    config = account_settings(alias)
    try:
        backend_class(config.backend, config.key("BACKEND"))
    except SettingError as exc:
        return str(exc)
    return ""


def looks_up_by_client_id(alias: str = DEFAULT_ACCOUNT) -> bool:
    """Whether the account's API can be asked about a message by its ``climsgid`` (what
    verifying a send in doubt needs); True when that cannot be told (the account is not
    configured): the screen then does not claim it cannot."""
    try:
        return account_capabilities(alias).query_by_client_id
    except ImproperlyConfigured:
        return True
