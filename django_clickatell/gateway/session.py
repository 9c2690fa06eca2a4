"""One Clickatell session id per set of credentials, shared by every thread and process.

Authentication is single-flight: a lock taken with ``cache.add`` (atomic on
Redis and Memcached) lets exactly one caller run ``auth`` while the others wait
for the id to appear.  The lock expires on its own, so a crashed holder blocks
nobody for longer than ``AUTH_LOCK_TIMEOUT``.  Every write of the id happens
under that lock, which is what makes "replace the id only if it is still the
one that failed" safe without a compare-and-delete primitive.

Everything cached is keyed by a *fingerprint* of the credentials used (see
:mod:`.sealing`): a host with a stale password has cache entries of its own,
so its refused login can neither evict nor block the session that hosts with
the right password share.  The cache never holds a usable secret: the session
id is sealed (encrypted, then authenticated) with keys that need both
``SECRET_KEY`` and the password, and a remembered login failure keeps only the
code and a redacted description (:mod:`.failure_memory`).
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.core.cache.backends.base import BaseCache
from django.views.decorators.debug import sensitive_variables

from ..conf import AUTH_POLL_MAX
from ..exceptions import AuthenticationError, SessionUnavailable
from ..protocol.redaction import Secret
from .failure_memory import failure_entry, remembered_failure
from .sealing import SessionKeys

logger = logging.getLogger("django_clickatell.session")

_FIRST_POLL = 0.01


class _GuardedCache:
    """The cache, with its failures (Redis down, timeouts) turned into a transient error.

    A cancellation that cannot reach the shared session must stop and retry
    later like any other transient failure, not crash with a backend exception.
    The backend's exception is not chained: its frames hold the cache command's
    arguments, and only the type name is needed to diagnose the outage.
    """

    def __init__(self, cache: BaseCache) -> None:
        self._cache = cache

    def __getattr__(self, name: str) -> Callable[..., object]:
        method = getattr(self._cache, name)

        def guarded(*args: object, **kwargs: object) -> object:
            try:
                return method(*args, **kwargs)
            except Exception as exc:
                failure = SessionUnavailable(
                    f"The session cache is unreachable ({type(exc).__name__})"
                )
            raise failure

        return guarded


@dataclass(frozen=True)
class SessionPolicy:
    """The session settings a store needs (``SESSION_*`` and ``AUTH_*``), in seconds."""

    ttl: int
    touch_interval: int
    memo_seconds: float
    lock_timeout: float
    wait_timeout: float
    failure_ttl: int


class SessionStore:
    """Cache-backed session ids for one set of credentials."""

    def __init__(
        self,
        cache: BaseCache,
        *,
        keys: SessionKeys,
        prefix: str,
        policy: SessionPolicy,
        authenticate: Callable[[], Secret],
        secrets: Iterable[Secret] = (),
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.session_key = f"{prefix}:{keys.fingerprint}:session"
        self.lock_key = f"{prefix}:{keys.fingerprint}:auth-lock"
        self.failure_key = f"{prefix}:{keys.fingerprint}:auth-failure"
        self.keys = keys
        self.cache: Any = _GuardedCache(cache)
        self.policy = policy
        self._authenticate = authenticate
        self._secrets = tuple(secrets)
        self._clock = clock
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"<SessionStore {self.session_key}>"

    @sensitive_variables("memo", "session_id")
    def get(self) -> Secret:
        """A live session id, authenticating (once, across processes) if none is cached.

        The id read from the shared cache is memoised in this process for a few
        seconds, saving a cache round trip per command.  If another process
        renewed it meanwhile, the gateway answers ERR 003 to the old one and
        :meth:`renew` picks up the new id from the cache: one extra request,
        never an extra ``auth``.  A cached session wins over a remembered login
        failure: the id may still work, and the gateway is the judge of that.
        """
        memo = _memo.get(self.session_key)
        now = self._clock()
        if memo is not None and now < memo[1]:
            return memo[0]
        session_id = self.keys.open(self.cache.get(self.session_key))
        if session_id:
            self._remember(session_id, now)
            return session_id
        return self._obtain(stale=None)

    @sensitive_variables("session_id")
    def _remember(self, session_id: Secret, now: float) -> None:
        if self.policy.memo_seconds:
            _memo[self.session_key] = (
                session_id,
                now + min(self.policy.memo_seconds, self.policy.ttl / 2),
            )

    @sensitive_variables("stale")
    def renew(self, stale: Secret | None) -> Secret:
        """Replace *stale* (the id the gateway just refused) unless someone already has."""
        _memo.pop(self.session_key, None)
        return self._obtain(stale=stale)

    @sensitive_variables("session_id")
    def touch(self, session_id: Secret) -> None:
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
        """Drop this credentials' cached session and failure (never another's)."""
        self.cache.delete_many([self.session_key, self.failure_key])
        _last_touch.pop(self.session_key, None)
        _memo.pop(self.session_key, None)

    @sensitive_variables("session_id")
    def replace(self) -> Secret:
        """Log in now, whatever is cached (``clickatell_auth``): the explicit check.

        Waits for the single-flight lock like any login.  On success the new id
        replaces this credentials' cached one and clears a remembered failure; a
        refusal is remembered but leaves a cached id alone (it may still work,
        and the gateway will say so if not).
        """
        token = self._acquire_lock()
        try:
            return self._login()
        finally:
            self._release(token)

    @sensitive_variables("stale", "current")
    def _obtain(self, stale: Secret | None) -> Secret:
        try:
            return self._obtain_once(stale)
        except AuthenticationError:
            if stale is not None:
                self._forget_dead(stale)
            raise

    @sensitive_variables("stale", "current")
    def _forget_dead(self, stale: Secret) -> None:
        """Clickatell refused *stale* and no new login succeeded: drop it, if still cached.

        Otherwise every later call would send its command with an id known to be
        dead, meet ERR 003 and find the refusal remembered -- a wasted request
        each time.  Done under the single-flight lock, which guards every write.
        """
        token = self._try_lock()
        if token is None:
            return  # someone is logging in; their result replaces it anyway
        try:
            current = self.keys.open(self.cache.get(self.session_key))
            if current is not None and current == stale:
                self.cache.delete(self.session_key)
                _memo.pop(self.session_key, None)
        finally:
            self._release(token)

    def _obtain_once(self, stale: Secret | None) -> Secret:
        deadline, poll = self._clock() + self.policy.wait_timeout, _FIRST_POLL
        while True:
            current = self._usable(stale)
            if current:
                self._remember(current, self._clock())
                return current
            token = self._try_lock()
            if token is not None:
                try:
                    return self._authenticate_locked(stale)
                finally:
                    self._release(token)
            poll = self._wait_for_lock(deadline, poll)

    def _acquire_lock(self) -> str:
        deadline, poll = self._clock() + self.policy.wait_timeout, _FIRST_POLL
        while (token := self._try_lock()) is None:
            poll = self._wait_for_lock(deadline, poll)
        return token

    def _try_lock(self) -> str | None:
        """The single-flight lock's token if this call took it, else ``None``."""
        token = uuid.uuid4().hex
        if self.cache.add(self.lock_key, token, timeout=self.policy.lock_timeout):
            return token
        return None

    def _wait_for_lock(self, deadline: float, poll: float) -> float:
        """Sleep *poll* seconds before the next try, or give up past *deadline*; the next poll."""
        if self._clock() >= deadline:
            raise SessionUnavailable(
                "Timed out waiting for another process to authenticate with Clickatell"
            )
        self._sleep(poll)
        return min(poll * 1.6, AUTH_POLL_MAX)

    @sensitive_variables("stale", "values", "current")
    def _usable(self, stale: Secret | None) -> Secret | None:
        """The cached id if it is not *stale*; else raise a remembered refusal; else None."""
        values = self.cache.get_many([self.session_key, self.failure_key])
        current = self.keys.open(values.get(self.session_key))
        if current and current != stale:
            return current
        failure = remembered_failure(values.get(self.failure_key))
        if failure is not None:
            raise failure
        return None

    @sensitive_variables("stale", "current")
    def _authenticate_locked(self, stale: Secret | None) -> Secret:
        # Another holder may have finished between our read and our lock.
        current = self._usable(stale)
        if current:
            return current
        return self._login()

    @sensitive_variables("session_id")
    def _login(self) -> Secret:
        try:
            session_id = self._authenticate()
        except AuthenticationError as exc:
            self._remember_failure(exc)
            raise
        self.cache.set(self.session_key, self.keys.seal(session_id), timeout=self.policy.ttl)
        self.cache.delete(self.failure_key)
        _last_touch[self.session_key] = (hash(session_id), self._clock())
        self._remember(session_id, self._clock())
        logger.info("Authenticated with Clickatell; new session cached")
        return session_id

    def _remember_failure(self, exc: AuthenticationError) -> None:
        """Keep the refusal for ``AUTH_FAILURE_TTL``: its code and a redacted description."""
        if not self.policy.failure_ttl:
            return
        entry = failure_entry(exc, self._secrets)
        self.cache.set(self.failure_key, entry, timeout=self.policy.failure_ttl)

    def _release(self, token: str) -> None:
        try:
            if self.cache.get(self.lock_key) == token:
                self.cache.delete(self.lock_key)
        except SessionUnavailable as exc:
            logger.warning("Could not release the auth lock (it expires by itself): %s", exc)


# key -> (hash of the session id, monotonic time of its last touch), per process.
_last_touch: dict[str, tuple[int, float]] = {}
# key -> (session id, monotonic expiry), per process; see SessionStore.get.
_memo: dict[str, tuple[Secret, float]] = {}


def forget_local_sessions() -> None:
    """Drop this process's memoised session ids (after ``fork``, and between tests)."""
    _memo.clear()
    _last_touch.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=forget_local_sessions)
