"""The ``CLICKATELL`` settings dict, read lazily through a small typed object.

Every attribute of :data:`app_settings` reads ``settings.CLICKATELL`` again, so
``override_settings`` works everywhere.  A missing, mistyped or out-of-range
key raises ``ImproperlyConfigured`` naming the key; the system checks report
the same problems at start-up, each under its own id.

One module per job:

* ``errors`` -- one exception class per problem, each with its check id;
* ``values`` -- what each key accepts (parsers, with the type and bounds the
  reference shows); ``base_url`` -- the gateway URL and whether it is safe;
* ``descriptor`` -- :class:`Option`, one key read, validated and documented;
* ``options`` -- :class:`ClickatellSettings`, every key: the single source of
  the settings reference in README.rst and docs/configuration.rst;
* ``accounts`` -- named accounts (``ACCOUNTS``): which dict each key is read from;
* ``leases`` -- the deadlines and the leases sized from them.
"""

from .accounts import ACCOUNTS, ALIAS, DEFAULT_ACCOUNT, BadAlias, MalformedAccounts
from .base_url import insecure_base_url_reason, is_loopback, require_secure_base_url
from .descriptor import ACCOUNT, PROCESS, Derived, Option, user_settings
from .errors import (
    AccountKey,
    CredentialsInUrl,
    LeaseTooShort,
    Malformed,
    MalformedUrl,
    Missing,
    OutOfRange,
    SettingError,
    UnknownAccount,
    UnknownBackend,
    WrongType,
)
from .leases import (
    AUTH_POLL_MAX,
    CLAIM_HEADROOM,
    DEFAULT_AUTH_LOCK_TIMEOUT,
    DEFAULT_CLAIM_TIMEOUT,
    LOCK_HEADROOM,
)
from .options import (
    API_KEY_BACKENDS,
    DEFAULT_BASE_URLS,
    LEGACY,
    ClickatellSettings,
    account_aliases,
    account_settings,
    app_settings,
)
from .values import (
    MAX_CALLBACK_CREDENTIALS,
    MAX_CONNECT_TIMEOUT,
    MAX_READ_TIMEOUT,
    MAX_SESSION_TTL,
    Kind,
    count,
    seconds,
)

__all__ = [
    "ACCOUNT",
    "ACCOUNTS",
    "ALIAS",
    "API_KEY_BACKENDS",
    "AUTH_POLL_MAX",
    "CLAIM_HEADROOM",
    "DEFAULT_ACCOUNT",
    "DEFAULT_AUTH_LOCK_TIMEOUT",
    "DEFAULT_BASE_URLS",
    "DEFAULT_CLAIM_TIMEOUT",
    "LEGACY",
    "LOCK_HEADROOM",
    "MAX_CALLBACK_CREDENTIALS",
    "MAX_CONNECT_TIMEOUT",
    "MAX_READ_TIMEOUT",
    "MAX_SESSION_TTL",
    "PROCESS",
    "AccountKey",
    "BadAlias",
    "ClickatellSettings",
    "CredentialsInUrl",
    "Derived",
    "Kind",
    "LeaseTooShort",
    "Malformed",
    "MalformedAccounts",
    "MalformedUrl",
    "Missing",
    "Option",
    "OutOfRange",
    "SettingError",
    "UnknownAccount",
    "UnknownBackend",
    "WrongType",
    "account_aliases",
    "account_settings",
    "app_settings",
    "count",
    "insecure_base_url_reason",
    "is_loopback",
    "require_secure_base_url",
    "seconds",
    "user_settings",
]
