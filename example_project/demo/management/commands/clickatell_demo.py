"""``make demo``: the whole lifecycle against the bundled simulator.

Schedules SMS with ``sendmsg``, sends one right away whose status callbacks
arrive at the real callback view, stops some scheduled ones through the Celery
task path, and prints what every message went through.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.core.servers.basehttp import (
    ThreadedWSGIServer,
    WSGIRequestHandler,
    get_internal_wsgi_application,
)
from django.test import override_settings

from django_clickatell.api import cancel_sms, check_credentials, refresh_sms, send_sms
from django_clickatell.exceptions import ClickatellError
from django_clickatell.models import OutboundMessage
from django_clickatell.simulator import ClickatellSimulator

SCHEDULED = ["27999000101", "27999000102", "27999000103", "27999000104", "27999000105"]
IMMEDIATE = "27999000199"


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Command(BaseCommand):
    help = "Schedule SMS at the bundled simulator, receive callbacks, stop some, show the record."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        with ExitStack() as stack:
            if not os.environ.get("CLICKATELL_BASE_URL"):
                stack.enter_context(self._embedded_gateway())
            try:
                self.run()
            except ClickatellError as exc:
                raise CommandError(f"The gateway refused: {exc}") from exc

    def _embedded_gateway(self) -> Any:
        account: dict[str, Any] = settings.CLICKATELL
        web = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler)
        web.set_app(get_internal_wsgi_application())
        threading.Thread(target=web.serve_forever, daemon=True).start()
        callback_url = f"http://127.0.0.1:{web.server_address[1]}/clickatell/callback/"
        simulator = ClickatellSimulator(
            username=account["USERNAME"],
            password=account["PASSWORD"],
            api_id=account["API_ID"],
            handset_delay=0.5,
            callback_url=callback_url,
            callback_auth=(account["CALLBACK_USERNAME"], account["CALLBACK_PASSWORD"]),
        )
        stack = ExitStack()
        stack.enter_context(simulator)
        stack.callback(web.shutdown)
        stack.enter_context(
            override_settings(CLICKATELL={**account, "BASE_URL": simulator.base_url})
        )
        self.stdout.write(f"Embedded Clickatell simulator on {simulator.base_url}")
        self.stdout.write(f"Status callbacks pushed to {callback_url}")
        return stack

    def run(self) -> None:
        check_credentials()
        self.stdout.write(
            self.style.SUCCESS("auth: credentials accepted (session id kept in the cache)")
        )
        call_command("clickatell_ping", stdout=self.stdout)
        OutboundMessage.objects.all().delete()

        send_sms(
            SCHEDULED,
            "Your appointment is tomorrow at 10:00",
            sender="DemoClinic",
            deliver_in_minutes=120,
            callback=3,
            wait=True,
        )
        [now] = send_sms(
            IMMEDIATE, "Grüße! Your code is 4711", sender="DemoClinic", callback=3, wait=True
        )
        self.stdout.write(f"sendmsg: {len(SCHEDULED)} scheduled 2 hours ahead, 1 sent now")
        refresh_sms(OutboundMessage.objects.all(), wait=True)
        before = dict(OutboundMessage.objects.values_list("pk", "status"))

        deadline = time.monotonic() + 10
        while OutboundMessage.objects.get(pk=now.pk).status != "004":
            if time.monotonic() > deadline:
                raise CommandError("The delivery callback did not arrive.")
            time.sleep(0.1)
        self.stdout.write("callback: the message sent now reported 003, then 004 (delivered)")

        to_stop = OutboundMessage.objects.filter(recipient__in=[*SCHEDULED[:3], IMMEDIATE])
        result = cancel_sms(to_stop)
        self.stdout.write(
            f"cancel: {len(result.message_pks)} queued through the Celery task "
            f"({'eager' if settings.CELERY_TASK_ALWAYS_EAGER else settings.CELERY_BROKER_URL}), "
            f"{result.preview.skipped} skipped (already final)"
        )
        time.sleep(0.5)  # let the 006 callbacks land too

        self._table(before)
        cancelled = OutboundMessage.objects.filter(status="006").count()
        if cancelled != 3:
            raise CommandError(f"Expected 3 cancelled messages, got {cancelled}.")
        self.stdout.write(
            self.style.SUCCESS(
                "3 scheduled messages stopped (011 -> 006), 2 still scheduled, 1 delivered; "
                "every exchange is in the log."
            )
        )

    def _table(self, before: dict[int, str]) -> None:
        header = (
            f"{'recipient':<13} {'apimsgid':<34} {'before':<7} {'after':<6} "
            f"{'cancellation':<14} exchanges"
        )
        self.stdout.write("")
        self.stdout.write(header)
        self.stdout.write("-" * (len(header) + 12))
        for message in OutboundMessage.objects.order_by("pk"):
            exchanges = ", ".join(
                f"{cmd} {status or '-'}"
                for cmd, status in message.exchanges.order_by("pk").values_list("command", "status")
            )
            self.stdout.write(
                f"{message.recipient:<13} {message.apimsgid or '':<34} {before[message.pk]:<7} "
                f"{message.status:<6} {message.get_cancel_state_display():<14} {exchanges}"
            )
        self.stdout.write("")
