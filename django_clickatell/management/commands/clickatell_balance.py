"""Print the Clickatell account's remaining credit."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_clickatell.exceptions import AccountMisconfigured, ClickatellError
from django_clickatell.services.balance import BalanceReading, failure_code, get_balance


class Command(BaseCommand):
    help = "Show the remaining Clickatell credit (always asks the gateway)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--account",
            default="default",
            help="the account's alias in ACCOUNTS (default: default)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            credit = get_balance(cached=False, account=options["account"])
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        except AccountMisconfigured as exc:
            # Names the account and the setting to fix, in one line.
            reason = BalanceReading(None, failure_code(exc)).reason
            raise CommandError(f"Balance unavailable ({reason}). {exc}") from exc
        except ClickatellError as exc:
            reason = BalanceReading(None, failure_code(exc)).reason
            raise CommandError(
                f"Balance unavailable for Clickatell account {options['account']!r} ({reason}): "
                f"{exc}"
            ) from exc
        self.stdout.write(f"Credit: {credit}")
