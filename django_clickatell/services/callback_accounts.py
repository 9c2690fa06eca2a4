"""Which account a legacy status callback belongs to: the one whose ``API_ID`` it carries.

Clickatell sets the callback URL, its credentials and its ``api_id`` per API
product, and one product is one account in settings.  So one URL
(``<prefix>/callback/``) serves every account whose API pushes the legacy
callback fields (``Capabilities.callbacks == "form"``): the ``api_id`` of a
callback names the account, that account's ``CALLBACK_*`` credentials
authenticate it, and only that account's messages can be touched by it.  Two
such accounts with one ``API_ID`` cannot be told apart: check ``E014`` reports
them, and their callbacks are refused until the settings are fixed (Clickatell
retries them for days).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from ..conf import DEFAULT_ACCOUNT, ClickatellSettings, SettingError, account_aliases
from ..conf import account_settings as settings_of
from ..gateway.backends import backend_class

#: The ``Capabilities.callbacks`` of an API whose callbacks are the legacy form fields.
FORM = "form"


class AmbiguousApiId(SettingError):
    """Two accounts with legacy callbacks set one ``API_ID``: no callback can be routed."""

    check_id = "django_clickatell.E014"


@dataclass(frozen=True)
class Route:
    """Where a legacy callback goes: the account to authenticate it and to apply it to.

    ``owned`` is False when no account has the callback's ``api_id``: the default
    account's credentials are checked then, and the service refuses the api_id.
    """

    account: ClickatellSettings
    owned: bool


def callback_kind(config: ClickatellSettings) -> str:
    """How the account's callbacks arrive: its backend's ``Capabilities.callbacks``
    (``"form"``, ``"json"`` or ``""``); ``UnknownBackend`` for a bad ``BACKEND``."""
    return backend_class(config.backend, config.key("BACKEND")).capabilities.callbacks


def receives_form_callbacks(config: ClickatellSettings) -> bool:
    """Whether the account's API pushes legacy form callbacks (and so owns its ``API_ID``)."""
    return callback_kind(config) == FORM


def api_id_owners() -> dict[str, list[str]]:
    """Each ``API_ID`` set by an account with form callbacks, and the aliases setting it.

    An account whose ``BACKEND`` or ``API_ID`` cannot be read owns nothing (the
    checks report its setting by its own id, and its callbacks are refused until
    it is fixed); the other accounts' callbacks still arrive.  ``ACCOUNTS``
    itself unusable raises its ``SettingError``.
    """
    owners: dict[str, list[str]] = defaultdict(list)
    for alias in account_aliases():
        config = settings_of(alias)
        try:
            if not config.account_values().get("API_ID") or not receives_form_callbacks(config):
                continue
            api_id = config.api_id
        except SettingError:
            continue
        owners[api_id].append(alias)
    return dict(owners)


def ambiguous_api_ids() -> list[tuple[str, list[str]]]:
    """``(api_id, aliases)`` for every ``API_ID`` more than one such account sets."""
    return sorted(
        (api_id, aliases) for api_id, aliases in api_id_owners().items() if len(aliases) > 1
    )


def route_callback(api_id: str) -> Route:
    """The account a legacy callback carrying *api_id* is checked against and applied to.

    Raises ``AmbiguousApiId`` when two accounts set that ``API_ID``, and the
    ``SettingError`` of an unusable setting.
    """
    owners = api_id_owners().get(api_id, [])
    if len(owners) > 1:
        accounts = " and ".join(repr(alias) for alias in owners)
        raise AmbiguousApiId(
            f"The accounts {accounts} set the same API_ID {api_id}: their legacy callbacks "
            "cannot be told apart, so each is refused until one account per API product "
            "is configured."
        )
    if owners:
        return Route(settings_of(owners[0]), owned=True)
    return Route(settings_of(DEFAULT_ACCOUNT), owned=False)
