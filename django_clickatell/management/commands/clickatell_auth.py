"""Check the Clickatell credentials by opening a new session (the id is never shown).

Without ``--account`` every configured account is checked, each even when one
fails: a project with a One API and a legacy account runs the README's one
command and learns about both.

The session is shared by every process configured with the same credentials; a
refusal is remembered for those credentials only and never evicts or blocks a
session other processes obtained with a different (say, the current) password.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_clickatell.conf import account_aliases
from django_clickatell.exceptions import AccountMisconfigured, ClickatellError
from django_clickatell.services.account import Account, check_credentials


class Command(BaseCommand):
    help = "Authenticate with Clickatell using settings.CLICKATELL; exits non-zero on failure."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--account",
            default=None,
            help="the account's alias ('default' or one in ACCOUNTS); without it, every account",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["account"] is not None:
            self.report(self.check_account(options["account"]))
            return
        aliases = account_aliases()
        if len(aliases) == 1:
            self.report(self.check_account(aliases[0]))
            return
        failed = []
        for alias in aliases:
            try:
                self.report(self.check_account(alias))
            except CommandError as exc:
                self.stderr.write(str(exc))  # each reason on its own line, as it comes
                failed.append(repr(alias))
        if failed:
            raise CommandError(
                f"{len(failed)} of {len(aliases)} accounts failed the check: "
                f"{', '.join(failed)} (the reasons are above)."
            )

    def check_account(self, alias: str) -> Account:
        """The account whose credentials Clickatell accepted, or a one-line ``CommandError``."""
        try:
            return check_credentials(alias)
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from exc
        except AccountMisconfigured as exc:
            # Names the account and the setting to fix, in one line.
            raise CommandError(str(exc)) from exc
        except ClickatellError as exc:
            raise CommandError(
                f"Could not check the credentials of Clickatell account {alias!r}: {exc}"
            ) from exc

    def report(self, account: Account) -> None:
        if account.username:
            said = (
                f"Clickatell accepted user {account.username!r} (API id {account.api_id}); "
                "a new session is cached for every worker with these credentials."
            )
        else:  # an API key: nothing is cached, every request carries it
            said = f"Clickatell accepted the API key of account {account.alias!r}."
        self.stdout.write(self.style.SUCCESS(said))
