"""The account balance (``getbalance``), cached briefly so admin pages stay fast."""

from __future__ import annotations

import logging
from decimal import Decimal

from django.core.cache import caches

from ..conf import app_settings
from ..exceptions import ClickatellError
from ..gateway.client import ClickatellClient

logger = logging.getLogger("django_clickatell.balance")


def get_balance(*, cached: bool = True, client: ClickatellClient | None = None) -> Decimal:
    """The remaining credit; raises :class:`~django_clickatell.exceptions.ClickatellError`."""
    cache = caches[app_settings.cache_alias]
    key = f"{app_settings.cache_key_prefix}:balance:{hash(app_settings.account_namespace)}"
    if cached:
        try:
            value = cache.get(key)
        except Exception:  # the cache is down: ask the gateway instead
            logger.warning("Balance cache unreachable", exc_info=True)
            value = None
        if value is not None:
            return Decimal(value)
    credit = (client or ClickatellClient()).getbalance().credit
    if app_settings.balance_cache_seconds:
        try:
            cache.set(key, str(credit), timeout=app_settings.balance_cache_seconds)
        except Exception:
            logger.warning("Balance cache unreachable", exc_info=True)
    return credit


def balance_or_none() -> Decimal | None:
    """For display: the balance, or None when Clickatell cannot say right now."""
    try:
        return get_balance()
    except ClickatellError as exc:
        logger.warning("Balance unavailable: %s", exc)
        return None
