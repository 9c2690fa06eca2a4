"""Pause a Clickatell account: nothing more is sent through it until ``clickatell_resume``.

``manage.py clickatell_pause --account default --reason "wrong campaign"``.
Sends, releases of held messages and retries of the account wait (recorded
as waiting for the pause); stops and status queries go on.  Every worker on
every machine sees the pause within a second of this command's commit.
``--by USERNAME`` records who paused it and writes the admin's history
(LogEntry); without it the pause is logged through ``logging`` only.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_clickatell.exceptions import InvalidInput
from django_clickatell.models import Via
from django_clickatell.services import pausing


def user_named(username: str | None) -> Any:
    """The user ``--by`` names (None without it); a clear error if there is none."""
    if not username:
        return None
    model = get_user_model()
    try:
        return model._default_manager.get_by_natural_key(username)
    except model.DoesNotExist:
        raise CommandError(f"--by: no user {username[:60]!r}.") from None


class Command(BaseCommand):
    help = (
        "Pause a Clickatell account: nothing more is sent through it (new sends, releases, "
        "retries wait) until clickatell_resume; stops still go out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", required=True, help="The account's alias.")
        parser.add_argument("--reason", default="", help="Why (shown in the admin; 200 max).")
        parser.add_argument("--by", default="", help="User name recorded as having paused it.")

    def handle(self, *args: Any, **options: Any) -> None:
        alias = options["account"]
        try:
            pause, created = pausing.pause_account(
                alias, reason=options["reason"], by=user_named(options["by"]), via=Via.COMMAND
            )
        except InvalidInput as exc:
            raise CommandError(str(exc)) from None
        held = pausing.held_by_pause(alias)
        if not created:
            self.stdout.write(
                f"Account {alias!r} was already paused (since {pause.paused_at:%Y-%m-%d %H:%M:%S}"
                f"{', by ' + pause.paused_by if pause.paused_by else ''}"
                f"{': ' + pause.reason if pause.reason else ''}); nothing changed."
            )
            return
        self.stdout.write(
            f"Paused account {alias!r}: nothing more is sent through it until "
            f"`manage.py clickatell_resume --account {alias}`. {held.sends} queued or in-doubt "
            f"sends and {held.held_due_soon} held messages due within the hour wait; "
            f"{held.stops} stops still go out. Every worker sees the pause within "
            f"{pausing.PAUSE_FRESH_SECONDS:g} s; requests already on the wire are answered."
        )
