"""Hand on again the work nobody is doing any more: stalled sends, checks and cancellations.

With Celery, the beat task ``django_clickatell.requeue_stalled_work`` does this;
without it, run this command from cron every few minutes: it does the work here.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from django_clickatell.dispatch import celery_in_use, requeue_stalled
from django_clickatell.models import Via


class Command(BaseCommand):
    help = (
        "Send, check or cancel again the messages whose work was lost (broker outage, "
        "dead worker, retries exhausted while waiting). Run it from cron without Celery."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts = requeue_stalled(via=Via.COMMAND)
        how = "queued" if celery_in_use() else "done"
        self.stdout.write(
            f"Stalled work {how}: {counts['sends']} sends, {counts['cancellations']} cancellations."
        )
