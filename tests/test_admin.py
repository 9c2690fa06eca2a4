"""The admin action through Django's test client: confirmation, permission, constant cost."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from django_clickatell.models import (
    CancellationBatch,
    CancelState,
    GatewayExchange,
    OutboundMessage,
)
from django_clickatell.services.cancel_batches import prepare_batch, selection_size
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:django_clickatell_outboundmessage_changelist")


def prepare(batch: CancellationBatch) -> None:
    """What the worker's ``cancel_batch`` task does first: mark the selection (no chunk tasks)."""
    prepare_batch(batch.pk, lambda *chunk: None)


def staff(*perms: str) -> User:
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    for codename in perms:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def action_post(pks: list[int], *, confirm: bool, select_across: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "action": "cancel_delivery",
        "_selected_action": [str(pk) for pk in pks],
        "index": "0",
        "select_across": "1" if select_across else "0",
    }
    if confirm:
        data["post"] = "yes"
    return data


def test_changelist_shows_gateway_columns(admin_client: Client) -> None:
    scheduled_messages(None, 3)
    response = admin_client.get(CHANGELIST)
    content = response.content.decode()
    assert response.status_code == 200
    assert 'title="011 – Message queued for later delivery">011 scheduled<' in content
    assert "Cancel scheduled delivery" in content
    assert admin_client.get(CHANGELIST, {"q": "c1"}).status_code == 200
    assert admin_client.get(CHANGELIST, {"status__exact": "011"}).status_code == 200


def test_change_page_has_read_only_exchange_log(admin_client: Client) -> None:
    [message] = scheduled_messages(None, 1)
    GatewayExchange.objects.create(
        message=message, command="delmsg", via="task", outcome="status", status="006"
    )
    url = reverse("admin:django_clickatell_outboundmessage_change", args=[message.pk])
    content = admin_client.get(url).content.decode()
    assert "exchanges with clickatell" in content.lower()
    assert 'name="apimsgid"' not in content  # gateway fields are read-only


def test_confirmation_lists_work_and_skips(admin_client: Client) -> None:
    messages = scheduled_messages(None, 4)
    scheduled_messages(None, 2, status="004")
    pks = list(OutboundMessage.objects.values_list("pk", flat=True))
    response = admin_client.post(CHANGELIST, action_post(pks, confirm=False))
    content = response.content.decode()
    assert response.status_code == 200
    assert "4 messages will be stopped." in content
    assert "<strong>2</strong> already final or stopped" in content
    assert messages[0].recipient in content
    assert OutboundMessage.objects.filter(cancel_state=CancelState.PENDING).count() == 0


def test_confirmed_action_queues_and_reports(
    admin_client: Client, admin_user: User, django_capture_on_commit_callbacks: Any
) -> None:
    scheduled_messages(None, 4)
    scheduled_messages(None, 1, status="004")
    pks = list(OutboundMessage.objects.values_list("pk", flat=True))
    with django_capture_on_commit_callbacks() as callbacks:
        response = admin_client.post(CHANGELIST, action_post(pks, confirm=True), follow=True)
    assert len(callbacks) == 1  # one broker message, after commit
    content = response.content.decode()
    assert "4 messages queued for Clickatell." in content
    assert "1 message skipped: 1 already final or stopped" in content
    batch = CancellationBatch.objects.get()
    assert (batch.total, batch.skipped, batch.requested_by) == (4, 1, admin_user)
    assert LogEntry.objects.filter(object_id=str(batch.pk)).exists()
    # The action records the selection; the worker marks the messages.
    assert selection_size(batch.pk) == 4
    assert batch.prepared_at is None
    assert OutboundMessage.objects.filter(cancel_state=CancelState.PENDING).count() == 0
    prepare(batch)
    assert OutboundMessage.objects.filter(cancel_state=CancelState.PENDING).count() == 4
    assert OutboundMessage.objects.filter(cancel_requested_by=admin_user).count() == 4
    batch.refresh_from_db()
    assert batch.prepared_at is not None
    assert (batch.total, batch.skipped) == (4, 1)


def test_batch_progress_page(admin_client: Client) -> None:
    scheduled_messages(None, 3)
    pks = list(OutboundMessage.objects.values_list("pk", flat=True))
    admin_client.post(CHANGELIST, action_post(pks, confirm=True))
    batch = CancellationBatch.objects.get()
    url = reverse("admin:django_clickatell_cancellationbatch_change", args=[batch.pk])
    before = admin_client.get(url).content.decode()
    assert "Being prepared: 3 of 3 not yet handed to workers." in before
    assert "0 of 3 settled" in before
    prepare(batch)
    OutboundMessage.objects.filter(pk=pks[0]).update(cancel_state=CancelState.CANCELLED)
    content = admin_client.get(
        reverse("admin:django_clickatell_cancellationbatch_changelist")
    ).content.decode()
    assert f"?batch__id__exact={batch.pk}" in content
    detail = admin_client.get(
        reverse("admin:django_clickatell_cancellationbatch_change", args=[batch.pk])
    ).content.decode()
    assert "1 of 3 settled" in detail
    assert f"?batch__id__exact={batch.pk}&amp;state=stopped" in detail  # "1 stopped", linked
    assert f"?batch__id__exact={batch.pk}&amp;state=stop_queued" in detail  # "2 left", linked


@pytest.mark.parametrize(
    "perms", [("view_outboundmessage",), ("view_outboundmessage", "delete_outboundmessage")]
)
def test_without_permission_no_action_and_forged_post_refused(
    client: Client, perms: tuple[str, ...]
) -> None:
    user = staff(*perms)
    client.force_login(user)
    scheduled_messages(None, 2)
    pks = list(OutboundMessage.objects.values_list("pk", flat=True))
    page = client.get(CHANGELIST).content.decode()
    assert "cancel_delivery" not in page
    response = client.post(CHANGELIST, action_post(pks, confirm=True), follow=True)
    assert response.status_code == 200
    if "delete_outboundmessage" in perms:  # other actions exist: the forged one is rejected
        assert "No action selected." in response.content.decode()
    assert OutboundMessage.objects.filter(cancel_state=CancelState.NOT_REQUESTED).count() == 2
    assert not CancellationBatch.objects.exists()


def test_with_permission_action_available(client: Client) -> None:
    client.force_login(staff("view_outboundmessage", "cancel_outboundmessage"))
    assert "cancel_delivery" in client.get(CHANGELIST).content.decode()


def test_anonymous_reaches_nothing(client: Client) -> None:
    scheduled_messages(None, 1)
    for url in (CHANGELIST, reverse("admin:django_clickatell_cancellationbatch_changelist")):
        response = client.get(url)
        assert response.status_code == 302
        assert "/login/" in response["Location"]
    response = client.post(CHANGELIST, action_post([1], confirm=True))
    assert response.status_code == 302
    assert not CancellationBatch.objects.exists()


def test_csrf_enforced(admin_user: User) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    scheduled_messages(None, 1)
    pks = list(OutboundMessage.objects.values_list("pk", flat=True))
    assert client.post(CHANGELIST, action_post(pks, confirm=True)).status_code == 403
    assert not CancellationBatch.objects.exists()


def count_action_queries(admin_client: Client, n: int) -> tuple[int, int]:
    OutboundMessage.objects.all().delete()
    scheduled_messages(None, n)
    page_pks = list(OutboundMessage.objects.order_by("-pk").values_list("pk", flat=True)[:10])
    counts = []
    for confirm in (False, True):
        with CaptureQueriesContext(connection) as ctx:
            response = admin_client.post(
                CHANGELIST, action_post(page_pks, confirm=confirm, select_across=True)
            )
        assert response.status_code in (200, 302)
        counts.append(len(ctx.captured_queries))
    prepare(CancellationBatch.objects.latest("pk"))
    assert OutboundMessage.objects.filter(cancel_state=CancelState.PENDING).count() == n
    return counts[0], counts[1]


def test_action_query_count_does_not_grow(admin_client: Client) -> None:
    small = count_action_queries(admin_client, 10)
    large = count_action_queries(admin_client, 10_000)
    assert small == large, (small, large)


def test_action_survives_gateway_outage(admin_client: Client, settings: Any) -> None:
    """Queuing never talks to the gateway: an outage cannot turn the action into a 500."""
    settings.CLICKATELL = {**settings.CLICKATELL, "BASE_URL": "http://127.0.0.1:9/http/"}
    scheduled_messages(None, 2)
    pks = list(OutboundMessage.objects.values_list("pk", flat=True))
    response = admin_client.post(CHANGELIST, action_post(pks, confirm=True), follow=True)
    assert response.status_code == 200
    assert "2 messages queued for Clickatell." in response.content.decode()
    prepare(CancellationBatch.objects.get())
    assert OutboundMessage.objects.filter(cancel_state=CancelState.PENDING).count() == 2


@pytest.mark.django_db(transaction=True)
def test_broker_outage_is_reported_not_a_500(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kombu.exceptions import OperationalError

    from django_clickatell import tasks

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(tasks.cancel_batch, "apply_async", refuse)
    scheduled_messages(None, 2)
    pks = list(OutboundMessage.objects.values_list("pk", flat=True))
    response = admin_client.post(CHANGELIST, action_post(pks, confirm=True), follow=True)
    assert response.status_code == 200
    assert "the task queue could not be reached" in response.content.decode()
    # Nothing is lost: the batch waits, recorded, for requeue_stalled_work (stalled_batches).
    batch = CancellationBatch.objects.get()
    assert batch.prepared_at is None
    assert selection_size(batch.pk) == 2


# -- the admin cannot diverge from the gateway ---------------------------------------------

ADD = reverse("admin:django_clickatell_outboundmessage_add")
GATEWAY_INPUT = ("recipient", "sender", "text", "scheduled_for")


def change_url(message: OutboundMessage) -> str:
    return reverse("admin:django_clickatell_outboundmessage_change", args=[message.pk])


def edited_form(message: OutboundMessage) -> dict[str, Any]:
    """Everything a change form could carry, with the message's fields changed."""
    return {
        "recipient": "27111111111",
        "sender": "Forged",
        "text": "changed behind Clickatell's back",
        "scheduled_for_0": "2031-01-01",
        "scheduled_for_1": "09:00:00",
        "send_options": '{"deliv_time": "1"}',
        "exchanges-TOTAL_FORMS": "0",
        "exchanges-INITIAL_FORMS": "0",
        "exchanges-MIN_NUM_FORMS": "0",
        "exchanges-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }


def test_no_add_for_outbound_messages(admin_client: Client) -> None:
    """A row added by hand would claim a message Clickatell never got."""
    assert admin_client.get(ADD).status_code == 403
    response = admin_client.post(ADD, {"recipient": "27999000001", "text": "hand-made"})
    assert response.status_code == 403
    assert not OutboundMessage.objects.exists()
    assert ADD not in admin_client.get(CHANGELIST).content.decode()


@pytest.mark.parametrize(
    "state",
    [
        {"send_state": "sent"},  # handed to Clickatell
        {"send_state": "queued", "apimsgid": None},  # not yet sent: a worker may claim it now
        {"send_state": ""},  # recorded from elsewhere (not sent by this app)
    ],
    ids=["sent", "queued", "not-sent-here"],
)
def test_message_fields_cannot_be_changed(admin_client: Client, state: dict[str, Any]) -> None:
    [message] = scheduled_messages(None, 1, send_options={"deliv_time": "60"}, **state)
    before = OutboundMessage.objects.values(*GATEWAY_INPUT, "send_options", "updated_at").get()
    page = admin_client.get(change_url(message)).content.decode()
    for name in GATEWAY_INPUT:
        assert f'name="{name}' not in page, name  # shown, not editable
    assert message.recipient in page
    assert "deliv_time" in page  # the send options are shown
    response = admin_client.post(change_url(message), edited_form(message))
    assert response.status_code == 403
    after = OutboundMessage.objects.values(*GATEWAY_INPUT, "send_options", "updated_at").get()
    assert after == before


def test_operator_with_change_permission_keeps_the_actions(client: Client) -> None:
    client.force_login(staff("view_outboundmessage", "change_outboundmessage"))
    [message] = scheduled_messages(None, 1)
    assert "refresh_status" in client.get(CHANGELIST).content.decode()
    assert client.get(change_url(message)).status_code == 200
    assert client.post(change_url(message), edited_form(message)).status_code == 403
    assert OutboundMessage.objects.get().recipient == message.recipient


class TestWaysOutOfAFailedSend:
    """Rejected, failed and unknown sends are offered to the operator (issue 11)."""

    def post(self, client: Client, action: str, pks: list[int], *, confirm: bool) -> Any:
        data = {**action_post(pks, confirm=confirm), "action": action}
        return client.post(CHANGELIST, data)

    def test_send_again_needs_its_permission_and_a_confirmation(
        self, client: Client, django_capture_on_commit_callbacks: Any
    ) -> None:
        from django_clickatell.models import SendState
        from django_clickatell.services.composing import create_messages

        rejected, sent = create_messages(["27999000001", "27999000002"], "hi")
        OutboundMessage.objects.filter(pk=rejected.pk).update(
            send_state=SendState.REJECTED, send_error="ERR 301: No credit left"
        )
        OutboundMessage.objects.filter(pk=sent.pk).update(send_state=SendState.SENT)
        client.force_login(staff("view_outboundmessage"))
        assert 'value="send_again"' not in client.get(CHANGELIST).content.decode()
        refused = self.post(client, "send_again", [rejected.pk], confirm=True)
        assert refused.status_code == 200  # "no action selected": nothing happens
        assert OutboundMessage.objects.get(pk=rejected.pk).send_state == SendState.REJECTED

        client.force_login(User.objects.create_user("sender", is_staff=True))
        user = User.objects.get(username="sender")
        for codename in ("view_outboundmessage", "send_outboundmessage"):
            user.user_permissions.add(Permission.objects.get(codename=codename))
        page = self.post(client, "send_again", [rejected.pk, sent.pk], confirm=False)
        content = page.content.decode()
        assert "1 message is concerned" in content
        assert "ERR 301: No credit left" in content
        assert "1 selected message is left alone" in content
        assert OutboundMessage.objects.get(pk=rejected.pk).send_state == SendState.REJECTED
        with django_capture_on_commit_callbacks() as callbacks:
            self.post(client, "send_again", [rejected.pk, sent.pk], confirm=True)
        assert len(callbacks) == 1
        states = dict(OutboundMessage.objects.values_list("pk", "send_state"))
        assert states == {rejected.pk: SendState.QUEUED, sent.pk: SendState.SENT}

    def test_ask_again_moves_unknown_sends_to_verification(
        self, admin_client: Client, django_capture_on_commit_callbacks: Any
    ) -> None:
        from django_clickatell.models import SendState
        from django_clickatell.services.composing import create_messages

        [unknown] = create_messages("27999000001", "hi")
        OutboundMessage.objects.update(send_state=SendState.UNKNOWN, send_error="Gave up")
        with django_capture_on_commit_callbacks() as callbacks:
            self.post(admin_client, "ask_again", [unknown.pk], confirm=True)
        assert len(callbacks) == 1
        unknown.refresh_from_db()
        assert unknown.send_state == SendState.VERIFYING
