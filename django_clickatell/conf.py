"""The ``CLICKATELL`` settings dict, read lazily through a small typed object.

Every attribute of :data:`app_settings` reads ``settings.CLICKATELL`` again, so
``override_settings`` works everywhere.  A missing or mistyped key raises
``ImproperlyConfigured`` naming the key; the system checks report the same
problems at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar, overload

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .protocol.redaction import Secret

T = TypeVar("T")

_REQUIRED = object()
# Clickatell drops a session after 15 minutes idle; stay safely inside that.
MAX_SESSION_TTL = 14 * 60


def user_settings() -> Mapping[str, Any]:
    value = getattr(settings, "CLICKATELL", {})
    if not isinstance(value, Mapping):
        raise ImproperlyConfigured(
            f"settings.CLICKATELL must be a dict, not {type(value).__name__}."
        )
    return value


def _describe(key: str) -> str:
    return f"settings.CLICKATELL[{key!r}]"


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


def _positive_number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ImproperlyConfigured(f"{_describe(key)} must be a positive number, got {value!r}.")
    return float(value)


def _non_negative_number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ImproperlyConfigured(
            f"{_describe(key)} must be a non-negative number, got {value!r}."
        )
    return float(value)


def _positive_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ImproperlyConfigured(f"{_describe(key)} must be a positive integer, got {value!r}.")
    return value


def _non_negative_int(key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ImproperlyConfigured(
            f"{_describe(key)} must be a non-negative integer, got {value!r}."
        )
    return value


def _timeout(key: str, value: object) -> tuple[float, float]:
    if isinstance(value, list | tuple):
        if len(value) != 2:
            raise ImproperlyConfigured(
                f"{_describe(key)} must be a number or a (connect, read) pair, got {value!r}."
            )
        return (_positive_number(key, value[0]), _positive_number(key, value[1]))
    number = _positive_number(key, value)
    return (number, number)


def _session_ttl(key: str, value: object) -> int:
    seconds = _positive_int(key, value)
    if seconds > MAX_SESSION_TTL:
        raise ImproperlyConfigured(
            f"{_describe(key)} must be at most {MAX_SESSION_TTL} seconds: Clickatell expires "
            f"a session after 900 seconds of inactivity, got {seconds}."
        )
    return seconds


def _batch_size(key: str, value: object) -> int:
    size = _positive_int(key, value)
    if size > 300:
        raise ImproperlyConfigured(f"{_describe(key)} must be at most 300 (Clickatell's limit).")
    return size


def _secret_or_empty(key: str, value: object) -> Secret:
    return Secret(_string(key, value))


def _boolean(key: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{_describe(key)} must be True or False, got {value!r}.")
    return value


class Option(Generic[T]):
    """One key of ``settings.CLICKATELL``, validated on every read."""

    def __init__(
        self, parse: Callable[[str, object], T], default: object = _REQUIRED, doc: str = ""
    ) -> None:
        self.parse = parse
        self.default = default
        self.doc = doc
        self.key = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.key = name.upper()

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED

    @overload
    def __get__(self, instance: None, owner: type) -> Option[T]: ...
    @overload
    def __get__(self, instance: object, owner: type) -> T: ...
    def __get__(self, instance: object | None, owner: type) -> Option[T] | T:
        if instance is None:
            return self
        values = user_settings()
        if self.key in values and values[self.key] is not None:
            return self.parse(self.key, values[self.key])
        if self.required:
            raise ImproperlyConfigured(
                f"{_describe(self.key)} is missing: add it to the CLICKATELL dict in your settings."
            )
        return self.default  # type: ignore[return-value]


class ClickatellSettings:
    """Typed, lazy access to ``settings.CLICKATELL``; see the README for every key."""

    username = Option(_non_empty_string, doc="Clickatell API user name.")
    password = Option(_secret, doc="Clickatell API password; only ever sent in POST bodies.")
    api_id = Option(_api_id, doc="Numeric id of the HTTP API product.")
    base_url = Option(
        _base_url, "https://api.clickatell.com/http/", doc="Root URL of the HTTP API commands."
    )
    timeout = Option(_timeout, (5.0, 30.0), doc="Seconds: a number or (connect, read) pair.")
    cache_alias = Option(_non_empty_string, "default", doc="Cache shared by all processes.")
    cache_key_prefix = Option(_non_empty_string, "django_clickatell", doc="Cache key namespace.")
    session_ttl = Option(_session_ttl, 600, doc="Seconds a cached session id is trusted.")
    session_memo_seconds = Option(
        _non_negative_number, 5.0, doc="Seconds a process reuses the id it read (0: always read)."
    )
    session_touch_interval = Option(
        _positive_int, 60, doc="Seconds between extensions of the cached session's lifetime."
    )
    auth_lock_timeout = Option(
        _positive_number, 30.0, doc="Seconds a crashed holder can block others from auth."
    )
    auth_wait_timeout = Option(
        _positive_number, 40.0, doc="Seconds a process waits for another one's auth."
    )
    auth_failure_ttl = Option(
        _non_negative_int, 30, doc="Seconds a refused login is remembered (0 disables)."
    )
    claim_timeout = Option(
        _positive_int, 300, doc="Seconds before a message claimed by a dead worker is reclaimed."
    )
    task_chunk_size = Option(_positive_int, 50, doc="Messages per cancellation task.")
    task_max_retries = Option(_non_negative_int, 8, doc="Retries after transient failures.")
    task_retry_backoff = Option(_positive_number, 2.0, doc="First retry delay in seconds.")
    task_retry_backoff_max = Option(_positive_number, 600.0, doc="Longest retry delay, seconds.")
    send_batch_size = Option(
        _batch_size, 100, doc="Recipients per sendmsg request (Clickatell allows 100 by GET)."
    )
    refresh_chunk_size = Option(_positive_int, 200, doc="Messages per status refresh task.")
    callback_username = Option(_string, "", doc="HTTP Basic user Clickatell sends callbacks with.")
    callback_password = Option(
        _secret_or_empty, Secret(""), doc="HTTP Basic password for callbacks."
    )
    balance_cache_seconds = Option(
        _non_negative_int, 60, doc="How long the admin shows a fetched balance."
    )
    keep_text = Option(_boolean, True, doc="Keep message text after sending (False blanks it).")
    use_celery = Option(
        _boolean,
        True,
        doc="Hand work to Celery workers when Celery is installed (False: do it in-process).",
    )

    @classmethod
    def options(cls) -> dict[str, Option[Any]]:
        return {value.key: value for value in vars(cls).values() if isinstance(value, Option)}

    @property
    def account_namespace(self) -> str:
        """Identifies the account (never by its password) for cache keys."""
        return f"{self.base_url}|{self.api_id}|{self.username}"


app_settings = ClickatellSettings()
