"""Each account's balance (``getbalance``): one cached value for every process, never a wait.

Three cache entries per account (each named account has its own), shared by
every process (keys are digests, not ``hash()``, which Python salts per process):

* the credit, for ``BALANCE_CACHE_SECONDS``;
* the last failure, for :data:`FAILURE_MEMORY_SECONDS`, as a short code (never
  the gateway's text, which may echo a secret), keyed by a fingerprint of the
  credentials used so one host with a stale password cannot make every other
  host report "credentials refused";
* a fetch lease taken with ``cache.add``: at most one ``getbalance`` at a time.

Admin pages use :func:`balance_for_display`: the fetch runs in a background
thread, the page that started it waits at most ``DISPLAY_WAIT_SECONDS`` and
every other page not at all, so a slow gateway never holds a page for the read
timeout.  ``getbalance`` changes nothing at Clickatell, so a fetch that outlives
its page costs nothing but the request.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from django.core.cache import BaseCache, caches
from django.utils.crypto import salted_hmac
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from ..conf import ClickatellSettings, account_settings, app_settings
from ..exceptions import (
    AuthenticationError,
    ClickatellError,
    CommandNotSent,
    GatewayError,
    GatewayHTTPError,
    GatewayTimeout,
    ProtocolError,
    SessionExpired,
    SessionUnavailable,
    TransportError,
    WrongBaseUrl,
)
from ..gateway.backends import DEFAULT_ACCOUNT, Backend, get_backend

logger = logging.getLogger("django_clickatell.balance")

#: How long a failed fetch is remembered: pages say why at once instead of asking again.
FAILURE_MEMORY_SECONDS = 15
#: How long the page that starts a fetch waits for it; other pages never wait.
DISPLAY_WAIT_SECONDS = 1.0

#: Short reasons shown to the operator, by failure code (the part before any ``:``).
REASONS: dict[str, Promise] = {
    "unreachable": _("gateway unreachable"),
    "timeout": _("gateway too slow"),
    "http": _("gateway answered HTTP %(detail)s"),
    "url": _("wrong BASE_URL"),
    "credentials": _("credentials refused"),
    "session": _("no session with Clickatell"),
    "unreadable": _("unreadable reply"),
    "gateway": _("Clickatell error %(detail)s"),
    "fetching": _("still being fetched"),
    "cache": _("cache unreachable"),
    "error": _("unexpected error, see the log"),
}


@dataclass(frozen=True)
class BalanceReading:
    """What a page can show: the credit, or why there is none right now."""

    credit: Decimal | None
    problem: str = ""

    @property
    def reason(self) -> str | Promise:
        """The problem as a short translated phrase (empty when the credit is known)."""
        if not self.problem:
            return ""
        kind, _sep, detail = self.problem.partition(":")
        text: str | Promise = REASONS.get(kind, REASONS["error"])
        return str(text) % {"detail": detail} if detail else text


def get_balance(
    *, cached: bool = True, account: str = DEFAULT_ACCOUNT, backend: Backend | None = None
) -> Decimal:
    """The remaining credit of *account*, asking Clickatell unless a fresh value is cached.

    Raises :class:`~django_clickatell.exceptions.ClickatellError`; the failure
    is remembered for pages (:func:`balance_for_display`), the credit cached.
    """
    cache = caches[app_settings.cache_alias]
    keys = _Keys(account)
    if cached:
        try:
            value = cache.get(keys.credit)
        except Exception:  # the cache is down: ask the gateway instead
            logger.warning("Balance cache unreachable", exc_info=True)
            value = None
        credit = _decimal(value)
        if credit is not None:
            return credit
    try:
        credit = (backend or get_backend(account)).balance().credit
    except ClickatellError as exc:
        _remember(cache, keys, failure=failure_code(exc))
        raise
    _remember(cache, keys, credit=credit)
    return credit


def balance_for_display(
    *, wait: float = DISPLAY_WAIT_SECONDS, account: str = DEFAULT_ACCOUNT
) -> BalanceReading:
    """*account*'s credit or why not, for a page: never raises, never waits more than *wait*."""
    cache = caches[app_settings.cache_alias]
    try:
        keys = _Keys(account)
    except Exception:  # a page shows why, the checks report the setting
        logger.warning("Balance of account %r unavailable", account[:40], exc_info=True)
        return BalanceReading(None, "error")
    try:
        known = cache.get_many([keys.credit, keys.failure])
        credit = _decimal(known.get(keys.credit))
        if credit is not None:
            return BalanceReading(credit)
        if known.get(keys.failure):
            return BalanceReading(None, str(known[keys.failure]))
        lease = uuid.uuid4().hex
        if not cache.add(keys.fetching, lease, timeout=_lease_seconds(keys.config)):
            return BalanceReading(None, "fetching")
    except Exception:
        logger.warning("Balance cache unreachable", exc_info=True)
        return BalanceReading(None, "cache")
    fetch = _Fetch(keys, lease)
    thread = threading.Thread(target=fetch.run, name="clickatell-balance", daemon=True)
    try:
        thread.start()
    except RuntimeError:  # no thread to be had: say so; the lease lapses on its own
        logger.exception("Could not start the balance fetch")
        return BalanceReading(None, "error")
    if fetch.done.wait(wait):
        return fetch.reading
    return BalanceReading(None, "fetching")


def failure_code(exc: ClickatellError) -> str:
    """A short code for why a fetch failed, built from typed fields only (never reply text)."""
    if isinstance(exc, WrongBaseUrl):
        return "url"
    if isinstance(exc, CommandNotSent):
        if isinstance(exc.cause, CommandNotSent | SessionExpired | SessionUnavailable):
            return "session"
        return failure_code(exc.cause)
    classify: list[tuple[type[ClickatellError], Callable[[Any], str]]] = [
        (AuthenticationError, lambda e: f"credentials:{e.code_str}"),
        (SessionExpired, lambda e: "session"),
        (GatewayError, lambda e: f"gateway:{e.code_str}"),
        (GatewayTimeout, lambda e: "timeout"),
        (GatewayHTTPError, lambda e: f"http:{int(e.status_code)}"),
        (TransportError, lambda e: "unreachable"),
        (SessionUnavailable, lambda e: "session"),
        (ProtocolError, lambda e: "unreadable"),
    ]
    for kind, code in classify:
        if isinstance(exc, kind):
            return code(exc)
    return "error"


class _Keys:
    """One account's cache keys, the same in every process.

    The credit is keyed by the account's alias and who it is (two aliases never
    share a credit, even with the same URL); the failure also by its secrets.
    """

    def __init__(self, alias: str) -> None:
        self.alias = alias
        self.config = config = account_settings(alias)
        prefix = f"{app_settings.cache_key_prefix}:balance"
        namespace = f"{alias}\0{config.account_namespace}"
        account = hashlib.sha256(namespace.encode()).hexdigest()[:32]
        self.credit = f"{prefix}:{account}"
        self.fetching = f"{prefix}-fetching:{account}"
        self.failure = f"{prefix}-failure:{_credentials_fingerprint(namespace, config)}"


def _credentials_fingerprint(namespace: str, config: ClickatellSettings) -> str:
    """Tells credentials apart without revealing them (an HMAC under SECRET_KEY)."""
    secrets = f"{config.password.reveal()}\0{config.api_key.reveal()}"
    return salted_hmac(
        "django_clickatell.balance", f"{namespace}\0{secrets}", algorithm="sha256"
    ).hexdigest()[:32]


class _Fetch:
    """One ``getbalance`` in a background thread; its page may wait for ``done``."""

    def __init__(self, keys: _Keys, lease: str) -> None:
        self.keys = keys
        self.lease = lease
        self.done = threading.Event()
        self.reading = BalanceReading(None, "fetching")

    def run(self) -> None:
        cache = caches[app_settings.cache_alias]  # this thread's own connection
        try:
            self.reading = self._ask(self.keys.alias)
            _remember(cache, self.keys, credit=self.reading.credit, failure=self.reading.problem)
            self._release(cache)
        finally:  # recorded first, so the page after this one finds it
            self.done.set()

    @staticmethod
    def _ask(alias: str) -> BalanceReading:
        try:
            return BalanceReading(get_backend(alias).balance().credit)
        except ClickatellError as exc:
            logger.warning("Balance unavailable: %s", exc)
            return BalanceReading(None, failure_code(exc))
        except Exception:  # a thread has no caller to raise to: log it, show it, go on
            logger.exception("Balance fetch failed")
            return BalanceReading(None, "error")

    def _release(self, cache: BaseCache) -> None:
        try:
            if cache.get(self.keys.fetching) == self.lease:
                cache.delete(self.keys.fetching)
        except Exception:
            logger.warning("Balance cache unreachable", exc_info=True)


def _remember(
    cache: BaseCache, keys: _Keys, *, credit: Decimal | None = None, failure: str = ""
) -> None:
    try:
        if credit is not None:
            cache.delete(keys.failure)
            seconds = keys.config.balance_cache_seconds
            if seconds:
                cache.set(keys.credit, str(credit), timeout=seconds)
        elif failure:
            cache.set(keys.failure, failure, timeout=FAILURE_MEMORY_SECONDS)
    except Exception:
        logger.warning("Balance cache unreachable", exc_info=True)


def _lease_seconds(config: ClickatellSettings) -> int:
    """Longer than any one fetch can take, so a second never starts beside it.

    A fetch may wait for another process's login, then make up to four requests
    (login, getbalance, and once more after an expired session), each bounded by
    ``TIMEOUT``.  A crashed fetch blocks others for this long, then is retried.
    """
    connect, read = config.timeout
    return int(config.auth_wait_timeout + 4 * (connect + read)) + 5


def _decimal(value: object) -> Decimal | None:
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
