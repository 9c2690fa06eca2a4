"""The ``CLICKATELL`` settings dict, read lazily through a small typed object.

Every attribute of :data:`app_settings` reads ``settings.CLICKATELL`` again, so
``override_settings`` works everywhere.  A missing, mistyped or out-of-range
key raises ``ImproperlyConfigured`` naming the key; the system checks report
the same problems at start-up.

Leases are checked against the work they guard, from the timeouts:

* :attr:`ClickatellSettings.request_deadline` -- the longest one HTTP request
  can take: ``connect + read`` of ``TIMEOUT`` (the transport enforces both as
  total deadlines; name resolution excepted).
* :attr:`ClickatellSettings.command_deadline` -- the longest one client call
  can take: waiting for another process's login, our own login, the command,
  and after an ``ERR 003`` the same again once (see ``gateway.client``).
* ``AUTH_LOCK_TIMEOUT`` must be at least ``LOCK_HEADROOM`` x one request, or
  the lock could expire under a login still running and a second login start.
* ``CLAIM_TIMEOUT`` must be at least ``CLAIM_HEADROOM`` x ``command_deadline``.
  A run extends its lease before a message once a third of the lease has gone
  by, so a message may start with up to a third spent: the bound needs
  ``claim > 1.5 x command_deadline``; 2 leaves a sixth of the lease for the
  database writes around the request and for clock differences between hosts.
"""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, overload
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .protocol.redaction import Secret

T = TypeVar("T")

_REQUIRED = object()
# Clickatell drops a session after 15 minutes idle; stay safely inside that.
MAX_SESSION_TTL = 14 * 60
#: Longest pause between two looks at the cache while another process logs in.
AUTH_POLL_MAX = 0.2
#: AUTH_LOCK_TIMEOUT >= LOCK_HEADROOM x request_deadline.
LOCK_HEADROOM = 1.5
#: CLAIM_TIMEOUT >= CLAIM_HEADROOM x command_deadline (see the module docstring).
CLAIM_HEADROOM = 2.0
#: Defaults of the leases when the timeouts allow; longer when they need it.
DEFAULT_AUTH_LOCK_TIMEOUT = 30.0
DEFAULT_CLAIM_TIMEOUT = 300


def user_settings() -> Mapping[str, Any]:
    value = getattr(settings, "CLICKATELL", {})
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(
            f"settings.CLICKATELL must be a dict, not {type(value).__name__}."
        )
    return value


def _describe(key: str) -> str:
    return f"settings.CLICKATELL[{key!r}]"


class LeaseTooShort(ImproperlyConfigured):
    """A lease (``CLAIM_TIMEOUT``, ``AUTH_LOCK_TIMEOUT``) shorter than the work it guards.

    ``check_id`` is the system check that reports it.
    """

    def __init__(self, message: str, check_id: str) -> None:
        super().__init__(message)
        self.check_id = check_id


# -- parsers -------------------------------------------------------------------------------


def _string(key: str, value: object) -> str:
    if not isinstance(value, str):
        raise ImproperlyConfigured(
            f"{_describe(key)} must be a string, not {type(value).__name__}."
        )
    return value


def _non_empty_string(key: str, value: object) -> str:
    text = _string(key, value)
    if not text.strip():
        raise ImproperlyConfigured(f"{_describe(key)} must not be empty.")
    return text


def _secret(key: str, value: object) -> Secret:
    return Secret(_non_empty_string(key, value))


def _api_id(key: str, value: object) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _non_empty_string(key, value)
    if not text.isdigit():
        raise ImproperlyConfigured(f"{_describe(key)} must be the numeric API id, got {text!r}.")
    return text


def _base_url(key: str, value: object) -> str:
    url = _non_empty_string(key, value)
    if not url.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{_describe(key)} must be an http(s) URL, got {url!r}.")
    if "?" in url or "#" in url or "@" in url.split("//", 1)[1].split("/", 1)[0]:
        raise ImproperlyConfigured(
            f"{_describe(key)} must not carry a query, fragment or credentials."
        )
    return url if url.endswith("/") else url + "/"


def _in_seconds(
    key: str, value: object, maximum: float, *, zero: bool = False, part: str = ""
) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not (value >= 0 if zero else value > 0)
        or value > maximum
    ):
        kind = "non-negative" if zero else "positive"
        raise ImproperlyConfigured(
            f"{_describe(key)}{part} must be a {kind} number of seconds, at most "
            f"{maximum:g}, got {value!r}."
        )
    return float(value)


def seconds(maximum: float, *, zero: bool = False) -> Callable[[str, object], float]:
    """A finite number of seconds, positive (or zero if *zero*), at most *maximum*."""
    return lambda key, value: _in_seconds(key, value, maximum, zero=zero)


def count(maximum: int, *, zero: bool = False, unit: str = "") -> Callable[[str, object], int]:
    """A whole number, positive (or zero if *zero*), at most *maximum*."""
    kind = "non-negative" if zero else "positive"
    why = f" {unit}" if unit else ""

    def parse(key: str, value: object) -> int:
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or value < (0 if zero else 1)
            or value > maximum
        ):
            raise ImproperlyConfigured(
                f"{_describe(key)} must be a {kind} integer, at most {maximum}{why}, got {value!r}."
            )
        return value

    return parse


MAX_CONNECT_TIMEOUT = 60.0
MAX_READ_TIMEOUT = 300.0


def _timeout(key: str, value: object) -> tuple[float, float]:
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ImproperlyConfigured(
                f"{_describe(key)} must be a number or a (connect, read) pair, got {value!r}."
            )
        connect, read = value
        return (
            _in_seconds(key, connect, MAX_CONNECT_TIMEOUT, part=" connect timeout"),
            _in_seconds(key, read, MAX_READ_TIMEOUT, part=" read timeout"),
        )
    return (
        _in_seconds(key, value, MAX_CONNECT_TIMEOUT, part=" (connect and read)"),
        _in_seconds(key, value, MAX_READ_TIMEOUT, part=" (connect and read)"),
    )


def _session_ttl(key: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > MAX_SESSION_TTL:
        raise ImproperlyConfigured(
            f"{_describe(key)} must be at most {MAX_SESSION_TTL} seconds: Clickatell expires "
            f"a session after 900 seconds of inactivity, got {value}."
        )
    return count(MAX_SESSION_TTL)(key, value)


def _secret_or_empty(key: str, value: object) -> Secret:
    return Secret(_string(key, value))


def _boolean(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{_describe(key)} must be True or False, got {value!r}.")
    return value


# -- the base URL at run time --------------------------------------------------------------


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def insecure_base_url_reason(url: str) -> str | None:
    """Why *url* must not carry the password, or None if it may (https, or loopback)."""
    parts = urlsplit(url)
    if parts.scheme == "https" or is_loopback(parts.hostname or ""):
        return None
    return (
        f"{_describe('BASE_URL')} is not https: {url!r}. Credentials and session ids would "
        "cross the network in clear text; plain http is accepted only for a loopback simulator."
    )


def require_secure_base_url(url: str) -> None:
    """Refuse, before anything is sent, a gateway URL that would expose the password."""
    reason = insecure_base_url_reason(url)
    if reason:
        raise ImproperlyConfigured(reason)


# -- options -------------------------------------------------------------------------------


class Derived:
    """A default computed from the other settings (a lease sized from the timeouts)."""

    def __init__(self, compute: Callable[[ClickatellSettings], Any], doc: str) -> None:
        self.compute = compute
        self.doc = doc


class Option(Generic[T]):
    """One key of ``settings.CLICKATELL``, validated on every read.

    ``relation`` checks the value against other settings (a lease against the
    work it guards) and raises :class:`LeaseTooShort`.
    """

    def __init__(
        self,
        parse: Callable[[str, object], T],
        default: object = _REQUIRED,
        doc: str = "",
        relation: Callable[[ClickatellSettings, str, T], None] | None = None,
    ) -> None:
        self.parse = parse
        self.default = default
        self.doc = doc
        self.relation = relation
        self.key = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name.upper()

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    @overload
    def __get__(self, instance: None, owner: type) -> Option[T]: ...
    @overload
    def __get__(self, instance: ClickatellSettings, owner: type) -> T: ...
    def __get__(self, instance: ClickatellSettings | None, owner: type) -> Option[T] | T:
        if instance is None:
            return self
        value = self.value(instance)
        if self.relation is not None:
            self.relation(instance, self.key, value)
        return value

    def value(self, instance: ClickatellSettings) -> T:
        """The parsed value, without the relation to other settings."""
        values = instance.values()
        if self.key in values and values[self.key] is not None:
            return self.parse(self.key, values[self.key])
        if self.required:
            raise ImproperlyConfigured(
                f"{_describe(self.key)} is missing: add it to the CLICKATELL dict in your settings."
            )
        if isinstance(self.default, Derived):
            return self.default.compute(instance)  # type: ignore[no-any-return]
        return self.default  # type: ignore[return-value]


def _lock_outlives_login(config: ClickatellSettings, key: str, value: float) -> None:
    needed = config.minimum_auth_lock_timeout
    if value < needed:
        raise LeaseTooShort(
            f"{_describe(key)} is {value:g}s, shorter than {needed:g}s "
            f"({LOCK_HEADROOM:g} x one request of up to {config.request_deadline:g}s, TIMEOUT): "
            "the lock could expire under a login still running and let a second one start.",
            "django_clickatell.E006",
        )


def _claim_outlives_message(config: ClickatellSettings, key: str, value: int) -> None:
    needed = config.minimum_claim_timeout
    if value < needed:
        raise LeaseTooShort(
            f"{_describe(key)} is {value}s, shorter than {needed:g}s "
            f"({CLAIM_HEADROOM:g} x {config.command_deadline:g}s, the longest one claimed "
            "message can take: a login wait, a login and the command, twice if the session "
            "is renewed). A claim could expire under a request still running and the message "
            "be sent to Clickatell twice. Raise CLAIM_TIMEOUT or lower TIMEOUT and "
            "AUTH_WAIT_TIMEOUT.",
            "django_clickatell.E005",
        )


def _default_lock(config: ClickatellSettings) -> float:
    return max(DEFAULT_AUTH_LOCK_TIMEOUT, config.minimum_auth_lock_timeout)


def _default_wait(config: ClickatellSettings) -> float:
    # A little past the lock: a waiter outlasts a crashed holder's lock and takes over.
    return Option.value(ClickatellSettings.auth_lock_timeout, config) + 1.0


def _default_claim(config: ClickatellSettings) -> int:
    return max(DEFAULT_CLAIM_TIMEOUT, math.ceil(config.minimum_claim_timeout))


class ClickatellSettings:
    """Typed, lazy access to ``settings.CLICKATELL``; see the README for every key.

    ``ClickatellSettings(values)`` reads *values* instead of the Django setting
    (a client for other credentials).
    """

    username = Option(_non_empty_string, doc="Clickatell API user name.")
    password = Option(_secret, doc="Clickatell API password; only ever sent in POST bodies.")
    api_id = Option(_api_id, doc="Numeric id of the HTTP API product.")
    base_url = Option(
        _base_url, "https://api.clickatell.com/http/", doc="Root URL of the HTTP API commands."
    )
    timeout = Option(
        _timeout,
        (5.0, 15.0),
        doc="Seconds: (connect, read); read bounds the whole reply, not each socket read.",
    )
    cache_alias = Option(_non_empty_string, "default", doc="Cache shared by all processes.")
    cache_key_prefix = Option(_non_empty_string, "django_clickatell", doc="Cache key namespace.")
    session_ttl = Option(_session_ttl, 600, doc="Seconds a cached session id is trusted.")
    session_memo_seconds = Option(
        seconds(60, zero=True),
        5.0,
        doc="Seconds a process reuses the id it read (0: always read).",
    )
    session_touch_interval = Option(
        count(MAX_SESSION_TTL),
        60,
        doc="Seconds between extensions of the cached session's lifetime.",
    )
    auth_lock_timeout = Option(
        seconds(3600),
        Derived(_default_lock, "30, or 1.5 x request_deadline if longer"),
        doc="Seconds a crashed holder can block others from auth.",
        relation=_lock_outlives_login,
    )
    auth_wait_timeout = Option(
        seconds(3600),
        Derived(_default_wait, "AUTH_LOCK_TIMEOUT + 1"),
        doc="Seconds a process waits for another one's auth.",
    )
    auth_failure_ttl = Option(
        count(3600, zero=True), 30, doc="Seconds a refused login is remembered (0 disables)."
    )
    claim_timeout = Option(
        count(86400),
        Derived(_default_claim, "300, or the minimum if longer"),
        doc="Seconds before a message claimed by a dead worker is reclaimed.",
        relation=_claim_outlives_message,
    )
    task_chunk_size = Option(count(10_000), 50, doc="Messages per cancellation task.")
    task_max_retries = Option(count(100, zero=True), 8, doc="Retries after transient failures.")
    task_retry_backoff = Option(seconds(3600), 2.0, doc="First retry delay in seconds.")
    task_retry_backoff_max = Option(seconds(86400), 600.0, doc="Longest retry delay, seconds.")
    send_batch_size = Option(
        count(300, unit="(Clickatell's limit)"),
        100,
        doc="Recipients per sendmsg request (Clickatell allows 100 by GET).",
    )
    refresh_chunk_size = Option(count(10_000), 200, doc="Messages per status refresh task.")
    callback_username = Option(_string, "", doc="HTTP Basic user Clickatell sends callbacks with.")
    callback_password = Option(
        _secret_or_empty, Secret(""), doc="HTTP Basic password for callbacks."
    )
    balance_cache_seconds = Option(
        count(86400, zero=True), 60, doc="How long the admin shows a fetched balance."
    )
    keep_text = Option(_boolean, True, doc="Keep message text after sending (False blanks it).")
    use_celery = Option(
        _boolean,
        True,
        doc="Hand work to Celery workers when Celery is installed (False: do it in-process).",
    )

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        self._values = values

    def values(self) -> Mapping[str, Any]:
        return self._values if self._values is not None else user_settings()

    @classmethod
    def options(cls) -> dict[str, Option[Any]]:
        return {value.key: value for value in vars(cls).values() if isinstance(value, Option)}

    @property
    def account_namespace(self) -> str:
        """Identifies the account (never by its password) for cache keys."""
        return f"{self.base_url}|{self.api_id}|{self.username}"

    # -- deadlines -------------------------------------------------------------------------

    @property
    def request_deadline(self) -> float:
        """Seconds one HTTP request can take at most: connect + read of ``TIMEOUT``.

        The transport bounds connecting (every address and the TLS handshake
        together) by the first and everything after it by the second, each as a
        total; name resolution is the system resolver's and not included.
        """
        connect, read = self.timeout
        return connect + read

    @property
    def command_deadline(self) -> float:
        """Seconds one client call (``delmsg``, ``sendmsg``, ...) can take at most.

        Getting a session: waiting up to ``AUTH_WAIT_TIMEOUT`` (plus one poll)
        for another process's login, then our own login request; the command;
        and after an ``ERR 003``/``005`` one renewal (the same wait and login)
        and the repeated command.  The client never renews twice in one call.
        """
        request = self.request_deadline
        wait = Option.value(ClickatellSettings.auth_wait_timeout, self)
        session = wait + AUTH_POLL_MAX + request
        return 2 * (session + request)

    @property
    def minimum_auth_lock_timeout(self) -> float:
        return LOCK_HEADROOM * self.request_deadline

    @property
    def minimum_claim_timeout(self) -> float:
        return CLAIM_HEADROOM * self.command_deadline


app_settings = ClickatellSettings()
