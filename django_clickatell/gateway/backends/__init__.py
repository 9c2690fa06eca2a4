"""Backends: one class per Clickatell API, all behind :class:`~.base.Backend`.

``BACKEND`` names one by its short name (below) or by a dotted path to a
:class:`~.base.Backend` subclass of your own.  :func:`get_backend` builds the
backend of a named account (``"default"``: the top-level ``CLICKATELL`` keys).
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from ...conf import ClickatellSettings, app_settings
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

DEFAULT_ACCOUNT = "default"


def backend_class(name: str) -> type[Backend]:
    """The class ``BACKEND`` names; ``ImproperlyConfigured`` naming the key otherwise."""
    path = BACKENDS.get(name, name)
    try:
        cls = import_string(path)
    except ImportError:
        known = ", ".join(sorted(BACKENDS))
        raise ImproperlyConfigured(
            f"CLICKATELL['BACKEND'] = {name[:80]!r} is neither one of {known} nor an importable "
            "dotted path to a Backend class."
        ) from None
    if not (isinstance(cls, type) and issubclass(cls, Backend)):
        raise ImproperlyConfigured(f"CLICKATELL['BACKEND'] = {name[:80]!r} is not a Backend class.")
    return cls


def account_settings(alias: str = DEFAULT_ACCOUNT) -> ClickatellSettings:
    """The settings of one account (provisional: only the default account so far)."""
    if alias != DEFAULT_ACCOUNT:
        raise ImproperlyConfigured(f"No Clickatell account named {alias[:40]!r}.")
    return app_settings


def get_backend(account: str = DEFAULT_ACCOUNT) -> Backend:
    """The backend of *account*, built from its settings."""
    config = account_settings(account)
    return backend_class(config.backend)(config, alias=account)


__all__ = [
    "BACKENDS",
    "DEFAULT_ACCOUNT",
    "Backend",
    "Capabilities",
    "OutgoingSms",
    "SendResult",
    "account_settings",
    "backend_class",
    "get_backend",
]
