"""The ``send`` and ``release`` scenarios: a campaign going out (issue 20, items 1-3 and 6).

``send``
    Legacy sends "sent now": *n* messages (5,000) recorded and handed on with one
    ``send_sms`` call, the way a project sends a campaign; real Celery prefork
    workers (4 processes, ``MAX_IN_FLIGHT`` each) send them to the simulator at
    20 ms and 200 ms.  Wall time runs from the ``send_sms`` call to the last
    message recorded (sent, rejected, unknown or failed).
``release``
    A One API account (the settings' ``platform`` account), *n* messages held
    (5,000 and 100,000) and all due at the same instant; the release loop
    (``manage.py clickatell_release --interval 1`` in its own process, queueing to
    the workers) and 4 worker processes hand them over.  The lag of each message
    is the time from its due time to its acceptance at the simulator (the
    simulator stamps each accepted message): the last one's, p50 and p99.

Each row stands next to its **ideal**, requests in flight machine-wide over the
latency (times the messages each request carried, as the simulator counted),
and a **ceiling** measured in the same run: a bare asyncio HTTP/1.1 keep-alive
client (no library, no database) sending fresh messages against the same
simulator at the same latency with the same number of connections -- right
before a ``send`` row (one ``sendmsg`` per message), right after a ``release``
row (as many messages per POST as the row's requests carried).  CPU is counted
per process (workers and their children, every PostgreSQL backend of the
benchmark's database, the simulator, Redis, the driver, the release loop);
duplicates are the simulator's own count (an SMS accepted twice under one
``climsgid``, or twice to one recipient with one text).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from benchmarks.celery_app import COUNTER_KEY
from benchmarks.harness import (
    ROOT,
    PostgresMeter,
    Simulator,
    Worker,
    cpu_report,
    cpu_snapshot,
    loadavg,
    process_cpu,
)
from django_clickatell import api
from django_clickatell.conf import app_settings
from django_clickatell.gateway.client import ClickatellClient
from django_clickatell.gateway.transport import reset_transports
from django_clickatell.models import OutboundMessage, SendState
from django_clickatell.services import composing

#: Where a send run leaves a message: the scenario waits for every message to reach one.
DONE = [SendState.SENT, SendState.REJECTED, SendState.UNKNOWN, SendState.FAILED]
TEXT = "Your appointment is tomorrow at 09:00. Reply STOP to opt out."
#: The One API account of benchmarks/settings.py.
ONE_API_ACCOUNT = str(getattr(settings, "ONE_API_ACCOUNT", "platform"))
#: Seconds between passes of the release loop (the command's minimum).
RELEASE_INTERVAL = 1

# -- the same-run ceiling -----------------------------------------------------------------------


async def _lanes(port: int, requests: list[bytes], width: int) -> None:
    """*width* keep-alive connections, one request outstanding on each, sharing *requests*."""
    queue = list(reversed(requests))

    async def lane() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while queue:
            writer.write(queue.pop())
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()

    await asyncio.gather(*(lane() for _ in range(width)))


def _post(path: str, body: bytes, content_type: str, extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n"
        f"{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _legacy_sends(simulator: Simulator, calls: int) -> list[bytes]:
    """``sendmsg`` requests for *calls* fresh recipients, with a session of their own."""
    with override_settings(CLICKATELL={**settings.CLICKATELL, "BASE_URL": simulator.base_url}):
        cache.clear()
        reset_transports()
        session_id = ClickatellClient().sessions.get().reveal()
        reset_transports()
    cache.clear()
    form = "session_id={}&to=2798{:08d}&text=ceiling&climsgid=ceiling-{}"
    return [
        _post(
            "/http/sendmsg",
            form.format(session_id, k, k).encode(),
            "application/x-www-form-urlencoded",
        )
        for k in range(calls)
    ]


def _one_api_sends(calls: int, per_post: int) -> list[bytes]:
    """One API ``POST /v1/message`` requests for *calls* messages, *per_post* in each (the
    simulator's default key)."""
    key = os.environ.get("CLICKATELL_ONE_API_KEY", "demo-one-api-key")
    entries = [
        {"channel": "sms", "to": f"2798{k:08d}", "content": "ceiling", "clientMessageId": f"c{k}"}
        for k in range(calls)
    ]
    out = []
    for start in range(0, calls, per_post):
        body = json.dumps({"messages": entries[start : start + per_post]})
        out.append(
            _post("/v1/message", body.encode(), "application/json", f"Authorization: {key}\r\n")
        )
    return out


def ceiling(
    simulator: Simulator,
    api_kind: str,
    width: int,
    latency: float,
    seconds: float,
    per_post: int = 1,
) -> dict[str, Any]:
    """What this machine and the simulator allow at *width* requests outstanding, no database.

    About *seconds* of sends by a bare asyncio client, at the run's latency: one
    message per request (``sendmsg``), or *per_post* per One API POST.  The
    gateway is cleared afterwards (messages, counts, sessions), so a run measured
    after it starts from nothing and logs in once.  ``per_second`` counts messages.
    """
    requests_ = min(4000, max(200, int(seconds * width / latency)))
    calls = requests_ * per_post
    simulator.control("clear")
    requests = (
        _legacy_sends(simulator, calls) if api_kind == "legacy" else _one_api_sends(calls, per_post)
    )
    simulator.control("latency", {"seconds": latency})
    cpu, started = time.process_time(), time.perf_counter()
    asyncio.run(_lanes(simulator.port, requests, width))
    wall = time.perf_counter() - started
    accepted = simulator.control("stats")["accepted_sends"]
    simulator.control("latency", {"seconds": 0})
    simulator.control("clear")
    return {
        "api": api_kind,
        "width": width,
        "messages_per_request": per_post,
        "calls": calls,
        "accepted": accepted,
        "per_second": round(calls / wall, 1),
        "share_of_ideal": round(calls / wall / (width * per_post / latency), 3),
        "client_cpu_ms_per_call": round((time.process_time() - cpu) * 1000 / calls, 3),
        "load_average": loadavg(),
    }


# -- shared -------------------------------------------------------------------------------------


def reset(simulator: Simulator) -> None:
    """No messages anywhere: database, broker, cache, gateway."""
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE django_clickatell_gatewayexchange, django_clickatell_outboundmessage, "
            "django_clickatell_cancellationbatch RESTART IDENTITY CASCADE"
        )
    redis.Redis.from_url(settings.CELERY_BROKER_URL).flushdb()
    cache.clear()
    simulator.control("clear")
    simulator.control("latency", {"seconds": 0})


def recipients(n: int) -> list[str]:
    return [f"+2799{k:08d}" for k in range(n)]


def _driver_backend() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _wait_done(n: int, started: float, limit: float, poll: float) -> float:
    """Seconds from *started* until *n* messages are done; raises past *limit*."""
    done = 0
    while done < n:
        time.sleep(poll)
        done = OutboundMessage.objects.filter(send_state__in=DONE).count()
        if time.perf_counter() - started > limit:
            raise RuntimeError(f"only {done} of {n} messages done after {limit:.0f} s")
    return time.perf_counter() - started


def _common(
    *,
    kind: str,
    n: int,
    concurrency: int,
    in_flight: int,
    chunk: int | None,
    latency: float,
    wall: float,
    queries: int,
    cpu: dict[str, Any],
    stats: dict[str, Any],
    sends: dict[str, Any],
    measured_ceiling: dict[str, Any],
    load_before: list[float],
) -> dict[str, Any]:
    """The figures every send and release row carries."""
    states = _states()
    sent = states.get(SendState.SENT, 0)
    width = concurrency * in_flight
    requests_ = stats["counts"].get("sendmsg", 0)
    per_request = n / requests_ if requests_ else 1.0
    ideal = width / latency * max(per_request, 1.0)
    rate = n / wall
    return {
        "kind": kind,
        "messages": n,
        "concurrency": concurrency,
        "max_in_flight": in_flight,
        "in_flight_total": width,
        "chunk": chunk or app_settings.task_chunk_size,
        "chunk_is_default": not chunk,
        "latency_ms": latency * 1000,
        "load_average": [load_before, loadavg()],
        "wall_seconds": round(wall, 2),
        "sent": sent,
        "states": states,
        "per_second": round(rate, 1),
        "ideal_per_second": round(ideal, 1),
        "efficiency": round(rate / ideal, 3),
        "ceiling": measured_ceiling,
        "share_of_ceiling": round(rate / measured_ceiling["per_second"], 3),
        "duplicates": len(sends["duplicates"]),
        "accepted_at_gateway": sends["accepted"],
        "send_requests": requests_,
        "messages_per_request": round(per_request, 2),
        "auth_calls": stats["counts"].get("auth", 0),
        "gateway_requests": stats["counts"].get("total", 0),
        "requests_with_secret_in_url": stats["secrets_in_url"],
        "tcp_connections": stats["gateway_connections"],
        "db_queries_per_message": round(queries / max(n, 1), 3),
        "settings": json.loads(os.environ.get("CLICKATELL_BENCH_SETTINGS") or "{}"),
        **cpu,
    }


def _states() -> dict[str, int]:
    from django.db.models import Count

    rows = OutboundMessage.objects.values("send_state").annotate(n=Count("pk"))
    return {row["send_state"]: row["n"] for row in rows}


def _per_message(
    before: dict[str, Any],
    after: dict[str, Any],
    postgres: dict[str, float],
    n: int,
    extra: dict[str, float] | None = None,
) -> dict[str, Any]:
    """CPU per message by role (:func:`benchmarks.harness.cpu_report`, per message, plus *extra*
    processes' seconds, such as the release loop's)."""
    report = cpu_report(before, after, postgres, n)
    roles = dict(report["cpu_ms_per_cancel"])
    for role, seconds in (extra or {}).items():
        roles[role] = round(seconds * 1000 / n, 3)
    ours = report["ours_cpu_ms_per_cancel"] + sum(roles[role] for role in (extra or {}))
    return {
        "cpu_ms_per_message": roles,
        "ours_cpu_ms_per_message": round(ours, 3),
        "machine_cpu_ms_per_message": report["machine_cpu_ms_per_cancel"],
        "machine_utilisation": report["machine_utilisation"],
        "postgres_backends": report["postgres_backends"],
    }


def chunked(chunk: int | None) -> override_settings:
    """This process's ``TASK_CHUNK_SIZE`` (*chunk*; None: the package's default)."""
    extra = {"TASK_CHUNK_SIZE": chunk} if chunk else {}
    return override_settings(CLICKATELL={**settings.CLICKATELL, **extra})


def _worker_env(in_flight: int, chunk: int | None) -> dict[str, str]:
    env = {"CLICKATELL_BENCH_MAX_IN_FLIGHT": str(in_flight)}
    if chunk:
        env["CLICKATELL_BENCH_SEND_CHUNK"] = str(chunk)
    return env


# -- send ---------------------------------------------------------------------------------------


def send_now(
    simulator: Simulator,
    n: int,
    concurrency: int,
    latency: float,
    *,
    in_flight: int,
    chunk: int | None,
    ceiling_seconds: float = 4.0,
) -> dict[str, Any]:
    """``send_sms`` of *n* recipients -> Celery prefork (*concurrency* x *in_flight*) -> gateway."""
    reset(simulator)
    width = concurrency * in_flight
    measured_ceiling = ceiling(simulator, "legacy", width, latency, ceiling_seconds)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    worker = Worker(concurrency, simulator.base_url, _worker_env(in_flight, chunk))
    try:
        broker.delete(COUNTER_KEY)
        simulator.control("reset")
        simulator.control("latency", {"seconds": latency})
        numbers = recipients(n)
        load_before = loadavg()
        postgres = PostgresMeter(
            str(settings.DATABASES["default"]["NAME"]), exclude={_driver_backend()}
        )
        postgres.start()
        cpu_before = cpu_snapshot(worker.process.pid, simulator.process.pid)
        started = time.perf_counter()
        # The send is split into tasks here, in the process that calls send_sms.
        with chunked(chunk), CaptureQueriesContext(connection) as driver_queries:
            api.send_sms(numbers, TEXT)
        wall = _wait_done(n, started, 120 + n * latency, 0.1 if n <= 10_000 else 0.5)
        cpu_after = cpu_snapshot(worker.process.pid, simulator.process.pid)
        postgres_cpu = postgres.stop()
        stats = simulator.control("stats")
        sends = simulator.control("sends")
        simulator.control("latency", {"seconds": 0})
    finally:
        worker.stop()
    queries = int(broker.get(COUNTER_KEY) or 0) + len(driver_queries.captured_queries)
    return _common(
        kind="send",
        n=n,
        concurrency=concurrency,
        in_flight=in_flight,
        chunk=chunk,
        latency=latency,
        wall=wall,
        queries=queries,
        cpu=_per_message(cpu_before, cpu_after, postgres_cpu, n),
        stats=stats,
        sends=sends,
        measured_ceiling=measured_ceiling,
        load_before=load_before,
    )


# -- release ------------------------------------------------------------------------------------

#: The release loop as a project runs it: ``clickatell_release`` in its own process, with the
#: project's Celery app loaded (it queues to the workers); its queries counted like a worker's.
LOOP = """
import os, sys
sys.path.insert(0, os.getcwd())
from benchmarks import celery_app
from django.core.management import call_command
from django.db.backends.signals import connection_created
import redis
connection_created.connect(celery_app._wrap, weak=False)
call_command("clickatell_release", interval=sys.argv[1])
redis.Redis.from_url(celery_app.settings.CELERY_BROKER_URL).incrby(
    celery_app.COUNTER_KEY, next(celery_app._counter))
"""


class ReleaseLoop:
    """``manage.py clickatell_release --interval 1`` in its own process; SIGTERM ends it."""

    def __init__(self, base_url: str, extra_env: dict[str, str]) -> None:
        env = {
            **os.environ,
            **extra_env,
            "CLICKATELL_BENCH_BASE_URL": base_url,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        }
        self.process = subprocess.Popen(
            [sys.executable, "-u", "-c", LOOP, str(RELEASE_INTERVAL)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "Releasing held messages every 1 s ..."
        if "Releasing" not in line:
            raise RuntimeError(f"release loop did not start: {line}{self.process.stdout.read()}")

    def cpu(self) -> float:
        return process_cpu(self.process.pid)

    def stop(self) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


def hold(n: int, batch: int = 5000) -> None:
    """*n* messages composed as a project would, due a day ahead: held here (One API)."""
    numbers = recipients(n)
    due = timezone.now() + timedelta(days=1)
    for start in range(0, n, batch):
        composing.create_messages(
            numbers[start : start + batch], TEXT, scheduled_for=due, account=ONE_API_ACCOUNT
        )
    held = OutboundMessage.objects.filter(send_state=SendState.HELD).count()
    if held != n:
        raise RuntimeError(f"{held} of {n} messages held: is {ONE_API_ACCOUNT} a One API account?")


def gateway_messages(simulator: Simulator) -> list[dict[str, Any]]:
    """Every message the simulator holds, with its ``deliver_at``: for a message the One API
    accepted to send now, the moment it was accepted (``GET``: a ``POST`` would add one)."""
    response = simulator.http.get(simulator.root + "_simulator/messages", timeout=120)
    response.raise_for_status()
    return list(response.json())


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def release_due(
    simulator: Simulator,
    n: int,
    concurrency: int,
    latency: float,
    *,
    in_flight: int,
    chunk: int | None,
    ceiling_seconds: float = 4.0,
) -> dict[str, Any]:
    """*n* held One API messages, all due at one instant: lag from due to acceptance.

    The ceiling is measured right after the run, with as many messages per POST as
    the run's requests carried (one, until the package batches them).
    """
    reset(simulator)
    width = concurrency * in_flight
    hold(n)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    worker = Worker(concurrency, simulator.base_url, _worker_env(in_flight, chunk))
    loop: ReleaseLoop | None = None
    try:
        broker.delete(COUNTER_KEY)
        simulator.control("reset")
        simulator.control("latency", {"seconds": latency})
        # The loop splits what it releases into send tasks: same TASK_CHUNK_SIZE as the workers.
        loop = ReleaseLoop(simulator.base_url, _worker_env(in_flight, chunk))
        load_before = loadavg()
        postgres = PostgresMeter(
            str(settings.DATABASES["default"]["NAME"]), exclude={_driver_backend()}
        )
        postgres.start()
        cpu_before = cpu_snapshot(worker.process.pid, simulator.process.pid)
        loop_before = loop.cpu()
        # The clock reaches the due time: every held message due at *due*, 2 s from now (more
        # for a large run, so the update has committed before the due time).
        due = timezone.now() + timedelta(seconds=2 + n / 20_000)
        with CaptureQueriesContext(connection) as driver_queries:
            OutboundMessage.objects.filter(send_state=SendState.HELD).update(
                scheduled_for=due, release_at=due
            )
        started = time.perf_counter() + (due - timezone.now()).total_seconds()
        wall = _wait_done(n, started, 300 + n * latency, 0.1 if n <= 10_000 else 0.5)
        cpu_after = cpu_snapshot(worker.process.pid, simulator.process.pid)
        loop_cpu = loop.cpu() - loop_before
        postgres_cpu = postgres.stop()
        stats = simulator.control("stats")
        sends = simulator.control("sends")
        accepted = [m["deliver_at"] for m in gateway_messages(simulator) if m["sent"]]
        simulator.control("latency", {"seconds": 0})
    finally:
        if loop is not None:
            loop.stop()
        worker.stop()
    lags = [at - due.timestamp() for at in accepted]
    per_post = max(1, round(n / max(stats["counts"].get("sendmsg", 0), 1)))
    measured_ceiling = ceiling(simulator, "one_api", width, latency, ceiling_seconds, per_post)
    queries = int(broker.get(COUNTER_KEY) or 0) + len(driver_queries.captured_queries)
    row = _common(
        kind="release",
        n=n,
        concurrency=concurrency,
        in_flight=in_flight,
        chunk=chunk,
        latency=latency,
        wall=wall,
        queries=queries,
        cpu=_per_message(cpu_before, cpu_after, postgres_cpu, n, {"release_loop": loop_cpu}),
        stats=stats,
        sends=sends,
        measured_ceiling=measured_ceiling,
        load_before=load_before,
    )
    row["release_interval_seconds"] = RELEASE_INTERVAL
    row["lag_seconds"] = {
        "first": round(min(lags), 3) if lags else None,
        "p50": round(statistics.median(lags), 3) if lags else None,
        "p99": round(percentile(lags, 0.99), 3) if lags else None,
        "last": round(max(lags), 3) if lags else None,
        "accepted": len(lags),
    }
    if lags:
        # The rate the release reached: messages over the time to the last acceptance.
        row["per_second"] = round(n / max(max(lags), 1e-9), 1)
        row["efficiency"] = round(row["per_second"] / row["ideal_per_second"], 3)
        row["share_of_ceiling"] = round(row["per_second"] / measured_ceiling["per_second"], 3)
    return row


# -- report -------------------------------------------------------------------------------------


def _load(row: dict[str, Any]) -> str:
    before, after = row["load_average"]
    return f"{before[0]:.1f}→{after[0]:.1f}"


def brief(r: dict[str, Any]) -> str:
    """One line per row, for the run's output and ``--report``."""
    c = r["ceiling"]
    head = (
        f"{r['latency_ms']:.0f} ms, {r['concurrency']} proc × {r['max_in_flight']} in flight, "
        f"chunk {r['chunk']}, n={r['messages']:,}: "
    )
    if r["kind"] == "release":
        lag = r["lag_seconds"]
        head += (
            f"lag due→accepted first {lag['first']} s, p50 {lag['p50']} s, p99 {lag['p99']} s, "
            f"last {lag['last']} s (loop every {r['release_interval_seconds']} s; all recorded "
            f"after {r['wall_seconds']} s); "
        )
    else:
        head += f"{r['wall_seconds']:.2f} s; "
    cpu = r["cpu_ms_per_message"]
    return head + (
        f"{r['per_second']}/s of ideal {r['ideal_per_second']}/s = {r['efficiency']:.0%}, "
        f"ceiling {c['per_second']}/s ({c.get('messages_per_request', 1)} msg/request, "
        f"{c['share_of_ideal']:.0%} of its ideal) → "
        f"{r['share_of_ceiling']:.0%} of ceiling; sent {r['sent']:,} {r['states']}; "
        f"duplicates {r['duplicates']}; {r['send_requests']} send requests "
        f"({r['messages_per_request']} msg/request), auth {r['auth_calls']}, "
        f"{r['tcp_connections']} TCP conns, secret in URL {r['requests_with_secret_in_url']}; "
        f"{r['db_queries_per_message']} queries/msg; CPU ms/msg ours "
        f"{r['ours_cpu_ms_per_message']} {cpu} ({r['postgres_backends']} PG backends), whole "
        f"machine {r['machine_cpu_ms_per_message']} ({r['machine_utilisation']:.0%} busy); "
        f"load {_load(r)}" + (f"; settings {r['settings']}" if r.get("settings") else "")
    )


def describe(result: dict[str, Any]) -> list[str]:
    lines = []
    if result.get("send"):
        lines.append("Legacy sends, sent now (send_sms → Celery prefork → simulator):")
        lines.extend("   " + brief(r) for r in result["send"])
    if result.get("release"):
        lines.append(
            "One API release, all due at once (release loop → Celery prefork → simulator):"
        )
        lines.extend("   " + brief(r) for r in result["release"])
    return lines


#: Issue 20's Targets table (2-core machine, 4 worker processes, 200 ms latency).
SEND_RATE_TARGET = 500.0
RELEASE_TARGETS = ((5_000, 10.0), (100_000, 60.0))
CPU_TARGET_MS = 2.0
QUERIES_TARGET = 0.3


def _at_target(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r["latency_ms"] == 200 and r["concurrency"] == 4]


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def targets(result: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(figure, measured, target) for the send and release rows of issue 20's Targets table."""
    out: list[tuple[str, str, str]] = []
    sends = _at_target(result.get("send") or [])
    releases = _at_target(result.get("release") or [])
    figure = "legacy sends, 5,000 sent now"
    target = f"≥ {SEND_RATE_TARGET:.0f} msg/s, 0 duplicates"
    if sends:
        for r in sends:
            full = r["messages"] >= 5000
            met = r["per_second"] >= SEND_RATE_TARGET and r["duplicates"] == 0
            out.append(
                (
                    figure,
                    f"{r['per_second']}/s, {r['duplicates']} duplicates at n={r['messages']:,} "
                    f"({r['max_in_flight']} in flight per process; {r['share_of_ceiling']:.0%} "
                    f"of the same-run ceiling; load {_load(r)}) — "
                    + (_verdict(met) if full else f"{_verdict(met)} at this size only (--quick)"),
                    target,
                )
            )
    else:
        out.append((figure, "not measured in this run (use --only send)", target))
    for size, seconds in RELEASE_TARGETS:
        figure = f"One API release, {size:,} due at once"
        target = f"last accepted ≤ {seconds:.0f} s after due"
        rows = [r for r in releases if r["messages"] >= size]
        smaller = [r for r in releases if r["messages"] < size]
        if rows:
            r = rows[0]
            lag = r["lag_seconds"]
            out.append(
                (
                    figure,
                    f"last {lag['last']} s (p50 {lag['p50']} s, p99 {lag['p99']} s; "
                    f"{r['messages_per_request']} msg/request; load {_load(r)}) — "
                    + _verdict(lag["last"] is not None and lag["last"] <= seconds),
                    target,
                )
            )
        elif smaller:
            r = max(smaller, key=lambda row: row["messages"])
            out.append(
                (
                    figure,
                    f"not measured at {size:,} in this run; at {r['messages']:,}: last "
                    f"{r['lag_seconds']['last']} s (use --only release without --quick)",
                    target,
                )
            )
        else:
            out.append((figure, "not measured in this run (use --only release)", target))
    rows = sends + releases
    figure = "CPU per message sent, every process"
    target = f"≤ {CPU_TARGET_MS:g} ms"
    for r in rows:
        out.append(
            (
                figure,
                f"{r['ours_cpu_ms_per_message']} ms ({r['kind']}, n={r['messages']:,}: "
                f"{r['cpu_ms_per_message']}; load {_load(r)}) — "
                + _verdict(r["ours_cpu_ms_per_message"] <= CPU_TARGET_MS),
                target,
            )
        )
    if not rows:
        out.append((figure, "not measured in this run (use --only send,release)", target))
    figure = "queries per message sent"
    target = f"≤ {QUERIES_TARGET:g}"
    for r in rows:
        out.append(
            (
                figure,
                f"{r['db_queries_per_message']} ({r['kind']}, n={r['messages']:,}, chunk "
                f"{r['chunk']}) — " + _verdict(r["db_queries_per_message"] <= QUERIES_TARGET),
                target,
            )
        )
    if not rows:
        out.append((figure, "not measured in this run (use --only send,release)", target))
    return out
