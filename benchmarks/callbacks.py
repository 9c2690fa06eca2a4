"""The ``callbacks`` scenario: a sent campaign's status callbacks against a real gunicorn.

Issue 20 item 4: a campaign comes back as two or three callbacks per message,
within minutes.  *messages* messages (20,000 by default) are created sent, then
each gets ``003`` and ``004`` (``SENT_TO_SUPPLIER`` and ``DEVICE_ACK`` on the One
API), pushed by an asyncio driver over *connections* connections (32) to gunicorn
with 4 ``sync`` workers and the settings of docs/deployment.rst
(:mod:`benchmarks.callback_settings`: persistent connections):

* ``legacy``: one form POST per callback to ``callback/``;
* ``one_api``: JSON POSTs of *per_post* events (50) to ``one-api/<account>/<secret>/``;
* ``legacy`` again at ``CONN_MAX_AGE = 0`` (Django's default, what ``W010`` warns
  about), unless ``with_default_connections`` is off.

Each row: callbacks (events) per second, CPU per callback by role (gunicorn's
processes, every PostgreSQL backend of the database, the driver), commits per
callback (PostgreSQL's own ``xact_commit``), statements per callback (one request
through Django's test client, captured), and a check that every message ends
``004`` with one exchange row per callback.  The driver shares the machine: its
CPU is reported, not hidden.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext

from benchmarks import callback_settings as deployed
from django_clickatell.models import GatewayExchange, OutboundMessage, SendState, UnmatchedCallback
from django_clickatell.services.callbacks import receive_callback, receive_json_callback

ROOT = Path(__file__).resolve().parent.parent
#: gunicorn's sync workers: 4, as issue 20 measured (``CLICKATELL_BENCH_GUNICORN_WORKERS``
#: tries others: a worker waiting for its commit's WAL flush uses no CPU).
WORKERS = int(os.environ.get("CLICKATELL_BENCH_GUNICORN_WORKERS", "4"))
T0_MS = 1_700_000_000_000
LEGACY_PATH = "/clickatell/callback/"
JSON_PATH = f"/clickatell/one-api/{deployed.ONE_API_ACCOUNT}/{deployed.CALLBACK_SECRET}/"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """``gunicorn -w 4 --worker-class sync`` serving :mod:`benchmarks.wsgi`."""

    def __init__(self, conn_max_age: int) -> None:
        self.port = _free_port()
        self.log = tempfile.NamedTemporaryFile("w+", suffix=".log", delete=False)  # noqa: SIM115
        env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "DJANGO_SETTINGS_MODULE": "benchmarks.callback_settings",
            "CLICKATELL_BENCH_CONN_MAX_AGE": str(conn_max_age),
        }
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                f"--workers={WORKERS}",
                "--worker-class=sync",
                f"--bind=127.0.0.1:{self.port}",
                "--backlog=2048",
                "--log-level=warning",
                "benchmarks.wsgi:application",
            ],
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    time.sleep(1.0)  # the workers boot after the master binds
                    return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.2)
        raise RuntimeError("gunicorn did not start: " + Path(self.log.name).read_text()[-2000:])

    def stop(self) -> None:
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()
        self.log.close()
        os.unlink(self.log.name)


def _request(path: str, body: bytes, content_type: str, auth: str | None) -> bytes:
    head = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",
    ]
    if auth:
        head.append(f"Authorization: Basic {auth}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


async def _push(port: int, requests: Sequence[bytes], connections: int) -> list[int]:
    """Send every request, *connections* at a time; the HTTP status of each."""
    statuses = [0] * len(requests)
    cursor = iter(range(len(requests)))

    async def lane() -> None:
        for index in cursor:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(requests[index])
            await writer.drain()
            answer = await reader.read()
            writer.close()
            statuses[index] = int(answer.split(b" ", 2)[1]) if answer else 0

    await asyncio.gather(*(lane() for _ in range(connections)))
    return statuses


def _legacy_requests(ids: Sequence[str]) -> list[bytes]:
    auth = base64.b64encode(
        f"{deployed.CALLBACK_USER}:{deployed.CALLBACK_PASSWORD}".encode()
    ).decode()
    out = []
    for status, offset in (("003", 0), ("004", 60)):
        for apimsgid in ids:
            form = {
                "api_id": settings.CLICKATELL["API_ID"],
                "apiMsgId": apimsgid,
                "cliMsgId": "",
                "to": "27999000001",
                "timestamp": str(T0_MS // 1000 + offset),
                "status": status,
            }
            body = urlencode(form).encode()
            out.append(_request(LEGACY_PATH, body, "application/x-www-form-urlencoded", auth))
    return out


def _json_bodies(ids: Sequence[str], per_post: int) -> list[bytes]:
    out = []
    for status, offset in (("SENT_TO_SUPPLIER", 0), ("DEVICE_ACK", 60_000)):
        for start in range(0, len(ids), per_post):
            events = [
                {"messageId": apimsgid, "status": status, "timestamp": T0_MS + offset}
                for apimsgid in ids[start : start + per_post]
            ]
            out.append(json.dumps({"event": {"messageStatusUpdate": events}}).encode())
    return out


def _reset(messages: int, account: str) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE django_clickatell_gatewayexchange, django_clickatell_outboundmessage, "
            "django_clickatell_unmatchedcallback, django_clickatell_cancellationbatch "
            "RESTART IDENTITY CASCADE"
        )
    ids = [f"{number:032x}" for number in range(1, messages + 1)]
    OutboundMessage.objects.bulk_create(
        [
            OutboundMessage(
                apimsgid=apimsgid,
                climsgid=f"c{number}",
                recipient=f"2799{number:08d}",
                account=account,
                send_state=SendState.SENT,
            )
            for number, apimsgid in enumerate(ids)
        ],
        batch_size=2000,
    )
    return ids


def _commits() -> int:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(cursor.fetchone()[0])


def statements_per_callback(per_post: int) -> dict[str, Any]:
    """Statements of one legacy callback (applied, then a duplicate) and one JSON POST."""
    ids = _reset(per_post, "default")
    out: dict[str, Any] = {}
    api_id = str(settings.CLICKATELL["API_ID"])
    params = {
        "api_id": api_id,
        "apiMsgId": ids[0],
        "timestamp": str(T0_MS // 1000),
        "status": "003",
    }
    for label in ("legacy_applied", "legacy_duplicate"):
        with CaptureQueriesContext(connection) as queries:
            receive_callback(params, api_id=api_id, account="default")
        out[label] = _count(queries.captured_queries)
    OutboundMessage.objects.update(account=deployed.ONE_API_ACCOUNT)
    [post] = _json_bodies(ids, per_post)[1:2]
    with CaptureQueriesContext(connection) as queries:
        receive_json_callback(deployed.ONE_API_ACCOUNT, post)
    out[f"one_api_post_of_{per_post}"] = _count(queries.captured_queries)
    return out


def _count(queries: list[dict[str, Any]]) -> dict[str, int]:
    verbs = [query["sql"].split()[0].upper() for query in queries]
    return {
        "statements": sum(verb not in ("BEGIN", "COMMIT") for verb in verbs),
        "commits": max(verbs.count("COMMIT"), 1 if verbs else 0),
    }


def run_one(
    kind: str,
    messages: int,
    *,
    conn_max_age: int,
    per_post: int,
    connections: int,
    meter: Callable[[], Any],
    cpu_of: Callable[[int], float],
) -> dict[str, Any]:
    """One row: *messages* messages' 003 and 004 callbacks, of *kind* (legacy or one_api)."""
    account = "default" if kind == "legacy" else deployed.ONE_API_ACCOUNT
    ids = _reset(messages, account)
    if kind == "legacy":
        requests = _legacy_requests(ids)
        callbacks = len(requests)
    else:
        requests = [
            _request(JSON_PATH, body, "application/json", None)
            for body in _json_bodies(ids, per_post)
        ]
        callbacks = 2 * messages
    server = Gunicorn(conn_max_age)
    try:
        asyncio.run(_push(server.port, requests[:WORKERS], WORKERS))  # warm every worker
        warm = len(requests[:WORKERS])
        load_before = [round(value, 2) for value in os.getloadavg()]
        commits_before = _commits()
        postgres = meter()
        postgres.start()
        gunicorn_before = cpu_of(server.process.pid)
        driver_before = time.process_time()
        started = time.perf_counter()
        statuses = asyncio.run(_push(server.port, requests[warm:], connections))
        wall = time.perf_counter() - started
        driver_cpu = time.process_time() - driver_before
        gunicorn_cpu = cpu_of(server.process.pid) - gunicorn_before
        postgres_cpu = postgres.stop()
    finally:
        server.stop()
    # A backend publishes its counters when it exits (or, idle, every few seconds): read
    # them once gunicorn's persistent connections are closed.
    time.sleep(1.5)
    commits = _commits() - commits_before - 1  # less the driver's own look
    measured = callbacks - (warm if kind == "legacy" else warm * per_post)
    refused = sum(status != 200 for status in statuses)
    stored = OutboundMessage.objects.filter(status="004").count()
    logged = GatewayExchange.objects.filter(command="callback").count()
    return {
        "kind": kind,
        "messages": messages,
        "events_per_post": 1 if kind == "legacy" else per_post,
        "conn_max_age": conn_max_age,
        "gunicorn_workers": WORKERS,
        "connections": connections,
        "callbacks": measured,
        "posts": len(statuses),
        "wall_seconds": round(wall, 2),
        "callbacks_per_second": round(measured / wall, 1),
        "cpu_ms_per_callback": {
            "gunicorn": round(gunicorn_cpu * 1000 / measured, 3),
            "postgres": round(postgres_cpu["seconds"] * 1000 / measured, 3),
            "driver": round((driver_cpu - postgres_cpu["meter_cpu"]) * 1000 / measured, 3),
        },
        "server_cpu_ms_per_callback": round(
            (gunicorn_cpu + postgres_cpu["seconds"]) * 1000 / measured, 3
        ),
        "postgres_backends": postgres_cpu["backends"],
        "commits_per_callback": round(commits / measured, 3),
        "refused_posts": refused,
        "correct": stored == messages and logged == callbacks and refused == 0,
        "ended_004": stored,
        "exchange_rows": logged,
        "unmatched": UnmatchedCallback.objects.count(),
        "load_average": [load_before, [round(value, 2) for value in os.getloadavg()]],
    }


def scenario(
    messages: int,
    *,
    per_post: int = 50,
    connections: int = 32,
    with_default_connections: bool = True,
    meter: Callable[[], Any],
    cpu_of: Callable[[int], float],
) -> dict[str, Any]:
    """Every row of the scenario, and the statements per callback."""
    rows = [
        run_one(
            kind,
            messages,
            conn_max_age=600,
            per_post=per_post,
            connections=connections,
            meter=meter,
            cpu_of=cpu_of,
        )
        for kind in ("legacy", "one_api")
    ]
    if with_default_connections:
        rows.append(
            run_one(
                "legacy",
                messages,
                conn_max_age=0,
                per_post=per_post,
                connections=connections,
                meter=meter,
                cpu_of=cpu_of,
            )
        )
    return {"rows": rows, "statements": statements_per_callback(per_post)}


def describe(result: dict[str, Any]) -> list[str]:
    lines = [f"Callbacks against gunicorn ({WORKERS} sync workers; 003 then 004 per message):"]
    for r in result["rows"]:
        what = "legacy" if r["kind"] == "legacy" else f"One API, {r['events_per_post']}/POST"
        cpu = r["cpu_ms_per_callback"]
        lines.append(
            f"   {what}, CONN_MAX_AGE {r['conn_max_age']}: {r['callbacks']} callbacks in "
            f"{r['wall_seconds']} s = {r['callbacks_per_second']}/s; CPU ms/callback server "
            f"{r['server_cpu_ms_per_callback']} (gunicorn {cpu['gunicorn']}, PostgreSQL "
            f"{cpu['postgres']}; driver {cpu['driver']}); commits/callback "
            f"{r['commits_per_callback']}; correct {r['correct']}; load {r['load_average']}"
        )
    lines.append(f"   statements: {result['statements']}")
    return lines


#: Issue 20's targets for this scenario: (kind, CONN_MAX_AGE, figure, target per second).
TARGETS = (
    ("legacy", 600, "legacy callbacks, 4 gunicorn workers, persistent connections", 800),
    ("one_api", 600, "One API callback events, 50 per POST", 3000),
)


def targets(result: dict[str, Any] | None) -> list[tuple[str, str, str]]:
    """(figure, measured, target) rows for the run's Targets table."""
    out = []
    for kind, max_age, figure, target in TARGETS:
        rows = [
            r
            for r in (result or {}).get("rows", ())
            if r["kind"] == kind and r["conn_max_age"] == max_age
        ]
        measured = "not measured in this run (use --only callbacks)"
        if rows:
            rate = rows[0]["callbacks_per_second"]
            verdict = "met" if rate >= target else "MISSED"
            measured = f"{rate}/s ({verdict}, {rows[0]['messages']} messages)"
        out.append((figure, measured, f"≥ {target}/s"))
    return out
