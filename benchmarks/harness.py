"""What every end-to-end scenario shares: the simulator and Celery workers as processes, and CPU
read per process from ``/proc`` (PostgreSQL from every backend of the benchmark's database).

Imported by :mod:`benchmarks.run` once Django is set up, and by the scenario modules
(:mod:`benchmarks.sending`).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent


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

    def __init__(
        self, concurrency: int, base_url: str, extra_env: dict[str, str] | None = None
    ) -> None:
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


def process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False)
    children = [int(p) for p in out.stdout.split()]
    return [pid] + [d for c in children for d in descendants(c)]


def pids_of(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, check=False)
    return [int(p) for p in out.stdout.split()]


class PostgresMeter:
    """CPU of every PostgreSQL backend of the benchmark's database, including those that exited.

    With ``CONN_MAX_AGE=0`` each task's backend exits when the task ends, so two
    snapshots (before, after) miss nearly all of them.  ``pg_stat_statements``
    would need ``shared_preload_libraries`` (a server restart, on a server other
    engineers share) and counts statement time, not the backend's start-up and
    connection work; a persistent connection would change what is measured.  So a
    thread reads ``/proc`` every *interval* seconds: each ``postgres`` process
    whose command line names the database is remembered with the last CPU time
    read; a backend alive at ``start()`` counts from its reading then.  What a
    backend spends after its last reading (at most *interval* of its life, its
    exit) is missed; ``backends`` says how many were seen.  The driver's own
    backend (polling for progress) is left out.  Shared processes (WAL writer,
    checkpointer) are not attributable to one database and are not counted.
    """

    def __init__(self, database: str, *, exclude: set[int], interval: float = 0.02) -> None:
        self.marker = f" {database} "
        self.exclude = exclude
        self.interval = interval
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.others: set[int] = set()
        self.own_cpu = 0.0  # this thread's CPU: the measurement's cost, not the system's
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _ours(self, pid: int) -> bool:
        if pid in self.last:
            return True
        if pid in self.others or pid in self.exclude:
            return False
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() != "postgres":
                self.others.add(pid)
                return False
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return False
        if not cmdline.startswith("postgres:"):
            return False  # the postmaster, or a backend not yet past its startup packet
        if self.marker in cmdline:
            return True
        self.others.add(pid)  # another database's backend, or a shared background process
        return False

    def _sample(self, *, baseline: bool) -> None:
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if not self._ours(pid):
                continue
            value = process_cpu(pid)
            if value <= 0 and pid not in self.last:
                continue
            if pid not in self.first:
                self.first[pid] = value if baseline else 0.0
            self.last[pid] = max(value, self.last.get(pid, 0.0))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample(baseline=False)
        self.own_cpu = time.thread_time()

    def start(self) -> None:
        self._sample(baseline=True)
        self._thread.start()

    def stop(self) -> dict[str, float]:
        self._stop.set()
        self._thread.join()
        self._sample(baseline=False)
        return {
            "seconds": sum(self.last[pid] - self.first[pid] for pid in self.last),
            "backends": len(self.last),
            "meter_cpu": self.own_cpu,
        }


def cpu_snapshot(worker: int, simulator: int) -> dict[str, Any]:
    busy = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    values = [int(v) for v in busy]
    return {
        "machine_busy": (sum(values) - values[3] - values[4]) / TICKS,  # minus idle, iowait
        "machine_total": sum(values) / TICKS,
        "workers": sum(process_cpu(p) for p in descendants(worker)),
        "simulator": process_cpu(simulator),
        # Per process: another user's redis-server may start or stop during the run.
        "redis": {p: process_cpu(p) for p in pids_of("redis-server")},
        "driver": time.process_time(),
    }


def cpu_report(
    before: dict[str, Any], after: dict[str, Any], postgres: dict[str, float], cancels: int
) -> dict[str, Any]:
    """CPU per cancel by role; ``ours`` is every process of the system under test.

    ``redis`` is the whole server, other engineers' databases included (an upper
    bound when shared); ``driver`` is this process (the admin action, polling), less
    the PostgreSQL meter's own thread.
    ``machine`` is every process on the machine, other users' too: an upper bound.
    """
    delta = {key: after[key] - before[key] for key in before if key != "redis"}
    delta["redis"] = sum(
        after["redis"][pid] - before["redis"][pid]
        for pid in after["redis"]
        if pid in before["redis"]
    )
    delta["postgres"] = postgres["seconds"]
    delta["driver"] -= postgres["meter_cpu"]
    roles = ("workers", "simulator", "postgres", "redis", "driver")
    per_cancel = {role: round(delta[role] * 1000 / cancels, 3) for role in roles}
    return {
        "machine_utilisation": round(delta["machine_busy"] / max(delta["machine_total"], 1e-9), 3),
        "machine_cpu_ms_per_cancel": round(delta["machine_busy"] * 1000 / cancels, 3),
        "ours_cpu_ms_per_cancel": round(sum(delta[r] for r in roles) * 1000 / cancels, 3),
        "cpu_ms_per_cancel": per_cancel,
        "postgres_backends": postgres["backends"],
    }


def loadavg() -> list[float]:
    return [round(value, 2) for value in os.getloadavg()]
