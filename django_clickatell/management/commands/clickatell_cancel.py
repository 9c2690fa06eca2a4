"""Stop scheduled messages from the command line, through the same service as the admin."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from django_clickatell.conf import app_settings
from django_clickatell.models import OutboundMessage, Via
from django_clickatell.protocol.codes import normalize_status
from django_clickatell.protocol.replies import is_client_message_id, is_message_id
from django_clickatell.services.cancellation import (
    CancelReport,
    cancel_messages,
    request_cancellation,
)
from django_clickatell.tasks import enqueue_cancellation


def _when(value: str) -> datetime:
    parsed = parse_datetime(value)
    if parsed is None:
        raise CommandError(f"Not a date and time (use ISO 8601, e.g. 2026-11-25T10:00): {value!r}")
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed)


class Command(BaseCommand):
    help = (
        "Cancel scheduled delivery of messages chosen by id or by filter. "
        "Queues Celery tasks unless --sync is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("pks", nargs="*", type=int, metavar="PK", help="Message primary keys.")
        parser.add_argument("--apimsgid", action="append", default=[], help="Repeatable.")
        parser.add_argument("--climsgid", action="append", default=[], help="Repeatable.")
        parser.add_argument(
            "--status", action="append", default=[], help="Only messages with this status code."
        )
        parser.add_argument("--scheduled-after", type=_when, help="ISO 8601 date and time.")
        parser.add_argument("--scheduled-before", type=_when, help="ISO 8601 date and time.")
        parser.add_argument(
            "--sync", action="store_true", help="Cancel now in this process instead of queueing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        queryset = OutboundMessage.objects.filter(self._selection(options))
        result = request_cancellation(queryset, via=Via.COMMAND)
        pks = result.message_pks
        self.stdout.write(
            f"Selected {result.preview.total}: {len(pks)} to cancel, "
            f"{result.preview.total - len(pks)} skipped (final, in progress or never sent)."
        )
        if not pks:
            return
        if not options["sync"]:
            enqueue_cancellation(pks)
            self.stdout.write(self.style.SUCCESS(f"Queued batch {result.batch.pk}."))
            return
        totals = CancelReport()
        size = app_settings.task_chunk_size
        for start in range(0, len(pks), size):
            report = cancel_messages(pks[start : start + size], via=Via.COMMAND)
            for name in ("cancelled", "too_late", "refused", "retry", "gave_up", "not_claimed"):
                getattr(totals, name).extend(getattr(report, name))
            totals.skipped += report.skipped
            self._progress(min(start + size, len(pks)), len(pks))
            if report.retry:
                totals.transient_error = report.transient_error
                remaining = pks[start + size :]
                totals.retry.extend(remaining)
                break
        self._summary(totals)
        if totals.retry:
            raise CommandError(
                f"Clickatell could not be reached ({totals.transient_error}); "
                f"{len(totals.retry)} messages are left queued: run the command again or a worker."
            )

    def _selection(self, options: dict[str, Any]) -> Q:
        for value in options["apimsgid"]:
            if not is_message_id(value):
                raise CommandError(f"Not a Clickatell message id: {value[:40]!r}")
        for value in options["climsgid"]:
            if not is_client_message_id(value):
                raise CommandError(f"Not a client message id: {value[:40]!r}")
        try:
            statuses = [normalize_status(value) for value in options["status"]]
        except ValueError as exc:
            raise CommandError(f"--status takes a numeric status code: {exc}") from exc
        ids = Q()
        if options["pks"]:
            ids |= Q(pk__in=options["pks"])
        if options["apimsgid"]:
            ids |= Q(apimsgid__in=options["apimsgid"])
        if options["climsgid"]:
            ids |= Q(climsgid__in=options["climsgid"])
        filters = Q()
        if statuses:
            filters &= Q(status__in=statuses)
        if options["scheduled_after"]:
            filters &= Q(scheduled_for__gte=options["scheduled_after"])
        if options["scheduled_before"]:
            filters &= Q(scheduled_for__lt=options["scheduled_before"])
        if not ids and not filters:
            raise CommandError(
                "Choose messages: give primary keys, --apimsgid, --climsgid, --status or "
                "a --scheduled-after/--scheduled-before window."
            )
        return ids & filters

    def _progress(self, done: int, total: int) -> None:
        if not self.stdout.isatty():
            return
        width = 30
        filled = width * done // total
        self.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", ending="")
        if done == total:
            self.stdout.write("")

    def _summary(self, report: CancelReport) -> None:
        self.stdout.write(
            f"Cancelled {len(report.cancelled)}, too late {len(report.too_late)}, "
            f"refused {len(report.refused)}, skipped {report.skipped + len(report.not_claimed)}, "
            f"left to retry {len(report.retry)}, gave up {len(report.gave_up)}."
        )
