"""Signals sent by the services, whatever face (admin, task, command, callback) drove them.

``message_cancelled(sender=OutboundMessage, message=..., via=...)``
    Clickatell answered ``006`` for ``message``: its delivery was stopped.

``message_status_changed(sender=OutboundMessage, message, old_status, new_status, via)``
    Clickatell reported a status code different from the one recorded.
    Both codes are three-digit strings (``old_status`` may be ``""``).

Both are sent after the change is saved.

``account_paused(sender=AccountPause, pause, user, via)`` / ``account_resumed(...)``
    An account was paused or resumed (``user`` may be ``None``: a command or the
    API without one).  Sent inside the transaction that saves (or deletes) the
    pause, so a receiver's writes -- the admin's ``LogEntry`` history -- commit with it.

``number_opted_out(sender=OptOut, entry, user, via)`` / ``number_opted_in(...)``
    A number was put on or taken off the opt-out list (by hand, or -- ``user`` ``None``
    -- because Clickatell refused it as opted out), inside the same transaction.
"""

from django.dispatch import Signal

message_cancelled = Signal()
message_status_changed = Signal()
account_paused = Signal()
account_resumed = Signal()
number_opted_out = Signal()
number_opted_in = Signal()
