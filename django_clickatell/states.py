"""The states a message moves through, for sending and for cancelling, and who acted.

Plain choices with no behaviour: the models store them, the selections
(:mod:`.selections`) and the services decide with them.
"""

from __future__ import annotations

from django.db import models
from django.utils.translation import gettext_lazy as _


class CancelState(models.TextChoices):
    NOT_REQUESTED = "", _("Not requested")
    PENDING = "pending", _("Cancellation queued")
    IN_FLIGHT = "in_flight", _("Cancelling")
    CANCELLED = "cancelled", _("Cancelled")
    TOO_LATE = "too_late", _("Too late")
    REFUSED = "refused", _("Refused by Clickatell")
    RETRYING = "retrying", _("Failed, will retry")
    GAVE_UP = "gave_up", _("Failed, gave up")
    SKIPPED = "skipped", _("Skipped (already final)")


#: States in which work is queued or running; a new request leaves them alone.
ACTIVE_CANCEL_STATES = (CancelState.PENDING, CancelState.IN_FLIGHT, CancelState.RETRYING)


class SendState(models.TextChoices):
    NOT_SENT_HERE = "", _("Not sent by this app")
    #: Scheduled further ahead than Clickatell is trusted to hold it: kept here and
    #: handed over (turned ``QUEUED``) by the release loop when due (services/release.py).
    HELD = "held", _("Held here until due")
    QUEUED = "queued", _("Queued for sending")
    SENDING = "sending", _("Sending")
    VERIFYING = "verifying", _("Checking whether Clickatell got it")
    SENT = "sent", _("Accepted by Clickatell")
    REJECTED = "rejected", _("Rejected by Clickatell")
    UNKNOWN = "unknown", _("Unknown (not resent, to avoid a duplicate)")
    FAILED = "failed", _("Not sent: Clickatell could not be reached")
    WITHDRAWN = "withdrawn", _("Stopped before it was sent")


#: Sending states in which a run may still act on the message (queued, or in doubt).
#: ``HELD`` is not one of them: no send run, requeue or stall detection touches a held
#: message; only the release loop turns it ``QUEUED`` when it is due.
OPEN_SEND_STATES = (SendState.QUEUED, SendState.SENDING, SendState.VERIFYING)


class WaitingFor(models.TextChoices):
    """Why open work (a send, a release, a stop) waits instead of going out or failing.

    Not a failure and not a state of its own: the message stays queued, in doubt,
    held or with its stop queued, and goes out once the reason is gone
    (:mod:`.services.waiting`).  One reason per cause that only the settings or an
    operator can lift: a missing account, a paused one.
    """

    NOTHING = "", _("Not waiting")
    #: Its account is not in ``settings.CLICKATELL`` (removed, or ``ACCOUNTS`` broken).
    ACCOUNT = "account", _("Its account is not in the settings")
    #: Its account is paused by an operator (services/pausing.py): sends and releases
    #: wait; stops and status queries never do.
    PAUSED = "paused", _("Its account is paused")
    #: A guard's cap (per hour, per day, per recipient) was reached right before it left,
    #: or the cache that counts them is down (services/guards.py): it goes out when
    #: there is room, handed on by ``requeue_stalled_work``.
    GUARD = "guard", _("A sending cap of its account is reached")


class Via(models.TextChoices):
    ADMIN = "admin", _("Admin")
    TASK = "task", _("Celery task")
    COMMAND = "command", _("Management command")
    API = "api", _("Python API")
    CALLBACK = "callback", _("Status callback")
