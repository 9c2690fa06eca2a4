"""The account itself: check its credentials, keep its shared session alive.

Faces (commands, tasks, the Python API) use these instead of the gateway
client, so the gateway stays an implementation detail of the services.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..gateway.client import ClickatellClient


@dataclass(frozen=True)
class Account:
    """Who the credentials name (never the password)."""

    username: str
    api_id: str


def check_credentials() -> Account:
    """Open a new session with the configured credentials; raises ``ClickatellError``.

    The session becomes the one every process with these credentials shares; a
    refusal is remembered for these credentials only.
    """
    client = ClickatellClient()
    client.auth()
    return Account(client.username, client.api_id)


def keep_session_alive() -> None:
    """Ping with the shared session (Clickatell drops it after 15 idle minutes)."""
    ClickatellClient().ping()
