"""Issue 22, items 1 and 4, through a real Celery worker (2 prefork processes): a pause set
while a send run is under way stops the rest of the run within the documented bound, and a
worker SIGKILLed while it sends the resumed messages still sends each exactly once.

The worker is another process with its own per-process view of the pauses (read at most
``PAUSE_FRESH_SECONDS`` late), as on another machine; the simulator counts every
``sendmsg`` and every SMS it accepted.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import pytest
from django.core.cache import cache

from django_clickatell import tasks
from django_clickatell.conf import app_settings
from django_clickatell.models import OutboundMessage, SendState, WaitingFor
from django_clickatell.services import composing, pausing
from django_clickatell.services.send_run import MARK_STEP
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import wait_until
from tests.every_backend import worker_on_own_queue
from tests.faults import (
    AUTH_LOCK_TIMEOUT,
    AUTH_WAIT_TIMEOUT,
    CLAIM_TIMEOUT,
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
)

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

LATENCY = 0.1
N = 120


def sends_of(simulator: ClickatellSimulator) -> int:
    return sum(simulator.sendmsg_requests_by_recipient().values())


def configure(simulator: ClickatellSimulator, settings: Any) -> dict[str, Any]:
    """The default (legacy) account on the simulator; short leases, so a killed run's work is
    taken over in seconds.  Returns the settings the worker gets too."""
    extra = {
        "TIMEOUT": [CONNECT_TIMEOUT, READ_TIMEOUT],
        "CLAIM_TIMEOUT": CLAIM_TIMEOUT,
        "AUTH_LOCK_TIMEOUT": AUTH_LOCK_TIMEOUT,
        "AUTH_WAIT_TIMEOUT": AUTH_WAIT_TIMEOUT,
    }
    settings.CLICKATELL = {**settings.CLICKATELL, **extra}
    cache.clear()
    return extra


def test_a_pause_mid_run_stops_the_run_and_a_killed_resume_sends_each_once(
    simulator: ClickatellSimulator, settings: Any, django_db_blocker: Any
) -> None:
    extra = configure(simulator, settings)
    recipients = [f"27990002{n:03d}" for n in range(N)]
    pks = [m.pk for m in composing.create_messages(recipients, "campaign", account="default")]
    simulator.latency = LATENCY
    with worker_on_own_queue(simulator, django_db_blocker, "pause", extra) as worker:
        # 1. One run of N sends, pipelined at ~0.1 s each; paused after its third request.
        tasks.send_messages.delay(pks)
        assert wait_until(lambda: sends_of(simulator) >= 3, timeout=30, interval=0.01)
        pausing.pause_account("default", reason="mid-run")  # committed: autocommit
        at_pause = sends_of(simulator)
        time.sleep(pausing.PAUSE_FRESH_SECONDS + 2 * LATENCY + 3)
        after = sends_of(simulator)
        time.sleep(2)
        assert sends_of(simulator) == after  # nothing leaves any more
        # The bound: the rest of the run's marked step (its marking reads the pause in the
        # database) and the requests on the wire (docs/incidents.rst).
        bound = MARK_STEP + app_settings.max_in_flight
        assert after - at_pause <= bound, (at_pause, after)
        assert after < N
        waiting = OutboundMessage.objects.filter(pk__in=pks, waiting_for=WaitingFor.PAUSED)
        assert wait_until(lambda: waiting.count() == N - after, timeout=20)
        assert set(waiting.values_list("send_state", flat=True)) == {SendState.QUEUED}
        # A retry and a duplicate delivery of the run change nothing.
        tasks.send_messages.delay(pks)
        tasks.send_messages.delay(pks)
        tasks.requeue_stalled_work.delay()
        time.sleep(3)
        assert sends_of(simulator) == after

        # 2. Resumed; the worker hands the waiting sends on and is SIGKILLed mid-way.
        simulator.latency = 0.2
        pausing.resume_account("default")
        tasks.requeue_stalled_work.delay()
        assert wait_until(lambda: sends_of(simulator) >= after + 3, timeout=30, interval=0.01)
        children = worker.child_pids()
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        simulator.latency = LATENCY

        def all_sent() -> bool:
            rows = OutboundMessage.objects.filter(pk__in=pks)
            if rows.filter(send_state=SendState.SENT).count() == N:
                return True
            tasks.requeue_stalled_work.delay()  # the beat's job: lost work is handed on
            return False

        assert wait_until(all_sent, timeout=120, interval=3), list(
            OutboundMessage.objects.filter(pk__in=pks)
            .exclude(send_state=SendState.SENT)
            .values_list("pk", "send_state", "waiting_for", "claim_expires_at")
        )
    assert children
    accepted = simulator.accepted_by_recipient_text()
    assert accepted == {(r, "campaign"): 1 for r in recipients}  # each SMS exactly once
    assert simulator.duplicate_sends() == []
    assert OutboundMessage.objects.filter(pk__in=pks, waiting_for="").count() == N
