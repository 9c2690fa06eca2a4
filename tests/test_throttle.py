"""Each account's throttle: ``MAX_REQUESTS_PER_SECOND`` across processes, never a lost request."""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter as Tally
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.cache import cache

from django_clickatell import api
from django_clickatell.conf import ClickatellSettings
from django_clickatell.exceptions import CommandNotSent
from django_clickatell.gateway import throttle as throttle_module
from django_clickatell.gateway.backends.rest import RestBackend
from django_clickatell.gateway.throttle import Share, Throttle, Throttled
from django_clickatell.models import GatewayExchange, SendState
from django_clickatell.simulator import ClickatellSimulator

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def fresh_process_counts() -> Iterator[None]:
    """Each test starts as a fresh process would: no count kept, no outage remembered."""
    throttle_module._PROCESS_COUNTS.clear()
    yield
    throttle_module._PROCESS_COUNTS.clear()


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port bound but never listening: every connection to it is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def busiest_second(stamps: list[float]) -> int:
    """The most requests made in one wall-clock second."""
    return max(Tally(int(stamp) for stamp in stamps).values(), default=0)


class FakeTime:
    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += seconds


class Counter:
    """A cache with add/incr, like Django's; ``down`` makes every call fail."""

    def __init__(self) -> None:
        self.values: dict[str, int] = {}
        self.down = False

    def add(self, key: str, value: int, timeout: float) -> bool:
        if self.down:
            raise ConnectionError("cache down")
        return self.values.setdefault(key, value) == value

    def incr(self, key: str) -> int:
        if self.down:
            raise ConnectionError("cache down")
        self.values[key] += 1
        return self.values[key]


def throttle(rate: int, fake: FakeTime, store: Any = None, **kwargs: Any) -> Throttle:
    return Throttle(store or Counter(), "t", rate, clock=fake.clock, sleep=fake.sleep, **kwargs)


def test_requests_over_the_rate_wait_for_the_next_second() -> None:
    fake = FakeTime(100.25)
    gate = throttle(3, fake)
    for _ in range(7):
        gate.acquire("delmsg")
    assert fake.slept == [0.75, 1.0]  # 3 at 100.25, 3 at 101.0, 1 at 102.0
    assert fake.now == 102.0


def test_processes_sharing_the_cache_share_the_rate() -> None:
    fake, shared = FakeTime(50.5), Counter()
    first, second = throttle(2, fake, shared), throttle(2, fake, shared)
    first.acquire("delmsg")
    second.acquire("delmsg")
    second.acquire("delmsg")  # the third this second, whoever asks: waits
    assert fake.slept == [0.5]


def test_a_request_held_back_too_long_is_not_sent() -> None:
    fake, shared = FakeTime(10.0), Counter()
    shared.values["t:10"] = 5
    shared.values["t:11"] = 5
    gate = throttle(5, fake, shared, wait_limit=1.5)
    with pytest.raises(CommandNotSent) as caught:
        gate.acquire("sendmsg")
    assert isinstance(caught.value.cause, Throttled)
    assert "MAX_REQUESTS_PER_SECOND (5)" in str(caught.value)
    assert fake.slept == [1.0]  # waited once; the next wait would pass the limit


def test_no_rate_no_throttle() -> None:
    fake = FakeTime(1.0)
    gate = throttle(0, fake)
    for _ in range(1000):
        gate.acquire("delmsg")
    assert fake.slept == []


def test_a_cache_outage_counts_in_this_process_and_blocks_nothing() -> None:
    fake, shared = FakeTime(7.5), Counter()
    shared.down = True
    gate = throttle(2, fake, shared)
    for _ in range(3):
        gate.acquire("delmsg")
    assert fake.slept == [0.5]


@pytest.mark.django_db
def test_two_backends_of_one_account_keep_to_its_rate_at_the_simulator(
    simulator: ClickatellSimulator, redis_cache: None
) -> None:
    """Real Redis, real HTTP: two backends (as two processes would) share 5 a second."""
    config = ClickatellSettings({**simulator.rest_settings(), "MAX_REQUESTS_PER_SECOND": 5})
    backends = [RestBackend(config), RestBackend(config)]
    started = time.monotonic()
    for number in range(12):
        backends[number % 2].balance()
    # 12 requests at 5 a second span three wall-clock seconds: at least one whole second.
    assert time.monotonic() - started > 1.0
    assert simulator.counts["getbalance"] == 12


@pytest.mark.django_db
def test_a_throttled_send_is_not_sent_and_stays_queued(
    simulator: ClickatellSimulator, settings: Any, redis_cache: None
) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "MAX_REQUESTS_PER_SECOND": 1}
    now = int(time.time())
    prefix = f"{settings.CLICKATELL.get('CACHE_KEY_PREFIX', 'django_clickatell')}:throttle:default"
    for second in range(now, now + 8):  # every second of the next few is taken already
        cache.set(f"{prefix}:{second}", 1, timeout=30)
    [message] = api.send_sms("27999000009", "hi", wait=True)
    message.refresh_from_db()
    assert message.send_state == SendState.QUEUED  # nothing left Django: simply still queued
    [exchange] = GatewayExchange.objects.filter(message=message)
    assert exchange.outcome == GatewayExchange.Outcome.NOT_SENT
    assert simulator.counts["sendmsg"] == 0


# -- without the cache (issue 19, item 6) ----------------------------------------------------


def test_a_process_share_of_the_limit() -> None:
    assert Share.of(5, 1) == Share(5, 1)
    assert Share.of(5, 2) == Share(2, 1)  # rounded down: 2 x 2 <= 5
    assert Share.of(5, 8) == Share(1, 2)  # 8 processes x 1 per 2 s = 4 a second on average
    assert Share.of(1, 3) == Share(1, 3)
    assert str(Share(5, 1)) == "5 requests a second"
    assert str(Share(1, 2)) == "1 request every 2 s"


def test_throttles_built_afresh_share_one_count_in_the_process_while_the_cache_is_down() -> None:
    """A backend (and its throttle) is built for every task run: the count must outlive it."""
    fake, shared = FakeTime(20.0), Counter()
    shared.down = True
    for _ in range(7):
        throttle(3, fake, shared).acquire("sendmsg")
    assert fake.slept == [1.0, 1.0]  # 3 at 20, 3 at 21, 1 at 22


def test_each_process_keeps_to_its_share_of_the_limit_while_the_cache_is_down() -> None:
    fake, shared = FakeTime(30.0), Counter()
    shared.down = True
    for _ in range(3):  # 4 a second over 2 processes: 2 each
        throttle(4, fake, shared, processes=2).acquire("sendmsg")
    assert fake.slept == [1.0]
    fake, shared = FakeTime(40.5), Counter()
    shared.down = True
    for _ in range(2):  # 1 a second over 3 processes: 1 every 3 s each
        throttle(1, fake, shared, processes=3).acquire("sendmsg")
    assert fake.slept == [1.5]  # the next 3-second window starts at 42


def test_a_slow_refusal_counts_the_request_when_it_is_made() -> None:
    """A cache that takes its time to refuse must not move a request into a second gone."""
    fake = FakeTime(9.95)

    class SlowToRefuse(Counter):
        def add(self, key: str, value: int, timeout: float) -> bool:
            fake.now += 0.1  # the first connection attempt, refused after a while
            raise ConnectionError("cache down")

    gate = throttle(2, fake, SlowToRefuse())
    stamps = []
    for _ in range(3):
        gate.acquire("sendmsg")
        stamps.append(fake.now)
    assert busiest_second(stamps) <= 2


def test_the_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    fake, shared = FakeTime(60.0), Counter()
    caplog.set_level(logging.INFO, logger="django_clickatell.gateway")
    shared.down = True
    for _ in range(20):
        throttle(100, fake, shared, processes=4).acquire("sendmsg")
    [down] = caplog.records
    assert down.levelno == logging.WARNING
    assert "cache is unreachable (ConnectionError)" in down.getMessage()
    assert "keeps to 25 requests a second" in down.getMessage()
    assert "MAX_REQUESTS_PER_SECOND 100 / THROTTLE_PROCESSES 4" in down.getMessage()
    caplog.clear()
    shared.down = False
    for _ in range(5):
        throttle(100, fake, shared).acquire("sendmsg")
    [back] = caplog.records
    assert "answers again" in back.getMessage()
    caplog.clear()
    shared.down = True
    throttle(100, fake, shared).acquire("sendmsg")
    assert len(caplog.records) == 1  # a new outage is told again


@pytest.mark.django_db
def test_many_backends_in_one_process_keep_to_the_limit_when_the_cache_is_down(
    simulator: ClickatellSimulator,
    settings: Any,
    closed_port: int,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Real HTTP, a real Redis cache client at a refused port, four threads, and a new
    backend for every request (as every task run builds its own): 5 a second, not 5 each."""
    settings.CACHES = {
        **settings.CACHES,
        "down": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port}/0",
        },
    }
    config = ClickatellSettings(
        {**simulator.rest_settings(), "MAX_REQUESTS_PER_SECOND": 5, "CACHE_ALIAS": "down"}
    )
    caplog.set_level(logging.WARNING, logger="django_clickatell.gateway")
    stamps: list[float] = []  # when each request was let through, for the per-second count
    lock = threading.Lock()
    acquire = Throttle.acquire

    def noted(gate: Throttle, command: str) -> None:
        acquire(gate, command)
        with lock:
            stamps.append(time.time())

    monkeypatch.setattr(Throttle, "acquire", noted)
    until = time.time() + 2.2

    def sender() -> None:
        while time.time() < until:
            try:
                RestBackend(config).balance()
            except CommandNotSent:
                continue

    threads = [threading.Thread(target=sender) for _ in range(4)]
    started = time.time()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds_touched = int(time.time()) - int(started) + 1
    made = simulator.counts["getbalance"]
    assert made == len(stamps)
    assert 5 <= made <= 5 * seconds_touched  # the old per-object count let hundreds through
    assert busiest_second(stamps) <= 5 + 1  # margin: a thread preempted after its turn
    warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1  # once per outage, not per request or per backend


SENDER = """
import json, sys, time
import django
from django.conf import settings

port, rate, processes, start_at, until = sys.argv[1:]
settings.configure(
    CACHES={"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                        "LOCATION": f"redis://127.0.0.1:{port}/0"}},
    CLICKATELL={"BACKEND": "rest", "API_KEY": "key", "BASE_URL": "http://127.0.0.1:9/rest/",
                "MAX_REQUESTS_PER_SECOND": int(rate), "THROTTLE_PROCESSES": int(processes)},
)
django.setup()
from django_clickatell.conf import ClickatellSettings
from django_clickatell.exceptions import CommandNotSent
from django_clickatell.gateway.backends.rest import RestBackend

stamps = []
time.sleep(max(0.0, float(start_at) - time.time()))
until = max(float(until), time.time() + 2.0)  # a process that started late still sends
while time.time() < until:
    try:  # every request on a backend of its own, as every task run builds one
        RestBackend(ClickatellSettings()).throttle.acquire("sendmsg")
    except CommandNotSent:
        continue
    stamps.append(time.time())
print(json.dumps(stamps))
"""


def test_processes_keep_together_to_the_limit_when_the_cache_is_down(closed_port: int) -> None:
    """Three real processes, THROTTLE_PROCESSES 3, 6 a second: at most 6 a second in all.

    Before, each process counted per backend object and made thousands a second.
    """
    rate, processes = 6, 3
    start_at = time.time() + 4.0  # time for each interpreter to start on a loaded machine
    until = start_at + 3.0
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    args = [str(closed_port), str(rate), str(processes), str(start_at), str(until)]
    children = [
        subprocess.Popen(
            [sys.executable, "-c", SENDER, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for _ in range(processes)
    ]
    stamps: list[float] = []
    logs: list[str] = []
    each: list[list[tuple[int, int]]] = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err[-2000:]
        own = json.loads(out)
        stamps += own
        each.append(sorted(Tally(int(stamp) for stamp in own).items()))
        logs.append(err)
    assert stamps, "no process made a request"
    seconds_touched = int(max(stamps)) - int(min(stamps)) + 1
    assert len(stamps) <= rate * seconds_touched + 2
    assert busiest_second(stamps) <= rate + 2, each  # margin: a process preempted mid-request
    for err in logs:  # each process said once what it keeps to
        assert err.count("unreachable") == 1
        assert "keeps to 2 requests a second" in err
