"""The cache-backed session: single-flight across threads and processes, on the real Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache

from django_clickatell.exceptions import AuthenticationError, CommandNotSent, SessionUnavailable
from django_clickatell.gateway.client import ClickatellClient
from django_clickatell.simulator import ClickatellSimulator

ROOT = Path(__file__).resolve().parent.parent


def test_sixteen_cold_threads_authenticate_once(simulator: ClickatellSimulator) -> None:
    barrier = threading.Barrier(16)

    def work() -> None:
        barrier.wait()
        ClickatellClient().ping()

    with simulator.latency_of(0.2), ThreadPoolExecutor(16) as pool:
        for future in [pool.submit(work) for _ in range(16)]:
            future.result()
    assert simulator.counts["auth"] == 1
    assert simulator.counts["ping"] == 16


CHILD = textwrap.dedent(
    """
    import os, sys, threading, time
    import django
    django.setup()
    from django_clickatell.gateway.client import ClickatellClient
    start = float(sys.argv[1])
    threads = [threading.Thread(target=lambda: ClickatellClient().ping()) for _ in range(8)]
    time.sleep(max(0.0, start - time.time()))
    for t in threads: t.start()
    for t in threads: t.join()
    print("done")
    """
)


def test_two_processes_share_one_session(simulator: ClickatellSimulator) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "CLICKATELL_TEST_BASE_URL": simulator.base_url,
        "PYTHONPATH": str(ROOT),
    }
    start = time.time() + 3.0
    with simulator.latency_of(0.3):
        children = [
            subprocess.Popen(
                [sys.executable, "-c", CHILD, str(start)],
                env=env,
                cwd=ROOT,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        outputs = [child.communicate(timeout=60) for child in children]
    for child, (out, err) in zip(children, outputs, strict=True):
        assert child.returncode == 0, err
        assert out.strip() == "done"
    assert simulator.counts["auth"] == 1
    assert simulator.counts["ping"] == 16


def test_expiry_mid_use_reauthenticates_once(simulator: ClickatellSimulator) -> None:
    client = ClickatellClient()
    apimsgid = simulator.add_message()
    client.ping()
    simulator.expire_sessions()  # as if 15 idle minutes had passed at the gateway
    assert client.delmsg(apimsgid=apimsgid).status == "006"
    assert simulator.counts["auth"] == 2
    assert simulator.counts["delmsg"] == 2


def test_real_inactivity_expiry(simulator: ClickatellSimulator) -> None:
    simulator.session_idle_timeout = 0.3
    try:
        client = ClickatellClient()
        client.ping()
        time.sleep(0.5)
        client.ping()
    finally:
        simulator.session_idle_timeout = 900
    assert simulator.counts["auth"] == 2


def test_concurrent_expiry_renews_once(simulator: ClickatellSimulator) -> None:
    ClickatellClient().ping()
    simulator.expire_sessions()
    barrier = threading.Barrier(8)

    def work() -> None:
        barrier.wait()
        ClickatellClient().ping()

    with simulator.latency_of(0.1), ThreadPoolExecutor(8) as pool:
        for future in [pool.submit(work) for _ in range(8)]:
            future.result()
    assert simulator.counts["auth"] == 2


def test_renew_keeps_a_fresher_session(simulator: ClickatellSimulator) -> None:
    store = ClickatellClient().sessions
    first = store.get()
    second = store.renew(stale=first)
    assert second != first
    # A slow caller that saw `first` fail must not replace `second`.
    assert store.renew(stale=first) == second
    assert simulator.counts["auth"] == 2


def test_sliding_lifetime(simulator: ClickatellSimulator, settings: Any) -> None:
    import redis

    settings.CLICKATELL = {**settings.CLICKATELL, "SESSION_TTL": 5, "SESSION_TOUCH_INTERVAL": 1}
    client = ClickatellClient()
    client.ping()
    raw = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    key = cache.make_key(client.sessions.session_key)
    time.sleep(2.1)
    assert raw.ttl(key) <= 3
    client.ping()
    assert raw.ttl(key) >= 4
    assert simulator.counts["auth"] == 1


def test_crashed_lock_holder_blocks_only_until_lock_timeout(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "TIMEOUT": (0.3, 0.3),  # a lock of 1 s must outlive one login request (x1.5)
        "AUTH_LOCK_TIMEOUT": 1,
        "AUTH_WAIT_TIMEOUT": 5,
    }
    store = ClickatellClient().sessions
    cache.add(store.lock_key, "holder-that-died", timeout=1)
    started = time.monotonic()
    ClickatellClient().ping()
    assert 0.8 < time.monotonic() - started < 4
    assert simulator.counts["auth"] == 1


def test_waiting_for_a_stuck_holder_times_out(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "AUTH_LOCK_TIMEOUT": 30, "AUTH_WAIT_TIMEOUT": 0.5}
    store = ClickatellClient().sessions
    cache.add(store.lock_key, "stuck", timeout=30)
    with pytest.raises(CommandNotSent) as info:
        ClickatellClient().ping()
    assert isinstance(info.value.cause, SessionUnavailable)
    assert simulator.counts["auth"] == 0
    assert simulator.counts["ping"] == 0


def test_revoked_credentials_fail_fast_for_all_waiters(simulator: ClickatellSimulator) -> None:
    simulator.change_password("rotated")
    errors: list[CommandNotSent] = []

    def work() -> None:
        try:
            ClickatellClient().ping()
        except CommandNotSent as exc:
            errors.append(exc)

    with simulator.latency_of(0.1), ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda _: work(), range(8)))
    assert len(errors) == 8
    assert {e.code for e in errors} == {1}
    assert all(isinstance(e.cause, AuthenticationError) for e in errors)
    assert simulator.counts["auth"] == 1
    assert simulator.counts["ping"] == 0
