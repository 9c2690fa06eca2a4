"""With several accounts the operator sees which account each message went through.

The docs tell operators moving an account to the One API to "filter the admin
list by account and state"; the list shows the account column, the filter and
each account's credit only once there is more than one account.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from django_clickatell import api

pytestmark = pytest.mark.django_db

URL = reverse("admin:django_clickatell_outboundmessage_changelist")


@pytest.fixture
def two_accounts(settings: Any) -> None:
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "BACKEND": "test",
        "ACCOUNTS": {"platform": {"BACKEND": "test", "API_KEY": "k" * 20}},
    }


def test_one_account_shows_no_account_column(admin_client: Client, settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "BACKEND": "test"}
    api.send_sms("27999000001", "hi", wait=True)
    page = admin_client.get(URL).content.decode()
    assert "column-account" not in page
    assert "?account=" not in page


def test_several_accounts_show_the_column_the_filter_and_each_credit(
    admin_client: Client, two_accounts: None
) -> None:
    api.send_sms("27999000001", "hi", wait=True)
    api.send_sms("27999000002", "hi", wait=True, account="platform")
    page = admin_client.get(URL).content.decode()
    assert "column-account" in page
    assert "?account=platform" in page
    assert 'data-account="default"' in page
    assert 'data-account="platform"' in page
    filtered = admin_client.get(URL, {"account": "platform"}).content.decode()
    assert "27999000002" in filtered
    assert "27999000001" not in filtered


def test_the_account_commands_take_an_account(two_accounts: None, settings: Any) -> None:
    from io import StringIO

    from django.core.management import CommandError, call_command

    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "ACCOUNTS": {"platform": {"BACKEND": "test", "API_KEY": "k" * 20}},
    }
    out = StringIO()
    call_command("clickatell_auth", "--account", "platform", stdout=out)
    assert "API key of account 'platform'" in out.getvalue()
    call_command("clickatell_balance", "--account", "platform", stdout=out)
    assert "Credit:" in out.getvalue()
    with pytest.raises(CommandError, match="nowhere"):
        call_command("clickatell_balance", "--account", "nowhere")
