"""What can be wrong with a setting: one class per problem, each with its system check id.

Every class is an ``ImproperlyConfigured`` (what reading a bad setting has always
raised), and carries the id the system checks report it under, so distinct
problems get distinct, stable ids (``checks.py`` documents them).  Messages name
the key and never echo a secret value.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured


class AccountKey(str):
    """A key read from a named account's dict: messages name the account too.

    It is the key itself (parsers take and compare it as a ``str``) and carries
    the alias, so every message a parser writes names the right dict.
    """

    alias: str

    def __new__(cls, key: str, alias: str) -> AccountKey:
        named = super().__new__(cls, key)
        named.alias = alias
        return named


def describe(key: str) -> str:
    """How messages name a key: ``settings.CLICKATELL['KEY']``, or for a named account
    ``settings.CLICKATELL['ACCOUNTS']['alias']['KEY']``."""
    if isinstance(key, AccountKey):
        return f"settings.CLICKATELL['ACCOUNTS'][{key.alias!r}][{str(key)!r}]"
    return f"settings.CLICKATELL[{key!r}]"


class SettingError(ImproperlyConfigured):
    """A value in ``settings.CLICKATELL`` that cannot be used; ``check_id`` reports it."""

    check_id = "django_clickatell.E002"


class Missing(SettingError):
    """A required key is absent."""

    check_id = "django_clickatell.E001"


class WrongType(SettingError):
    """A value of the wrong type or shape (a string for a number, a triple for a pair)."""

    check_id = "django_clickatell.E002"


class OutOfRange(SettingError):
    """A number that is not finite or lies outside its bounds; a list that is too long."""

    check_id = "django_clickatell.E007"


class Malformed(SettingError):
    """Text of the right type but not the right form: empty, or not in its format."""

    check_id = "django_clickatell.E008"


class MalformedUrl(SettingError):
    """``BASE_URL`` is not an http(s) URL, or carries a query or fragment."""

    check_id = "django_clickatell.E009"


class CredentialsInUrl(SettingError):
    """``BASE_URL`` carries a user or password (they would be logged with the URL)."""

    check_id = "django_clickatell.E010"


class UnknownAccount(SettingError):
    """An account alias that ``ACCOUNTS`` does not define (or ``ACCOUNTS`` is unusable)."""

    check_id = "django_clickatell.E012"


class UnknownBackend(SettingError):
    """``BACKEND`` names neither a bundled backend nor an importable ``Backend`` class."""

    check_id = "django_clickatell.E013"


class LeaseTooShort(SettingError):
    """A lease (``CLAIM_TIMEOUT``, ``AUTH_LOCK_TIMEOUT``) shorter than the work it guards.

    ``check_id`` is the system check that reports it (one per lease).
    """

    def __init__(self, message: str, check_id: str) -> None:
        super().__init__(message)
        self.check_id = check_id
