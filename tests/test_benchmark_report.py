"""``benchmarks/run.py --report``: a saved run's send and release rows against issue 20's targets.

The scenarios themselves start worker processes and take minutes (the lead runs them);
this renders saved rows through the runner as a subprocess (its own Django and Celery
app, nothing started, no database touched) and checks that every target of issue 20 is
printed with its verdict, or "not measured" where the run did not measure it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def row(kind: str, messages: int, *, rate: float, last_lag: float = 0.0) -> dict[str, Any]:
    """A row as ``benchmarks/sending.py`` saves it (the figures are made up)."""
    out: dict[str, Any] = {
        "kind": kind,
        "messages": messages,
        "concurrency": 4,
        "max_in_flight": 32,
        "in_flight_total": 128,
        "chunk": 50,
        "chunk_is_default": True,
        "latency_ms": 200.0,
        "load_average": [[2.8, 2.6, 3.1], [2.9, 2.6, 3.1]],
        "wall_seconds": 10.0,
        "sent": messages,
        "states": {"sent": messages},
        "per_second": rate,
        "ideal_per_second": 640.0,
        "efficiency": round(rate / 640, 3),
        "ceiling": {"per_second": 600.0, "share_of_ideal": 0.94, "load_average": [2.8]},
        "share_of_ceiling": round(rate / 600, 3),
        "duplicates": 0,
        "send_requests": messages,
        "messages_per_request": 1.0,
        "auth_calls": 1,
        "tcp_connections": 128,
        "requests_with_secret_in_url": 0,
        "db_queries_per_message": 0.25,
        "settings": {},
        "cpu_ms_per_message": {"workers": 1.2, "postgres": 0.3, "simulator": 0.3},
        "ours_cpu_ms_per_message": 1.9,
        "machine_cpu_ms_per_message": 3.0,
        "machine_utilisation": 0.7,
        "postgres_backends": 20,
    }
    if kind == "release":
        out["release_interval_seconds"] = 1
        out["lag_seconds"] = {
            "first": 1.5,
            "p50": last_lag / 2,
            "p99": last_lag * 0.99,
            "last": last_lag,
            "accepted": messages,
        }
    return out


def report(tmp_path: Path, result: dict[str, Any]) -> str:
    saved = tmp_path / "latest.json"
    saved.write_text(json.dumps({"machine": "test: 2 cores", **result}))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "benchmarks.settings"}
    done = subprocess.run(
        [sys.executable, "benchmarks/run.py", "--report", str(saved)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_send_and_release_rows_stand_next_to_their_targets(tmp_path: Path) -> None:
    result = {
        "send": [row("send", 5000, rate=520.0)],
        "release": [row("release", 5000, rate=400.0, last_lag=12.5)],
    }
    text = report(tmp_path, result)
    targets = text.split("Targets (issue 20")[1]
    assert "legacy sends, 5,000 sent now" in targets
    assert "520.0/s, 0 duplicates at n=5,000" in targets
    assert "— met" in targets
    assert "last 12.5 s" in targets
    assert "MISSED" in targets
    # 100,000 was not run: said so, with the size that was.
    assert "not measured at 100,000 in this run; at 5,000: last 12.5 s" in targets
    assert "One API callback events, 50 per POST" in targets
    assert "not measured in this run (use --only callbacks)" in targets
    # The scenario's own lines: the lag figures and the ceiling.
    assert "p50 6.25 s" in text
    assert "ceiling 600.0/s" in text


def test_a_run_without_them_says_not_measured(tmp_path: Path) -> None:
    text = report(tmp_path, {})
    targets = text.split("Targets (issue 20")[1]
    assert "not measured in this run (use --only send)" in targets
    assert targets.count("not measured in this run (use --only release)") == 2
    assert "not measured in this run (use --only send,release)" in targets
    assert "Targets (issue 15): none of its scenarios ran" in text
