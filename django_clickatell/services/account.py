"""The accounts: their backends, their credentials, their shared sessions.

Faces (commands, tasks, the Python API) use these instead of the gateway, so
the gateway stays an implementation detail of the services.  Every run picks
the backend of each message's account (:class:`BackendPool`): one backend
object per account per run, whatever API the account speaks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..conf import SettingError, account_settings
from ..gateway.backends import DEFAULT_ACCOUNT, Backend, backend_class, get_backend

if TYPE_CHECKING:
    from ..models import OutboundMessage


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

    def for_account(self, alias: str) -> Backend:
        if self.fixed is not None:
            return self.fixed
        if alias not in self._built:
            self._built[alias] = get_backend(alias)
        return self._built[alias]

    def __call__(self, message: OutboundMessage) -> Backend:
        return self.for_account(getattr(message, "account", DEFAULT_ACCOUNT))


def check_credentials(account: str = DEFAULT_ACCOUNT) -> Account:
    """Prove the account's credentials work (a login, or an authenticated call).

    For the HTTP API the new session becomes the one every process with these
    credentials shares; a refusal is remembered for these credentials only.
    Raises ``ClickatellError``.
    """
    backend = get_backend(account)
    backend.check_credentials()
    return Account(backend.config.username, backend.config.api_id, account)


def keep_session_alive(account: str = DEFAULT_ACCOUNT) -> None:
    """Keep the account's shared session alive (the HTTP API drops it after 15 idle minutes)."""
    get_backend(account).keep_alive()


def backend_problem(alias: str = DEFAULT_ACCOUNT) -> str:
    """Why the account's ``BACKEND`` names no backend class ("" if it does): for the checks."""
    config = account_settings(alias)
    try:
        backend_class(config.backend, config.key("BACKEND"))
    except SettingError as exc:
        return str(exc)
    return ""
