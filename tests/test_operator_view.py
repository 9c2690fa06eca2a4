"""The operator's view (issue 13): what can still be stopped, the list's story, honest pages.

Through Django's test client on the real database; the browser checks of the
same pages (layout, nothing clipped) are in ``test_browser.py``.
"""

from __future__ import annotations

import re
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_clickatell.api import cancel_sms, send_sms
from django_clickatell.models import (
    CancellationBatch,
    CancelState,
    GatewayExchange,
    OutboundMessage,
    SendState,
    Via,
)
from django_clickatell.services.cancel_batches import prepare_batch, selection_size
from django_clickatell.services.cancel_requests import preview_cancellation, request_cancellation
from django_clickatell.services.composing import create_messages
from django_clickatell.simulator import ClickatellSimulator
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:django_clickatell_outboundmessage_changelist")


def post_action(
    client: Client, action: str, pks: list[int], *, confirm: bool, select_across: bool = False
) -> Any:
    data: dict[str, Any] = {
        "action": action,
        "_selected_action": [str(pk) for pk in pks],
        "index": "0",
        "select_across": "1" if select_across else "0",
    }
    if confirm:
        data["post"] = "yes"
    return client.post(CHANGELIST, data, follow=confirm)


def one(**fields: Any) -> OutboundMessage:
    [message] = scheduled_messages(None, 1, **fields)
    return message


def text_of(response: Any) -> str:
    """The page as a reader sees it: tags dropped, whitespace collapsed."""
    html = response.content.decode()
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def user_messages(response: Any) -> list[tuple[str, str]]:
    return [(m.level_tag, str(m)) for m in response.context["messages"]]


# -- 1. "cancellable now", defined once --------------------------------------------------------


def states_of_every_kind() -> dict[str, OutboundMessage]:
    """One message in every situation that decides whether it can still be stopped."""
    return {
        "sent, no status yet": one(status="", send_state=SendState.SENT),
        "queued here": one(status="", send_state=SendState.QUEUED, apimsgid=None),
        "being sent": one(status="", send_state=SendState.SENDING, apimsgid=None),
        "scheduled 011": one(status="011", send_state=SendState.SENT),
        "queued 002": one(status="002"),
        "received 008": one(status="008"),
        "unknown 001": one(status="001"),
        "a code nobody documented": one(status="099"),
        "recorded from elsewhere": one(status="", send_state=SendState.NOT_SENT_HERE),
        "stop gave up": one(cancel_state=CancelState.GAVE_UP, cancel_error="HTTP 502"),
        # -- not stoppable
        "handed on 003": one(status="003"),
        "delivered 004": one(status="004"),
        "cancelled 006": one(status="006", cancel_state=CancelState.CANCELLED),
        "stop queued": one(cancel_state=CancelState.PENDING),
        "rejected": one(
            status="", send_state=SendState.REJECTED, apimsgid=None, send_error="ERR 301"
        ),
        "withdrawn": one(
            status="",
            send_state=SendState.WITHDRAWN,
            cancel_state=CancelState.CANCELLED,
            apimsgid=None,
        ),
        "no id at all": one(
            status="", send_state=SendState.NOT_SENT_HERE, apimsgid=None, climsgid=""
        ),
    }


STOPPABLE_ONES = {
    "sent, no status yet",
    "queued here",
    "being sent",
    "scheduled 011",
    "queued 002",
    "received 008",
    "unknown 001",
    "a code nobody documented",
    "recorded from elsewhere",
    "stop gave up",
}


def test_stoppable_is_what_the_app_knows_not_a_status_it_never_fetched() -> None:
    """Right after send_sms the status is empty; 003 is too late; the rest as documented."""
    messages = states_of_every_kind()
    names = {message.pk: name for name, message in messages.items()}
    selected = {
        names[pk] for pk in OutboundMessage.objects.stoppable().values_list("pk", flat=True)
    }
    assert selected == STOPPABLE_ONES


def test_request_takes_exactly_the_stoppable_ones_and_says_why_it_skips_the_rest() -> None:
    """A message Clickatell reported 003 was taken on and sent a delmsg doomed to be too late."""
    messages = states_of_every_kind()
    preview = preview_cancellation(OutboundMessage.objects.all())
    assert preview.cancellable == len(STOPPABLE_ONES)
    assert (preview.final, preview.in_progress, preview.too_late, preview.without_id) == (
        3,  # delivered, cancelled, withdrawn
        1,  # stop queued
        1,  # 003
        2,  # rejected, no id
    )
    result = request_cancellation(OutboundMessage.objects.all(), via=Via.API)
    assert messages["handed on 003"].pk not in result.message_pks
    taken = set(OutboundMessage.objects.filter(batch=result.batch).values_list("pk", flat=True))
    assert taken == {messages[name].pk for name in STOPPABLE_ONES}
    assert (result.batch.total, result.batch.skipped) == (len(STOPPABLE_ONES), 7)


@pytest.mark.django_db(transaction=True)
def test_the_readme_workflow_selects_messages_right_after_send_sms(
    simulator: ClickatellSimulator,
) -> None:
    """The README's ``filter(status="011")`` selected nothing: the status is empty until a
    refresh or a callback.  ``stoppable()`` selects them, sent or not yet sent."""
    sent = send_sms(["27831234567", "27831234568"], "wrong date", deliver_in_minutes=60, wait=True)
    assert {m.send_state for m in sent} == {SendState.SENT}
    assert {m.status for m in sent} == {""}
    # Recorded and queued, not yet sent (what send_sms leaves until a worker takes it; a
    # live worker from another test of this session must not race us, so no task here).
    not_yet = create_messages("27831234569", "wrong date, too", deliver_in_minutes=60)
    assert OutboundMessage.objects.filter(status="011").count() == 0  # the old example's selection
    result = cancel_sms(
        OutboundMessage.objects.stoppable().filter(text__contains="wrong date"), wait=True
    )
    assert result.preview.cancellable == 3
    states = dict(OutboundMessage.objects.values_list("recipient", "cancel_state"))
    assert set(states.values()) == {CancelState.CANCELLED}
    assert OutboundMessage.objects.get(pk=not_yet[0].pk).send_state == SendState.WITHDRAWN
    assert simulator.executed["delmsg"] == 2


def test_command_selects_what_can_still_be_stopped(simulator: ClickatellSimulator) -> None:
    stoppable = scheduled_messages(None, 2, status="")
    scheduled_messages(None, 1, status="003")
    scheduled_messages(None, 1, status="004")
    out = StringIO()
    call_command("clickatell_cancel", "--stoppable", stdout=out)
    assert "Selected 2: 2 to cancel, 0 skipped" in out.getvalue()
    pending = set(
        OutboundMessage.objects.filter(cancel_state=CancelState.PENDING).values_list(
            "pk", flat=True
        )
    )
    assert pending == {m.pk for m in stoppable}


def test_admin_filter_can_still_be_stopped(admin_client: Client) -> None:
    messages = states_of_every_kind()
    response = admin_client.get(CHANGELIST, {"stoppable": "yes"})
    shown = {m.pk for m in response.context["cl"].result_list}
    assert shown == {messages[name].pk for name in STOPPABLE_ONES}
    assert "Can still be stopped" in response.content.decode()


# -- 2. the list tells the story ---------------------------------------------------------------


def troubled_messages() -> dict[str, OutboundMessage]:
    return {
        "rejected": one(
            status="",
            apimsgid=None,
            send_state=SendState.REJECTED,
            send_error="Clickatell sendmsg answered ERR 301: No credit left",
        ),
        "unknown": one(
            status="",
            apimsgid=None,
            send_state=SendState.UNKNOWN,
            send_error="Gave up checking: Clickatell querymsg: HTTP 502",
        ),
        "refused": one(
            cancel_state=CancelState.REFUSED,
            cancel_error="Clickatell delmsg answered ERR 103: Unknown API message ID",
        ),
        "gave up": one(
            cancel_state=CancelState.GAVE_UP,
            cancel_error="Clickatell delmsg: HTTP 502",
        ),
        "too late": one(
            status="003",
            cancel_state=CancelState.TOO_LATE,
            cancel_error="Clickatell reported status 003 (Delivered to gateway)",
        ),
        "stopped": one(status="006", cancel_state=CancelState.CANCELLED),
        "scheduled": one(status="011"),
    }


def row_of(content: str, pk: int) -> str:
    """The HTML of the list row of message *pk*."""
    match = re.search(rf'<tr>(?:(?!</tr>).)*value="{pk}"(?:(?!</tr>).)*</tr>', content, re.S)
    assert match, f"no row for {pk}"
    return match.group(0)


def test_each_row_shows_its_state_reason_and_next_step(admin_client: Client) -> None:
    messages = troubled_messages()
    content = admin_client.get(CHANGELIST).content.decode()
    expected = {
        "rejected": ("Rejected (ERR 301)", "No credit left", "Top up the account"),
        "unknown": ("Unknown – not resent", "HTTP 502", "Ask Clickatell again"),
        "refused": ("Refused (ERR 103)", "Unknown API message ID", "does not know this id"),
        "gave up": ("Gave up", "HTTP 502", "Retry failed stops"),
        "too late": ("Too late (003)", "Delivered to gateway", "cannot be stopped"),
        "stopped": ("Stopped", "Clickatell answered 006", ""),
        "scheduled": ("Scheduled", "Due ", "Can still be stopped"),
    }
    for name, (label, reason, hint) in expected.items():
        row = row_of(content, messages[name].pk)
        assert f">{label}</span>" in row, (name, row)
        assert reason in row, (name, row)
        assert hint in row, (name, row)


def test_status_is_a_badge_with_the_full_description_on_hover(admin_client: Client) -> None:
    [message] = scheduled_messages(None, 1, status="011")
    row = row_of(admin_client.get(CHANGELIST).content.decode(), message.pk)
    assert 'title="011 – Message queued for later delivery">011 scheduled</span>' in row


def test_list_leaves_ids_to_the_message_page_and_previews_the_text(admin_client: Client) -> None:
    [message] = scheduled_messages(
        None, 1, text="Your appointment is tomorrow at 10:00, see you then"
    )
    content = admin_client.get(CHANGELIST).content.decode()
    assert "column-apimsgid" not in content
    assert "column-climsgid" not in content
    row = row_of(content, message.pk)
    assert 'title="Your appointment is tomorrow at 10:00, see you then">' in row
    assert ">Your appointment is tomorrow at…</span>" in row
    page = admin_client.get(
        reverse("admin:django_clickatell_outboundmessage_change", args=[message.pk])
    )
    assert str(message.apimsgid) in page.content.decode()


def test_counts_per_state_above_the_list(admin_client: Client) -> None:
    troubled_messages()
    scheduled_messages(None, 3, status="011")
    response = admin_client.get(CHANGELIST)
    counts = {c["key"]: c["count"] for c in response.context["state_counts"]}
    assert counts == {
        "stopped": 1,
        "too_late": 1,
        "stop_gave_up": 1,
        "stop_refused": 1,
        "rejected": 1,
        "unknown": 1,
        "scheduled": 4,
    }
    counts_html = re.search(
        r'<ul id="clickatell-state-counts".*?</ul>', response.content.decode(), re.S
    )
    assert counts_html
    assert "Scheduled: <strong>4</strong>" in counts_html.group(0)
    filtered = admin_client.get(CHANGELIST, {"state": "scheduled"})
    assert len(filtered.context["cl"].result_list) == 4


def count_changelist_queries(admin_client: Client, n: int) -> int:
    OutboundMessage.objects.all().delete()
    for _ in range(n // 7):
        troubled_messages()
    with CaptureQueriesContext(connection) as ctx:
        response = admin_client.get(CHANGELIST)
    assert response.status_code == 200
    return len(ctx.captured_queries)


def test_changelist_query_count_does_not_grow(admin_client: Client) -> None:
    """The state, reason and badge come from the row; the counts are one grouped query."""
    small = count_changelist_queries(admin_client, 14)
    large = count_changelist_queries(admin_client, 700)
    assert small == large, (small, large)


# -- 3. actions for every way out --------------------------------------------------------------


def operator(*codenames: str) -> User:
    user = User.objects.create_user("op", password="pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def test_retry_failed_stops_requests_gave_up_and_refused_ones_again(
    client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    messages = troubled_messages()
    client.force_login(operator("view_outboundmessage", "cancel_outboundmessage"))
    pks = [m.pk for m in messages.values()]
    page = post_action(client, "retry_stops", pks, confirm=False)
    text = text_of(page)
    assert "2 messages will be stopped." in text
    assert "5 selected messages have no failed stop and are left alone." in text
    assert "Asked at Clickatell again (last time: Clickatell delmsg: HTTP 502)" in text
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        done = post_action(client, "retry_stops", pks, confirm=True)
    assert len(callbacks) == 1
    # What the worker's cancel_batch task does first: mark the recorded selection.
    prepare_batch(CancellationBatch.objects.latest("pk").pk, lambda *chunk: None)
    pending = set(
        OutboundMessage.objects.filter(cancel_state=CancelState.PENDING).values_list(
            "pk", flat=True
        )
    )
    assert pending == {messages["gave up"].pk, messages["refused"].pk}
    assert OutboundMessage.objects.get(pk=messages["scheduled"].pk).cancel_state == ""
    assert [level for level, _text in user_messages(done)] == ["success"]


def test_retry_failed_stops_needs_the_cancel_permission(client: Client) -> None:
    messages = troubled_messages()
    client.force_login(operator("view_outboundmessage", "change_outboundmessage"))
    assert 'value="retry_stops"' not in client.get(CHANGELIST).content.decode()
    post_action(client, "retry_stops", [messages["gave up"].pk], confirm=True)
    assert (
        OutboundMessage.objects.get(pk=messages["gave up"].pk).cancel_state == CancelState.GAVE_UP
    )


def test_refresh_of_a_small_selection_reports_what_it_found(
    admin_client: Client, simulator: ClickatellSimulator
) -> None:
    changed, unchanged, unknown_there = scheduled_messages(simulator, 3, status="")
    OutboundMessage.objects.filter(pk=unchanged.pk).update(status="011")
    simulator.messages.pop(str(unknown_there.apimsgid))  # Clickatell answers ERR 103
    final = one(status="004")
    response = post_action(
        admin_client,
        "refresh_status",
        [changed.pk, unchanged.pk, unknown_there.pk, final.pk],
        confirm=True,
    )
    [(level, text)] = user_messages(response)
    assert level == "warning"
    assert "3 of 4: 1 changed, 1 unchanged, 1 failed" in text
    assert f"{unknown_there.recipient}: ERR 103 Unknown API message ID" in text
    assert "1 left alone: final, or not at Clickatell." in text
    assert OutboundMessage.objects.get(pk=changed.pk).status == "011"
    assert simulator.executed["querymsg"] == 3


def test_refresh_of_a_large_selection_is_queued(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    messages = scheduled_messages(None, 21)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = post_action(
            admin_client, "refresh_status", [m.pk for m in messages], confirm=True
        )
    assert len(callbacks) == 1
    assert user_messages(response) == [("success", "Status refresh of 21 messages queued.")]


# -- 4. honest pages ---------------------------------------------------------------------------


def test_confirmation_lists_every_skipped_message_with_its_reason(admin_client: Client) -> None:
    """A small selection showed "… and 1 more" instead of the skipped rows."""
    to_stop = scheduled_messages(None, 3)
    skipped = [
        *scheduled_messages(None, 20, status="004"),
        one(status="003"),
        one(cancel_state=CancelState.PENDING),
        one(status="", apimsgid=None, send_state=SendState.REJECTED, send_error="ERR 105"),
    ]
    pks = [m.pk for m in (*to_stop, *skipped)]
    response = post_action(admin_client, "cancel_delivery", pks, confirm=False)
    content = response.content.decode()
    text = text_of(response)
    assert "3 messages will be stopped." in text
    assert "… and" not in text
    rows = re.findall(r'<tr data-reason="(\w+)">', content)
    assert len(rows) == len(skipped)
    assert sorted(rows) == sorted(["final"] * 20 + ["too_late", "in_progress", "without_id"])
    assert "20 already final or stopped" in text
    assert "Final at Clickatell: 004 Received by recipient." in text
    assert "handed it on to the network (003): too late to stop" in text
    assert "Already being stopped (Cancellation queued)." in text
    assert "Clickatell rejected it when it was sent (ERR 105)" in text
    for message in skipped:
        assert message.recipient in text


def test_confirmation_of_a_large_selection_counts_what_it_does_not_list(
    admin_client: Client,
) -> None:
    scheduled_messages(None, 150, status="004")
    scheduled_messages(None, 2)
    pks = list(OutboundMessage.objects.values_list("pk", flat=True)[:5])
    response = post_action(admin_client, "cancel_delivery", pks, confirm=False, select_across=True)
    text = text_of(response)
    assert "2 messages will be stopped." in text
    assert "150 already final or stopped" in text
    assert (
        "Showing the first 100 skipped messages; 50 more are skipped, counted by reason above."
        in text
    )


def test_with_nothing_to_stop_the_page_says_so_and_offers_only_back(admin_client: Client) -> None:
    """It said "0 messages will be stopped" above an empty table, with a button to go on."""
    messages = scheduled_messages(None, 2, status="004")
    response = post_action(admin_client, "cancel_delivery", [m.pk for m in messages], confirm=False)
    content = response.content.decode()
    assert "Nothing to stop: none of the 2 selected messages can be stopped any more" in text_of(
        response
    )
    assert 'id="confirm-cancel"' not in content
    assert 'id="cancel-back"' in content
    assert 'id="cancel-sample"' not in content
    done = post_action(admin_client, "cancel_delivery", [m.pk for m in messages], confirm=True)
    assert [level for level, _text in user_messages(done)] == ["info"]
    assert not CancellationBatch.objects.exists()  # no empty batch


@pytest.mark.django_db(transaction=True)
def test_broker_outage_is_one_clear_message(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It showed a red error beside a green "Cancellation of 1 message queued"."""
    from kombu.exceptions import OperationalError

    from django_clickatell import tasks

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(tasks.cancel_batch, "apply_async", refuse)
    messages = scheduled_messages(None, 2)
    response = post_action(admin_client, "cancel_delivery", [m.pk for m in messages], confirm=True)
    [(level, text)] = user_messages(response)
    assert level == "warning"
    assert "the task queue could not be reached" in text
    assert "queued." not in text
    # Recorded, waiting for requeue_stalled_work to hand the batch on.
    batch = CancellationBatch.objects.get()
    assert batch.prepared_at is None
    assert selection_size(batch.pk) == 2


def test_batch_page_shows_progress_rate_and_what_is_left(admin_client: Client) -> None:
    messages = scheduled_messages(None, 4)
    result = request_cancellation(OutboundMessage.objects.all(), via=Via.ADMIN)
    batch = result.batch
    CancellationBatch.objects.filter(pk=batch.pk).update(
        created_at=timezone.now() - timedelta(minutes=2)
    )
    done_at = timezone.now()
    OutboundMessage.objects.filter(pk=messages[0].pk).update(
        cancel_state=CancelState.CANCELLED, status="006", cancel_completed_at=done_at
    )
    OutboundMessage.objects.filter(pk=messages[1].pk).update(
        cancel_state=CancelState.TOO_LATE, status="003", cancel_completed_at=done_at
    )
    url = reverse("admin:django_clickatell_cancellationbatch_change", args=[batch.pk])
    text = text_of(admin_client.get(url))
    assert "2 of 4 settled (50%)" in text
    for outcome in ("1 stopped", "1 too late", "2 left"):
        assert outcome in text
    assert re.search(r"1\.0/min since the request; 2 left, about 2 min at this rate", text), text
    listing = text_of(
        admin_client.get(reverse("admin:django_clickatell_cancellationbatch_changelist"))
    )
    assert "2 of 4 settled" in listing
    assert "1.0/min" in listing


def test_an_operator_with_the_readmes_permissions_can_follow_the_batch(client: Client) -> None:
    """Issue 21: the README's operator (view and cancel messages) confirmed a stop and
    its "Follow its progress" link answered 403 Forbidden: the batch page needed
    ``view_cancellationbatch``, a permission nothing told them to ask for."""
    messages = scheduled_messages(None, 2)
    client.force_login(operator("view_outboundmessage", "cancel_outboundmessage"))
    done = post_action(client, "cancel_delivery", [m.pk for m in messages], confirm=True)
    [(_level, said)] = user_messages(done)
    [link] = re.findall(r'href="([^"]+)"', said)
    page = client.get(link)
    assert page.status_code == 200
    assert "of 2 settled" in text_of(page)
    batches = reverse("admin:django_clickatell_cancellationbatch_changelist")
    assert client.get(batches).status_code == 200
    # Viewing messages alone does not open the batches.
    client.force_login(operator_named("viewer", "view_outboundmessage"))
    assert client.get(link).status_code == 403


def operator_named(name: str, *codenames: str) -> User:
    user = User.objects.create_user(name, password="pw", is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def test_send_exchange_shows_what_it_recorded(admin_client: Client) -> None:
    """The log read "Status reported" with no status for an accepted sendmsg."""
    [message] = scheduled_messages(None, 1)
    GatewayExchange.objects.create(message=message, command="sendmsg", via="task", outcome="status")
    GatewayExchange.objects.create(
        message=message,
        command="sendmsg",
        via="task",
        outcome="gateway_error",
        error_code=301,
        error_description="No credit left",
    )
    GatewayExchange.objects.create(
        message=message, command="delmsg", via="task", outcome="status", status="006"
    )
    url = reverse("admin:django_clickatell_outboundmessage_change", args=[message.pk])
    text = text_of(admin_client.get(url))
    assert f"Accepted, id: {message.apimsgid}" in text
    assert "Clickatell error – ERR 301 – No credit left" in text
    assert "Status: 006 – User cancelled message delivery" in text


def test_facet_counts_and_sorting_by_state_work(admin_client: Client) -> None:
    """The state is an annotation: Django's "Show counts" and column sorting must cope."""
    troubled_messages()
    with_facets = admin_client.get(CHANGELIST, {"_facets": "True"})
    assert with_facets.status_code == 200
    assert "Gave up (1)" in with_facets.content.decode()
    assert admin_client.get(CHANGELIST, {"o": "4"}).status_code == 200  # the state column


@pytest.mark.django_db(transaction=True)
def test_send_again_during_a_broker_outage_is_one_clear_message(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    from kombu.exceptions import OperationalError

    from django_clickatell import tasks

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("[Errno 111] Connection refused")

    monkeypatch.setattr(tasks.send_messages, "apply_async", refuse)
    rejected = one(status="", apimsgid=None, send_state=SendState.REJECTED, send_error="ERR 301")
    response = post_action(admin_client, "send_again", [rejected.pk], confirm=True)
    [(level, text)] = user_messages(response)
    assert level == "warning"
    assert "the task queue could not be reached" in text
    assert OutboundMessage.objects.get(pk=rejected.pk).send_state == SendState.QUEUED
