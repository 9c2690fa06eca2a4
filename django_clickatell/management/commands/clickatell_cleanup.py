"""Delete exchange-log rows and unmatched callbacks older than a number of days."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_clickatell.services.cleanup import MIN_DAYS, delete_old_history


class Command(BaseCommand):
    help = (
        "Delete the exchange log and unmatched callbacks older than --days, in small batches "
        "(messages are kept). Schedule it daily, or use the beat task django_clickatell.cleanup."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days", required=True, help=f"Keep this many days of history (at least {MIN_DAYS})."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        raw = str(options["days"]).strip()
        if not raw.isascii() or not raw.isdigit() or int(raw) < MIN_DAYS or len(raw) > 6:
            raise CommandError(
                f"--days must be a whole number of at least {MIN_DAYS}, got {raw!r}."
            )
        counts = delete_old_history(int(raw))
        self.stdout.write(
            f"Deleted {counts['exchanges']} exchanges and "
            f"{counts['unmatched_callbacks']} unmatched callbacks older than {raw} days."
        )
