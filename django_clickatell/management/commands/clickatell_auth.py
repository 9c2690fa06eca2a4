"""Check the Clickatell credentials by opening a new session (the id is never shown).

The session is shared by every process configured with the same credentials; a
refusal is remembered for those credentials only and never evicts or blocks a
session other processes obtained with a different (say, the current) password.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_clickatell.exceptions import AccountMisconfigured, ClickatellError
from django_clickatell.services.account import check_credentials


class Command(BaseCommand):
    help = "Authenticate with Clickatell using settings.CLICKATELL; exits non-zero on failure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--account",
            default="default",
            help="the account's alias in ACCOUNTS (default: default)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            account = check_credentials(options["account"])
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        except AccountMisconfigured as exc:
            # Names the account and the setting to fix, in one line.
            raise CommandError(str(exc)) from exc
        except ClickatellError as exc:
            raise CommandError(
                f"Could not check the credentials of Clickatell account {options['account']!r}: "
                f"{exc}"
            ) from exc
        if account.username:
            said = (
                f"Clickatell accepted user {account.username!r} (API id {account.api_id}); "
                "a new session is cached for every worker with these credentials."
            )
        else:  # an API key: nothing is cached, every request carries it
            said = f"Clickatell accepted the API key of account {account.alias!r}."
        self.stdout.write(self.style.SUCCESS(said))
