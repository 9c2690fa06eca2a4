"""Each account's throttle: at most ``MAX_REQUESTS_PER_SECOND`` requests, across every process.

Clickatell limits how fast an account may call it (the One API answers ``429``,
error 43, beyond its limit); many worker processes, each with ``MAX_IN_FLIGHT``
requests outstanding, exceed any limit easily.  The throttle counts the
account's requests per wall-clock second in the shared cache (one atomic
``incr`` per request), so every process of every machine sharing the cache
keeps to the one limit.

A request over the limit waits for the next second -- but never longer than
``wait_limit`` in all: past it the request is not made and the caller gets
:class:`CommandNotSent` (nothing was carried out; the run stops and its task
retries later), so a throttle never eats a run's lease.  Should the cache be
unreachable, the throttle falls back to counting in this process alone: a
cache outage slows nothing down and never blocks sending.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
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


class Throttle:
    """At most *rate* requests a second for one account (``0``: no limit)."""

    def __init__(
        self,
        cache: Any,
        key: str,
        rate: int,
        *,
        account: str = "default",
        wait_limit: float = DEFAULT_WAIT_LIMIT,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cache, self.key, self.rate, self.account = cache, key, rate, account
        self.wait_limit, self.clock, self.sleep = wait_limit, clock, sleep
        self._lock = threading.Lock()
        self._local: dict[int, int] = {}

    def acquire(self, command: str) -> None:
        """Wait for this request's turn, or raise :class:`CommandNotSent` (nothing was sent)."""
        if not self.rate:
            return
        waited = 0.0
        while True:
            now = self.clock()
            second = int(now)
            if self._count(second) <= self.rate:
                return
            pause = second + 1 - now
            if waited + pause > self.wait_limit:
                raise CommandNotSent(command, Throttled(self.account, self.rate))
            self.sleep(pause)
            waited += pause

    def _count(self, second: int) -> int:
        """This request's number within *second*, counted across processes where possible."""
        key = f"{self.key}:{second}"
        try:
            self.cache.add(key, 0, timeout=5)
            return int(self.cache.incr(key))
        except Exception:  # the cache is down or evicted the key: count here alone
            logger.warning("Throttle of account %r counts in this process only", self.account)
            with self._lock:
                for old in [s for s in self._local if s < second]:
                    del self._local[old]
                self._local[second] = self._local.get(second, 0) + 1
                return self._local[second]
