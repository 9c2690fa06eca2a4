"""Stop scheduled messages from the command line, through the same service as the admin.

Exit codes (a script can act on them; the last stderr line says why, in one line):

* ``0`` -- every selected message that could be stopped was stopped (``--sync``)
  or queued for a worker; "too late" answers and messages that were already
  final are reported, not failures.  Also when there was nothing to do.
* ``1`` -- the command was refused before doing anything: a malformed filter or
  option combination, or an id that names no message.  Nothing was changed.
* ``2`` -- argparse's own usage error (an unknown option, a missing value).
* ``3`` -- at least one message was not stopped and will not be retried:
  Clickatell refused the request, or the retries were exhausted.
* ``4`` -- at least one message is left waiting (Clickatell or the task queue
  could not be reached); the error line prints the ``--resume`` command that
  carries exactly those messages out.  Also when a stop waits for its account,
  which is not in the settings: it is sent once the account is back.

``--tag T`` and/or ``--account A`` stop a whole campaign in one move: everything
still stoppable with that tag (on that account), stored as one cancellation batch
inside the database and handed to a worker by its id (``--sync``: carried out
here), whatever its size -- the admin's "Stop a campaign" button and
``api.cancel_campaign`` do the same.  They are not combined with the other
selections (exit 1).

Precedence: ``4`` over ``3`` -- what is still waiting is what an operator can act on.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from django_clickatell.conf import app_settings
from django_clickatell.dispatch import CancelBatchWork, enqueue_batch, enqueue_cancellation
from django_clickatell.exceptions import InvalidInput
from django_clickatell.models import CancelState, OutboundMessage, Via
from django_clickatell.services import campaigns
from django_clickatell.services.cancel_requests import request_cancellation
from django_clickatell.services.cancel_run import CancelReport
from django_clickatell.services.cancelling import cancel_messages

from ..cancel_selection import Selection, select

EXIT_BAD_INPUT = 1
EXIT_NOT_STOPPED = 3
EXIT_LEFT_WAITING = 4

_REPORT_LISTS = (
    "cancelled",
    "too_late",
    "refused",
    "retry",
    "gave_up",
    "not_claimed",
    "waiting",
)


class Command(BaseCommand):
    help = (
        "Cancel scheduled delivery of messages chosen by id or by filter. Queues Celery "
        "tasks unless --sync is given. Exit codes: 0 done or queued, 1 bad input, "
        "3 some refused or given up, 4 some left waiting (rerun with --resume)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        # Values are validated in handle(), not by argparse types: manage.py prints a
        # CommandError as one line, while an exception raised during parsing is a traceback.
        parser.add_argument("pks", nargs="*", metavar="PK", help="Message primary keys.")
        parser.add_argument("--apimsgid", action="append", default=[], help="Repeatable.")
        parser.add_argument("--climsgid", action="append", default=[], help="Repeatable.")
        parser.add_argument(
            "--status",
            action="append",
            default=[],
            help="Only messages with this status code (6 and 006 are the same). Repeatable.",
        )
        parser.add_argument(
            "--stoppable",
            action="store_true",
            help=(
                "Only messages that can still be stopped, from what this app knows: never "
                "handed over (on any account), or accepted by Clickatell (even before any "
                "status arrived) through an account whose API can stop a submitted message; "
                "not final, not handed on (003), not already being cancelled."
            ),
        )
        parser.add_argument("--scheduled-after", help="ISO 8601 date and time (inclusive).")
        parser.add_argument("--scheduled-before", help="ISO 8601 date and time (exclusive).")
        parser.add_argument(
            "--batch",
            action="append",
            default=[],
            metavar="ID",
            help="Only messages of this cancellation batch. Repeatable.",
        )
        parser.add_argument(
            "--tag",
            help=(
                "Stop a campaign: every message still stoppable that was sent with this tag "
                "(send_sms(tags=[...])), in one batch. With --account: on that account only."
            ),
        )
        parser.add_argument(
            "--account",
            help=(
                "Stop a campaign: every message still stoppable on this account (an alias of "
                "CLICKATELL['ACCOUNTS'], or 'default'), in one batch."
            ),
        )
        parser.add_argument(
            "--resume",
            action="store_true",
            help=(
                "Carry out cancellations already requested but left waiting (queued, "
                "retrying, or held by a run that died) instead of requesting new ones. "
                "Without a selection: every waiting one."
            ),
        )
        parser.add_argument(
            "--sync", action="store_true", help="Cancel now in this process instead of queueing."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options.get("tag") is not None or options.get("account") is not None:
            self._campaign(options)
            return
        selection = select(options)
        if options["resume"]:
            pks = self._waiting(selection)
            what = f"{len(pks)} waiting messages"
        else:
            if selection.empty:
                raise CommandError(
                    "Choose messages: give primary keys, --apimsgid, --climsgid, --stoppable, "
                    "--status, --batch or a --scheduled-after/--scheduled-before window."
                )
            pks, batch = self._request(selection)
            what = f"batch {batch} ({len(pks)} messages)"
        if not pks:
            return
        if options["sync"]:
            self.stdout.write(f"Cancelling {what} now.")
            self._cancel_now(pks)
        else:
            self._queue(pks, what)

    def _campaign(self, options: dict[str, Any]) -> None:
        """--tag/--account: the campaign's stoppable messages as one batch, handed on by id."""
        others = [
            name for name in ("pks", "apimsgid", "climsgid", "status", "batch") if options.get(name)
        ]
        others += [
            name
            for name in ("stoppable", "resume", "scheduled_after", "scheduled_before")
            if options.get(name)
        ]
        if others:
            raise CommandError(
                "--tag/--account stop a whole campaign (everything still stoppable) and take "
                "no other selection; drop: "
                + ", ".join(
                    "message keys" if name == "pks" else "--" + name.replace("_", "-")
                    for name in others
                )
                + "."
            )
        try:
            target = campaigns.campaign(account=options.get("account"), tag=options.get("tag"))
        except InvalidInput as exc:
            raise CommandError(str(exc)) from exc
        target = campaigns.snapshot(target)
        per_account = campaigns.preview_by_account(target)
        for alias, counts in per_account:
            self.stdout.write(
                f"Account {alias}: {counts.total} messages, {counts.cancellable} to stop "
                f"({counts.stop_here} stopped here, {counts.queued} to ask Clickatell), "
                f"{counts.skipped} skipped"
                + (f" ({counts.describe_skipped()})." if counts.skipped else ".")
            )
        preview = campaigns.total_preview(per_account)
        self.stdout.write(
            f"Campaign {target.describe()}: {preview.total} messages, "
            f"{preview.cancellable} to stop, {preview.skipped} skipped."
        )
        if not preview.cancellable:
            self.stdout.write("Nothing to stop: no batch created.")
            return
        with transaction.atomic():
            batch = campaigns.request_campaign_stop(target, via=Via.COMMAND).pk
        self.stdout.write(
            "Messages recorded from now on are not touched: pause the account "
            "(clickatell_pause) if the campaign is still being sent."
        )
        if options["sync"]:
            self.stdout.write(f"Stopping batch {batch} now.")
            CancelBatchWork(batch).run_here(via=Via.COMMAND, actor=None)
            self._summary_of_batch(batch)
            return
        if not enqueue_batch(batch, via=Via.COMMAND):
            raise CommandError(
                f"The task queue could not be reached; batch {batch} waits, recorded. The "
                f"requeue_stalled_work task (or clickatell_requeue) hands it on once the queue "
                f"is back.",
                returncode=EXIT_LEFT_WAITING,
            )
        self.stdout.write(self.style.SUCCESS(f"Queued batch {batch} for a worker."))

    def _summary_of_batch(self, batch: int) -> None:
        """After --sync: the batch's messages by cancellation state; exit codes as for ids."""
        states = dict(
            OutboundMessage.objects.filter(batch_id=batch)
            .order_by()
            .values("cancel_state")
            .annotate(n=Count("pk"))
            .values_list("cancel_state", "n")
        )
        self.stdout.write(
            f"Batch {batch}: "
            + ", ".join(f"{CancelState(k).label} {n}" for k, n in sorted(states.items()))
            + "."
        )
        waiting = sum(
            states.get(k, 0)
            for k in (CancelState.PENDING, CancelState.RETRYING, CancelState.IN_FLIGHT)
        )
        if waiting:
            raise CommandError(
                f"{waiting} messages are waiting to be stopped. To carry them out now, run: "
                f"python manage.py clickatell_cancel --resume --sync --batch {batch}",
                returncode=EXIT_LEFT_WAITING,
            )
        failed = states.get(CancelState.REFUSED, 0) + states.get(CancelState.GAVE_UP, 0)
        if failed:
            raise CommandError(
                f"{failed} messages were not stopped (refused or gave up); the reason is in "
                "each message's cancellation error.",
                returncode=EXIT_NOT_STOPPED,
            )

    def _waiting(self, selection: Selection) -> list[int]:
        """--resume: what earlier requests left queued, retrying, or claimed by a dead run."""
        waiting = Q(cancel_state__in=[CancelState.PENDING, CancelState.RETRYING]) | Q(
            cancel_state=CancelState.IN_FLIGHT, claim_expires_at__lt=timezone.now()
        )
        pks = list(
            OutboundMessage.objects.filter(waiting & selection.query())
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        self.stdout.write(
            f"{len(pks)} waiting to be cancelled." if pks else "Nothing is waiting to be cancelled."
        )
        return pks

    def _request(self, selection: Selection) -> tuple[list[int], int | None]:
        """A new request; no batch is kept when nothing in the selection can be cancelled."""
        queryset = OutboundMessage.objects.filter(selection.query())
        with transaction.atomic():
            result = request_cancellation(queryset, via=Via.COMMAND)
            pks = result.message_pks
            # Stopped here (held or queued, never handed over): done, and kept.
            stopped_here = result.batch.total - len(pks)
            if not result.batch.total:  # the batch request_cancellation made records nothing
                transaction.set_rollback(True)
        preview = result.preview
        skipped = preview.total - len(pks) - stopped_here
        here = f"{stopped_here} stopped here, " if stopped_here else ""
        why = preview.describe_skipped() if skipped == preview.skipped else ""
        self.stdout.write(
            f"Selected {preview.total}: {len(pks)} to cancel, {here}{skipped} skipped"
            + (f" ({why})." if why else ".")
        )
        if stopped_here:
            self.stdout.write(
                f"{stopped_here} stopped here: never handed to Clickatell, no request needed."
            )
        if preview.in_progress:
            self.stdout.write(
                f"{preview.in_progress} already being cancelled: a worker carries them out, "
                f"or add --resume to do it now."
            )
        if not pks and not stopped_here:
            self.stdout.write("Nothing to cancel: no batch created.")
            return pks, None
        return pks, result.batch.pk

    # -- doing ------------------------------------------------------------------------------

    def _queue(self, pks: list[int], what: str) -> None:
        if not enqueue_cancellation(pks, via=Via.COMMAND):
            raise CommandError(
                f"The task queue could not be reached; {len(pks)} messages wait, queued for "
                f"cancellation. To carry them out now, run: {self._resume_advice(pks)}; "
                f"otherwise the requeue_stalled_work task (or clickatell_requeue) picks them up.",
                returncode=EXIT_LEFT_WAITING,
            )
        self.stdout.write(self.style.SUCCESS(f"Queued {what} for a worker."))

    def _cancel_now(self, pks: list[int]) -> None:
        totals = CancelReport()
        size = app_settings.cancel_chunk_size
        for start in range(0, len(pks), size):
            report = cancel_messages(pks[start : start + size], via=Via.COMMAND)
            _add(totals, report)
            self._progress(min(start + size, len(pks)), len(pks))
            if report.retry:  # the gateway just failed: leave the rest for a rerun
                totals.transient_error = report.transient_error
                totals.retry.extend(pks[start + size :])
                break
        self._summary(totals)
        if totals.retry:
            raise CommandError(
                f"Clickatell could not be reached ({totals.transient_error}); "
                f"{len(totals.retry)} messages are waiting to retry. To carry them out now, "
                f"run: {self._resume_advice(totals.retry)}; otherwise a worker's "
                f"requeue_stalled_work task (or clickatell_requeue) picks them up.",
                returncode=EXIT_LEFT_WAITING,
            )
        if totals.waiting:
            raise CommandError(
                f"{len(totals.waiting)} messages wait: their account is not in "
                "settings.CLICKATELL['ACCOUNTS']. Their stops are sent once it is configured "
                "again (by requeue_stalled_work or clickatell_requeue).",
                returncode=EXIT_LEFT_WAITING,
            )
        failed = len(totals.refused) + len(totals.gave_up)
        if failed:
            raise CommandError(
                f"{failed} message{' was' if failed == 1 else 's were'} not stopped "
                f"(refused {len(totals.refused)}, gave up {len(totals.gave_up)}); "
                f"the reason is in each message's cancellation error.",
                returncode=EXIT_NOT_STOPPED,
            )

    @staticmethod
    def _resume_advice(pks: list[int]) -> str:
        """A command that selects exactly these messages again: by batch, else by key."""
        rows = OutboundMessage.objects.filter(pk__in=pks).values_list("pk", "batch_id")
        batches = sorted({batch for _pk, batch in rows if batch is not None})
        loose = sorted(pk for pk, batch in rows if batch is None)
        words = ["python", "manage.py", "clickatell_cancel", "--resume", "--sync"]
        words += [f"--batch {batch}" for batch in batches]
        words += [str(pk) for pk in loose]
        return " ".join(words)

    def _progress(self, done: int, total: int) -> None:
        if not self.stdout.isatty():
            return
        width = 30
        filled = width * done // total
        self.stdout.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total}", ending="")
        if done == total:
            self.stdout.write("")

    def _summary(self, report: CancelReport) -> None:
        # not_claimed holds every message this run did not take: those that turned
        # final before it reached them and those another live run holds.
        skipped = len(report.not_claimed) - len(report.held_elsewhere)
        elsewhere = f", held by another run {len(report.held_elsewhere)}"
        waiting = f", waiting for their account {len(report.waiting)}"
        self.stdout.write(
            f"Cancelled {len(report.cancelled)}, too late {len(report.too_late)}, "
            f"refused {len(report.refused)}, skipped {skipped}, "
            f"left to retry {len(report.retry)}, gave up {len(report.gave_up)}"
            f"{elsewhere if report.held_elsewhere else ''}"
            f"{waiting if report.waiting else ''}."
        )


def _add(totals: CancelReport, report: CancelReport) -> None:
    for name in _REPORT_LISTS:
        getattr(totals, name).extend(getattr(report, name))
    totals.held_elsewhere.extend(report.held_elsewhere)
    totals.skipped += report.skipped
