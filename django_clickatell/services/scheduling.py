"""Where a scheduled message waits until it is due: at Clickatell, or held here.

Clickatell's native scheduling (legacy ``deliv_time`` / ``scheduled_time``)
reaches only so far ahead (7 days on the legacy HTTP API), the One API has
none, and a message Clickatell holds can be stopped only by asking it (and on
some APIs not at all).  So a message due further ahead than
``min(HOLD_LEAD_TIME, the backend's horizon)`` -- or any scheduled message when
the backend cannot schedule -- is recorded ``HELD`` here, with the time it is to
be handed over (``release_at``), and the release loop (:mod:`.release`) turns
it into an ordinary queued message then.

The stored sending options of a held message carry no schedule: its due time is
``scheduled_for`` alone.  The relative ``deliv_time`` a caller asked for
(minutes from *composing*) would delay a released message a second time, so it
is never stored for a held message; at release the remaining delay becomes an
absolute ``scheduled_time`` when Clickatell can schedule it, or nothing (sent
at once, being due).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from ..gateway.backends import DEFAULT_ACCOUNT, Capabilities, account_settings, backend_class
from ..selections import MIN_NATIVE_DELAY

#: How far ahead any message may be scheduled, whatever the backend: a year.  Long
#: enough for reminders and renewals; short enough that a typo (a year 2062) is caught.
MAX_AHEAD = timedelta(days=365)
#: The sending options that say when Clickatell is to deliver.
SCHEDULE_OPTIONS = ("deliv_time", "scheduled_time")


@dataclass(frozen=True)
class HoldPolicy:
    """How far ahead Clickatell may hold a message (``at_gateway``); the rest waits here.

    ``at_gateway`` is ``min(HOLD_LEAD_TIME, horizon)`` for a backend that schedules
    natively, and zero for one that does not.
    """

    native: bool
    at_gateway: timedelta
    #: The farthest Clickatell schedules (None: no limit it declares).
    horizon: timedelta | None = None

    @classmethod
    def of(cls, capabilities: Capabilities, lead: timedelta) -> HoldPolicy:
        if not capabilities.native_scheduling:
            return cls(native=False, at_gateway=timedelta(0))
        horizon = capabilities.scheduling_horizon
        at_gateway = lead if horizon is None else min(lead, horizon)
        return cls(native=True, at_gateway=at_gateway, horizon=horizon)

    @property
    def may_hold(self) -> bool:
        """Whether some message may be held here: one the API cannot schedule at all, or
        one beyond its horizon -- then only the release loop ever hands it over."""
        return not self.native or self.horizon is not None

    def can_schedule(self, remaining: timedelta) -> bool:
        """Whether Clickatell itself can hold a message due in *remaining*."""
        return (
            self.native
            and remaining >= MIN_NATIVE_DELAY
            and (self.horizon is None or remaining <= self.horizon)
        )

    def holds(self, due: datetime | None, now: datetime) -> bool:
        """Whether a message due at *due* is held here rather than scheduled at Clickatell."""
        return due is not None and due - now > self.at_gateway

    def release_at(self, due: datetime) -> datetime:
        """When a held message is handed over: early enough for Clickatell to schedule it
        (``at_gateway`` ahead), or -- when that is less than Clickatell's 10-minute
        minimum, or it cannot schedule at all -- at its due time, to be sent at once."""
        if self.native and self.at_gateway >= MIN_NATIVE_DELAY:
            return due - self.at_gateway
        return due

    def release_options(
        self, options: Mapping[str, Any], due: datetime, now: datetime
    ) -> dict[str, Any]:
        """The sending options of a message released at *now*: any stored schedule dropped
        (a relative ``deliv_time`` would count again from the send), the remaining delay
        as an absolute ``scheduled_time`` when Clickatell can schedule it (at least 10
        minutes ahead, within the backend's horizon), otherwise none: it is due, and goes now."""
        fields = {key: value for key, value in options.items() if key not in SCHEDULE_OPTIONS}
        if self.can_schedule(due - now):
            fields["scheduled_time"] = int(due.timestamp())
        return fields

    def may_go(self, due: datetime, now: datetime) -> bool:
        """Whether a held message may be handed over at *now*: it is due, or Clickatell
        can schedule it.  Its ``release_at`` was worked out when it was composed; the
        backend or the lead time may have changed since (an account moved to the One
        API), and a message must never go out early because of it."""
        return due <= now or self.can_schedule(due - now)


def current_policy(account: str = DEFAULT_ACCOUNT) -> HoldPolicy:
    """The policy of *account*'s backend and ``HOLD_LEAD_TIME``.

    Reads the backend's declared capabilities (a class attribute): no backend
    is built, so composing needs neither credentials nor a connection.
    """
    config = account_settings(account)
    lead = timedelta(seconds=config.hold_lead_time)
    return HoldPolicy.of(backend_class(config.backend).capabilities, lead)
