"""Keep the shared Clickatell session alive, or report why it cannot be."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_clickatell.exceptions import AccountMisconfigured, ClickatellError
from django_clickatell.services.account import keep_session_alive


class Command(BaseCommand):
    help = "Ping Clickatell with the shared session (authenticating first if needed)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--account",
            default=None,
            help="one account's alias (default: every account whose API has sessions)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            keep_session_alive(options["account"])
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        except AccountMisconfigured as exc:
            # Names the account and the setting to fix, in one line.
            raise CommandError(f"Ping failed. {exc}") from exc
        except ClickatellError as exc:
            which = f" of Clickatell account {options['account']!r}" if options["account"] else ""
            raise CommandError(f"Ping{which} failed: {exc}") from exc
        self.stdout.write(self.style.SUCCESS("Clickatell answered: the session is alive."))
