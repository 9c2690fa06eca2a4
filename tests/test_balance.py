"""The balance: one cached value for every process, failures remembered, the admin never waits.

Against the simulator over real HTTP and the real Redis cache; the cross-process
test runs real processes with different hash seeds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

from django_clickatell.services import balance
from django_clickatell.simulator import ClickatellSimulator, Fault
from tests.conftest import PASSWORD, ROOT

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:django_clickatell_outboundmessage_changelist")


@pytest.fixture(autouse=True)
def no_fetch_outlives_its_test() -> Iterator[None]:
    """A background fetch left running would write into the next test's cache."""
    yield
    for thread in threading.enumerate():
        if thread.name.startswith("clickatell-balance"):
            thread.join(timeout=30)


def wait_for_fetches(timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if thread.name.startswith("clickatell-balance"):
            thread.join(timeout=max(deadline - time.monotonic(), 0))


def django_process(simulator: ClickatellSimulator, hash_seed: str, *args: str) -> str:
    env = {
        **os.environ,
        "CLICKATELL_TEST_BASE_URL": simulator.base_url,
        "PYTHONPATH": str(ROOT),
        "PYTHONHASHSEED": hash_seed,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


@pytest.fixture
def own_balance(simulator: ClickatellSimulator) -> Iterator[ClickatellSimulator]:
    """The session-wide simulator, its balance put back afterwards."""
    before = simulator.balance
    yield simulator
    simulator.balance = before


def test_processes_share_the_cached_balance(own_balance: ClickatellSimulator) -> None:
    """``hash()`` is salted per process: the key must not be (two real processes)."""
    simulator = own_balance
    simulator.balance = Decimal("4321.5")
    first = django_process(simulator, "1", "clickatell_balance")
    assert first.strip() == "Credit: 4321.5"
    assert simulator.counts["getbalance"] == 1
    simulator.balance = Decimal("1")  # a second fetch would show this
    script = (
        "from django_clickatell.services.balance import get_balance; "
        "print(f'cached {get_balance()}')"
    )
    second = django_process(simulator, "2", "shell", "--verbosity=0", "-c", script)
    assert second.strip() == "cached 4321.5"
    assert balance.get_balance() == Decimal("4321.5")  # and this one
    assert simulator.counts["getbalance"] == 1


@pytest.mark.parametrize(
    ("break_it", "reason"),
    [
        (lambda sim: sim.inject(Fault("http_502", command="getbalance")), "HTTP 502"),
        (lambda sim: sim.inject(Fault("malformed", command="getbalance")), "unreadable reply"),
        (lambda sim: sim.change_password("rotated"), "credentials refused"),
        (
            lambda sim: sim.inject(
                Fault("body", command="getbalance", body=f"ERR: 105, echo pwd={PASSWORD}")
            ),
            "Clickatell error 105",
        ),
    ],
    ids=["http-502", "unreadable", "credentials", "gateway-error"],
)
def test_failure_is_remembered_with_its_reason(
    simulator: ClickatellSimulator,
    monkeypatch: pytest.MonkeyPatch,
    break_it: Any,
    reason: str,
) -> None:
    monkeypatch.setattr(balance, "FAILURE_MEMORY_SECONDS", 1)
    break_it(simulator)
    first = balance.balance_for_display()
    assert first.credit is None
    assert reason in str(first.reason)
    requests = simulator.counts["total"]
    again = balance.balance_for_display()
    assert again.credit is None
    assert str(again.reason) == str(first.reason)
    assert simulator.counts["total"] == requests  # remembered: not asked again
    assert_no_secret_in_cache()


def test_failure_is_remembered_briefly(
    simulator: ClickatellSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(balance, "FAILURE_MEMORY_SECONDS", 1)
    simulator.inject(Fault("http_502", command="getbalance"))
    assert balance.balance_for_display().credit is None
    assert balance.balance_for_display().credit is None
    assert simulator.counts["getbalance"] == 1
    time.sleep(1.2)
    assert balance.balance_for_display().credit == Decimal("1000.0")
    assert simulator.counts["getbalance"] == 2


def test_unreachable_gateway_reason(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "BASE_URL": "http://127.0.0.1:9/http/"}
    reading = balance.balance_for_display()
    assert reading.credit is None
    assert str(reading.reason) == "gateway unreachable"


def assert_no_secret_in_cache() -> None:
    client = redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])
    for key in client.keys("*"):
        value = client.get(key) or b""
        assert PASSWORD.encode() not in value, key
        assert PASSWORD.encode() not in key


def test_slow_gateway_never_makes_the_admin_wait(
    admin_client: Client, simulator: ClickatellSimulator
) -> None:
    """One fetch at a time; pages wait a short bounded time, then say why there is no credit."""
    simulator.inject(Fault("delay", command="getbalance", delay=3.0, times=5))
    timings = []
    pages = []
    for _ in range(3):
        started = time.monotonic()
        response = admin_client.get(CHANGELIST)
        timings.append(time.monotonic() - started)
        assert response.status_code == 200
        pages.append(response.content.decode())
    assert timings[0] < 2.0, timings  # a short bounded wait, not the 5 s read timeout
    assert max(timings[1:]) < 0.5, timings  # the fetch is under way: nobody waits for it
    assert "unavailable right now (still being fetched)" in pages[1]
    assert simulator.counts["getbalance"] == 1  # single flight
    wait_for_fetches()
    # The delayed reply never came (the simulator hung up): remembered, shown with its reason.
    started = time.monotonic()
    page = admin_client.get(CHANGELIST).content.decode()
    assert time.monotonic() - started < 0.5
    assert "unavailable right now (gateway unreachable)" in page
    assert simulator.counts["getbalance"] == 1


def test_concurrent_pages_make_one_fetch(simulator: ClickatellSimulator) -> None:
    simulator.latency = 0.3
    readings: list[balance.BalanceReading] = []

    def look() -> None:
        readings.append(balance.balance_for_display(wait=2.0))

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wait_for_fetches()
    assert simulator.counts["getbalance"] == 1
    assert any(reading.credit == Decimal("1000.0") for reading in readings)
    assert balance.balance_for_display().credit == Decimal("1000.0")
    assert simulator.counts["getbalance"] == 1


def test_fetched_balance_is_shown_at_once(
    admin_client: Client, simulator: ClickatellSimulator
) -> None:
    assert "Clickatell credit: 1000.0" in admin_client.get(CHANGELIST).content.decode()
    assert "Clickatell credit: 1000.0" in admin_client.get(CHANGELIST).content.decode()
    assert simulator.counts["getbalance"] == 1


def test_cache_down_shows_reason_without_asking(
    simulator: ClickatellSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django.core.cache import caches

    cache = caches["default"]

    def down(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionError("cache down")

    monkeypatch.setattr(cache, "get_many", down)
    monkeypatch.setattr(cache, "add", down)
    reading = balance.balance_for_display()
    assert (reading.credit, str(reading.reason)) == (None, "cache unreachable")
    assert simulator.counts["total"] == 0
