"""Each account's throttle: ``MAX_REQUESTS_PER_SECOND`` across processes, never a lost request."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core.cache import cache

from django_clickatell import api
from django_clickatell.conf import ClickatellSettings
from django_clickatell.exceptions import CommandNotSent
from django_clickatell.gateway.backends.rest import RestBackend
from django_clickatell.gateway.throttle import Throttle, Throttled
from django_clickatell.models import GatewayExchange, SendState
from django_clickatell.simulator import ClickatellSimulator


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
