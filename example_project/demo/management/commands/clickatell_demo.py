"""``make demo``: schedule messages at the simulator, cancel them through the task path, show it."""

from __future__ import annotations

import os
from contextlib import ExitStack
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.test import override_settings
from django.utils import timezone

from django_clickatell.exceptions import ClickatellError
from django_clickatell.gateway.client import ClickatellClient
from django_clickatell.models import OutboundMessage, Via
from django_clickatell.protocol.replies import SentMessageReply
from django_clickatell.services.cancellation import request_cancellation
from django_clickatell.simulator import ClickatellSimulator
from django_clickatell.tasks import enqueue_cancellation

RECIPIENTS = ["27999000101", "27999000102", "27999000103", "27999000104", "27999000105"]


class Command(BaseCommand):
    help = "Schedule a few SMS at the bundled simulator, then stop them through Celery."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        with ExitStack() as stack:
            if not os.environ.get("CLICKATELL_BASE_URL"):
                account: dict[str, Any] = settings.CLICKATELL
                simulator = stack.enter_context(
                    ClickatellSimulator(
                        username=account["USERNAME"],
                        password=account["PASSWORD"],
                        api_id=account["API_ID"],
                    )
                )
                stack.enter_context(
                    override_settings(
                        CLICKATELL={**settings.CLICKATELL, "BASE_URL": simulator.base_url}
                    )
                )
                self.stdout.write(f"Embedded Clickatell simulator on {simulator.base_url}")
            try:
                self.run()
            except ClickatellError as exc:
                raise CommandError(f"The gateway refused: {exc}") from exc

    def run(self) -> None:
        client = ClickatellClient()
        client.auth()
        self.stdout.write(
            self.style.SUCCESS("auth: credentials accepted (session id kept in the cache)")
        )
        client.ping()
        self.stdout.write(self.style.SUCCESS("ping: session alive"))

        OutboundMessage.objects.all().delete()
        deliver_at = timezone.now() + timedelta(hours=2)
        for number in RECIPIENTS:
            self._schedule(client, number, deliv_time=120, scheduled_for=deliver_at)
        # One that is already on its way to the handset: too late to stop.
        self._schedule(client, "27999000199", deliv_time=None, scheduled_for=timezone.now())
        for message in OutboundMessage.objects.all():
            reply = client.querymsg(apimsgid=message.apimsgid or "")
            OutboundMessage.objects.filter(pk=message.pk).update(
                status=reply.status, status_changed_at=timezone.now()
            )
        before = {m.pk: m.status for m in OutboundMessage.objects.all()}

        result = request_cancellation(OutboundMessage.objects.all(), via=Via.COMMAND)
        self.stdout.write(
            f"Cancelling {len(result.message_pks)} messages through the Celery task "
            f"({'eager' if settings.CELERY_TASK_ALWAYS_EAGER else settings.CELERY_BROKER_URL})..."
        )
        enqueue_cancellation(result.message_pks)

        self._table(before)
        cancelled = OutboundMessage.objects.filter(status="006").count()
        if cancelled != len(RECIPIENTS):
            raise CommandError(f"Expected {len(RECIPIENTS)} cancelled messages, got {cancelled}.")
        self.stdout.write(
            self.style.SUCCESS(
                f"{cancelled} scheduled messages stopped (011 -> 006); "
                "every reply is in the exchange log."
            )
        )

    def _schedule(
        self, client: ClickatellClient, to: str, *, deliv_time: int | None, scheduled_for: Any
    ) -> None:
        fields = {"to": to, "text": "Your appointment is tomorrow at 10:00", "from": "DemoClinic"}
        if deliv_time:
            fields["deliv_time"] = str(deliv_time)
        [reply] = client.sendmsg(fields)
        assert isinstance(reply, SentMessageReply)
        OutboundMessage.objects.create(
            apimsgid=reply.apimsgid,
            recipient=to,
            sender="DemoClinic",
            scheduled_for=scheduled_for,
            text=fields["text"],
        )

    def _table(self, before: dict[int, str]) -> None:
        header = f"{'recipient':<13} {'apimsgid':<34} {'before':<7} {'after':<7} cancellation"
        self.stdout.write("")
        self.stdout.write(header)
        self.stdout.write("-" * len(header))
        for message in OutboundMessage.objects.order_by("pk"):
            self.stdout.write(
                f"{message.recipient:<13} {message.apimsgid or '':<34} {before[message.pk]:<7} "
                f"{message.status:<7} {message.get_cancel_state_display()}"
            )
        self.stdout.write("")
