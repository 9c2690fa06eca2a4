"""Print the Clickatell account's remaining credit."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_clickatell.exceptions import ClickatellError
from django_clickatell.services.balance import BalanceReading, failure_code, get_balance


class Command(BaseCommand):
    help = "Show the remaining Clickatell credit (always asks the gateway)."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            credit = get_balance(cached=False)
        except ClickatellError as exc:
            reason = BalanceReading(None, failure_code(exc)).reason
            raise CommandError(f"Balance unavailable ({reason}): {exc}") from exc
        self.stdout.write(f"Credit: {credit}")
