"""Backends: one class per Clickatell API, all behind :class:`~.base.Backend`.

``BACKEND`` names one by its short name (below) or by a dotted path to a
:class:`~.base.Backend` subclass of your own.  :func:`get_backend` builds the
backend of a named account (``"default"``: the top-level ``CLICKATELL`` keys;
the others: ``CLICKATELL["ACCOUNTS"]``, see :mod:`django_clickatell.conf.accounts`).
"""

from __future__ import annotations

from django.utils.module_loading import import_string

from ...conf import DEFAULT_ACCOUNT, UnknownBackend, account_settings
from ...conf.errors import describe
from ..transport import reset_transports
from .base import Backend, Capabilities, OutgoingSms, SendResult

#: Short names accepted in ``BACKEND``.
BACKENDS: dict[str, str] = {
    "legacy_http": "django_clickatell.gateway.backends.legacy_http.LegacyHttpBackend",
    "rest": "django_clickatell.gateway.backends.rest.RestBackend",
    "one_api": "django_clickatell.gateway.backends.one_api.OneApiBackend",
    # For your test suite (in memory, no sockets) and for development (prints each SMS).
    "test": "django_clickatell.gateway.backends.locmem.TestBackend",
    "locmem": "django_clickatell.gateway.backends.locmem.TestBackend",
    "console": "django_clickatell.gateway.backends.console.ConsoleBackend",
}


def backend_class(name: str, key: str = "BACKEND") -> type[Backend]:
    """The class ``BACKEND`` names; ``UnknownBackend`` (check ``E013``) naming *key* otherwise.

    *key* is how messages name the setting (an account's ``AccountKey``).
    """
    path = BACKENDS.get(name, name)
    try:
        cls = import_string(path)
    except ImportError:
        known = ", ".join(sorted(BACKENDS))
        raise UnknownBackend(
            f"{describe(key)} = {name[:80]!r} is neither one of {known} nor an importable "
            "dotted path to a Backend class."
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise UnknownBackend(f"{describe(key)} = {name[:80]!r} is not a Backend class.")
    return cls


def get_backend(account: str = DEFAULT_ACCOUNT) -> Backend:
    """The backend of *account*, built from its settings (``UnknownAccount`` if none such)."""
    config = account_settings(account)
    return backend_class(config.backend, config.key("BACKEND"))(config, alias=account)


def account_capabilities(account: str = DEFAULT_ACCOUNT) -> Capabilities:
    """What *account*'s backend can do, without building it (no client, no secret read).

    ``ImproperlyConfigured`` (``UnknownAccount``, ``UnknownBackend``) when the account is
    not configured or its ``BACKEND`` names no backend class.
    """
    config = account_settings(account)
    return backend_class(config.backend, config.key("BACKEND")).current_capabilities()


def reset_connections() -> None:
    """Drop every pooled connection and memoised session id (between tests).

    The transports are the gateway's own business; a test suite resets them
    through this, never by importing them.
    """
    reset_transports()


__all__ = [
    "BACKENDS",
    "DEFAULT_ACCOUNT",
    "Backend",
    "Capabilities",
    "OutgoingSms",
    "SendResult",
    "account_capabilities",
    "account_settings",
    "backend_class",
    "get_backend",
    "reset_connections",
]
