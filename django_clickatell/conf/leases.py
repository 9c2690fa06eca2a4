"""Leases sized from the work they guard: the rules, and the defaults that follow them.

From the timeouts, :class:`~.options.ClickatellSettings` derives

* ``request_deadline`` -- the longest one HTTP request can take: ``connect +
  read`` of ``TIMEOUT`` (the transport enforces both as total deadlines; name
  resolution excepted);
* ``command_deadline`` -- the longest one client call can take: waiting for
  another process's login, our own login, the command, and after an ``ERR 003``
  the same again once (see ``gateway.client``).

The rules:

* ``AUTH_LOCK_TIMEOUT`` must be at least ``LOCK_HEADROOM`` x one request, or
  the lock could expire under a login still running and a second login start.
* ``CLAIM_TIMEOUT`` must be at least ``CLAIM_HEADROOM`` x ``command_deadline``.
  A run extends its lease before a message once a third of the lease has gone
  by, so a message may start with up to a third spent: the bound needs
  ``claim > 1.5 x command_deadline``; 2 leaves a sixth of the lease for the
  database writes around the request and for clock differences between hosts.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .errors import LeaseTooShort, describe

if TYPE_CHECKING:
    from .options import ClickatellSettings

#: Longest pause between two looks at the cache while another process logs in.
AUTH_POLL_MAX = 0.2
#: AUTH_LOCK_TIMEOUT >= LOCK_HEADROOM x request_deadline.
LOCK_HEADROOM = 1.5
#: CLAIM_TIMEOUT >= CLAIM_HEADROOM x command_deadline (see the module docstring).
CLAIM_HEADROOM = 2.0
#: Defaults of the leases when the timeouts allow; longer when they need it.
DEFAULT_AUTH_LOCK_TIMEOUT = 30.0
DEFAULT_CLAIM_TIMEOUT = 300


def lock_outlives_login(config: ClickatellSettings, key: str, value: float) -> None:
    needed = config.minimum_auth_lock_timeout
    if value < needed:
        raise LeaseTooShort(
            f"{describe(key)} is {value:g}s, shorter than {needed:g}s "
            f"({LOCK_HEADROOM:g} x one request of up to {config.request_deadline:g}s, TIMEOUT): "
            "the lock could expire under a login still running and let a second one start.",
            "django_clickatell.E006",
        )


def claim_outlives_message(config: ClickatellSettings, key: str, value: int) -> None:
    needed = config.minimum_claim_timeout
    if value < needed:
        raise LeaseTooShort(
            f"{describe(key)} is {value}s, shorter than {needed:g}s "
            f"({CLAIM_HEADROOM:g} x {config.longest_command_deadline:g}s, the longest one "
            "claimed message of any account can take: a login wait, a login and the command, "
            "twice if the session is renewed). A claim could expire under a request still "
            "running and the message be sent to Clickatell twice. Raise CLAIM_TIMEOUT or "
            "lower TIMEOUT and AUTH_WAIT_TIMEOUT.",
            "django_clickatell.E005",
        )


def default_lock(config: ClickatellSettings) -> float:
    return max(DEFAULT_AUTH_LOCK_TIMEOUT, config.minimum_auth_lock_timeout)


def default_wait(config: ClickatellSettings) -> float:
    # A little past the lock: a waiter outlasts a crashed holder's lock and takes over.
    return type(config).auth_lock_timeout.value(config) + 1.0


def default_claim(config: ClickatellSettings) -> int:
    return max(DEFAULT_CLAIM_TIMEOUT, math.ceil(config.minimum_claim_timeout))
