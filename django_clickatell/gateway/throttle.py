"""Each account's throttle: at most ``MAX_REQUESTS_PER_SECOND`` requests, across every process.

Clickatell limits how fast an account may call it (the One API answers ``429``,
error 43, beyond its limit); many worker processes, each with ``MAX_IN_FLIGHT``
requests outstanding, exceed any limit easily.  The throttle counts the
account's requests per wall-clock second in the shared cache (one atomic
``incr`` per request), so every process of every machine sharing the cache
keeps to the one limit.

A request over the limit waits for its turn -- but never longer than
``wait_limit`` in all: past it the request is not made and the caller gets
:class:`CommandNotSent` (nothing was carried out; the run stops and its task
retries later), so a throttle never eats a run's lease.

**Without the cache** no process can know what the others send.  Each process
then counts on its own, in one counter per account shared by every backend
object and thread of the process (backends are built afresh for every task run,
so a counter held by the backend would count nothing), and keeps to its share
of the limit: ``MAX_REQUESTS_PER_SECOND / THROTTLE_PROCESSES`` a second, where
``THROTTLE_PROCESSES`` is how many processes the operator runs (default 1: each
process keeps to the whole limit).  A share below one request a second becomes
one request per window of several seconds, so the average stays within the
limit.  The outage is logged once per account and process when it starts (saying
what this process now keeps to) and once when the cache answers again -- never
once per request.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..exceptions import CommandNotSent, TransientError

logger = logging.getLogger("django_clickatell.gateway")

#: How long one request may wait for its turn before it is given up as not sent.
DEFAULT_WAIT_LIMIT = 5.0


class Throttled(TransientError):
    """The account's own throttle held the request back longer than a run may wait."""

    def __init__(self, account: str, rate: int) -> None:
        self.account = account
        self.rate = rate
        super().__init__(
            f"account {account!r} is at its MAX_REQUESTS_PER_SECOND ({rate}); asked again later"
        )


@dataclass(frozen=True)
class Share:
    """What one process keeps to while the cache is down: *requests* per *window* seconds.

    The limit divided by the processes, rounded down so that the processes
    together never exceed it on average; at least one request per window.
    """

    requests: int
    window: int

    @classmethod
    def of(cls, rate: int, processes: int) -> Share:
        window = max(1, math.ceil(processes / rate))
        return cls(max(1, rate * window // processes), window)

    def __str__(self) -> str:
        if self.window == 1:
            return f"{self.requests} request{'s' if self.requests > 1 else ''} a second"
        return f"{self.requests} request{'s' if self.requests > 1 else ''} every {self.window} s"


class _ProcessCounts:
    """This process's own count of each account's requests, for while the cache is down.

    One instance for the whole process (:data:`_PROCESS_COUNTS`), keyed by the
    account's throttle key: every backend object and every thread of the process
    counts in it.  It also remembers which accounts' caches are down, so the
    outage is logged when it starts and ends, not for every request.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, tuple[int, int]] = {}  # key -> (window number, requests in it)
        self._down: set[str] = set()

    def take(self, key: str, now: float, share: Share) -> float:
        """Count one request now if *share* leaves room: 0.0, else seconds until the next window."""
        window = int(now // share.window)
        with self._lock:
            number, used = self._counts.get(key, (window, 0))
            if number != window:
                used = 0
            if used < share.requests:
                self._counts[key] = (window, used + 1)
                return 0.0
            self._counts[key] = (window, used)
        return (window + 1) * share.window - now

    def went_down(self, key: str) -> bool:
        """Mark *key*'s cache down; whether it was up until now (the outage starts)."""
        with self._lock:
            if key in self._down:
                return False
            self._down.add(key)
            return True

    def came_back(self, key: str) -> bool:
        """Mark *key*'s cache up; whether it was down until now (the outage ends)."""
        if key not in self._down:  # the common path: no lock
            return False
        with self._lock:
            if key not in self._down:
                return False
            self._down.discard(key)
            self._counts.pop(key, None)
            return True

    def clear(self) -> None:
        """Forget every count and outage (for tests that simulate separate processes)."""
        with self._lock:
            self._counts.clear()
            self._down.clear()


_PROCESS_COUNTS = _ProcessCounts()


class Throttle:
    """At most *rate* requests a second for one account (``0``: no limit).

    *key* names the account's counters (in the cache, and in this process while
    the cache is down); *processes* is ``THROTTLE_PROCESSES``, read only while
    the cache is down (see the module's docstring).  Cheap to build: everything
    that must outlive a backend object lives in the cache or in the process.
    """

    def __init__(
        self,
        cache: Any,
        key: str,
        rate: int,
        *,
        account: str = "default",
        processes: int = 1,
        wait_limit: float = DEFAULT_WAIT_LIMIT,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cache, self.key, self.rate, self.account = cache, key, rate, account
        self.processes = processes
        self.wait_limit, self.clock, self.sleep = wait_limit, clock, sleep

    @property
    def share(self) -> Share:
        """What this process keeps to while the cache is down."""
        return Share.of(self.rate, self.processes)

    def acquire(self, command: str) -> None:
        """Wait for this request's turn, or raise :class:`CommandNotSent` (nothing was sent)."""
        if not self.rate:
            return
        waited = 0.0
        while True:
            pause = self._turn(self.clock())
            if not pause:
                return
            if waited + pause > self.wait_limit:
                raise CommandNotSent(command, Throttled(self.account, self.rate))
            self.sleep(pause)
            waited += pause

    def _turn(self, now: float) -> float:
        """0.0 if a request may be made *now* (it is counted), else how long to wait."""
        second = int(now)
        try:
            count = self._shared_count(second)
        except Exception as exc:  # the cache is down: count in this process alone
            if _PROCESS_COUNTS.went_down(self.key):
                logger.warning(
                    "Throttle of account %r: the cache is unreachable (%s). Until it answers "
                    "again this process counts the account's requests on its own and keeps "
                    "to %s (MAX_REQUESTS_PER_SECOND %d / THROTTLE_PROCESSES %d); processes "
                    "cannot see each other's requests, so more processes than "
                    "THROTTLE_PROCESSES together exceed the limit.",
                    self.account,
                    type(exc).__name__,
                    self.share,
                    self.rate,
                    self.processes,
                )
            # Read the clock again: a cache that refuses slowly (the first connection
            # attempt) would otherwise count this request in a second already gone.
            return _PROCESS_COUNTS.take(self.key, self.clock(), self.share)
        if _PROCESS_COUNTS.came_back(self.key):
            logger.info(
                "Throttle of account %r: the cache answers again; requests are counted "
                "across every process again.",
                self.account,
            )
        return 0.0 if count <= self.rate else second + 1 - now

    def _shared_count(self, second: int) -> int:
        """This request's number within *second*, counted in the cache across processes."""
        key = f"{self.key}:{second}"
        self.cache.add(key, 0, timeout=5)
        try:
            return int(self.cache.incr(key))
        except ValueError:  # evicted between add and incr: not an outage; add it again, once
            self.cache.add(key, 0, timeout=5)
            return int(self.cache.incr(key))
