"""Issue 19, re-tried from outside (helper w2c): what broke, each test failing before its fix."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_clickatell.gateway.backends import get_backend
from django_clickatell.simulator import ClickatellSimulator
from tests.every_backend import BACKENDS, backend_settings

pytestmark = pytest.mark.django_db

INSECURE = "http://gateway.example.com/"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_named_accounts_plain_http_url_names_that_accounts_setting(
    backend: str, simulator: ClickatellSimulator, settings: Any
) -> None:
    """Item 7: it named ``settings.CLICKATELL['BASE_URL']``, a key the project may not even
    set, for a URL written in ``ACCOUNTS['platform']``."""
    values = {**backend_settings(simulator, backend), "BASE_URL": INSECURE}
    settings.CLICKATELL = {**settings.CLICKATELL, "ACCOUNTS": {"platform": values}}
    with pytest.raises(ImproperlyConfigured) as raised:
        get_backend("platform").balance()
    text = str(raised.value)
    assert "settings.CLICKATELL['ACCOUNTS']['platform']['BASE_URL'] is not https" in text
    assert "settings.CLICKATELL['BASE_URL']" not in text


def test_the_default_accounts_plain_http_url_names_its_top_level_setting(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    settings.CLICKATELL = {**simulator.settings(), "BASE_URL": INSECURE}
    with pytest.raises(ImproperlyConfigured, match=r"settings.CLICKATELL\['BASE_URL'\] is not"):
        get_backend().balance()
