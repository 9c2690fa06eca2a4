"""``make demo``: a legacy account and a One API account side by side, at the bundled simulator.

Two accounts in one project -- ``default`` speaks the legacy HTTP API,
``platform`` the One API (accounts opened since about 2016, which have no call
that stops a submitted message).  On each, the demo schedules messages, sends
one right away whose status callbacks arrive at the real callback views, then
stops a mixed selection through the one cancel operation and prints what every
message went through:

* legacy, scheduled 2 hours ahead: held at Clickatell, **stopped remotely**
  (``delmsg`` answered ``006``);
* either account, scheduled beyond what Clickatell will hold (30 days, or any
  schedule on the One API): **held in Django and stopped locally**, no request;
* either account, sent at once and delivered: **too late** -- with its real
  status on the legacy API, and "already handed over" (no request) on the
  One API.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass
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
from django_clickatell.models import CancelState, OutboundMessage, SendState
from django_clickatell.simulator import ClickatellSimulator

PLATFORM = "platform"


@dataclass(frozen=True)
class Plan:
    """One demo message: on which account, when, whether it is stopped, what must come of it."""

    account: str
    recipient: str
    deliver_in_minutes: int | None
    stop: bool
    expected: str
    #: Status callbacks asked for (``callback=3``); without them the record learns of a
    #: delivery only by asking.
    callbacks: bool = False


PLANS = [
    Plan("default", "27999000101", 120, True, "stopped at Clickatell (006)"),
    Plan("default", "27999000102", 120, False, "scheduled at Clickatell"),
    Plan("default", "27999000103", 30 * 24 * 60, True, "stopped here, never sent"),
    Plan("default", "27999000104", None, False, "004 delivered", callbacks=True),
    Plan("default", "27999000105", None, True, "too late"),
    Plan(PLATFORM, "27999000201", 120, True, "stopped here, never sent"),
    Plan(PLATFORM, "27999000202", 120, False, "held here until due"),
    Plan(PLATFORM, "27999000203", 30 * 24 * 60, True, "stopped here, never sent"),
    Plan(PLATFORM, "27999000204", None, False, "004 delivered", callbacks=True),
    Plan(PLATFORM, "27999000205", None, True, "too late"),
]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class Command(BaseCommand):
    help = "A legacy and a One API account side by side: schedule, deliver, stop, show the record."

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", verbosity=0)
        with ExitStack() as stack:
            if not os.environ.get("CLICKATELL_BASE_URL"):
                stack.enter_context(self._embedded_gateway())
            try:
                self.run()
            except ClickatellError as exc:
                raise CommandError(f"The gateway refused: {exc}") from exc

    def _embedded_gateway(self) -> ExitStack:
        legacy: dict[str, Any] = dict(settings.CLICKATELL)
        platform: dict[str, Any] = dict(legacy.pop("ACCOUNTS", {}).get(PLATFORM, {}))
        web = ThreadedWSGIServer(("127.0.0.1", 0), _QuietHandler)
        web.set_app(get_internal_wsgi_application())
        threading.Thread(target=web.serve_forever, daemon=True).start()
        site = f"http://127.0.0.1:{web.server_address[1]}/clickatell/"
        simulator = ClickatellSimulator(
            username=legacy["USERNAME"],
            password=legacy["PASSWORD"],
            api_id=legacy["API_ID"],
            handset_delay=0.5,
            callback_url=site + "callback/",
            callback_auth=(legacy["CALLBACK_USERNAME"], legacy["CALLBACK_PASSWORD"]),
        )
        simulator.one_api.api_key = platform["API_KEY"]
        simulator.one_api.callback_url = f"{site}one-api/{PLATFORM}/{platform['CALLBACK_SECRET']}/"
        stack = ExitStack()
        stack.enter_context(simulator)
        stack.callback(web.shutdown)
        accounts = {PLATFORM: {**platform, "BASE_URL": simulator.root_url}}
        stack.enter_context(
            override_settings(
                CLICKATELL={**legacy, "BASE_URL": simulator.base_url, "ACCOUNTS": accounts}
            )
        )
        self.stdout.write(f"Embedded Clickatell simulator: legacy HTTP API {simulator.base_url}")
        self.stdout.write(f"                               One API {simulator.root_url}v1/")
        self.stdout.write(f"Status callbacks pushed to {site}callback/ and {site}one-api/...")
        return stack

    def run(self) -> None:
        check_credentials()
        check_credentials(account=PLATFORM)
        self.stdout.write(
            self.style.SUCCESS(
                f"Both accounts' credentials accepted (default: legacy HTTP API, {PLATFORM}: "
                "One API)"
            )
        )
        OutboundMessage.objects.all().delete()

        sent: dict[str, OutboundMessage] = {}
        for plan in PLANS:
            [message] = send_sms(
                plan.recipient,
                "Your appointment is confirmed" if plan.deliver_in_minutes else "Your code: 4711",
                sender="DemoClinic",
                deliver_in_minutes=plan.deliver_in_minutes,
                callback=3 if plan.callbacks else None,
                account=plan.account,
                wait=True,
            )
            sent[plan.recipient] = message
        refresh_sms(OutboundMessage.objects.all(), wait=True)
        before = {
            m.pk: _state(m) for m in OutboundMessage.objects.filter(pk__in=_pks(sent.values()))
        }
        self.stdout.write("Sent: on each account 2 messages 2 hours ahead, 1 30 days ahead, 2 now")

        delivered = [sent[p.recipient].pk for p in PLANS if p.callbacks]
        deadline = time.monotonic() + 15
        while OutboundMessage.objects.filter(pk__in=delivered, status="004").count() < 2:
            if time.monotonic() > deadline:
                raise CommandError("The delivery callbacks did not arrive.")
            time.sleep(0.1)
        self.stdout.write(
            "Callbacks: the messages sent now with callbacks were reported delivered (004), "
            "by form fields (legacy) and by JSON (One API)"
        )

        to_stop = OutboundMessage.objects.filter(
            pk__in=[sent[p.recipient].pk for p in PLANS if p.stop]
        )
        request = cancel_sms(to_stop)
        skipped = request.preview.describe_skipped()
        self.stdout.write(
            f"Cancel: one operation for {to_stop.count()} messages on both accounts "
            f"({len(request.message_pks)} for the workers, {len(request.stopped_here)} stopped "
            f"here at once, {request.skipped} skipped{': ' + skipped if skipped else ''})"
        )
        deadline = time.monotonic() + 15
        while to_stop.filter(cancel_state__in=[CancelState.PENDING, CancelState.IN_FLIGHT]):
            if time.monotonic() > deadline:
                raise CommandError("The cancellations did not finish.")
            time.sleep(0.1)

        self.selected = set(to_stop.values_list("pk", flat=True))
        self._table(before)
        self._check(sent)

    def _table(self, before: dict[int, str]) -> None:
        header = f"{'account':<9} {'recipient':<12} {'before':<28} {'outcome':<34} requests"
        self.stdout.write("")
        self.stdout.write(header)
        self.stdout.write("-" * (len(header) + 20))
        for message in OutboundMessage.objects.order_by("pk"):
            requests = ", ".join(
                f"{command} {status or '-'}"
                for command, status in message.exchanges.filter(via__in=["api", "task"])
                .order_by("pk")
                .values_list("command", "status")
            )
            self.stdout.write(
                f"{message.account:<9} {message.recipient:<12} {before[message.pk]:<28} "
                f"{self._outcome(message):<34} {requests or '(none)'}"
            )
        self.stdout.write("")

    def _outcome(self, message: OutboundMessage) -> str:
        """How the message ended; a selected one the request skipped was too late to ask."""
        if message.pk in getattr(self, "selected", ()) and not message.cancel_state:
            return f"too late, not asked ({message.status})"
        return _outcome(message)

    def _check(self, sent: dict[str, OutboundMessage]) -> None:
        wrong = []
        for plan in PLANS:
            message = OutboundMessage.objects.get(pk=sent[plan.recipient].pk)
            if not self._outcome(message).startswith(plan.expected):
                outcome = self._outcome(message)
                wrong.append(f"{plan.recipient}: {outcome!r}, not {plan.expected!r}")
        if wrong:
            raise CommandError("Unexpected outcome: " + "; ".join(wrong))
        self.stdout.write(
            self.style.SUCCESS(
                "Legacy: stopped remotely (006), a held one stopped here, a delivered one too "
                "late. One API: held ones stopped here, a handed-over one too late (no stop "
                "call exists). Every request is in the log."
            )
        )


def _pks(messages: Any) -> list[int]:
    return [m.pk for m in messages]


def _state(message: OutboundMessage) -> str:
    if message.send_state == SendState.HELD:
        return "held here until due"
    if message.status:
        return f"{message.status} {message.status_label}"[:28]
    return message.get_send_state_display()[:24]


def _outcome(message: OutboundMessage) -> str:
    """How the message ended, in the record's own terms."""
    if message.send_state == SendState.WITHDRAWN:
        return "stopped here, never sent"
    if message.cancel_state == CancelState.CANCELLED:
        return f"stopped at Clickatell ({message.status})"
    if message.cancel_state == CancelState.TOO_LATE:
        return f"too late ({message.cancel_error or message.status})"[:34]
    if message.send_state == SendState.HELD:
        return "held here until due"
    if message.status == "004":
        return "004 delivered"
    return "scheduled at Clickatell" if message.status == "011" else _state(message)
