"""Issue 19, item 4, through real Celery workers: an account goes, its work waits; it comes
back, the beat tasks alone send and stop each message once.

The first worker runs with the accounts missing from its settings (the bad deploy),
and gets every task that touches their work: the sends, the stop, the release loop,
the requeue and the refresh.  The second runs with them restored and gets only the
periodic tasks -- ``release_due_messages`` and ``requeue_stalled_work``, each twice at
once on two processes.  The simulator counts every ``sendmsg`` and ``delmsg``.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from django_clickatell import tasks
from django_clickatell.models import CancelState, OutboundMessage, SendState
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import WorkerProcess, wait_until
from tests.every_backend import assert_no_false_stop, worker_on_own_queue
from tests.test_account_comes_and_goes import FINAL_STATES, record_open_work

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def finished(worker: WorkerProcess, **expected: int) -> bool:
    """Whether the worker has finished (succeeded) at least this many runs of each task."""
    log = worker.log_path.read_text()
    return all(
        len(re.findall(rf"Task django_clickatell\.{name}\[[^\]]*\] succeeded", log)) >= count
        for name, count in expected.items()
    )


def _rows(pks: list[int]) -> list[tuple[Any, ...]]:
    return list(
        OutboundMessage.objects.filter(pk__in=pks)
        .order_by("pk")
        .values_list("account", "send_state", "cancel_state", "send_error")
    )


def test_a_worker_without_the_accounts_then_one_with_them(
    simulator: ClickatellSimulator, settings: Any, django_db_blocker: Any
) -> None:
    work = record_open_work(simulator, settings)
    pks = [m.pk for m in work.values()]
    stop = work["legacy stop"]
    sends = [m.pk for k, m in work.items() if "queued" in k or "doubt" in k]
    simulator.reset_counts()

    # 1. The bad deploy: a worker whose settings lack both accounts.
    with worker_on_own_queue(simulator, django_db_blocker, "accounts-gone", {}) as worker:
        tasks.send_messages.delay(sends)
        tasks.cancel_messages.delay([stop.pk])
        tasks.release_due_messages.delay()
        tasks.refresh_statuses.delay()
        # Each ends (after its retries, if it retries): its outcome is what the record says.
        ran = {"send_messages": 1, "cancel_messages": 1, "release_due_messages": 1}
        assert wait_until(lambda: finished(worker, **ran), timeout=90), worker.log_path.read_text()
        tasks.requeue_stalled_work.delay()
        tasks.send_messages.delay(sends)  # a duplicate delivery changes nothing either
        ran.update(send_messages=2, requeue_stalled_work=1, refresh_messages=1)
        assert wait_until(lambda: finished(worker, **ran), timeout=60), worker.log_path.read_text()
        log = worker.log_path.read_text()
    assert not OutboundMessage.objects.filter(send_state__in=FINAL_STATES).exists(), _rows(pks)
    assert not OutboundMessage.objects.filter(cancel_state=CancelState.GAVE_UP).exists()
    assert OutboundMessage.objects.get(pk=stop.pk).cancel_state == CancelState.PENDING
    assert simulator.counts["total"] == 0
    # Each in its open state, with the reason; nothing asked, so nothing to show as an error.
    waiting = {
        "legacy queued": ("legacy", SendState.QUEUED, ""),
        "platform queued": ("platform", SendState.QUEUED, ""),
        "legacy in doubt": ("legacy", SendState.VERIFYING, ""),
        "legacy stop": ("legacy", SendState.SENT, CancelState.PENDING),
        "legacy held": ("legacy", SendState.HELD, ""),
        "platform held": ("platform", SendState.HELD, ""),
    }
    by_pk = sorted(work, key=lambda k: work[k].pk)
    assert _rows(pks) == [(*waiting[k], "") for k in by_pk]
    assert OutboundMessage.objects.filter(pk__in=pks, waiting_for="account").count() == len(pks)
    assert "account 'legacy' wait" in log
    assert "account 'platform' wait" in log

    # 2. Fixed: a worker with the accounts back; only the beat tasks run, two of each at once.
    restored = {"ACCOUNTS": settings.CLICKATELL["ACCOUNTS"]}
    with worker_on_own_queue(simulator, django_db_blocker, "accounts-back", restored) as worker:
        for _ in range(2):
            tasks.requeue_stalled_work.delay()
            tasks.release_due_messages.delay()

        def all_done() -> bool:
            rows = OutboundMessage.objects.filter(pk__in=pks)
            return (
                rows.filter(send_state=SendState.SENT).count() == len(pks)
                and rows.get(pk=stop.pk).cancel_state == CancelState.CANCELLED
            )

        # The held ones were released by the loop, then sent by the send task it queued.
        assert wait_until(all_done, timeout=60), (_rows(pks), worker.log_path.read_text()[-3000:])
        for _ in range(2):  # later beats find nothing left to do
            tasks.requeue_stalled_work.delay()
            tasks.release_due_messages.delay()
        beats = {"requeue_stalled_work": 4, "release_due_messages": 4}
        assert wait_until(lambda: finished(worker, **beats), timeout=60)
    sent = [m for k, m in work.items() if k != "legacy stop"]
    assert simulator.sendmsg_requests_by_recipient() == {m.recipient: 1 for m in sent}
    assert simulator.duplicate_sends() == []
    assert simulator.counts["delmsg"] == 1
    assert simulator.api_requests["v1"] == 2  # the One API account's two sends, nothing else
    assert OutboundMessage.objects.filter(pk__in=pks, waiting_for="").count() == len(pks)
    assert_no_false_stop()
