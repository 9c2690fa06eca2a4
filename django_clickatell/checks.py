"""System checks: configuration mistakes caught at start-up, before the first request.

Ids are stable and documented; tests assert them by id.

- ``django_clickatell.E001`` a required credential is missing
- ``django_clickatell.E002`` a setting has the wrong type or value
- ``django_clickatell.E003`` ``BASE_URL`` is not https (loopback hosts excepted)
- ``django_clickatell.E004`` ``CACHE_ALIAS`` names no configured cache
- ``django_clickatell.E005`` ``CLAIM_TIMEOUT`` is shorter than the work of one claimed message
- ``django_clickatell.E006`` ``AUTH_LOCK_TIMEOUT`` is shorter than one login request
- ``django_clickatell.W001`` the session cache is not shared between processes
- ``django_clickatell.W002`` an unknown key in ``CLICKATELL`` (probably a typo)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning
from django.core.exceptions import ImproperlyConfigured

from .conf import (
    ClickatellSettings,
    LeaseTooShort,
    app_settings,
    insecure_base_url_reason,
    user_settings,
)

PER_PROCESS_CACHES = {
    "django.core.cache.backends.locmem.LocMemCache": "keeps entries inside one process",
    "django.core.cache.backends.dummy.DummyCache": "stores nothing at all",
    "django.core.cache.backends.filebased.FileBasedCache": "is not shared between machines",
}
CREDENTIALS = ("USERNAME", "PASSWORD", "API_ID")


def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    try:
        values = user_settings()
    except ImproperlyConfigured as exc:
        return [Error(str(exc), id="django_clickatell.E002")]
    messages: list[CheckMessage] = []
    options = ClickatellSettings.options()
    for key in CREDENTIALS:
        if not values.get(key):
            messages.append(
                Error(
                    f"settings.CLICKATELL[{key!r}] is missing.",
                    hint="Set USERNAME, PASSWORD and API_ID of your Clickatell HTTP API product "
                    "(read the password from the environment, never commit it).",
                    id="django_clickatell.E001",
                )
            )
    for key, option in options.items():
        if key in values and values[key] is not None and not (option.required and not values[key]):
            try:
                option.value(app_settings)
            except ImproperlyConfigured as exc:
                messages.append(Error(str(exc), id="django_clickatell.E002"))
    for key in sorted(set(values) - set(options)):
        messages.append(
            Warning(
                f"settings.CLICKATELL has an unknown key {key!r}.",
                hint=f"Known keys: {', '.join(sorted(options))}.",
                id="django_clickatell.W002",
            )
        )
    if not any(m.id == "django_clickatell.E002" for m in messages):
        messages += _check_leases(options) + _check_base_url() + _check_cache()
    return messages


def _check_leases(options: dict[str, Any]) -> list[CheckMessage]:
    """Each lease against the work it guards (ids E005, E006), once every value parses."""
    messages: list[CheckMessage] = []
    for option in options.values():
        if option.relation is None:
            continue
        try:
            option.__get__(app_settings, ClickatellSettings)
        except LeaseTooShort as exc:
            messages.append(
                Error(
                    str(exc),
                    hint="See 'Deadlines and leases' in the settings reference.",
                    id=exc.check_id,
                )
            )
    return messages


def _check_base_url() -> list[CheckMessage]:
    reason = insecure_base_url_reason(app_settings.base_url)
    if reason is None:
        return []
    return [
        Error(
            f"settings.CLICKATELL['BASE_URL'] is not https: {app_settings.base_url!r}.",
            hint="Credentials and session ids would cross the network in clear text. "
            "Plain http is accepted only for a loopback simulator; anything else is refused "
            "before a request is made.",
            id="django_clickatell.E003",
        )
    ]


def _check_cache() -> list[CheckMessage]:
    alias = app_settings.cache_alias
    caches: dict[str, dict[str, Any]] = settings.CACHES
    if alias not in caches:
        return [
            Error(
                f"settings.CLICKATELL['CACHE_ALIAS'] is {alias!r}, but CACHES has no such alias.",
                hint=f"Configured aliases: {', '.join(sorted(caches)) or 'none'}.",
                id="django_clickatell.E004",
            )
        ]
    backend = caches[alias].get("BACKEND", "")
    if backend in PER_PROCESS_CACHES:
        return [
            Warning(
                f"The Clickatell session is cached in {alias!r} ({backend.rsplit('.', 1)[-1]}), "
                f"which {PER_PROCESS_CACHES[backend]}.",
                hint="Every worker process would authenticate on its own and the single-flight "
                "lock would not hold. Point CACHE_ALIAS at Redis or Memcached.",
                id="django_clickatell.W001",
            )
        ]
    return []
