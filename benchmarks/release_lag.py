#!/usr/bin/env python
"""How late a release goes out: N One API messages due at once, from their due time to
Clickatell's acceptance, through a real Celery worker (prefork) against the simulator.

Not part of ``make bench`` (:mod:`benchmarks.run`); run it alone::

    .venv/bin/python -m benchmarks.release_lag --messages 2000 --latency 0.2

The messages are recorded scheduled a few seconds ahead on a One API account (which
cannot schedule: every one is held in Django), and at their due time the release task is
published as a beat tick at that moment would.  Each message's lag is when its send was
answered (its ``sendmsg`` log row: start + duration) minus the due time; the report gives
p50, p99 and the last, the POSTs made, and the load average (``uptime``).  A beat whose
tick falls after the due time adds that phase (at most its interval) to every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.release_settings")

import redis  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from benchmarks.harness import Simulator, Worker  # noqa: E402
from benchmarks.run import prepare_database  # noqa: E402
from django_clickatell.models import GatewayExchange, OutboundMessage, SendState  # noqa: E402
from django_clickatell.services.composing import create_messages  # noqa: E402


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def measure(messages: int, latency: float, processes: int, lead: float) -> dict[str, Any]:
    simulator = Simulator()
    os.environ["CLICKATELL_BENCH_ROOT_URL"] = simulator.root
    worker: Worker | None = None
    try:
        prepare_database()
        with connection.cursor() as cursor:
            cursor.execute(
                "TRUNCATE django_clickatell_gatewayexchange, django_clickatell_outboundmessage "
                "RESTART IDENTITY CASCADE"
            )
        redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
        cache.clear()
        simulator.control("clear")
        worker = Worker(
            processes,
            simulator.base_url,
            {
                "CLICKATELL_BENCH_ROOT_URL": simulator.root,
                "DJANGO_SETTINGS_MODULE": "benchmarks.release_settings",
            },
        )
        simulator.control("latency", {"seconds": latency})
        due = timezone.now() + timedelta(seconds=lead)
        recipients = [f"2799{k:08d}" for k in range(messages)]
        for start in range(0, messages, 500):
            create_messages(recipients[start : start + 500], "09:00 sale", scheduled_for=due)
        held = OutboundMessage.objects.filter(send_state=SendState.HELD).count()
        assert held == messages, f"{held} held of {messages}"
        from django_clickatell import tasks

        time.sleep(max(0.0, (due - timezone.now()).total_seconds()))
        tasks.release_due_messages.delay()  # the beat's tick, at the due time
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            left = OutboundMessage.objects.exclude(send_state=SendState.SENT).count()
            if not left:
                break
            time.sleep(0.25)
        with open("/proc/loadavg") as loadavg:
            load = loadavg.read().split()[:3]
        rows = GatewayExchange.objects.filter(command="sendmsg", outcome="status")
        lags = [
            (row.occurred_at - due).total_seconds() + (row.duration_ms or 0) / 1000
            for row in rows.only("occurred_at", "duration_ms")
        ]
        posts = simulator.control("stats").get("counts", {}).get("sendmsg")
        sent = OutboundMessage.objects.filter(send_state=SendState.SENT).count()
        return {
            "messages": messages,
            "latency_s": latency,
            "processes": processes,
            "batch": settings.CLICKATELL.get("SEND_BATCH_SIZE", "default"),
            "task_chunk": settings.CLICKATELL.get("TASK_CHUNK_SIZE", "default"),
            "sent": sent,
            "posts": posts,
            "lag_first_s": round(min(lags), 3) if lags else None,
            "lag_p50_s": round(statistics.median(lags), 3) if lags else None,
            "lag_p99_s": round(_percentile(lags, 0.99), 3) if lags else None,
            "lag_last_s": round(max(lags), 3) if lags else None,
            "load_average": load,
        }
    finally:
        if worker is not None:
            worker.stop()
        simulator.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--lead", type=float, default=20.0, help="seconds until they are due")
    options = parser.parse_args()
    result = measure(options.messages, options.latency, options.processes, options.lead)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
