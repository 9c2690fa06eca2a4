#!/usr/bin/env python
"""``make bench``: how fast django-clickatell stops, sends and releases messages, and at what cost.

Scenarios (``--only``; see benchmarks/README.md): ``bulk``, the admin action end to end
through real Celery workers at several concurrency levels at 20 ms, each row next to a
ceiling measured in the same run (a bare asyncio client, no database, same simulator, same
requests in flight); ``high``, 100,000 messages at 200 ms with at most 4 worker processes;
``chunk``, ``CANCEL_CHUNK_SIZE`` 50 against 250; ``mechanism``, threads against asyncio for
many requests in flight in one process; ``cold``, cold-start authentication across
processes; ``admin`` and ``admin100k``, the admin action's cost up to 100,000 selected;
``overhead`` and ``raw``, the client against a bare ``requests.Session``, the ``clickatell``
0.1.2 package and raw ``http.client``; ``callbacks``, a campaign's status callbacks (legacy,
and One API JSON with 50 events per POST) against gunicorn (:mod:`benchmarks.callbacks`);
``send``, legacy sends "sent now", and ``release``, held One API messages all due at once
(:mod:`benchmarks.sending`), each next to its ideal and a same-run ceiling.
CPU is counted per process, PostgreSQL from every backend of the benchmark's database
(:class:`~benchmarks.harness.PostgresMeter`).  Everything talks to the bundled simulator on
127.0.0.1, running in its own process.  The run ends with every figure of issue 15's and
issue 20's Targets tables next to its target.

Writes ``benchmarks/results/latest.json``, ``summary.txt`` and ``throughput.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.settings")

import django  # noqa: E402

django.setup()

import redis  # noqa: E402
import requests  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.cache import cache  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client, override_settings  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

from benchmarks import callbacks as callback_scenario  # noqa: E402
from benchmarks import sending as send_scenario  # noqa: E402
from benchmarks.celery_app import COUNTER_KEY  # noqa: E402
from benchmarks.harness import (  # noqa: E402
    PostgresMeter,
    Simulator,
    Worker,
    cpu_report,
    cpu_snapshot,
    descendants,
    process_cpu,
)
from benchmarks.harness import loadavg as _loadavg  # noqa: E402
from django_clickatell.gateway.client import ClickatellClient  # noqa: E402
from django_clickatell.gateway.transport import reset_transports  # noqa: E402
from django_clickatell.models import CancelState, OutboundMessage  # noqa: E402

SETTLED = [CancelState.CANCELLED, CancelState.TOO_LATE, CancelState.REFUSED, CancelState.GAVE_UP]
CHANGELIST = "/admin/django_clickatell/outboundmessage/"


def prepare_database() -> None:
    import psycopg

    name = settings.DATABASES["default"]["NAME"]
    with psycopg.connect(
        host="127.0.0.1",
        user=str(settings.DATABASES["default"]["USER"]),
        dbname="postgres",
        autocommit=True,
    ) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    call_command("migrate", verbosity=0)
    User.objects.filter(username="bench").delete()
    User.objects.create_superuser("bench", "bench@example.com", "bench")


def reset_state(simulator: Simulator, n: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE django_clickatell_gatewayexchange, django_clickatell_outboundmessage, "
            "django_clickatell_cancellationbatch RESTART IDENTITY CASCADE"
        )
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    cache.clear()
    simulator.control("clear")
    simulator.control("latency", {"seconds": 0})
    ids = simulator.control("messages", {"count": n, "deliver_in": 7200})["apimsgids"]
    OutboundMessage.objects.bulk_create(
        [
            OutboundMessage(apimsgid=i, recipient=f"2799{k:08d}", status="011")
            for k, i in enumerate(ids)
        ],
        batch_size=2000,
    )


def admin_client() -> Client:
    client = Client()
    client.force_login(User.objects.get(username="bench"))
    return client


def run_action(client: Client) -> tuple[float, int]:
    """The confirmed admin action over all messages (select across): seconds, queries."""
    first_page = list(OutboundMessage.objects.order_by("-pk").values_list("pk", flat=True)[:10])
    data = {
        "action": "cancel_delivery",
        "index": "0",
        "select_across": "1",
        "post": "yes",
        "_selected_action": [str(pk) for pk in first_page],
    }
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        response = client.post(CHANGELIST, data)
        elapsed = time.perf_counter() - started
    assert response.status_code == 302, response.status_code
    return elapsed, len(queries.captured_queries)


# -- scenario 1 (and high, chunk): bulk cancel end to end ---------------------------------------

RAW_REQUEST = (
    "POST /http/delmsg HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n{body}"
)


async def _raw_asyncio(port: int, bodies: list[str], width: int) -> None:
    """A bare asyncio HTTP/1.1 keep-alive client: no library, no database (the ceiling).

    *width* connections, each with one request outstanding at a time, share the
    list of request bodies (one ``delmsg`` each).
    """
    import asyncio

    requests_ = [RAW_REQUEST.format(length=len(b), body=b).encode() for b in bodies]
    requests_.reverse()

    async def lane() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while requests_:
            writer.write(requests_.pop())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()

    await asyncio.gather(*(lane() for _ in range(width)))


def ceiling(simulator: Simulator, width: int, latency: float, calls: int) -> dict[str, Any]:
    """What the simulator and this machine allow at *width* requests outstanding, no database.

    A bare asyncio client stops *calls* fresh messages (one ``delmsg`` each, like
    the workers) against the same simulator at the same latency, right before
    the end-to-end run it is compared with.  Leaves the cache empty, so the
    run's workers still log in once.
    """
    import asyncio

    ids = simulator.control("messages", {"count": calls, "deliver_in": 7200})["apimsgids"]
    with override_settings(CLICKATELL={**settings.CLICKATELL, "BASE_URL": simulator.base_url}):
        cache.clear()
        reset_transports()
        session_id = ClickatellClient().sessions.get().reveal()
        reset_transports()
    cache.clear()
    simulator.control("latency", {"seconds": latency})
    bodies = [f"session_id={session_id}&apimsgid={i}" for i in ids]
    cpu, started = time.process_time(), time.perf_counter()
    asyncio.run(_raw_asyncio(simulator.port, bodies, width))
    wall = time.perf_counter() - started
    simulator.control("latency", {"seconds": 0})
    return {
        "width": width,
        "calls": calls,
        "per_second": round(calls / wall, 1),
        "share_of_ideal": round(calls / wall / (width / latency), 3),
        "client_cpu_ms_per_call": round((time.process_time() - cpu) * 1000 / calls, 3),
        "load_average": _loadavg(),
    }


def bulk_cancel(
    simulator: Simulator,
    n: int,
    concurrency: int,
    latency: float,
    *,
    in_flight: int,
    chunk: int,
    with_ceiling: bool = True,
) -> dict[str, Any]:
    """Admin action -> Celery prefork (*concurrency* processes x *in_flight*) -> simulator."""
    reset_state(simulator, n)
    width = concurrency * in_flight
    measured_ceiling = (
        ceiling(simulator, width, latency, min(4000, max(200, int(4 * width / latency))))
        if with_ceiling
        else None
    )
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    worker = Worker(
        concurrency,
        simulator.base_url,
        {"CLICKATELL_BENCH_MAX_IN_FLIGHT": str(in_flight), "CLICKATELL_BENCH_CHUNK": str(chunk)},
    )
    poll = 0.1 if n <= 10_000 else 0.5  # counting 100,000 rows 10 times a second costs CPU
    try:
        broker.delete(COUNTER_KEY)
        simulator.control("reset")
        simulator.control("latency", {"seconds": latency})
        client = admin_client()
        load_before = _loadavg()
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            driver_backend = int(cursor.fetchone()[0])
        postgres = PostgresMeter(
            str(settings.DATABASES["default"]["NAME"]), exclude={driver_backend}
        )
        postgres.start()
        cpu_before = cpu_snapshot(worker.process.pid, simulator.process.pid)
        started = time.perf_counter()
        action_seconds, action_queries = run_action(client)
        settled = 0
        while settled < n:
            time.sleep(poll)
            settled = OutboundMessage.objects.filter(cancel_state__in=SETTLED).count()
            if time.perf_counter() - started > 60 + 5 * n * latency:
                raise RuntimeError(f"only {settled} of {n} settled")
        wall = time.perf_counter() - started
        cpu_after = cpu_snapshot(worker.process.pid, simulator.process.pid)
        postgres_cpu = postgres.stop()
        stats = simulator.control("stats")
        simulator.control("latency", {"seconds": 0})
    finally:
        worker.stop()
    cancelled = OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count()
    worker_queries = int(broker.get(COUNTER_KEY) or 0)
    rate = cancelled / wall
    ideal = width / latency  # requests outstanding at once, machine-wide, over the round trip
    gateway_requests = stats["counts"].get("total", 0)
    row: dict[str, Any] = {
        "messages": n,
        "concurrency": concurrency,
        "max_in_flight": in_flight,
        "in_flight_total": width,
        "chunk": chunk,
        "latency_ms": latency * 1000,
        "load_average": [load_before, _loadavg()],
        "wall_seconds": round(wall, 2),
        "cancelled": cancelled,
        "cancels_per_second": round(rate, 1),
        "ideal_per_second": round(ideal, 1),
        "efficiency": round(rate / ideal, 3),
        "auth_calls": stats["counts"].get("auth", 0),
        "http_requests_per_cancel": round(gateway_requests / max(cancelled, 1), 4),
        "requests_with_password_in_url": stats["secrets_in_url"],
        "tcp_connections": stats["gateway_connections"],
        "db_queries_per_message": round((worker_queries + action_queries) / max(cancelled, 1), 3),
        "admin_action_seconds": round(action_seconds, 3),
        **cpu_report(cpu_before, cpu_after, postgres_cpu, max(cancelled, 1)),
    }
    if measured_ceiling:
        row["ceiling"] = measured_ceiling
        row["share_of_ceiling"] = round(rate / measured_ceiling["per_second"], 3)
    return row


# -- scenario 2 ---------------------------------------------------------------------------

COLD_CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    sys.path.insert(0, os.getcwd())
    import django
    django.setup()
    from django_clickatell.gateway.client import ClickatellClient
    start = float(sys.argv[1])
    def work():
        ClickatellClient().sessions.get()
    threads = [threading.Thread(target=work) for _ in range(int(sys.argv[2]))]
    time.sleep(max(0.0, start - time.time()))
    for t in threads: t.start()
    for t in threads: t.join()
    """
)


def cold_start(simulator: Simulator, processes: int = 4, threads: int = 8) -> dict[str, Any]:
    simulator.control("clear")
    simulator.control("latency", {"seconds": 0.02})
    cache.clear()
    env = {**os.environ, "CLICKATELL_BENCH_BASE_URL": simulator.base_url}
    start = time.time() + 3
    children = [
        subprocess.Popen(
            [sys.executable, "-c", COLD_CHILD, str(start), str(threads)], cwd=ROOT, env=env
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.wait(timeout=60) == 0
    stats = simulator.control("stats")
    return {
        "processes": processes,
        "threads_per_process": threads,
        "auth_calls": stats["counts"].get("auth", 0),
    }


# -- scenario 3 ---------------------------------------------------------------------------


def admin_scaling(simulator: Simulator, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        reset_state(simulator, n)
        client = admin_client()
        run_action(client)  # warm caches (templates, content types, session)
        OutboundMessage.objects.update(cancel_state="", batch=None)
        seconds, queries = run_action(client)
        rows.append({"messages": n, "seconds": round(seconds, 3), "queries": queries})
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    return rows


# -- scenario 4 ---------------------------------------------------------------------------


def timed(fn: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - started) / calls


def client_overhead(calls: int, rounds: int, tls: tuple[str, str] | None) -> dict[str, Any]:
    import clickatell.http

    simulator = Simulator(tls=tls)
    saved_bundle = os.environ.get("REQUESTS_CA_BUNDLE")
    try:
        apimsgid = simulator.control("messages", {"deliver_in": 7200})["apimsgid"]
        if tls:
            os.environ["REQUESTS_CA_BUNDLE"] = tls[0]
        with override_settings(CLICKATELL={**settings.CLICKATELL, "BASE_URL": simulator.base_url}):
            cache.clear()
            reset_transports()
            ours = ClickatellClient()
            session_id = ours.sessions.get().reveal()
            bare = requests.Session()
            legacy = clickatell.http.Http("demo", "demo-password", "1234567")
            legacy.endpoint = f"127.0.0.1:{simulator.port}"
            legacy.secure = bool(tls)
            variants: dict[str, Callable[[], Any]] = {
                "django_clickatell": lambda: ours.delmsg(apimsgid=apimsgid),
                "bare_requests_session": lambda: (
                    bare.post(
                        simulator.base_url + "delmsg",
                        data={"session_id": session_id, "apimsgid": apimsgid},
                        timeout=30,
                    ).text
                ),
                "clickatell_0_1_2": lambda: legacy.stopMessage(apimsgid),
            }
            samples: dict[str, list[float]] = {name: [] for name in variants}
            connections: dict[str, int] = {}
            for _ in range(rounds):
                for name, fn in variants.items():
                    fn()  # warm: connection, session
                    before = simulator.control("stats")["gateway_connections"]
                    samples[name].append(timed(fn, calls))
                    connections[name] = simulator.control("stats")["gateway_connections"] - before
            bare.close()
            reset_transports()
            secrets_in_url = simulator.control("stats")["secrets_in_url"]
    finally:
        if saved_bundle is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = saved_bundle
        simulator.stop()
    per_call = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "tls": bool(tls),
        "calls_per_round": calls,
        "rounds": rounds,
        "ms_per_call": {name: round(value * 1000, 3) for name, value in per_call.items()},
        "tcp_connections_per_round": connections,
        "ratio_ours_to_bare": round(
            per_call["django_clickatell"] / per_call["bare_requests_session"], 3
        ),
        "ratio_ours_to_clickatell": round(
            per_call["django_clickatell"] / per_call["clickatell_0_1_2"], 3
        ),
        "requests_with_password_in_url": secrets_in_url,
    }


# -- scenario 6: the admin action at 100,000 selected -------------------------------------------

#: Issue 15's targets for the confirmed action at 100,000 selected messages.
ACTION_SECONDS_TARGET = 1.0
ACTION_TASK_BYTES_TARGET = 1024


def admin_action_at_scale(simulator: Simulator, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """The confirmed action (select across) at each size: seconds, queries, task message bytes.

    The task message is captured where kombu would publish it, serialised as it
    would go on the wire, and not sent (no worker runs here).
    """
    from unittest import mock

    from kombu import serialization
    from kombu.messaging import Producer

    rows = []
    for n in sizes:
        reset_state(simulator, n)
        client = admin_client()
        bodies: list[bytes] = []

        def capture(
            producer: Producer, body: Any, *, _into: list[bytes] = bodies, **kwargs: Any
        ) -> None:
            data = serialization.dumps(body, serializer="json")[2]
            _into.append(data if isinstance(data, bytes) else data.encode())

        with mock.patch.object(Producer, "publish", capture):
            run_action(client)  # warm caches (templates, content types, session)
            OutboundMessage.objects.update(cancel_state="", batch=None)
            bodies.clear()
            seconds, queries = run_action(client)
        rows.append(
            {
                "messages": n,
                "seconds": round(seconds, 3),
                "queries": queries,
                "task_messages": len(bodies),
                "task_bytes": sum(len(body) for body in bodies),
                "load_average": round(os.getloadavg()[0], 2),
            }
        )
        print("   ", rows[-1], flush=True)
    return rows


def describe_action_at_scale(rows: list[dict[str, Any]]) -> str:
    largest = rows[-1]
    met = (
        largest["seconds"] < ACTION_SECONDS_TARGET
        and largest["task_bytes"] < ACTION_TASK_BYTES_TARGET
    )
    parts = "; ".join(
        f"{r['messages']:,} selected: {r['seconds']:.3f} s, {r['queries']} queries, "
        f"{r['task_messages']} task message(s) of {r['task_bytes']} bytes "
        f"(load {r['load_average']})"
        for r in rows
    )
    return (
        f"admin action: {parts} — target < {ACTION_SECONDS_TARGET:g} s and "
        f"< {ACTION_TASK_BYTES_TARGET} bytes at {largest['messages']:,}: "
        f"{'met' if met else 'MISSED'}"
    )


# -- scenario 5: the client against raw http.client -------------------------------------------

#: Issue 15's target for the client's time per call relative to raw ``http.client``.
RAW_RATIO_TARGET = 1.3


def client_vs_raw(calls: int, rounds: int) -> dict[str, Any]:
    """``ClickatellClient().delmsg`` against a raw ``http.client`` keep-alive loop, same run.

    Both POST the same form to the same simulator at 0 latency, one call at a
    time.  They alternate in blocks of *calls* (``rounds`` blocks each), so a
    burst of load from elsewhere on the machine hits both alike; the figure is
    the median of the per-block ratios.  CPU time of this process per call is
    reported too: it is what the client itself costs, whatever the load.
    """
    import http.client
    from urllib.parse import urlencode

    simulator = Simulator()
    try:
        apimsgid = simulator.control("messages", {"deliver_in": 7200})["apimsgid"]
        with override_settings(CLICKATELL={**settings.CLICKATELL, "BASE_URL": simulator.base_url}):
            cache.clear()
            reset_transports()
            ours = ClickatellClient()
            session_id = ours.sessions.get().reveal()
            raw = http.client.HTTPConnection("127.0.0.1", simulator.port, timeout=30)
            body = urlencode({"apimsgid": apimsgid, "session_id": session_id})
            form = {"Content-Type": "application/x-www-form-urlencoded"}

            def raw_call() -> bytes:
                raw.request("POST", "/http/delmsg", body=body, headers=form)
                return raw.getresponse().read()

            variants: dict[str, Callable[[], Any]] = {
                "raw_http_client": raw_call,
                "django_clickatell": lambda: ours.delmsg(apimsgid=apimsgid),
            }
            wall: dict[str, list[float]] = {name: [] for name in variants}
            cpu: dict[str, list[float]] = {name: [] for name in variants}
            for fn in variants.values():
                for _ in range(max(calls, 100)):
                    fn()  # warm: connection, session, code paths
            for _ in range(rounds):
                for name, fn in variants.items():
                    started, cpu_started = time.perf_counter(), time.process_time()
                    for _ in range(calls):
                        fn()
                    wall[name].append((time.perf_counter() - started) / calls)
                    cpu[name].append((time.process_time() - cpu_started) / calls)
            raw.close()
            reset_transports()
    finally:
        simulator.stop()
    pairs = zip(wall["django_clickatell"], wall["raw_http_client"], strict=True)
    ratios = [ours / raw for ours, raw in pairs]
    ratio = statistics.median(ratios)
    return {
        "calls_per_block": calls,
        "blocks": rounds,
        "load_average": round(os.getloadavg()[0], 2),
        "ms_per_call": {k: round(statistics.median(v) * 1000, 3) for k, v in wall.items()},
        "cpu_ms_per_call": {k: round(statistics.median(v) * 1000, 3) for k, v in cpu.items()},
        "ratio": round(ratio, 2),
        "target": RAW_RATIO_TARGET,
        "met": ratio <= RAW_RATIO_TARGET,
    }


def describe_client_vs_raw(r: dict[str, Any]) -> str:
    ms, cpu = r["ms_per_call"], r["cpu_ms_per_call"]
    return (
        f"client vs raw http.client, one call at a time: {r['ratio']}× "
        f"(target ≤ {r['target']}×, {'met' if r['met'] else 'MISSED'}); ms/call ours "
        f"{ms['django_clickatell']}, raw {ms['raw_http_client']}; client-process CPU ms/call "
        f"ours {cpu['django_clickatell']}, raw {cpu['raw_http_client']}; load {r['load_average']}"
    )


@contextmanager
def throwaway_certificate() -> Iterator[tuple[str, str]]:
    with tempfile.TemporaryDirectory() as folder:
        cert, key = f"{folder}/cert.pem", f"{folder}/key.pem"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                key,
                "-out",
                cert,
                "-days",
                "1",
                "-subj",
                "/CN=127.0.0.1",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )
        yield cert, key


# -- mechanism: how to keep many requests in flight in one process ---------------------------


def in_flight_mechanism(latency: float, width: int, calls: int) -> dict[str, Any]:
    """Threads over the client's shared keep-alive pool (what the worker does) against a bare
    asyncio client, one process, no database: rate against ``width / latency`` and CPU."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    simulator = Simulator()
    try:
        apimsgid = simulator.control("messages", {"deliver_in": 7200})["apimsgid"]
        with override_settings(CLICKATELL={**settings.CLICKATELL, "BASE_URL": simulator.base_url}):
            cache.clear()
            reset_transports()
            client = ClickatellClient()
            session_id = client.sessions.get().reveal()
            client.delmsg(apimsgid=apimsgid)
            simulator.control("latency", {"seconds": latency})

            def threads() -> None:
                with ThreadPoolExecutor(max_workers=width) as pool:
                    list(pool.map(lambda _: client.delmsg(apimsgid=apimsgid), range(calls)))

            def raw() -> None:
                body = f"session_id={session_id}&apimsgid={apimsgid}"
                asyncio.run(_raw_asyncio(simulator.port, [body] * calls, width))

            rows = {}
            for name, fn in (("threads_requests", threads), ("raw_asyncio", raw)):
                cpu, started = time.process_time(), time.perf_counter()
                fn()
                wall = time.perf_counter() - started
                rows[name] = {
                    "per_second": round(calls / wall, 1),
                    "share_of_ideal": round(calls / wall / (width / latency), 3),
                    "driver_cpu_ms_per_call": round((time.process_time() - cpu) * 1000 / calls, 3),
                }
            reset_transports()
    finally:
        simulator.stop()
    return {
        "latency_ms": latency * 1000,
        "width": width,
        "calls": calls,
        "load_average": _loadavg(),
        **rows,
    }


# -- chunk: CANCEL_CHUNK_SIZE against queries per message and a small batch's latency ----------


def chunk_sizes(
    simulator: Simulator, cases: tuple[tuple[float, int], ...], in_flight: int
) -> list[dict[str, Any]]:
    """Each (latency, batch size) at chunks of 50 and 250: 4 processes, wall time and queries.

    A throwaway batch first, so the first measured row does not pay the admin
    path's warm-up (templates, content types) alone.
    """
    bulk_cancel(simulator, 20, 1, 0.02, in_flight=1, chunk=50, with_ceiling=False)
    rows = []
    for latency, n in cases:
        for chunk in (50, 250):
            print(f"chunk {chunk}: {n} messages at {latency * 1000:.0f} ms ...", flush=True)
            rows.append(
                bulk_cancel(
                    simulator, n, 4, latency, in_flight=in_flight, chunk=chunk, with_ceiling=False
                )
            )
            print("   ", _brief(rows[-1]), flush=True)
    return rows


# -- report -------------------------------------------------------------------------------


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sweep = [r for r in rows if r["max_in_flight"] == rows[0]["max_in_flight"]]
    extra = [r for r in rows if r not in sweep]
    levels = [r["in_flight_total"] for r in sweep]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(
        levels,
        [r["ideal_per_second"] for r in sweep],
        "--",
        color="grey",
        label="ideal (requests in flight ÷ latency)",
    )
    if all("ceiling" in r for r in sweep):
        ax.plot(
            levels,
            [r["ceiling"]["per_second"] for r in sweep],
            "s:",
            color="#c05621",
            label="ceiling: bare asyncio client, no database, same run",
        )
    ax.plot(
        levels,
        [r["cancels_per_second"] for r in sweep],
        "o-",
        color="#2b6cb0",
        label=f"django-clickatell ({sweep[0]['max_in_flight']} in flight per worker process)",
    )
    for r in extra:
        ax.plot(
            [r["in_flight_total"]],
            [r["cancels_per_second"]],
            "D",
            color="#2f855a",
            label=f"{r['concurrency']} processes × {r['max_in_flight']} in flight",
        )
    for r in rows:
        share = f", {r['share_of_ceiling']:.0%} of ceiling" if "share_of_ceiling" in r else ""
        ax.annotate(
            f"{r['efficiency']:.0%} of ideal{share}",
            (r["in_flight_total"], r["cancels_per_second"]),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize=7,
        )
    ax.set_xlabel("requests in flight, machine-wide (worker processes × MAX_IN_FLIGHT)")
    ax.set_ylabel("messages cancelled per second")
    ax.set_title(
        f"Bulk cancel, {rows[0]['latency_ms']:.0f} ms gateway latency, 2 shared cores "
        f"(load {rows[0]['load_average'][0][0]:.1f}→{rows[-1]['load_average'][1][0]:.1f})",
        fontsize=9,
    )
    ax.set_xticks(levels)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def _load(row: dict[str, Any]) -> str:
    """Load averages (1 min) at a scenario's start → end, or the 1/5/15 triple."""
    load = row.get("load_average", ())
    if load and isinstance(load[0], list):
        return f"{load[0][0]:.1f}→{load[1][0]:.1f}"
    return "/".join(f"{value:.1f}" for value in load)


def _brief(r: dict[str, Any]) -> str:
    ceiling_text = ""
    if "ceiling" in r:
        ceiling_text = (
            f", ceiling {r['ceiling']['per_second']}/s (load {_load(r['ceiling'])}) → "
            f"{r['share_of_ceiling']:.0%} of ceiling"
        )
    return (
        f"{r['latency_ms']:.0f} ms, {r['concurrency']:>2} proc × {r['max_in_flight']:>2} "
        f"in flight, chunk {r['chunk']}, "
        f"n={r['messages']:>6}: {r['wall_seconds']:>7.2f} s, {r['cancels_per_second']:>6.1f}/s "
        f"of ideal {r['ideal_per_second']:.0f}/s = {r['efficiency']:.0%}{ceiling_text}; "
        f"auth {r['auth_calls']}, {r['http_requests_per_cancel']} req/cancel, "
        f"{r['tcp_connections']} TCP conns, {r['db_queries_per_message']} queries/msg, "
        f"admin action {r['admin_action_seconds']} s; CPU ms/cancel ours "
        f"{r['ours_cpu_ms_per_cancel']} {r['cpu_ms_per_cancel']} "
        f"({r['postgres_backends']} PG backends), whole machine "
        f"{r['machine_cpu_ms_per_cancel']} ({r['machine_utilisation']:.0%} busy); "
        f"load {_load(r)}"
    )


def summary(result: dict[str, Any]) -> str:
    lines = [f"django-clickatell benchmarks — {result['machine']}", ""]
    if result.get("bulk_cancel"):
        lines.append("1. Bulk cancel end to end (admin action → Celery prefork → simulator):")
    for r in result.get("bulk_cancel", ()):
        lines.append("   " + _brief(r))
    if "cold_start" in result:
        cold = result["cold_start"]
        lines.append(
            f"2. Cold start, {cold['processes']}×{cold['threads_per_process']} threads: "
            f"{cold['auth_calls']} auth call(s)"
        )
    if "admin_action" in result:
        lines.append(
            "3. Admin action: "
            + "; ".join(
                f"{r['messages']} msgs {r['seconds']:.3f} s / {r['queries']} queries"
                for r in result["admin_action"]
            )
        )
    for r in result.get("client_overhead", ()):
        ms = r["ms_per_call"]
        lines.append(
            f"4. Client overhead ({'TLS' if r['tls'] else 'plain HTTP'}), ms/call: ours "
            f"{ms['django_clickatell']}, bare session {ms['bare_requests_session']}, clickatell "
            f"{ms['clickatell_0_1_2']} → ours/bare {r['ratio_ours_to_bare']}×, "
            f"ours/clickatell {r['ratio_ours_to_clickatell']}×; TCP conns per round "
            f"{r['tcp_connections_per_round']}"
        )
    if "client_vs_raw" in result:
        lines.append("5. " + describe_client_vs_raw(result["client_vs_raw"]))
    if "admin_action_at_scale" in result:
        lines.append("6. " + describe_action_at_scale(result["admin_action_at_scale"]))
    for r in result.get("high_latency", ()):
        lines.append("7. High latency: " + _brief(r))
    for r in result.get("mechanism", ()):
        lines.append(
            f"8. {r['width']} in flight in one process at {r['latency_ms']:.0f} ms, no DB: "
            f"threads+requests {r['threads_requests']}; raw asyncio {r['raw_asyncio']}; "
            f"load {_load(r)}"
        )
    if result.get("chunk_sizes"):
        lines.append(
            "9. CANCEL_CHUNK_SIZE 50 against 250 (4 processes; wall = the batch's latency):"
        )
    for r in result.get("chunk_sizes", ()):
        lines.append("   " + _brief(r))
    if ISSUE_15_RESULTS & set(result):
        lines.extend(targets(result))
    else:
        lines.extend(["", "Targets (issue 15): none of its scenarios ran (bulk, high, chunk, ...)"])
    if "callbacks" in result:
        lines.extend(["", *callback_scenario.describe(result["callbacks"])])
    if result.get("send") or result.get("release"):
        lines.extend(["", *send_scenario.describe(result)])
    lines.extend(["", "Targets (issue 20: 2 cores, 4 worker processes, 200 ms), this run:"])
    rows = send_scenario.targets(result) + callback_scenario.targets(result.get("callbacks"))
    for figure, measured, target in rows:
        lines.append(f"   {figure}\n      target   {target}\n      measured {measured}")
    return "\n".join(lines) + "\n"


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def targets(result: dict[str, Any]) -> list[str]:
    """Every figure of issue 15's Targets table next to its target, or why it is absent."""
    rows: list[tuple[str, str, str]] = []
    absent = "not measured in this run (use --only {})"
    high = result.get("high_latency", [])
    bulk = result.get("bulk_cancel", [])
    ends = high + bulk + result.get("chunk_sizes", [])

    figure = "100,000 cancels at 200 ms latency, ≤ 4 worker processes"
    for r in high:
        seconds = r["wall_seconds"] * 100_000 / r["cancelled"]
        how = "measured" if r["cancelled"] >= 100_000 else f"extrapolated from {r['cancelled']:,}"
        rows.append(
            (
                figure,
                f"{seconds:.0f} s = {r['cancels_per_second']}/s ({how}; {r['concurrency']} × "
                f"{r['max_in_flight']} in flight, chunks of {r['chunk']}; "
                f"{r['efficiency']:.0%} of ideal, {r.get('share_of_ceiling', 0):.0%} of ceiling; "
                f"load {_load(r)}) — "
                + _verdict(r["cancelled"] >= 100_000 and r["wall_seconds"] <= 200),
                "≤ 200 s (≥ 500/s)",
            )
        )
    if not high:
        rows.append((figure, absent.format("high"), "≤ 200 s (≥ 500/s)"))

    figure = "c=16 at 20 ms, share of the same-run ceiling"
    sixteen = [
        r for r in bulk if r["in_flight_total"] == 16 and r["latency_ms"] == 20 and "ceiling" in r
    ]
    for r in sixteen:
        rows.append(
            (
                figure,
                f"{r['share_of_ceiling']:.0%} ({r['concurrency']} proc × {r['max_in_flight']}: "
                f"{r['cancels_per_second']}/s against {r['ceiling']['per_second']}/s; "
                f"{r['efficiency']:.0%} of ideal; load {_load(r)}) — "
                + _verdict(r["share_of_ceiling"] >= 0.9),
                "≥ 90%",
            )
        )
    if not sixteen:
        rows.append((figure, absent.format("bulk") + " at 20 ms with c=16", "≥ 90%"))

    figure = "whole-machine CPU per cancel"
    for r in [*high, *sixteen]:
        rows.append(
            (
                figure,
                f"{r['ours_cpu_ms_per_cancel']} ms, every process of the system "
                f"(workers, simulator, every PG backend, Redis, driver); "
                f"{r['machine_cpu_ms_per_cancel']} ms all of the machine incl. other users "
                f"({r['concurrency']} × {r['max_in_flight']}, {r['latency_ms']:.0f} ms, "
                f"n={r['messages']:,}; load {_load(r)}) — "
                + _verdict(r["ours_cpu_ms_per_cancel"] <= 2.5),
                "≤ 2.5 ms",
            )
        )
    if not high and not sixteen:
        rows.append((figure, absent.format("high,bulk"), "≤ 2.5 ms"))

    figure = "DB queries per cancelled message"
    campaign = [r for r in ends if r["cancelled"] >= 1000]  # small batches: section 9
    for chunk in sorted({r["chunk"] for r in campaign}):
        values = [r["db_queries_per_message"] for r in campaign if r["chunk"] == chunk]
        default = " (the default)" if chunk == TASK_CHUNK_DEFAULT else ""
        rows.append(
            (
                figure,
                f"{min(values)}–{max(values)} at chunks of {chunk}{default}, "
                f"{len(values)} run(s) of ≥ 1,000 — " + _verdict(max(values) <= 0.2),
                "≤ 0.2",
            )
        )
    if not campaign:
        small = ", ".join(f"{r['db_queries_per_message']} at {r['cancelled']:,}" for r in ends)
        rows.append(
            (
                figure,
                f"only batches under 1,000 in this run ({small}: the per-batch cost dominates)"
                if ends
                else absent.format("bulk"),
                "≤ 0.2",
            )
        )

    figure = "admin action at 100,000 selected"
    scale = result.get("admin_action_at_scale", [])
    if scale and scale[-1]["messages"] >= 100_000:
        r = scale[-1]
        rows.append(
            (
                figure,
                f"{r['seconds']:.3f} s, {r['task_bytes']}-byte task (load {r['load_average']}) — "
                + _verdict(
                    r["seconds"] < ACTION_SECONDS_TARGET
                    and r["task_bytes"] < ACTION_TASK_BYTES_TARGET
                ),
                "< 1 s, < 1 KB task",
            )
        )
    else:
        rows.append((figure, absent.format("admin100k") + " without --quick", "< 1 s, < 1 KB"))

    figure = "auth per run / requests per cancel / password in URL"
    if ends:
        exact = all(
            r["http_requests_per_cancel"] <= round((r["cancelled"] + 1) / r["cancelled"], 4)
            for r in ends
        )
        auths = sorted({r["auth_calls"] for r in ends})
        leaked = sum(r["requests_with_password_in_url"] for r in ends)
        largest = max(ends, key=lambda r: r["cancelled"])
        rows.append(
            (
                figure,
                f"{'/'.join(map(str, auths))} / {largest['http_requests_per_cancel']} at "
                f"{largest['cancelled']:,} (every one of {len(ends)} runs: one delmsg per "
                f"message plus the one auth: {'yes' if exact else 'NO'}) / {leaked} — "
                + _verdict(auths == [1] and exact and not leaked),
                "1 / 1.0001 / 0",
            )
        )
    else:
        rows.append((figure, absent.format("bulk"), "1 / 1.0001 / 0"))

    figure = "client time vs raw http.client, one call at a time"
    raw = result.get("client_vs_raw")
    if raw:
        rows.append(
            (
                figure,
                f"{raw['ratio']}× (load {raw['load_average']}) — {_verdict(raw['met'])}",
                f"≤ {RAW_RATIO_TARGET}×",
            )
        )
    else:
        rows.append((figure, absent.format("raw"), f"≤ {RAW_RATIO_TARGET}×"))

    out = ["", "Targets (issue 15), this run:"]
    for name, measured, target in rows:
        out.append(f"   {name}\n      target {target:<20} measured {measured}")
    return out


def callbacks_against_gunicorn(messages: int, *, with_default: bool = True) -> dict[str, Any]:
    """The ``callbacks`` scenario (:mod:`benchmarks.callbacks`), with this run's meters."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        driver_backend = int(cursor.fetchone()[0])
    database = str(settings.DATABASES["default"]["NAME"])
    return callback_scenario.scenario(
        messages,
        with_default_connections=with_default,
        meter=lambda: PostgresMeter(database, exclude={driver_backend}),
        cpu_of=lambda pid: sum(process_cpu(p) for p in descendants(pid)),
    )


#: The package's CANCEL_CHUNK_SIZE, read once the settings are loaded (see ``main``).
TASK_CHUNK_DEFAULT = 0

#: The result keys of the scenarios issue 15's Targets table is measured by.
ISSUE_15_RESULTS = {
    "bulk_cancel",
    "high_latency",
    "chunk_sizes",
    "admin_action_at_scale",
    "client_vs_raw",
    "cold_start",
    "admin_action",
    "client_overhead",
    "mechanism",
}

#: Scenario names for ``--only`` (the machine is shared: run only what you work on).
SCENARIOS = (
    "bulk",
    "cold",
    "admin",
    "admin100k",
    "overhead",
    "raw",
    "high",
    "mechanism",
    "chunk",
    "callbacks",
    "send",
    "release",
)


def main() -> int:
    from django_clickatell.conf.options import app_settings

    global TASK_CHUNK_DEFAULT
    TASK_CHUNK_DEFAULT = app_settings.cancel_chunk_size
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", default="2,4,8,16", help="worker processes (bulk)")
    parser.add_argument(
        "--in-flight",
        type=int,
        default=1,
        help="MAX_IN_FLIGHT of the bulk workers (default 1: c is then the requests in flight, "
        "as in issue 15's 'c=16'; a 4 × 4 row is added next to c=16)",
    )
    parser.add_argument(
        "--chunk",
        type=int,
        default=app_settings.cancel_chunk_size,
        help="CANCEL_CHUNK_SIZE of the bulk workers (default: the package's default)",
    )
    parser.add_argument(
        "--high-latency-messages",
        type=int,
        default=100_000,
        help="messages in the 200 ms scenario (fewer: the 100,000 figure is extrapolated)",
    )
    parser.add_argument("--high-in-flight", type=int, default=32)
    parser.add_argument("--high-chunk", type=int, default=1000, help="CANCEL_CHUNK_SIZE at 200 ms")
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run, of {', '.join(SCENARIOS)} (default: all)",
    )
    parser.add_argument(
        "--callback-messages",
        type=int,
        default=20_000,
        help="messages whose 003 and 004 callbacks the callbacks scenario pushes",
    )
    parser.add_argument(
        "--send-messages",
        type=int,
        default=5000,
        help="messages the send scenario sends at each latency (--quick: 500)",
    )
    parser.add_argument(
        "--send-latency-ms",
        default="20,200",
        help="latencies of the send scenario, comma-separated (default 20,200)",
    )
    parser.add_argument(
        "--release-messages",
        default="5000,100000",
        help="held messages due at once, comma-separated runs of the release scenario "
        "(--quick: 500)",
    )
    parser.add_argument(
        "--release-latency-ms", type=float, default=200.0, help="latency of the release scenario"
    )
    parser.add_argument(
        "--send-in-flight",
        type=int,
        default=32,
        help="MAX_IN_FLIGHT of the send and release workers (4 processes; default 32, the "
        "bound: issue 20's 500 msg/s at 200 ms needs 4 × 32 ÷ 0.2 s = 640/s of ideal)",
    )
    parser.add_argument(
        "--send-chunk",
        type=int,
        default=0,
        help="TASK_CHUNK_SIZE of the send and release workers (default: the package's)",
    )
    parser.add_argument(
        "--report",
        type=Path,
        help="print the summary and redraw the chart of a saved latest.json; run nothing",
    )
    args = parser.parse_args()
    if args.report:
        saved = json.loads(args.report.read_text())
        print(summary(saved))
        if saved.get("bulk_cancel"):
            chart(saved["bulk_cancel"], RESULTS / "throughput.png")
        return 0
    latency = args.latency_ms / 1000
    big = 1000 if args.quick else 10_000
    levels = [int(c) for c in args.concurrency.split(",")]
    only = set(args.only.split(","))
    if only - set(SCENARIOS):
        parser.error(f"unknown scenario(s): {', '.join(sorted(only - set(SCENARIOS)))}")

    RESULTS.mkdir(parents=True, exist_ok=True)
    prepare_database()
    result: dict[str, Any] = {
        "machine": (
            f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}"
        ),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_at_start": _loadavg(),
    }
    if "mechanism" in only:
        print("in flight per process: threads against raw asyncio ...", flush=True)
        result["mechanism"] = [
            in_flight_mechanism(0.2, 32, 200 if args.quick else 960),
            in_flight_mechanism(0.02, 16, 400 if args.quick else 2000),
        ]
        print("   ", result["mechanism"], flush=True)
    simulator = Simulator()
    try:
        rows = []
        sweep = [(c, args.in_flight) for c in levels]
        if 16 in levels and args.in_flight == 1:
            sweep.append((4, 4))  # the same 16 in flight from 4 processes
        for c, in_flight in sweep if "bulk" in only else ():
            n = big if c * in_flight >= 8 else max(big // 5, 200)
            print(f"bulk cancel: {n} messages, {c} processes × {in_flight} ...", flush=True)
            rows.append(
                bulk_cancel(simulator, n, c, latency, in_flight=in_flight, chunk=args.chunk)
            )
            print("   ", _brief(rows[-1]), flush=True)
        if rows:
            result["bulk_cancel"] = rows
        if "high" in only:
            n = 2000 if args.quick else args.high_latency_messages
            print(f"200 ms latency: {n} messages, 4 processes ...", flush=True)
            result["high_latency"] = [
                bulk_cancel(
                    simulator, n, 4, 0.2, in_flight=args.high_in_flight, chunk=args.high_chunk
                )
            ]
            print("   ", _brief(result["high_latency"][0]), flush=True)
        if "chunk" in only:
            cases = ((latency, 100), (latency, 400 if args.quick else 2000), (0.2, 200))
            result["chunk_sizes"] = chunk_sizes(simulator, cases, app_settings.max_in_flight)
        if "send" in only:
            sizes = 500 if args.quick else args.send_messages
            result["send"] = []
            for ms in (float(value) for value in args.send_latency_ms.split(",")):
                print(f"send now: {sizes} messages at {ms:.0f} ms, 4 processes ...", flush=True)
                result["send"].append(
                    send_scenario.send_now(
                        simulator,
                        sizes,
                        4,
                        ms / 1000,
                        in_flight=args.send_in_flight,
                        chunk=args.send_chunk or None,
                        ceiling_seconds=1.0 if args.quick else 4.0,
                    )
                )
                print("   ", send_scenario.brief(result["send"][-1]), flush=True)
        if "release" in only:
            counts = [500] if args.quick else [int(v) for v in args.release_messages.split(",")]
            result["release"] = []
            for n in counts:
                print(f"release: {n} held messages due at once, 4 processes ...", flush=True)
                result["release"].append(
                    send_scenario.release_due(
                        simulator,
                        n,
                        4,
                        args.release_latency_ms / 1000,
                        in_flight=args.send_in_flight,
                        chunk=args.send_chunk or None,
                        ceiling_seconds=1.0 if args.quick else 4.0,
                    )
                )
                print("   ", send_scenario.brief(result["release"][-1]), flush=True)
        if "cold" in only:
            print("cold start ...", flush=True)
            result["cold_start"] = cold_start(simulator)
        if "admin" in only:
            print("admin action scaling ...", flush=True)
            result["admin_action"] = admin_scaling(simulator, (100, big))
        if "admin100k" in only:
            print("admin action at 100,000 selected ...", flush=True)
            sizes = (10, 10_000) if args.quick else (10, 100_000)
            result["admin_action_at_scale"] = admin_action_at_scale(simulator, sizes)
    finally:
        simulator.stop()
    calls = 200 if args.quick else 1000
    if "overhead" in only:
        print("client overhead ...", flush=True)
        result["client_overhead"] = [client_overhead(calls, 3, None)]
        with throwaway_certificate() as tls:
            result["client_overhead"].append(client_overhead(calls, 3, tls))
    if "raw" in only:
        print("client vs raw http.client ...", flush=True)
        result["client_vs_raw"] = client_vs_raw(100, 6 if args.quick else 20)
    if "callbacks" in only:
        n = 1000 if args.quick else args.callback_messages
        print(f"callbacks: {n} messages, 003 then 004 each, gunicorn ...", flush=True)
        result["callbacks"] = callbacks_against_gunicorn(n)
        print("\n".join(callback_scenario.describe(result["callbacks"])), flush=True)

    result["load_average_at_end"] = _loadavg()
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2))
    text = summary(result)
    (RESULTS / "summary.txt").write_text(text)
    if result.get("bulk_cancel"):
        try:
            chart(result["bulk_cancel"], RESULTS / "throughput.png")
        except ImportError:  # matplotlib: installed by `make bench`
            print("No chart: matplotlib is not installed (make bench installs it)")
    print(text)
    print(f"Results in {RESULTS.relative_to(ROOT)}/ (latest.json, summary.txt, throughput.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
