"""Resume a paused Clickatell account: its waiting messages go out, each once.

``manage.py clickatell_resume --account default [--by USERNAME]``.  Lifts the
pause and hands the waiting sends on at once (as ``clickatell_requeue`` does);
held messages that came due meanwhile go at the release loop's next pass.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from django_clickatell.dispatch import celery_in_use, requeue_stalled
from django_clickatell.models import Via
from django_clickatell.services import pausing

from .clickatell_pause import user_named


class Command(BaseCommand):
    help = "Resume a paused Clickatell account: its waiting messages go out, each once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, help="The account's alias.")
        parser.add_argument("--by", default="", help="User name recorded as having resumed it.")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["account"]
        if not pausing.resume_account(alias, by=user_named(options["by"]), via=Via.COMMAND):
            self.stdout.write(f"Account {alias!r} is not paused; nothing changed.")
            return
        counts = requeue_stalled(via=Via.COMMAND)
        how = "queued for sending" if celery_in_use() else "sent"
        self.stdout.write(
            f"Resumed account {alias!r}: {counts['sends']} waiting sends handed on ({how}), "
            f"{counts['cancellations']} stops; held messages due meanwhile go at the release "
            "loop's next pass."
        )
