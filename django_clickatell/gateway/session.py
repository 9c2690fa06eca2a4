"""One Clickatell session id shared by every thread and process, kept in the Django cache.

Authentication is single-flight: a lock taken with ``cache.add`` (atomic on
Redis and Memcached) lets exactly one caller run ``auth`` while the others wait
for the id to appear.  The lock expires on its own, so a crashed holder blocks
nobody for longer than ``AUTH_LOCK_TIMEOUT``.  Every write of the id happens
under that lock, which is what makes "replace the id only if it is still the
one that failed" safe without a compare-and-delete primitive.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from django.core.cache.backends.base import BaseCache

from ..exceptions import AuthenticationError, SessionUnavailable

logger = logging.getLogger("django_clickatell.session")

_FIRST_POLL = 0.01
_MAX_POLL = 0.2


class _GuardedCache:
    """The cache, with its failures (Redis down, timeouts) turned into a transient error.

    A cancellation that cannot reach the shared session must stop and retry
    later like any other transient failure, not crash with a backend exception.
    """

    def __init__(self, cache: BaseCache) -> None:
        self._cache = cache

    def __getattr__(self, name: str) -> Callable[..., object]:
        method = getattr(self._cache, name)

        def guarded(*args: object, **kwargs: object) -> object:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                raise SessionUnavailable(
                    f"The session cache is unreachable ({type(exc).__name__})"
                ) from exc

        return guarded


@dataclass(frozen=True)
class SessionPolicy:
    ttl: int
    touch_interval: int
    memo_seconds: float
    lock_timeout: float
    wait_timeout: float
    failure_ttl: int


class SessionStore:
    """Cache-backed session ids for one Clickatell account."""

    def __init__(
        self,
        cache: BaseCache,
        *,
        namespace: str,
        prefix: str,
        policy: SessionPolicy,
        authenticate: Callable[[], str],
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        digest = hashlib.sha256(namespace.encode()).hexdigest()[:20]
        self.session_key = f"{prefix}:{digest}:session"
        self.lock_key = f"{prefix}:{digest}:auth-lock"
        self.failure_key = f"{prefix}:{digest}:auth-failure"
        self.cache: Any = _GuardedCache(cache)
        self.policy = policy
        self._authenticate = authenticate
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"<SessionStore {self.session_key}>"

    def get(self) -> str:
        """A live session id, authenticating (once, across processes) if none is cached.

        The id read from the shared cache is memoised in this process for a few
        seconds, saving a cache round trip per command.  If another process
        renewed it meanwhile, the gateway answers ERR 003 to the old one and
        :meth:`renew` picks up the new id from the cache: one extra request,
        never an extra ``auth``.
        """
        memo = _memo.get(self.session_key)
        now = self._clock()
        if memo is not None and now < memo[1]:
            return memo[0]
        session_id = self.cache.get(self.session_key)
        if session_id:
            self._remember(str(session_id), now)
            return str(session_id)
        return self._obtain(stale=None)

    def _remember(self, session_id: str, now: float) -> None:
        if self.policy.memo_seconds:
            _memo[self.session_key] = (
                session_id,
                now + min(self.policy.memo_seconds, self.policy.ttl / 2),
            )

    def renew(self, stale: str | None) -> str:
        """Replace *stale* (the id the gateway just refused) unless someone already has."""
        _memo.pop(self.session_key, None)
        return self._obtain(stale=stale)

    def touch(self, session_id: str) -> None:
        """Slide the cached id's lifetime forward; Clickatell just saw it used.

        Throttled per process: the cache entry always expires before the
        gateway's 15-minute idle window, so touching less often only costs an
        earlier re-auth, never a dead session.
        """
        now = self._clock()
        last = _last_touch.get(self.session_key)
        if (
            last is not None
            and last[0] == hash(session_id)
            and now - last[1] < self.policy.touch_interval
        ):
            return
        try:
            touched = self.cache.touch(self.session_key, self.policy.ttl)
        except SessionUnavailable as exc:
            # The command already succeeded; the cached id just expires a little sooner.
            logger.warning("Could not extend the cached session: %s", exc)
            return
        if touched:
            _last_touch[self.session_key] = (hash(session_id), now)

    def forget(self) -> None:
        self.cache.delete_many([self.session_key, self.failure_key])
        _last_touch.pop(self.session_key, None)
        _memo.pop(self.session_key, None)

    def _obtain(self, stale: str | None) -> str:
        deadline = self._clock() + self.policy.wait_timeout
        poll = _FIRST_POLL
        while True:
            current = self._usable(self.cache.get_many([self.session_key, self.failure_key]), stale)
            if current:
                self._remember(current, self._clock())
                return current
            token = uuid.uuid4().hex
            if self.cache.add(self.lock_key, token, timeout=self.policy.lock_timeout):
                try:
                    return self._authenticate_locked(stale)
                finally:
                    self._release(token)
            if self._clock() >= deadline:
                raise SessionUnavailable(
                    "Timed out waiting for another process to authenticate with Clickatell"
                )
            self._sleep(poll)
            poll = min(poll * 1.6, _MAX_POLL)

    def _usable(self, values: dict[str, object], stale: str | None) -> str | None:
        failure = values.get(self.failure_key)
        if failure is not None:
            code, description = cast("tuple[int | None, str]", failure)
            raise AuthenticationError(code, description, command="auth")
        current = values.get(self.session_key)
        if current and current != stale:
            return str(current)
        return None

    def _authenticate_locked(self, stale: str | None) -> str:
        # Another holder may have finished between our read and our lock.
        current = self._usable(self.cache.get_many([self.session_key, self.failure_key]), stale)
        if current:
            return current
        try:
            session_id = self._authenticate()
        except AuthenticationError as exc:
            if self.policy.failure_ttl:
                self.cache.set(
                    self.failure_key, (exc.code, exc.description), timeout=self.policy.failure_ttl
                )
            raise
        self.cache.set(self.session_key, session_id, timeout=self.policy.ttl)
        _last_touch[self.session_key] = (hash(session_id), self._clock())
        self._remember(session_id, self._clock())
        logger.info("Authenticated with Clickatell; new session cached")
        return session_id

    def _release(self, token: str) -> None:
        try:
            if self.cache.get(self.lock_key) == token:
                self.cache.delete(self.lock_key)
        except SessionUnavailable as exc:
            logger.warning("Could not release the auth lock (it expires by itself): %s", exc)


# key -> (hash of the session id, monotonic time of its last touch), per process.
_last_touch: dict[str, tuple[int, float]] = {}
# key -> (session id, monotonic expiry), per process; see SessionStore.get.
_memo: dict[str, tuple[str, float]] = {}


def forget_local_sessions() -> None:
    """Drop this process's memoised session ids (after ``fork``, and between tests)."""
    _memo.clear()
    _last_touch.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forget_local_sessions)
