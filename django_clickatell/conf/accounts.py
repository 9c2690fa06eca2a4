"""Named accounts, like ``DATABASES``: ``CLICKATELL["ACCOUNTS"] = {"alias": {...}}``.

The top-level keys of ``CLICKATELL`` are the account ``"default"`` (the
single-account settings of old keep working unchanged); ``ACCOUNTS`` adds more,
each a dict of its own.  Account-scoped keys (credentials, ``BACKEND``,
``BASE_URL``, timeouts, sessions, callbacks, balance) are read from the
account's own dict and never inherited from the top level -- a One API account
must not pick up the legacy ``BASE_URL`` or password.  Process-wide keys
(leases, tasks, the cache, ``KEEP_TEXT``) are read from the top level only.

This module reads the raw dicts and checks their shape; ``options`` builds the
:class:`~.options.ClickatellSettings` of an account from them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from .errors import SettingError, UnknownAccount
from .values import Kind

ACCOUNTS = "ACCOUNTS"
DEFAULT_ACCOUNT = "default"
#: What an alias may be: it is stored on every message (``OutboundMessage.account``, 32 chars).
ALIAS = re.compile(r"[A-Za-z0-9_-]{1,32}")


class MalformedAccounts(SettingError):
    """``ACCOUNTS`` is not a dict of dicts."""

    check_id = "django_clickatell.E011"


class BadAlias(UnknownAccount):
    """An alias in ``ACCOUNTS`` that cannot name an account (``"default"``, too long, spaces)."""


def named_accounts(values: Mapping[str, Any]) -> Mapping[str, Mapping[str, Any]]:
    """``ACCOUNTS`` of *values*, its shape checked: a dict of dicts, each alias valid."""
    accounts = values.get(ACCOUNTS)
    if accounts is None:
        return {}
    if not isinstance(accounts, Mapping):
        raise MalformedAccounts(
            f"settings.CLICKATELL[{ACCOUNTS!r}] must be a dict of account dicts, "
            f"not {type(accounts).__name__}."
        )
    for alias, account in accounts.items():
        check_alias(alias)
        if not isinstance(account, Mapping):
            raise MalformedAccounts(
                f"settings.CLICKATELL[{ACCOUNTS!r}][{alias!r}] must be a dict of settings, "
                f"not {type(account).__name__}."
            )
    return accounts


def check_alias(alias: object) -> str:
    """*alias* if it can name an account in ``ACCOUNTS``; ``BadAlias`` otherwise."""
    if not isinstance(alias, str) or not ALIAS.fullmatch(alias):
        raise BadAlias(
            f"settings.CLICKATELL[{ACCOUNTS!r}] has an account named {str(alias)[:40]!r}: an "
            "alias is 1 to 32 letters, digits, '_' or '-'."
        )
    if alias == DEFAULT_ACCOUNT:
        raise BadAlias(
            f"settings.CLICKATELL[{ACCOUNTS!r}] must not define {DEFAULT_ACCOUNT!r}: the "
            "top-level keys of CLICKATELL are the default account."
        )
    return alias


def account_values(values: Mapping[str, Any], alias: str) -> Mapping[str, Any]:
    """The dict account-scoped keys of *alias* are read from; ``UnknownAccount`` if none."""
    if alias == DEFAULT_ACCOUNT:
        return values
    accounts = named_accounts(values)
    if alias not in accounts:
        known = ", ".join([DEFAULT_ACCOUNT, *sorted(accounts)])
        raise UnknownAccount(
            f"No Clickatell account named {alias[:40]!r}: add it to "
            f"settings.CLICKATELL[{ACCOUNTS!r}] (configured: {known})."
        )
    return accounts[alias]


def aliases(values: Mapping[str, Any]) -> list[str]:
    """Every configured alias, ``"default"`` first."""
    return [DEFAULT_ACCOUNT, *sorted(named_accounts(values))]


ACCOUNTS_KIND: Kind[Mapping[str, Mapping[str, Any]]] = Kind(
    lambda key, value: named_accounts({ACCOUNTS: value}),
    "dict of account dicts",
    "aliases of 1 to 32 letters, digits, ``_`` or ``-``, not ``default``",
)
