"""Every key of ``settings.CLICKATELL``: the single source of the settings reference.

Each :class:`~.descriptor.Option` below says how its key is parsed and bounded,
its default, one paragraph and an example.  ``docs/reference.py`` writes the
reference in README.rst and docs/configuration.rst from them, and a test fails
when either file says something else.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..protocol.redaction import Secret
from . import leases
from .accounts import ACCOUNTS_KIND, DEFAULT_ACCOUNT, account_values, aliases
from .base_url import BASE_URL
from .descriptor import ACCOUNT, Derived, Option, user_settings
from .errors import AccountKey
from .region import DESTINATIONS, REGION
from .values import (
    API_ID,
    BASIC_USER,
    BOOLEAN,
    CALLBACK_SECRET,
    CREDENTIAL_PAIRS,
    MAX_SESSION_TTL,
    SECRET,
    SECRET_OR_EMPTY,
    SESSION_TTL,
    TEXT,
    TIMEOUT,
    count,
    seconds,
)

SECONDS = "seconds"

#: ``BASE_URL`` when an account does not set it, by ``BACKEND``.
DEFAULT_BASE_URLS = {
    "legacy_http": "https://api.clickatell.com/http/",
    "rest": "https://api.clickatell.com/rest/",
    "one_api": "https://platform.clickatell.com/",
}
#: The backends that authenticate with ``API_KEY`` (the legacy HTTP API needs user, password
#: and API id instead).
API_KEY_BACKENDS = ("rest", "one_api")
LEGACY = ("legacy_http",)


def _default_base_url(config: ClickatellSettings) -> str:
    return DEFAULT_BASE_URLS.get(config.backend, DEFAULT_BASE_URLS["legacy_http"])


class ClickatellSettings:
    """Typed, lazy access to ``settings.CLICKATELL``; each attribute is one key, lower-cased.

    ``ClickatellSettings(values)`` reads *values* instead of the Django setting
    (a client for other credentials).  With *alias*, the settings of that named
    account (see :mod:`.accounts`): account-scoped keys from its own dict,
    process-wide keys from the top level.
    """

    backend = Option(
        TEXT,
        "legacy_http",
        doc="Which of Clickatell's APIs the account speaks: ``legacy_http`` (the HTTP API of "
        "accounts from before November 2016), ``rest`` (the REST API of the same accounts, "
        "with ``API_KEY``), ``one_api`` (Platform accounts, with ``API_KEY``), ``test`` (alias "
        "``locmem``: in memory, for your test suite), ``console`` (prints each SMS, for "
        "development), or a dotted path to a ``Backend`` subclass; a name that is none of "
        "these is reported by check ``E013``. It decides which credentials are required and "
        "the default ``BASE_URL``. See Backends and Testing your project.",
        example='"legacy_http"',
        scope=ACCOUNT,
    )
    api_key = Option(
        SECRET,
        doc="API key (token) of the REST and One API backends, sent in the ``Authorization`` "
        "header only; held in a ``Secret`` like the password. Read it from the environment.",
        example='os.environ["CLICKATELL_ONE_API_KEY"]',
        scope=ACCOUNT,
        required_for=API_KEY_BACKENDS,
        blank=Secret(""),
    )
    username = Option(
        TEXT,
        doc="API user name of the HTTP API product.",
        example='"acme-sms"',
        scope=ACCOUNT,
        required_for=LEGACY,
        blank="",
    )
    password = Option(
        SECRET,
        doc="API password. Only ever sent in POST bodies; held in a ``Secret`` that never "
        "shows itself in a repr, log or error page. Read it from the environment.",
        example='os.environ["CLICKATELL_PASSWORD"]',
        scope=ACCOUNT,
        required_for=LEGACY,
        blank=Secret(""),
    )
    api_id = Option(
        API_ID,
        doc="Id of the HTTP API product.",
        example='"3456789"',
        scope=ACCOUNT,
        required_for=LEGACY,
        blank="",
    )
    base_url = Option(
        BASE_URL,
        Derived(
            _default_base_url,
            "by ``BACKEND``: ``legacy_http`` "
            + DEFAULT_BASE_URLS["legacy_http"]
            + ", ``rest`` "
            + DEFAULT_BASE_URLS["rest"]
            + ", ``one_api`` "
            + DEFAULT_BASE_URLS["one_api"],
        ),
        doc="Root of the account's API. Plain http is accepted only for a loopback host "
        "(the simulator); any other http URL is refused before a request is made, not only "
        "reported by check ``E003``. A named account never inherits the top-level one.",
        example='"http://127.0.0.1:8911/http/"',
        scope=ACCOUNT,
    )
    timeout = Option(
        TIMEOUT,
        (5.0, 15.0),
        doc="``connect`` bounds connecting (every address of the host and the TLS handshake "
        "together); ``read`` bounds everything after it -- sending the form and receiving the "
        "whole reply -- as one total deadline, not per socket read, so a reply trickled byte "
        "by byte is cut off. One request thus takes at most ``connect + read`` (name "
        "resolution excepted). A single number is used for both.",
        example="(3.0, 20.0)",
        scope=ACCOUNT,
    )
    cache_alias = Option(
        TEXT,
        "default",
        doc="Cache holding the shared session id. It must be shared by all processes (Redis, "
        "Memcached): a per-process cache raises warning ``W001``.",
        example='"sessions"',
    )
    cache_key_prefix = Option(
        TEXT,
        "django_clickatell",
        doc="Namespace of the cache keys. Each key also carries a fingerprint of the "
        "credentials (HMAC-SHA256 keyed with ``SECRET_KEY`` over URL, API id, user and "
        "password; it reveals none of them), so processes with different passwords -- a stale "
        "host, a rotation in progress -- never share, evict or block each other's session. "
        "The cached session id is sealed (encrypted and authenticated with keys derived from "
        "``SECRET_KEY`` and the password); all processes sharing a session need the same "
        "``SECRET_KEY``.",
        example='"sms"',
    )
    session_ttl = Option(
        SESSION_TTL,
        600,
        doc="How long a cached session id is trusted: inside Clickatell's 15-minute idle "
        "window. Slides forward on every use.",
        example="600",
        scope=ACCOUNT,
    )
    session_memo_seconds = Option(
        seconds(60, zero=True),
        5.0,
        doc="How long a process reuses the session id it last read from the cache, saving a "
        "cache round trip per command. If another process renewed the session meanwhile, this "
        "one gets ERR 003 once and re-reads the cache (never an extra ``auth``). 0 reads the "
        "cache every time.",
        example="2",
        scope=ACCOUNT,
    )
    session_touch_interval = Option(
        count(MAX_SESSION_TTL, of=SECONDS),
        60,
        doc="How often one process extends the cached session id's lifetime.",
        example="60",
        scope=ACCOUNT,
    )
    auth_lock_timeout = Option(
        seconds(3600),
        Derived(leases.default_lock, "``30.0``, or 1.5 x ``connect + read`` if longer"),
        doc="Lifetime of the single-flight ``auth`` lock: the longest a crashed holder can "
        "block the others. Must be at least 1.5 x ``connect + read`` (check ``E006``), or the "
        "lock could expire under a login still running.",
        example="30",
        scope=ACCOUNT,
        relation=leases.lock_outlives_login,
    )
    auth_wait_timeout = Option(
        seconds(3600),
        Derived(leases.default_wait, "``AUTH_LOCK_TIMEOUT + 1``"),
        doc="How long a process waits for another process's ``auth``; then the command is "
        "not sent and is retried later.",
        example="31",
        scope=ACCOUNT,
    )
    auth_failure_ttl = Option(
        count(3600, zero=True, of=SECONDS),
        30,
        doc="How long a refused login (ERR 001/002/004/007/108) is remembered so workers do "
        "not hammer ``auth``; 0 disables. Remembered for the refused credentials only, with "
        "the code and a redacted description.",
        example="30",
        scope=ACCOUNT,
    )
    claim_timeout = Option(
        count(86400, of=SECONDS),
        Derived(leases.default_claim, "``300``, or 2 x ``command_deadline`` if longer"),
        doc="Lease of a run's claim on its messages: after it, a message claimed by a worker "
        "that died can be claimed again. Must be at least 2 x the longest one claimed message "
        "can take (check ``E005``; see Deadlines and leases).",
        example="300",
        relation=leases.claim_outlives_message,
    )
    task_chunk_size = Option(
        count(10_000),
        50,
        doc="Messages per send task at most; larger sends fan out in parallel, in pieces as "
        "even as can be (no straggler keeps one worker busy while the others idle). Each "
        "chunk keeps ``MAX_IN_FLIGHT`` ``sendmsg`` requests outstanding, one message per "
        "request (each its own verifiable ``climsgid``). Cancellations have their own "
        "size, ``CANCEL_CHUNK_SIZE``.",
        example="50",
    )
    send_batch_size = Option(
        count(200, unit="(the One API's limit per request)"),
        50,
        doc="Messages one send request carries, where the account's API takes several (the "
        "One API and the test backend: up to 200 per ``POST /v1/message``, each with its own "
        "``clientMessageId``; the legacy HTTP and REST APIs take one, whatever this says). "
        "Each message of a request is checked (lease, pause, account) and gets its own "
        "result, matched by ``clientMessageId`` whatever order the reply gives. A request "
        "whose reply is lost leaves its messages in doubt, up to this many: on the One API "
        "they are settled by their status callbacks, or shown unknown for an operator. "
        "A request never carries more than its send task's chunk (``TASK_CHUNK_SIZE``, "
        "also 50): raise both together. The default was measured against the simulator "
        "(docs/design.rst, One API batches): past 50 a request saves little time (the "
        "database work per message dominates) and puts more in doubt when its reply is lost.",
        example="50",
        scope=ACCOUNT,
    )
    cancel_chunk_size = Option(
        count(10_000),
        250,
        doc="Messages per cancellation task; larger selections fan out in parallel, each "
        "chunk keeping ``MAX_IN_FLIGHT`` requests outstanding. Each chunk costs about a "
        "dozen queries whatever its size, so larger chunks cut queries and CPU per message "
        "(measured: 0.25 queries per message at 50, 0.09 at 250, 0.05 at 1,000), while "
        "fewer chunks run at once (a small cancellation at 200 ms took 3.3 s at 250, 1.7 s "
        "at 50). Raise it to 1,000 at intercontinental latency (see benchmarks/README.md).",
        example="1000",
    )
    max_requests_per_second = Option(
        count(10_000, zero=True),
        0,
        doc="The account's throttle: at most this many requests a second to its API, counted "
        "in the shared cache across every process and machine (one atomic ``incr`` per "
        "request). A request over it waits for the next second, at most 5 s in all; past that "
        "it is not made and is tried again later (never recorded as answered). ``0`` leaves "
        "the account unthrottled. Set it to your Clickatell account's limit, or below it. "
        "While the cache is down each process counts alone: see ``THROTTLE_PROCESSES``.",
        example="30",
        scope=ACCOUNT,
    )
    guard_max_per_hour = Option(
        count(10_000_000, zero=True),
        0,
        doc="Guard against runaway sending: at most this many messages leave the account in "
        "any rolling hour (counted in the shared cache across every process, in one-minute "
        "buckets over the last 61, so never more than this in any 60 minutes). A "
        "``send_sms`` that would go over it is refused whole (``GuardTripped``); a message "
        "that meets it right before its request leaves waits, queued, and goes out once "
        "there is room. ``0``: no cap. See Guards against runaway sending.",
        example="5000",
        scope=ACCOUNT,
    )
    guard_max_per_day = Option(
        count(100_000_000, zero=True),
        0,
        doc="Like ``GUARD_MAX_PER_HOUR``, for any rolling 24 hours (one-hour buckets over the "
        "last 25). ``0``: no cap.",
        example="50000",
        scope=ACCOUNT,
    )
    guard_max_per_recipient_per_hour = Option(
        count(10_000, zero=True),
        0,
        doc="At most this many messages to one number in any rolling hour (a loop over "
        "``send_sms``, a form abused to flood one number). Counted like "
        "``GUARD_MAX_PER_HOUR``. ``0``: no cap.",
        example="5",
        scope=ACCOUNT,
    )
    guard_allowed_destinations = Option(
        DESTINATIONS,
        (),
        doc='The countries the account may send to, by calling code (``27``, ``"+1"``) or '
        'region (``"ZA"``), read from the E.164 number: anything else is refused at '
        "``send_sms`` and never sent (against SMS pumping to premium-rate destinations). "
        'Calling code ``1`` allows every NANP region; ``"US"`` only the US. Unknown '
        "codes and regions are refused when the setting is read. ``[]``: every destination.",
        example='["ZA", 44]',
        scope=ACCOUNT,
    )
    guard_opt_out = Option(
        BOOLEAN,
        False,
        doc="Refuse numbers on the opt-out list (``OptOut``: added by hand in the admin, by "
        "``api.opt_out``, and automatically when Clickatell refuses a number as opted out). "
        "The list is kept whatever this says; ``True`` makes the account refuse them at "
        "``send_sms`` and right before each request (a number opted out since is not sent).",
        example="True",
        scope=ACCOUNT,
    )
    guards_pause_on_trip = Option(
        BOOLEAN,
        False,
        doc="Pause the account when one of its caps or its destinations guard trips (not for "
        "an opted-out number): nothing more leaves it until an operator resumes it. See "
        "Pausing an account.",
        example="True",
        scope=ACCOUNT,
    )
    throttle_processes = Option(
        count(10_000),
        1,
        doc="How many processes, on every machine together, make requests to Clickatell "
        "(web processes that send, plus worker processes). Read only while the cache is "
        "down: the processes cannot count together then, so each keeps on its own to "
        "``MAX_REQUESTS_PER_SECOND / THROTTLE_PROCESSES`` a second (rounded down; below one "
        "a second, one request per window of several seconds), and together they stay "
        "within the limit as long as this is at least the real number. The default ``1`` "
        "lets each process keep to the whole limit: N processes may then make up to N x "
        "the limit. The outage is logged once when it starts and once when it ends.",
        example="8",
    )
    max_in_flight = Option(
        count(32, unit="(the transport's keep-alive pool per host)"),
        16,
        doc="Requests (``sendmsg``, ``delmsg``, and the ``querymsg`` that verifies a send in "
        "doubt) one worker process keeps outstanding at once while it works through a chunk "
        "(threads over the shared keep-alive connections; the run's own thread checks the "
        "lease before each request and records the replies in groups). At high "
        "latency this, not the number of processes, sets the pace. 1 asks one at a time. "
        "Runs sharing one process (a threaded worker pool) share its 32 connections.",
        example="16",
    )
    task_max_retries = Option(
        count(100, zero=True),
        8,
        doc='Retries after transient failures before "failed, gave up".',
        example="8",
    )
    task_retry_backoff = Option(
        seconds(3600),
        2.0,
        doc="First retry delay; doubles each time, with jitter.",
        example="2",
    )
    task_retry_backoff_max = Option(
        seconds(86400), 600.0, doc="Longest retry delay.", example="600"
    )
    refresh_chunk_size = Option(
        count(10_000), 200, doc="Messages per status-refresh task.", example="200"
    )
    callback_username = Option(
        BASIC_USER,
        "",
        doc="HTTP Basic user Clickatell sends status callbacks with (set in the Clickatell "
        "account), paired with ``CALLBACK_PASSWORD``. Until a complete pair is set here or in "
        "``CALLBACK_BASIC_AUTH``, every callback is refused (403).",
        example='"clickatell"',
        scope=ACCOUNT,
    )
    callback_password = Option(
        SECRET_OR_EMPTY,
        "",
        doc="HTTP Basic password of status callbacks, paired with ``CALLBACK_USERNAME``. Not "
        "your API password (warning ``W005``).",
        example='os.environ["CLICKATELL_CALLBACK_PASSWORD"]',
        scope=ACCOUNT,
    )
    callback_secret = Option(
        CALLBACK_SECRET,
        "",
        doc="Secret in the path of the account's JSON callback URL (One API: "
        "``<prefix>/one-api/<account>/<secret>/``, set in the Clickatell portal), compared in "
        "constant time, since the API signs nothing. Until it is set every JSON callback is "
        "refused (403). It must stand in the URL as it is: URL-safe characters only (check "
        "``E008``; ordinary base64's ``/``, ``+`` and ``=`` are refused) and at most 128 of "
        "them (``E007``). Use a long random value, ``secrets.token_urlsafe(32)``: a short or "
        "repetitive one is reported by check ``W008``. It is never logged or stored, and "
        "request logs show the path with ``[secret]`` in its place.",
        example='os.environ["CLICKATELL_CALLBACK_SECRET"]',
        scope=ACCOUNT,
    )
    callback_basic_auth = Option(
        CREDENTIAL_PAIRS,
        (),
        doc="More (user, password) pairs accepted on status callbacks, to rotate them without "
        "refusing one: the view accepts these and the ``CALLBACK_USERNAME`` / "
        "``CALLBACK_PASSWORD`` pair, comparing every candidate in constant time (see "
        "Rotating the credentials in the callbacks docs).",
        example='[("clickatell", os.environ["CB_OLD"]), ("clickatell", os.environ["CB_NEW"])]',
        scope=ACCOUNT,
    )
    balance_cache_seconds = Option(
        count(86400, zero=True, of=SECONDS),
        60,
        doc="How long the admin shows a fetched balance.",
        example="300",
        scope=ACCOUNT,
    )
    accounts = Option(
        ACCOUNTS_KIND,
        {},
        doc="More Clickatell accounts, by alias, each a dict of the account-scoped keys "
        "(credentials, ``BACKEND``, ``BASE_URL``, ``TIMEOUT``, sessions, callbacks, balance). "
        "The top-level keys are the account ``default``; a named account inherits none of "
        "them. See Accounts.",
        example='{"platform": {"BACKEND": "one_api", "API_KEY": os.environ["PLATFORM_KEY"]}}',
    )
    default_region = Option(
        REGION,
        "",
        doc='The country national phone numbers are written in (``"ZA"``), for every '
        "account. Recipients are stored and sent as E.164 numbers (``27831234567``); with it, "
        "digits without ``+`` or ``00`` are read as that country's numbers (``083 123 4567`` "
        "becomes ``27831234567``) and other countries' numbers need their ``+`` or ``00``. "
        "Left empty, a national number is refused (``InvalidMessage``) and digits without a "
        "prefix must start with the country code. See Phone numbers in the API docs.",
        example='"ZA"',
    )
    keep_text = Option(
        BOOLEAN,
        True,
        doc="Keep message text after it was accepted; ``False`` blanks it.",
        example="False",
    )
    hold_lead_time = Option(
        count(366 * 86400, zero=True, of=SECONDS),
        7 * 86400,
        doc="How far ahead of its due time a scheduled message is handed to Clickatell for "
        "it to schedule (capped by the backend's horizon: 7 days on the legacy HTTP API). "
        "Anything scheduled further ahead -- and every scheduled message of a backend "
        "without native scheduling (the One API) -- is held here and handed over by the "
        "release loop (beat task ``release_due_messages`` or ``manage.py "
        "clickatell_release``). The default keeps every schedule the legacy API accepted "
        "going straight to Clickatell, as before; a shorter lead keeps messages stoppable "
        "here, with no request, for longer (see Scheduling). ``0`` holds every scheduled "
        "message here until it is due.",
        example="3600",
    )
    use_celery = Option(
        BOOLEAN,
        True,
        doc="Hand work to Celery workers when Celery is installed; ``False`` (or no Celery) "
        "does it in the calling process after the transaction commits.",
        example="False",
    )

    def __init__(
        self, values: Mapping[str, Any] | None = None, *, alias: str = DEFAULT_ACCOUNT
    ) -> None:
        self._values = values
        self.alias = alias

    def __repr__(self) -> str:
        return f"<ClickatellSettings account={self.alias!r}>"

    def values(self) -> Mapping[str, Any]:
        """The top level of ``CLICKATELL`` (or of the *values* given)."""
        return self._values if self._values is not None else user_settings()

    def account_values(self) -> Mapping[str, Any]:
        """The dict this account's own keys are read from (the top level for ``"default"``)."""
        return account_values(self.values(), self.alias)

    @property
    def process(self) -> ClickatellSettings:
        """The settings process-wide keys are read from: the top level."""
        if self.alias == DEFAULT_ACCOUNT:
            return self
        return ClickatellSettings(self._values)

    def key(self, key: str) -> str:
        """*key* as messages name it: in this account's dict for a named account."""
        return key if self.alias == DEFAULT_ACCOUNT else AccountKey(key, self.alias)

    @classmethod
    def options(cls) -> dict[str, Option[Any]]:
        return {value.key: value for value in vars(cls).values() if isinstance(value, Option)}

    @property
    def account_namespace(self) -> str:
        """Identifies the account (never by its password) for cache keys."""
        return f"{self.base_url}|{self.api_id}|{self.username}"

    @property
    def callback_credentials(self) -> tuple[tuple[str, Secret], ...]:
        """Every (user, password) pair the callback view accepts.

        The ``CALLBACK_USERNAME`` / ``CALLBACK_PASSWORD`` pair when both are set,
        then ``CALLBACK_BASIC_AUTH``; at most ``MAX_CALLBACK_CREDENTIALS + 1``.
        """
        user, password = self.callback_username, self.callback_password
        single = ((user, password),) if user and password else ()
        return single + self.callback_basic_auth

    # -- deadlines (see leases.py) ---------------------------------------------------------

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
        wait = ClickatellSettings.auth_wait_timeout.value(self)
        session = wait + leases.AUTH_POLL_MAX + request
        return 2 * (session + request)

    @property
    def minimum_auth_lock_timeout(self) -> float:
        return leases.LOCK_HEADROOM * self.request_deadline

    @property
    def longest_command_deadline(self) -> float:
        """The longest ``command_deadline`` of any account: one run claims messages of
        every account, so its lease must outlive the slowest account's call."""
        top = self.process
        accounts = [top] + [
            ClickatellSettings(top._values, alias=alias) for alias in aliases(top.values())[1:]
        ]
        return max(account.command_deadline for account in accounts)

    @property
    def minimum_claim_timeout(self) -> float:
        return leases.CLAIM_HEADROOM * self.longest_command_deadline


app_settings = ClickatellSettings()


def account_settings(alias: str = DEFAULT_ACCOUNT) -> ClickatellSettings:
    """The settings of the account *alias*; ``UnknownAccount`` (an ``ImproperlyConfigured``
    naming the alias) when ``ACCOUNTS`` does not define it."""
    if alias == DEFAULT_ACCOUNT:
        return app_settings
    config = ClickatellSettings(alias=alias)
    config.account_values()  # raises for an unknown alias, now rather than at first use
    return config


def account_aliases() -> list[str]:
    """Every configured account, ``"default"`` first."""
    return aliases(user_settings())
