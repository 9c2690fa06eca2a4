"""Issue 22, item 2: tags and metadata, and stopping a whole campaign in one move.

A campaign is named by a filter (account, tag): the admin's button, ``api.cancel_campaign``
and ``clickatell_cancel --tag/--account`` store its stoppable part as one cancellation
batch inside the database (the O(1) batch machinery) and stop each message once.
"""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_clickatell import api, dispatch
from django_clickatell.exceptions import InvalidInput, InvalidMessage
from django_clickatell.models import (
    CancellationBatch,
    CancelState,
    MessageTag,
    OutboundMessage,
    SendState,
    Via,
)
from django_clickatell.services import campaigns, cancel_batches, composing
from django_clickatell.services.cancel_batches import selection_size
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import WorkerProcess, wait_until
from tests.factories import scheduled_messages

CHANGELIST = reverse("admin:django_clickatell_outboundmessage_changelist")
STOP_CAMPAIGN = reverse("admin:django_clickatell_outboundmessage_stop_campaign")
LATER = timedelta(days=3)  # held here (beyond the hold lead time): never sent by a test


def tagged(messages: list[OutboundMessage], *tags: str) -> list[OutboundMessage]:
    MessageTag.objects.bulk_create([MessageTag(message=m, tag=t) for m in messages for t in tags])
    return messages


# -- tags and metadata: validation and storage ---------------------------------------------


@pytest.mark.parametrize(
    ("tags", "problem"),
    [
        ("promo", "must be a list"),
        (["promo", 7], "must be a string"),
        ([""], "must not be empty"),
        (["x" * 51], "1 to 50 characters"),
        ([" promo"], "without space at either end"),
        (["pro\nmo"], "printable"),
        ([f"t{n}" for n in range(11)], "At most 10 tags"),
    ],
)
def test_bad_tags_are_refused_by_name(tags: Any, problem: str) -> None:
    with pytest.raises(InvalidMessage, match=problem):
        composing.check_tags(tags)


@pytest.mark.parametrize(
    ("metadata", "problem"),
    [
        (["order", 1], "must be a dict"),
        ({"order": {"id": 1}}, r"metadata\['order'\] must be a string or a number"),
        ({"paid": True}, "must be a string or a number, not bool"),
        ({"x": float("nan")}, "finite"),
        ({"": "a"}, "keys must be strings of 1 to 50"),
        ({3: "a"}, "keys must be strings"),
        ({"note": "n" * 501}, "longer than 500"),
        ({f"k{n}": n for n in range(21)}, "at most 20"),
        ({f"k{n}": "v" * 400 for n in range(15)}, "bytes as JSON"),
    ],
)
def test_bad_metadata_is_refused_by_name(metadata: Any, problem: str) -> None:
    with pytest.raises(InvalidMessage, match=problem):
        composing.check_metadata(metadata)


@pytest.mark.django_db
def test_send_sms_stores_tags_and_metadata_and_refuses_all_on_a_bad_one() -> None:
    when = timezone.now() + LATER
    messages = api.send_sms(
        ["27990000001", "27990000002"],
        "Sale",
        scheduled_for=when,
        tags=["promo-12", "order:A-1", "promo-12"],
        metadata={"order": "A-1", "user": 42, "ratio": 0.5},
    )
    for message in messages:
        assert sorted(message.tags.values_list("tag", flat=True)) == ["order:A-1", "promo-12"]
        assert message.metadata == {"order": "A-1", "user": 42, "ratio": 0.5}
    with pytest.raises(InvalidMessage, match="must be a string"):
        api.send_sms("27990000003", "Sale", scheduled_for=when, tags=["ok", None])  # type: ignore[list-item]
    assert OutboundMessage.objects.count() == 2  # nothing recorded for the refused call
    untagged = api.send_sms("27990000004", "No tags", scheduled_for=when)[0]
    assert (untagged.metadata, untagged.tags.count()) == ({}, 0)


@pytest.mark.django_db
def test_tagged_filter_in_the_api_and_the_admin(admin_client: Client) -> None:
    promo = tagged(scheduled_messages(None, 3), "promo")
    tagged(scheduled_messages(None, 2), "other")
    both = tagged(scheduled_messages(None, 1), "promo", "other")
    expected = {m.pk for m in promo + both}
    assert set(OutboundMessage.objects.tagged("promo").values_list("pk", flat=True)) == expected
    assert OutboundMessage.objects.tagged("promo").tagged("other").count() == 1
    assert OutboundMessage.objects.tagged("nobody").count() == 0

    page = admin_client.get(CHANGELIST, {"tag": "promo"})
    assert {m.pk for m in page.context["cl"].result_list} == expected
    # The filter lists recent tags (a constant cost), and a search "tag:..." reaches any tag.
    assert "?tag=other" in page.content.decode()
    found = admin_client.get(CHANGELIST, {"q": "tag:promo"})
    assert {m.pk for m in found.context["cl"].result_list} == expected
    # The message page shows its tags (each a link to its campaign) and its metadata.
    OutboundMessage.objects.filter(pk=both[0].pk).update(metadata={"order": "A-1"})
    shown = admin_client.get(
        reverse("admin:django_clickatell_outboundmessage_change", args=[both[0].pk])
    ).content.decode()
    assert f'<a href="{CHANGELIST}?tag=other">other</a>, <a href="{CHANGELIST}?tag=promo">' in shown
    assert "A-1" in shown


@pytest.mark.django_db
def test_a_tag_filter_reads_the_index_on_postgresql() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the plan is PostgreSQL's")
    sql, params = OutboundMessage.objects.tagged("promo").values("pk").query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")  # a tiny table: ask what it *can* use
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "clickatell_tag_message" in plan, plan


# -- the campaign stop: API ---------------------------------------------------------------


@pytest.mark.django_db
def test_cancel_campaign_by_tag_takes_only_what_is_still_stoppable(
    simulator: ClickatellSimulator,
) -> None:
    at_clickatell = tagged(scheduled_messages(simulator, 3), "promo")
    held = tagged(
        scheduled_messages(None, 2, apimsgid=None, status="", send_state=SendState.HELD),
        "promo",
    )
    delivered = tagged(scheduled_messages(simulator, 1, status="004"), "promo")
    handed_on = tagged(scheduled_messages(simulator, 1, status="003"), "promo")
    elsewhere = tagged(scheduled_messages(simulator, 2), "other")

    batch = api.cancel_campaign(tag="promo", wait=True)

    assert (batch.total, batch.skipped, batch.selection_pending) == (5, 2, False)
    assert batch.prepared_at is not None
    states = dict(OutboundMessage.objects.values_list("pk", "cancel_state"))
    assert {states[m.pk] for m in at_clickatell + held} == {CancelState.CANCELLED}
    assert {states[m.pk] for m in delivered + handed_on + elsewhere} == {CancelState.NOT_REQUESTED}
    assert simulator.executed["delmsg"] == 3
    assert {m.send_state for m in OutboundMessage.objects.filter(pk__in=[h.pk for h in held])} == {
        SendState.WITHDRAWN
    }


@pytest.mark.django_db
def test_cancel_campaign_by_account_follows_each_accounts_rule(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """On a One API account a handed-over message cannot be stopped: skipped, said why."""
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "ACCOUNTS": {"platform": simulator.one_api_settings()},
    }
    legacy = scheduled_messages(simulator, 2)
    platform_sent = scheduled_messages(None, 2, account="platform")
    platform_held = scheduled_messages(
        None, 1, account="platform", apimsgid=None, status="", send_state=SendState.HELD
    )
    with pytest.raises(InvalidInput, match="No account named 'nowhere'"):
        api.cancel_campaign(account="nowhere")
    with pytest.raises(InvalidInput, match="Name the campaign"):
        api.cancel_campaign()

    per_account = campaigns.preview_by_account(campaigns.campaign(account="platform"))
    [(alias, preview)] = per_account
    assert (alias, preview.stop_here, preview.api_cannot_stop) == ("platform", 1, 2)

    batch = api.cancel_campaign(account="platform", wait=True)
    assert (batch.total, batch.skipped) == (1, 2)
    states = dict(OutboundMessage.objects.values_list("pk", "cancel_state"))
    assert states[platform_held[0].pk] == CancelState.CANCELLED
    assert {states[m.pk] for m in platform_sent + legacy} == {CancelState.NOT_REQUESTED}
    assert simulator.executed.get("delmsg", 0) == 0


@pytest.mark.django_db
def test_messages_added_to_the_campaign_after_the_stop_are_not_touched(
    simulator: ClickatellSimulator, django_capture_on_commit_callbacks: Any
) -> None:
    """The stop covers the messages recorded when it was asked, though the worker records
    its selection later: the batch keeps the highest key (``campaign_through``)."""
    first = tagged(scheduled_messages(simulator, 2), "promo")
    with django_capture_on_commit_callbacks(execute=False):  # the worker has not run yet
        batch = api.cancel_campaign(tag="promo")
    assert batch.selection_pending
    assert batch.campaign_through == max(m.pk for m in first)
    later = tagged(scheduled_messages(simulator, 2), "promo")  # the loop still sending
    dispatch.CancelBatchWork(batch.pk).run_here(via=Via.API, actor=None)
    assert cancel_batches.record_campaign(batch.pk) is None  # a duplicate records nothing
    states = dict(OutboundMessage.objects.values_list("pk", "cancel_state"))
    assert {states[m.pk] for m in first} == {CancelState.CANCELLED}
    assert {states[m.pk] for m in later} == {CancelState.NOT_REQUESTED}
    assert simulator.executed["delmsg"] == 2


# -- concurrency: two operators stop the same campaign ------------------------------------


@pytest.mark.django_db(transaction=True)
def test_two_threads_two_operators_stopping_the_same_campaign_stop_each_message_once(
    simulator: ClickatellSimulator,
) -> None:
    """Both requests are recorded at once (a barrier holds them inside their transactions),
    both selections take the whole campaign (neither marked yet), and the two workers
    prepare at the same time: the marking re-checks the rule, one stop per message."""
    messages = tagged(scheduled_messages(simulator, 30), "promo")
    barrier = threading.Barrier(2, timeout=30)
    batches: list[int] = []
    errors: list[BaseException] = []

    def operator() -> None:
        try:
            with transaction.atomic():
                target = campaigns.campaign(tag="promo")
                batches.append(campaigns.request_campaign_stop(target, via=Via.ADMIN).pk)
                barrier.wait()  # both recorded, neither committed
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=operator) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors, errors
    for batch in batches:
        cancel_batches.record_campaign(batch)
    assert [selection_size(b) for b in batches] == [30, 30]  # both took the whole campaign

    def prepare_and_stop(batch: int) -> None:
        try:
            dispatch.CancelBatchWork(batch).run_here(via=Via.ADMIN, actor=None)
        finally:
            connection.close()

    workers = [threading.Thread(target=prepare_and_stop, args=(b,)) for b in batches]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
    assert simulator.executed["delmsg"] == 30  # one stop per message
    stopped = OutboundMessage.objects.filter(pk__in=[m.pk for m in messages])
    assert set(stopped.values_list("cancel_state", flat=True)) == {CancelState.CANCELLED}
    totals = sorted(CancellationBatch.objects.values_list("total", "skipped"))
    assert sum(total for total, _skipped in totals) == 30, totals


@pytest.mark.django_db(transaction=True)
def test_two_threads_two_operators_at_once_with_messages_never_sent(
    simulator: ClickatellSimulator,
) -> None:
    held = tagged(
        scheduled_messages(None, 20, apimsgid=None, status="", send_state=SendState.HELD),
        "promo",
    )
    start = threading.Barrier(2, timeout=30)
    results: list[Any] = []

    def operator() -> None:
        try:
            start.wait()
            results.append(api.cancel_campaign(tag="promo", wait=True))
        finally:
            connection.close()

    threads = [threading.Thread(target=operator) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sum(batch.total for batch in results) == 20  # each taken by exactly one
    assert OutboundMessage.objects.filter(batch_id__in=[b.pk for b in results]).count() == 20
    assert set(
        OutboundMessage.objects.filter(pk__in=[m.pk for m in held]).values_list(
            "send_state", "cancel_state"
        )
    ) == {(SendState.WITHDRAWN, CancelState.CANCELLED)}
    assert simulator.executed.get("delmsg", 0) == 0


# -- the command ----------------------------------------------------------------------------


@pytest.mark.django_db
def test_command_stops_a_campaign_by_tag_and_account(simulator: ClickatellSimulator) -> None:
    promo = tagged(scheduled_messages(simulator, 3), "promo")
    other = tagged(scheduled_messages(simulator, 1), "other")
    out = StringIO()
    call_command(
        "clickatell_cancel", "--tag", "promo", "--account", "default", "--sync", stdout=out
    )
    text = out.getvalue()
    assert "Account default: 3 messages, 3 to stop (0 stopped here, 3 to ask Clickatell)" in text
    assert "Campaign tag “promo” on account “default”: 3 messages, 3 to stop, 0 skipped." in text
    assert re.search(r"Batch \d+: Cancelled 3\.", text), text
    states = dict(OutboundMessage.objects.values_list("pk", "cancel_state"))
    assert {states[m.pk] for m in promo} == {CancelState.CANCELLED}
    assert states[other[0].pk] == CancelState.NOT_REQUESTED
    out = StringIO()
    call_command("clickatell_cancel", "--tag", "promo", stdout=out)
    assert "Nothing to stop: no batch created." in out.getvalue()


@pytest.mark.django_db
def test_command_refuses_a_mixed_selection_and_an_unknown_account() -> None:
    with pytest.raises(CommandError, match="drop: message keys, --stoppable"):
        call_command("clickatell_cancel", "1", "--tag", "promo", "--stoppable")
    with pytest.raises(CommandError, match="No account named 'typo'"):
        call_command("clickatell_cancel", "--account", "typo")


# -- the admin button -----------------------------------------------------------------------


@pytest.mark.django_db
def test_admin_button_confirmation_and_stop(
    admin_client: Client,
    simulator: ClickatellSimulator,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "USE_CELERY": False}  # the worker's part here
    tagged(scheduled_messages(simulator, 2), "promo")
    tagged(scheduled_messages(simulator, 1, status="004"), "promo")
    listing = admin_client.get(CHANGELIST, {"tag": "promo"}).content.decode()
    assert 'id="clickatell-campaign-stop"' in listing
    assert 'value="promo"' in listing  # the form starts from the list's tag filter

    with CaptureQueriesContext(connection) as queries:
        page = admin_client.get(STOP_CAMPAIGN, {"tag": "promo", "account": ""})
    body = page.content.decode()
    # The rows carry their state: no query per row (it was one each, 200 on a full page).
    per_row = [q["sql"] for q in queries.captured_queries if re.search(r"LIMIT 1\b", q["sql"])]
    assert not per_row, per_row
    assert page.status_code == 200
    assert "Everything still stoppable of the campaign tag “promo”" in body
    assert re.search(r'data-account="default">.*?data-count="total">3<', body, re.S)
    assert '<div data-outcome="at_clickatell"><strong>2</strong>' in body
    assert '<div data-reason="final"><strong>1</strong>' in body
    through = page.context["campaign"].through

    late = tagged(scheduled_messages(simulator, 1), "promo")[0]  # after the page was shown
    with django_capture_on_commit_callbacks(execute=True):
        done = admin_client.post(
            STOP_CAMPAIGN, {"tag": "promo", "account": "", "through": through, "post": "yes"}
        )
    assert done.status_code == 302
    assert simulator.executed["delmsg"] == 2
    late.refresh_from_db()
    assert late.cancel_state == CancelState.NOT_REQUESTED
    assert CancellationBatch.objects.get().requested_by is not None


@pytest.mark.django_db
def test_admin_button_needs_the_cancel_permission_and_a_filter(
    client: Client, admin_client: Client, django_user_model: Any
) -> None:
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(viewer)
    assert client.get(STOP_CAMPAIGN, {"tag": "promo"}).status_code == 403
    refused = admin_client.get(STOP_CAMPAIGN, {"tag": "", "account": ""}, follow=True)
    assert "Name the campaign" in refused.content.decode()
    incomplete = admin_client.post(STOP_CAMPAIGN, {"tag": "promo", "post": "yes"}, follow=True)
    assert "nothing was stopped" in incomplete.content.decode()


def _stop_all(client: Client, n: int, capture: Any) -> tuple[int, float]:
    OutboundMessage.objects.all().delete()
    created = OutboundMessage.objects.bulk_create(
        [
            OutboundMessage(apimsgid=f"{k:032x}", recipient=f"2799{k:08d}", status="011")
            for k in range(1, n + 1)
        ],
        batch_size=5000,
    )
    MessageTag.objects.bulk_create(
        [MessageTag(message=m, tag="promo") for m in created], batch_size=5000
    )
    through = max(m.pk for m in created)
    with capture(execute=False), CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        response = client.post(
            STOP_CAMPAIGN, {"tag": "promo", "account": "", "through": through, "post": "yes"}
        )
        elapsed = time.perf_counter() - started
    assert response.status_code == 302
    batch = CancellationBatch.objects.latest("pk")
    assert (batch.campaign_tag, batch.campaign_through, batch.selection_pending) == (
        "promo",
        through,
        True,
    )
    return len(queries.captured_queries), elapsed


@pytest.mark.django_db
def test_the_stop_request_is_the_same_queries_and_time_at_10_and_10000(
    admin_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    _stop_all(admin_client, 10, django_capture_on_commit_callbacks)  # warm
    small = _stop_all(admin_client, 10, django_capture_on_commit_callbacks)
    large = _stop_all(admin_client, 10_000, django_capture_on_commit_callbacks)
    assert small[0] == large[0], (small, large)
    # No statement reads the campaign's messages: it records a filter, not a selection.
    assert large[1] < 0.5, f"the request took {large[1]:.2f} s at 10,000"


@pytest.mark.django_db
def test_a_campaign_stop_whose_task_was_lost_is_recovered_and_shown(
    admin_client: Client,
    simulator: ClickatellSimulator,
    django_capture_on_commit_callbacks: Any,
    settings: Any,
) -> None:
    """The request stored only the filter; the requeue finds the batch overdue and a worker
    records and stops it.  Its page says what it covers while it waits."""
    promo = tagged(scheduled_messages(simulator, 2), "promo")
    with django_capture_on_commit_callbacks(execute=False):  # the broker lost the task
        batch = api.cancel_campaign(tag="promo")
    page = admin_client.get(
        reverse("admin:django_clickatell_cancellationbatch_change", args=[batch.pk])
    ).content.decode()
    assert "Everything still stoppable of tag “promo”, messages up to #" in page
    assert "Recording the campaign&#x27;s messages…" in page
    CancellationBatch.objects.filter(pk=batch.pk).update(
        prepare_touched_at=timezone.now() - timedelta(days=1)
    )
    settings.CLICKATELL = {**settings.CLICKATELL, "USE_CELERY": False}
    with django_capture_on_commit_callbacks(execute=True):
        assert dispatch.requeue_stalled(via=Via.TASK)["batches"] == 1
    assert set(
        OutboundMessage.objects.filter(pk__in=[m.pk for m in promo]).values_list(
            "cancel_state", flat=True
        )
    ) == {CancelState.CANCELLED}
    batch.refresh_from_db()
    assert (batch.selection_pending, batch.total) == (False, 2)


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_two_operators_stop_a_campaign_through_real_workers_once_each(
    simulator: ClickatellSimulator, celery_worker_process: WorkerProcess
) -> None:
    """Two stops of a 400-message campaign published at once to a Celery worker (two
    processes, each task delivered to whichever is free): one ``delmsg`` per message."""
    messages = tagged(scheduled_messages(simulator, 400), "promo")
    tagged(scheduled_messages(simulator, 5), "other")
    start = threading.Barrier(2, timeout=30)

    def operator() -> None:
        try:
            start.wait()
            api.cancel_campaign(tag="promo")
        finally:
            connection.close()

    threads = [threading.Thread(target=operator) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    stopped = OutboundMessage.objects.filter(
        pk__in=[m.pk for m in messages], cancel_state=CancelState.CANCELLED
    )
    assert wait_until(lambda: stopped.count() == 400, timeout=240), stopped.count()
    assert simulator.executed["delmsg"] == 400
    assert OutboundMessage.objects.tagged("other").filter(cancel_state="").count() == 5
    batches = CancellationBatch.objects.all()
    assert wait_until(lambda: all(b.prepared_at for b in batches.all()), timeout=60)
    assert sum(batches.values_list("total", flat=True)) == 400  # each taken by one batch
