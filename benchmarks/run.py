#!/usr/bin/env python
"""``make bench``: how fast django-clickatell stops N scheduled messages, and what it costs.

Scenarios (see benchmarks/README.md): bulk cancel end to end through the admin
action and real Celery workers at several concurrency levels; cold-start
authentication across processes; the admin action's cost at 100 and 10,000
messages; and client overhead against a bare ``requests.Session`` loop and the
``clickatell`` 0.1.2 package, over plain HTTP and TLS.  Everything talks to the
bundled simulator on 127.0.0.1, running in its own process.

Writes ``benchmarks/results/latest.json``, ``summary.txt`` and ``throughput.png``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
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

from benchmarks.celery_app import COUNTER_KEY  # noqa: E402
from django_clickatell.gateway.client import ClickatellClient  # noqa: E402
from django_clickatell.gateway.transport import reset_transports  # noqa: E402
from django_clickatell.models import CancelState, OutboundMessage  # noqa: E402

SETTLED = [CancelState.CANCELLED, CancelState.TOO_LATE, CancelState.REFUSED, CancelState.GAVE_UP]
CHANGELIST = "/admin/django_clickatell/outboundmessage/"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Simulator:
    """The simulator in its own process, driven through its control endpoints."""

    def __init__(self, *, tls: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "django_clickatell.simulator", "--port", str(self.port)]
        if tls:
            args += ["--certfile", tls[0], "--keyfile", tls[1]]
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        assert self.process.stdout is not None
        self.process.stdout.readline()  # "listening on ..."
        scheme = "https" if tls else "http"
        self.root = f"{scheme}://127.0.0.1:{self.port}/"
        self.base_url = self.root + "http/"
        self.http = requests.Session()
        self.http.trust_env = False  # REQUESTS_CA_BUNDLE would override verify
        self.http.verify = tls[0] if tls else True

    def control(self, action: str, payload: dict[str, Any] | None = None) -> Any:
        response = self.http.post(
            self.root + "_simulator/" + action, json=payload or {}, timeout=60
        )
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.http.close()
        self.process.terminate()
        self.process.wait(timeout=10)
        if self.process.stdout:
            self.process.stdout.close()


class Worker:
    """Real ``celery worker`` processes (prefork) on the Redis broker."""

    def __init__(self, concurrency: int, base_url: str, extra_env: dict[str, str] | None = None):
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
        env = {
            **os.environ,
            "CLICKATELL_BENCH_BASE_URL": base_url,
            "PYTHONPATH": str(ROOT),
            **(extra_env or {}),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "benchmarks.celery_app",
                "worker",
                "--pool=prefork",
                f"--concurrency={concurrency}",
                "--prefetch-multiplier=1",
                "-O",
                "fair",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "--loglevel=WARNING",
                "--hostname=bench@%h",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        app = __import__("benchmarks.celery_app", fromlist=["app"]).app
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if app.control.ping(timeout=0.5):
                return
            if self.process.poll() is not None:
                break
        raise RuntimeError("worker did not start: " + Path(self.log.name).read_text()[-2000:])

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        self.log.close()
        os.unlink(self.log.name)


# -- CPU accounting (Linux /proc) -----------------------------------------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    children = [int(p) for p in out.stdout.split()]
    return [pid] + [d for c in children for d in _descendants(c)]


def _pids_of(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


def cpu_snapshot(worker: int, simulator: int) -> dict[str, float]:
    busy = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in busy]
    return {
        "machine_busy": (sum(values) - values[3] - values[4]) / TICKS,  # minus idle, iowait
        "machine_total": sum(values) / TICKS,
        "workers": sum(_process_cpu(p) for p in _descendants(worker)),
        "simulator": _process_cpu(simulator),
        "postgres": sum(_process_cpu(p) for p in _pids_of("postgres")),
        "redis": sum(_process_cpu(p) for p in _pids_of("redis-server")),
    }


def cpu_report(before: dict[str, float], after: dict[str, float], cancels: int) -> dict[str, Any]:
    delta = {key: after[key] - before[key] for key in before}
    return {
        "machine_utilisation": round(delta["machine_busy"] / max(delta["machine_total"], 1e-9), 3),
        # Every process on the machine, other users' included: an upper bound when shared.
        "machine_cpu_ms_per_cancel": round(delta["machine_busy"] * 1000 / cancels, 3),
        "cpu_ms_per_cancel": {
            role: round(delta[role] * 1000 / cancels, 3)
            for role in ("workers", "simulator", "postgres", "redis")
        },
    }


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


# -- scenario 1 ---------------------------------------------------------------------------


def bulk_cancel(
    simulator: Simulator,
    n: int,
    concurrency: int,
    latency: float,
    *,
    in_flight: int = 16,
    chunk: int = 50,
) -> dict[str, Any]:
    reset_state(simulator, n)
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    worker = Worker(
        concurrency,
        simulator.base_url,
        {"CLICKATELL_BENCH_MAX_IN_FLIGHT": str(in_flight), "CLICKATELL_BENCH_CHUNK": str(chunk)},
    )
    try:
        broker.delete(COUNTER_KEY)
        simulator.control("reset")
        simulator.control("latency", {"seconds": latency})
        client = admin_client()
        cpu_before = cpu_snapshot(worker.process.pid, simulator.process.pid)
        started = time.perf_counter()
        action_seconds, action_queries = run_action(client)
        settled = 0
        while settled < n:
            time.sleep(0.1)
            settled = OutboundMessage.objects.filter(cancel_state__in=SETTLED).count()
            if time.perf_counter() - started > 60 + 5 * n * latency:
                raise RuntimeError(f"only {settled} of {n} settled")
        wall = time.perf_counter() - started
        cpu_after = cpu_snapshot(worker.process.pid, simulator.process.pid)
        stats = simulator.control("stats")
    finally:
        worker.stop()
    cancelled = OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count()
    worker_queries = int(broker.get(COUNTER_KEY) or 0)
    rate = cancelled / wall
    # Requests outstanding at once, machine-wide: processes x requests in flight each.
    ideal = concurrency * in_flight / latency
    gateway_requests = stats["counts"].get("total", 0)
    return {
        "messages": n,
        "concurrency": concurrency,
        "max_in_flight": in_flight,
        "chunk": chunk,
        "load_average": os.getloadavg(),
        "latency_ms": latency * 1000,
        "wall_seconds": round(wall, 2),
        "cancelled": cancelled,
        "cancels_per_second": round(rate, 1),
        "ideal_per_second": round(ideal, 1),
        "efficiency": round(rate / ideal, 3),
        "auth_calls": stats["counts"].get("auth", 0),
        "http_requests_per_cancel": round(gateway_requests / cancelled, 4),
        "tcp_connections": stats["gateway_connections"],
        "db_queries_per_message": round((worker_queries + action_queries) / max(cancelled, 1), 3),
        "admin_action_seconds": round(action_seconds, 3),
        **cpu_report(cpu_before, cpu_after, n),
    }


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


# -- scenario 5: how to keep many requests in flight in one process ---------------------------

RAW_REQUEST = (
    "POST /http/delmsg HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n{body}"
)


async def _raw_asyncio(port: int, body: str, calls: int, width: int) -> None:
    """A bare asyncio HTTP/1.1 keep-alive client: no library, no database (the ceiling)."""
    import asyncio

    request = RAW_REQUEST.format(length=len(body), body=body).encode()
    remaining = [calls]

    async def lane() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while remaining[0] > 0:
            remaining[0] -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
        writer.close()

    await asyncio.gather(*(lane() for _ in range(width)))


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
                asyncio.run(_raw_asyncio(simulator.port, body, calls, width))

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
        "load_average": os.getloadavg(),
        **rows,
    }


# -- report -------------------------------------------------------------------------------


def chart(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = [r["concurrency"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    ax.plot(
        levels,
        [r["ideal_per_second"] for r in rows],
        "--",
        color="grey",
        label="ideal (processes × requests in flight ÷ latency)",
    )
    ax.plot(
        levels,
        [r["cancels_per_second"] for r in rows],
        "o-",
        color="#2b6cb0",
        label="django-clickatell (admin → Celery → simulator)",
    )
    for r in rows:
        ax.annotate(
            f"{r['efficiency']:.0%}",
            (r["concurrency"], r["cancels_per_second"]),
            textcoords="offset points",
            xytext=(6, -12),
            fontsize=8,
        )
    ax.set_xlabel("Celery worker processes (prefork concurrency)")
    ax.set_ylabel("messages cancelled per second")
    ax.set_title(f"Bulk cancel, {rows[0]['latency_ms']:.0f} ms gateway latency")
    ax.set_xticks(levels)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def summary(result: dict[str, Any]) -> str:
    lines = [f"django-clickatell benchmarks — {result['machine']}", ""]
    if result.get("bulk_cancel"):
        lines.append("1. Bulk cancel end to end (admin action → Celery prefork → simulator):")
    for r in result.get("bulk_cancel", []):
        lines.append(
            f"   c={r['concurrency']:>2}x{r['max_in_flight']} n={r['messages']:>5}: "
            f"{r['wall_seconds']:>6.2f} s, {r['cancels_per_second']:>6.1f}/s of ideal "
            f"{r['ideal_per_second']:.0f}/s = {r['efficiency']:.0%}; auth {r['auth_calls']}, "
            f"{r['http_requests_per_cancel']} req/cancel, {r['tcp_connections']} TCP conns, "
            f"{r['db_queries_per_message']} queries/msg; machine CPU "
            f"{r['machine_utilisation']:.0%}, CPU ms/cancel {r['cpu_ms_per_cancel']}, "
            f"load {_load(r)}"
        )
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
    for r in result.get("client_overhead", []):
        ms = r["ms_per_call"]
        lines.append(
            f"4. Client overhead ({'TLS' if r['tls'] else 'plain HTTP'}), ms/call: ours "
            f"{ms['django_clickatell']}, bare session {ms['bare_requests_session']}, clickatell "
            f"{ms['clickatell_0_1_2']} → ours/bare {r['ratio_ours_to_bare']}×, "
            f"ours/clickatell {r['ratio_ours_to_clickatell']}×; TCP conns per round "
            f"{r['tcp_connections_per_round']}"
        )
    for r in result.get("high_latency", []):
        lines.append(
            f"5. {r['latency_ms']:.0f} ms latency, {r['concurrency']} processes × "
            f"{r['max_in_flight']} in flight, chunks of {r['chunk']}: {r['messages']} in "
            f"{r['wall_seconds']} s = {r['cancels_per_second']}/s (ideal "
            f"{r['ideal_per_second']:.0f}/s, {r['efficiency']:.0%}); auth {r['auth_calls']}, "
            f"{r['http_requests_per_cancel']} req/cancel, {r['db_queries_per_message']} "
            f"queries/msg, machine CPU {r['machine_cpu_ms_per_cancel']} ms/cancel; "
            f"load {_load(r)}"
        )
    for r in result.get("mechanism", []):
        lines.append(
            f"6. {r['width']} in flight in one process at {r['latency_ms']:.0f} ms, no DB: "
            f"threads+requests {r['threads_requests']}; raw asyncio {r['raw_asyncio']}; "
            f"load {_load(r)}"
        )
    lines.extend(targets(result))
    return "\n".join(lines) + "\n"


def _load(row: dict[str, Any]) -> str:
    return "/".join(f"{value:.1f}" for value in row.get("load_average", ()))


def targets(result: dict[str, Any]) -> list[str]:
    """Issue 15's figures this run measured, each next to its target."""
    rows = []
    for r in result.get("high_latency", []):
        seconds_100k = r["wall_seconds"] * 100_000 / r["messages"]
        how = "measured" if r["messages"] >= 100_000 else f"extrapolated from {r['messages']:,}"
        rows.append(
            f"   100,000 cancels at {r['latency_ms']:.0f} ms, {r['concurrency']} processes: "
            f"{seconds_100k:.0f} s ({how})  target ≤ 200 s (≥ 500/s)"
        )
        rows.append(
            f"   DB queries per cancelled message: {r['db_queries_per_message']}  target ≤ 0.2"
        )
        rows.append(
            f"   whole-machine CPU per cancel: {r['machine_cpu_ms_per_cancel']} ms "
            f"(every process, other users' too; load {_load(r)})  target ≤ 2.5 ms"
        )
        rows.append(
            f"   auth per run / requests per cancel: {r['auth_calls']} / "
            f"{r['http_requests_per_cancel']}  target 1 / 1.0001"
        )
    return ["", "Targets (issue 15):", *rows] if rows else []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small numbers, for a smoke run")
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", default="2,4,8,16")
    parser.add_argument("--in-flight", type=int, default=16, help="MAX_IN_FLIGHT of the workers")
    parser.add_argument(
        "--high-latency-messages",
        type=int,
        default=100_000,
        help="messages in the 200 ms scenario (fewer: the 100,000 figure is extrapolated)",
    )
    parser.add_argument("--high-in-flight", type=int, default=32)
    parser.add_argument("--high-chunk", type=int, default=1000, help="TASK_CHUNK_SIZE at 200 ms")
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated scenarios to run: bulk,cold,admin,client,high,mechanism",
    )
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    big = 1000 if args.quick else 10_000
    levels = [int(c) for c in args.concurrency.split(",")]
    only = set(filter(None, args.only.split(",")))

    def wanted(name: str) -> bool:
        return not only or name in only

    RESULTS.mkdir(parents=True, exist_ok=True)
    prepare_database()
    result: dict[str, Any] = {
        "machine": (
            f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}"
        ),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    if wanted("mechanism"):
        print("in flight per process: threads against raw asyncio ...", flush=True)
        result["mechanism"] = [
            in_flight_mechanism(0.2, 32, 200 if args.quick else 960),
            in_flight_mechanism(0.02, 16, 400 if args.quick else 2000),
        ]
        print("   ", result["mechanism"], flush=True)
    simulator = Simulator()
    try:
        if wanted("high"):
            n = 2000 if args.quick else args.high_latency_messages
            print(f"200 ms latency: {n} messages, 4 processes ...", flush=True)
            result["high_latency"] = [
                bulk_cancel(
                    simulator, n, 4, 0.2, in_flight=args.high_in_flight, chunk=args.high_chunk
                )
            ]
            print("   ", result["high_latency"], flush=True)
        rows = []
        for c in levels if wanted("bulk") else []:
            n = big if c >= 8 else max(big // 5, 200)
            print(f"bulk cancel: {n} messages, concurrency {c} ...", flush=True)
            rows.append(bulk_cancel(simulator, n, c, latency, in_flight=args.in_flight))
            print("   ", rows[-1], flush=True)
        result["bulk_cancel"] = rows
        if wanted("cold"):
            print("cold start ...", flush=True)
            result["cold_start"] = cold_start(simulator)
        if wanted("admin"):
            print("admin action scaling ...", flush=True)
            result["admin_action"] = admin_scaling(simulator, (100, big))
    finally:
        simulator.stop()
    if wanted("client"):
        calls = 200 if args.quick else 1000
        print("client overhead ...", flush=True)
        result["client_overhead"] = [client_overhead(calls, 3, None)]
        with throwaway_certificate() as tls:
            result["client_overhead"].append(client_overhead(calls, 3, tls))

    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2))
    text = summary(result)
    (RESULTS / "summary.txt").write_text(text)
    if result["bulk_cancel"]:
        try:
            chart(result["bulk_cancel"], RESULTS / "throughput.png")
        except ImportError:  # matplotlib: installed by `make bench`
            print("No chart: matplotlib is not installed (make bench installs it)")
    print(text)
    print(f"Results in {RESULTS.relative_to(ROOT)}/ (latest.json, summary.txt, throughput.png)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
