"""Check the Clickatell credentials by opening a new session (the id is never shown).

The session is shared by every process configured with the same credentials; a
refusal is remembered for those credentials only and never evicts or blocks a
session other processes obtained with a different (say, the current) password.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_clickatell.exceptions import ClickatellError
from django_clickatell.services.account import check_credentials


class Command(BaseCommand):
    help = "Authenticate with Clickatell using settings.CLICKATELL; exits non-zero on failure."

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            account = check_credentials()
        except ClickatellError as exc:
            raise CommandError(f"Authentication failed: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Clickatell accepted user {account.username!r} (API id {account.api_id}); "
                "a new session is cached for every worker with these credentials."
            )
        )
