"""What :mod:`django_clickatell.testing` needs from below the services, and nothing else.

Faces reach the gateway only through the services (``setup.cfg``'s import
contracts); the testing face is no exception.  This module hands it the test
backend's process-wide state (outbox, statuses, script), the reset of the HTTP
transports the simulator fixture needs, and the one service call that turns a
scripted status into a status callback.

Imports of models happen inside the functions that need them, so that the
pytest plugin can be loaded before Django's app registry is ready.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timezone
from decimal import Decimal

from django.core.exceptions import ImproperlyConfigured

from ..conf import account_settings, app_settings
from ..gateway.backends import reset_connections
from ..gateway.backends.locmem import STATE, TEST_API_ID, Script, SentSms

#: Every message the test backend sent in this process, in send order.
outbox: list[SentSms] = STATE.outbox
#: What the test backend answers next.
script: Script = STATE.script
#: Requests per command the test backend answered.
requests: Counter[str] = STATE.counts


def reset() -> None:
    """Empty the outbox, forget statuses, scripted answers and counts."""
    STATE.reset()


def status_of(reference: str) -> str:
    """The test gateway's status of a message (``apimsgid`` or ``climsgid``)."""
    return STATE.status_of(reference)


def duplicates() -> list[tuple[str, str]]:
    """``(account, climsgid)`` pairs the test gateway sent more than once."""
    return STATE.duplicates()


def deliver_callback(
    reference: str,
    status: str | None = None,
    *,
    charge: Decimal | str | None = None,
    reported_at: datetime | None = None,
    api_id: str | None = None,
) -> str:
    """Push a status callback for a message the test backend sent, as Clickatell would.

    The callback carries the message's ids, numbers and *status* (the test
    gateway's current status if not given; given, the gateway takes it too, so
    a later refresh agrees) and goes through :func:`.callbacks.receive_callback`
    -- the service the callback view calls, for the account that sent it -- so
    signal handlers run as in production.  ``api_id`` defaults to that account's
    ``API_ID`` (the top-level one if it sets none; the test gateway's own
    :data:`~..gateway.backends.locmem.TEST_API_ID` if neither does: the test backend
    needs none), and the callback speaks for that account's messages only.  Returns the
    outcome (``applied``, ``ignored``, ``unmatched``); ``InvalidCallback`` if
    the callback would be refused.
    """
    from .callbacks import receive_callback

    if status is not None:
        script.status(reference, status)
    sms = STATE.find(reference)
    when = reported_at or datetime.now(timezone.utc)
    configured = _api_id_of(sms.account)
    params = {
        "api_id": api_id or configured,
        "apiMsgId": sms.apimsgid,
        "cliMsgId": sms.climsgid,
        "to": sms.to,
        "from": sms.sender,
        "timestamp": str(int(when.timestamp())),
        "status": STATE.status_of(sms.apimsgid),
        "charge": "" if charge is None else f"{Decimal(charge):f}",
    }
    return receive_callback(params, api_id=configured, account=sms.account)


def _api_id_of(alias: str) -> str:
    try:
        return account_settings(alias).api_id or app_settings.api_id or TEST_API_ID
    except ImproperlyConfigured:  # the account was removed since it sent
        return app_settings.api_id or TEST_API_ID


__all__ = [
    "SentSms",
    "deliver_callback",
    "duplicates",
    "outbox",
    "requests",
    "reset",
    "reset_connections",
    "script",
    "status_of",
]
