"""Check the Clickatell credentials by opening a new shared session (the id is never shown)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from django_clickatell.exceptions import ClickatellError
from django_clickatell.gateway.client import ClickatellClient


class Command(BaseCommand):
    help = "Authenticate with Clickatell using settings.CLICKATELL; exits non-zero on failure."

    def handle(self, *args: Any, **options: Any) -> None:
        client = ClickatellClient()
        try:
            client.auth()
        except ClickatellError as exc:
            raise CommandError(f"Authentication failed: {exc}") from exc
        self.stdout.write(
            self.style.SUCCESS(
                f"Clickatell accepted user {client.username!r} (API id {client.api_id}); "
                "a new session is cached for all workers."
            )
        )
