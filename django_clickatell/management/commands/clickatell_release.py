"""Hand held messages to Clickatell when they are due: the release loop as a command.

Messages scheduled further ahead than ``HOLD_LEAD_TIME`` (or any scheduled
message, on a backend without native scheduling) are held in Django; something
must hand them over when due.  With Celery beat, schedule the task
``django_clickatell.release_due_messages``; otherwise run this command:

* ``manage.py clickatell_release --once`` from cron (every minute): one pass;
* ``manage.py clickatell_release`` as a service: a pass every ``--interval``
  seconds until SIGTERM or SIGINT, which end it cleanly after the current pass.

Any number may run at once (several hosts, beat as well): each due message is
claimed under a lease and released once.  Without Celery the released messages
are sent by this process; with it they are queued for the workers.
"""

from __future__ import annotations

import signal
import time
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import InterfaceError, OperationalError, close_old_connections

from django_clickatell.dispatch import celery_in_use, release_held
from django_clickatell.models import Via


class Command(BaseCommand):
    help = (
        "Hand held messages to Clickatell when they are due (every scheduled message of an "
        "account whose API cannot schedule, e.g. the One API, and any beyond HOLD_LEAD_TIME). "
        "--once for cron; otherwise loops every --interval seconds until SIGTERM."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--once", action="store_true", help="One pass, then exit (cron).")
        parser.add_argument(
            "--interval",
            default="30",
            help="Seconds between passes of the loop (default 30; 1 to 3600).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            interval = float(options["interval"])
        except ValueError:
            raise CommandError(
                f"--interval must be a number of seconds, got {options['interval']!r}."
            ) from None
        if not 1 <= interval <= 3600:
            raise CommandError("--interval must be from 1 to 3600 seconds.")
        if options["once"]:
            self._pass()
            return
        stopping: list[int] = []

        def request_stop(signum: int, frame: FrameType | None) -> None:
            stopping.append(signum)  # the pass under way finishes; no new one starts

        signals = (signal.SIGTERM, signal.SIGINT)
        previous = {sig: signal.signal(sig, request_stop) for sig in signals}
        try:
            self.stdout.write(f"Releasing held messages every {interval:g} s (SIGTERM to stop).")
            while not stopping:
                close_old_connections()  # a connection dropped between passes is replaced
                try:
                    self._pass(quiet=True)
                except (OperationalError, InterfaceError) as exc:
                    # The database is briefly away: nothing was released (one transaction);
                    # the next pass tries again.
                    self.stderr.write(f"Database unavailable, retrying next pass: {exc}")
                _sleep_unless(stopping, interval)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        self.stdout.write("Stopped.")

    def _pass(self, *, quiet: bool = False) -> None:
        counts = release_held(via=Via.COMMAND)
        if quiet and not any(counts.values()):
            return
        how = "queued for sending" if celery_in_use() else "sent"
        self.stdout.write(
            f"Released {counts['released']} held messages ({how}); "
            f"{counts['rescheduled']} held again for later."
        )


def _sleep_unless(stopping: list[int], seconds: float) -> None:
    """Sleep in short slices, so a signal ends the wait within half a second."""
    deadline = time.monotonic() + seconds
    while not stopping and (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.5))
