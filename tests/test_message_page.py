"""The message page shows what an operator needs (issue 21): the account, and the exchange
log to whoever may view the message -- before, an operator without
``view_gatewayexchange`` silently saw no exchanges at all."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.test import Client
from django.urls import reverse

from django_clickatell.models import GatewayExchange, OutboundMessage
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db


def page_of(message: OutboundMessage) -> str:
    return reverse("admin:django_clickatell_outboundmessage_change", args=[message.pk])


def operator(*codenames: str) -> User:
    user = User.objects.create_user("viewer", password="pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


@pytest.fixture
def message() -> OutboundMessage:
    [message] = scheduled_messages(None, 1)
    GatewayExchange.objects.create(
        message=message,
        command="querymsg",
        via="task",
        outcome="transport_error",
        detail="exchange-marker",
    )
    return message


def test_the_page_shows_the_messages_account(admin_client: Client) -> None:
    [message] = scheduled_messages(None, 1)
    OutboundMessage.objects.filter(pk=message.pk).update(account="platform-eu")
    content = admin_client.get(page_of(message)).content.decode()
    assert "platform-eu" in content


def test_whoever_may_view_the_message_sees_its_exchanges(
    client: Client, message: OutboundMessage
) -> None:
    client.force_login(operator("view_outboundmessage"))
    response = client.get(page_of(message))
    assert response.status_code == 200
    assert "exchange-marker" in response.content.decode()


def test_exchanges_stay_read_only_for_a_viewer(client: Client, message: OutboundMessage) -> None:
    client.force_login(operator("view_outboundmessage", "change_outboundmessage"))
    content = client.get(page_of(message)).content.decode()
    assert "exchange-marker" in content
    assert "gatewayexchange_set-0-DELETE" not in content


def test_without_view_permission_on_messages_there_is_no_page(
    client: Client, message: OutboundMessage
) -> None:
    client.force_login(operator("view_gatewayexchange"))
    assert client.get(page_of(message)).status_code == 403
