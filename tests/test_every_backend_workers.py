"""Issue 14's stop and callback flows for each real API, through real processes.

Stops: from the admin (the Django test client posts the cancel action and its
confirmation; a real Celery worker, configured for the backend, processes the
batch) and from the ``cancel_messages`` task on that worker.  Callbacks: the
simulator pushes status callbacks to the live server over HTTP -- the legacy form
callbacks for the HTTP and REST APIs, the One API's JSON ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from django_clickatell import api, tasks
from django_clickatell.models import (
    CancellationBatch,
    CancelState,
    GatewayExchange,
    OutboundMessage,
    SendState,
    Via,
)
from django_clickatell.services.cancel_run import HANDED_OVER
from django_clickatell.services.cancelling import cancel_messages
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import WorkerProcess, wait_until
from tests.every_backend import (
    API_OF,
    BACKENDS,
    assert_no_false_stop,
    backend_settings,
    settled,
    worker_on_own_queue,
)
from tests.test_operator_view import post_action

pytestmark = pytest.mark.django_db(transaction=True)

CALLBACK_USER, CALLBACK_PASSWORD = "clickatell-cb", "cb-Pa55-for-tests"
ONE_API_SECRET = "cb-secret-for-every-backend-0123456789"


@pytest.fixture(scope="module", params=BACKENDS)
def backend_name(request: Any) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def backend_worker(
    backend_name: str,
    gateway: ClickatellSimulator,
    django_db_setup: Any,
    django_db_blocker: Any,
) -> Iterator[WorkerProcess]:
    """One real worker per backend, its default account on that backend."""
    extra = backend_settings(gateway, backend_name)
    with worker_on_own_queue(gateway, django_db_blocker, backend_name, extra) as worker:
        yield worker


@pytest.fixture
def backend(backend_name: str, simulator: ClickatellSimulator, settings: Any) -> Iterator[str]:
    """This process configured as the worker is, the simulator's One API switches reset."""
    simulator.one_api.reset()
    settings.CLICKATELL = {**settings.CLICKATELL, **backend_settings(simulator, backend_name)}
    yield backend_name
    simulator.one_api.reset()
    assert_no_false_stop()


# -- 3. stop from the admin and from a task --------------------------------------------------


def _situations(simulator: ClickatellSimulator, backend: str) -> dict[str, OutboundMessage]:
    """One message in each situation a stop meets on *backend*, sent through it."""
    [scheduled] = api.send_sms("27999000001", "scheduled", deliver_in_minutes=120, wait=True)
    [handed] = api.send_sms("27999000002", "handed over", wait=True)
    [delivered] = api.send_sms("27999000003", "delivered", wait=True)
    for message in (scheduled, handed, delivered):
        message.refresh_from_db()
    with simulator.lock:  # meanwhile at Clickatell: one on its way (003), one delivered
        for message, status in ((handed, "003"), (delivered, "004")):
            at_gateway = simulator.messages[str(message.apimsgid)]
            at_gateway.status, at_gateway.delivered_at = status, None
    if backend == "one_api":
        assert scheduled.send_state == SendState.HELD
    else:
        assert scheduled.send_state == SendState.SENT
    return {"scheduled": scheduled, "handed": handed, "delivered": delivered}


def _assert_outcomes(
    simulator: ClickatellSimulator,
    backend: str,
    messages: dict[str, OutboundMessage],
    *,
    selected: bool = False,
) -> None:
    """*selected*: the stop went through the one rule (the admin, ``cancel_sms``), which
    takes on only what the account's API can stop; otherwise the task was handed the keys."""
    for message in messages.values():
        message.refresh_from_db()
    scheduled, handed, delivered = messages["scheduled"], messages["handed"], messages["delivered"]
    asked = {c: simulator.counts[c] for c in ("sendmsg", "delmsg", "querymsg")}
    if backend == "one_api" and selected:
        # Held: stopped here.  Handed over: not taken on at all (the API has no stop call),
        # so nothing is asked and nothing recorded as tried.
        assert (scheduled.send_state, scheduled.cancel_state) == (
            SendState.WITHDRAWN,
            CancelState.CANCELLED,
        )
        for message in (handed, delivered):
            assert (message.cancel_state, message.batch_id) == (CancelState.NOT_REQUESTED, None)
        assert asked == {"sendmsg": 0, "delmsg": 0, "querymsg": 0}
        assert not GatewayExchange.objects.filter(command__in=["delmsg", "querymsg"]).exists()
        return
    if backend == "one_api":
        # Held: stopped here.  Handed over: too late -- no stop request (the API has none),
        # only a status query each, so the record says where it is.
        assert (scheduled.send_state, scheduled.cancel_state) == (
            SendState.WITHDRAWN,
            CancelState.CANCELLED,
        )
        for message in (handed, delivered):
            assert (message.cancel_state, message.cancel_error) == (
                CancelState.TOO_LATE,
                HANDED_OVER,
            )
            assert message.cancel_attempts == 0
        assert (handed.status, delivered.status) == ("003", "004")
        assert asked == {"sendmsg": 0, "delmsg": 0, "querymsg": 2}
        # Besides those two questions, only the balances the admin pages show.
        assert simulator.counts["total"] == 2 + simulator.counts["getbalance"]
        assert not GatewayExchange.objects.filter(command="delmsg").exists()
        return
    # Stopped at Clickatell, by its answer 006; the others too late, with their status.
    assert (scheduled.cancel_state, scheduled.status) == (CancelState.CANCELLED, "006")
    assert simulator.status_of(str(scheduled.apimsgid)) == "006"
    # Carried out by the worker (the request's own via is on the batch).
    assert scheduled.exchanges.filter(command="delmsg", status="006", via=Via.TASK).count() == 1
    assert (handed.cancel_state, handed.status) == (CancelState.TOO_LATE, "003")
    assert (delivered.cancel_state, delivered.status) == (CancelState.TOO_LATE, "004")
    assert asked == {"sendmsg": 0, "delmsg": 3, "querymsg": 0}
    assert simulator.executed["delmsg"] == 3
    if backend == "rest":
        about_messages = [r for r in simulator.rest_requests if r[1] != "account/balance"]
        assert about_messages == [("DELETE", "message/{id}")] * 3  # (the admin reads the balance)
    assert set(simulator.api_requests) <= {API_OF[backend]}


@pytest.mark.worker
def test_stop_from_the_admin(
    backend: str,
    simulator: ClickatellSimulator,
    backend_worker: WorkerProcess,
    admin_user: Any,
) -> None:
    messages = _situations(simulator, backend)
    pks = [m.pk for m in messages.values()]
    # On the One API only the held one is taken on: the others were handed over.
    taken = [messages["scheduled"].pk] if backend == "one_api" else pks
    simulator.reset_counts()
    client = Client()
    client.force_login(admin_user)
    response = post_action(client, "cancel_delivery", pks, confirm=True)
    assert response.status_code == 200
    assert wait_until(lambda: settled(taken), timeout=60), backend_worker.log_path.read_text()[
        -2000:
    ]
    _assert_outcomes(simulator, backend, messages, selected=True)
    batch = CancellationBatch.objects.get()
    assert (batch.via, batch.requested_by_id) == (Via.ADMIN, admin_user.pk)


@pytest.mark.worker
def test_stop_from_a_task(
    backend: str, simulator: ClickatellSimulator, backend_worker: WorkerProcess
) -> None:
    messages = _situations(simulator, backend)
    pks = [m.pk for m in messages.values()]
    simulator.reset_counts()
    tasks.cancel_messages.delay(pks)
    assert wait_until(lambda: settled(pks), timeout=60), backend_worker.log_path.read_text()[-2000:]
    _assert_outcomes(simulator, backend, messages)
    assert simulator.counts["getbalance"] == 0


def test_too_late_carries_the_real_status(
    backend_name: str, simulator: ClickatellSimulator, settings: Any
) -> None:
    """The HTTP and REST stops answer with the status; the One API is asked it instead."""
    settings.CLICKATELL = {**settings.CLICKATELL, **backend_settings(simulator, backend_name)}
    [delivered] = api.send_sms("27999000003", "delivered", wait=True)
    delivered.refresh_from_db()
    simulator.messages[str(delivered.apimsgid)].status = "004"
    selection = OutboundMessage.objects.filter(pk=delivered.pk)
    if backend_name == "one_api":
        # Not even taken on: the One API cannot stop a submitted message, and says so first.
        result = api.cancel_sms(selection, wait=True)
        assert (result.message_pks, result.preview.api_cannot_stop) == ([], 1)
        assert simulator.counts["querymsg"] == 0
        # A stop handed to a worker by key (a task) is still recorded with the real status.
        cancel_messages([delivered.pk], via=Via.TASK)
    else:
        api.cancel_sms(selection, wait=True)
    delivered.refresh_from_db()
    assert delivered.cancel_state == CancelState.TOO_LATE
    assert delivered.status == "004"


# -- 4. callbacks end to end ---------------------------------------------------------------


def _callback_statuses(message: OutboundMessage) -> list[tuple[str, str]]:
    return list(
        GatewayExchange.objects.filter(message=message, command="callback")
        .order_by("pk")
        .values_list("status", "detail")
    )


def test_callbacks_from_the_simulator_to_the_live_server(
    backend: str, simulator: ClickatellSimulator, live_server: Any, settings: Any
) -> None:
    simulator.handset_delay = 0.3
    try:
        if backend == "one_api":
            _json_callbacks(simulator, live_server, settings)
        else:
            _form_callbacks(simulator, live_server, settings)
    finally:
        simulator.callback_url = None
        simulator.callback_auth = None
        simulator.handset_delay = 1.0


def _form_callbacks(simulator: ClickatellSimulator, live_server: Any, settings: Any) -> None:
    """003 then 004 through the form view; a repeated 004 and a stale 003 change nothing."""
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "CALLBACK_USERNAME": CALLBACK_USER,
        "CALLBACK_PASSWORD": CALLBACK_PASSWORD,
    }
    simulator.callback_url = live_server.url + "/clickatell/callback/"
    simulator.callback_auth = (CALLBACK_USER, CALLBACK_PASSWORD)
    [message] = api.send_sms("27999000001", "hello", callback=3, wait=True)
    assert wait_until(lambda: simulator.callbacks_sent >= 2, timeout=20), simulator.stats()
    message.refresh_from_db()
    assert message.status == "004"
    from django_clickatell.models import UnmatchedCallback

    print(
        list(
            GatewayExchange.objects.values_list(
                "message_id", "command", "status", "detail", "occurred_at"
            )
        ),
        list(UnmatchedCallback.objects.values()),
        simulator.stats(),
        simulator.messages[str(message.apimsgid)].history,
    )
    assert [status for status, _ in _callback_statuses(message)] == ["003", "004"]
    changed_at = message.status_changed_at
    # The gateway repeats itself and a late 003 arrives after the 004.
    at_gateway = simulator.messages[str(message.apimsgid)]
    fields = at_gateway.callback_fields(simulator.api_id)
    simulator._pending_callbacks.put((fields, 0))
    simulator._pending_callbacks.put(({**fields, "status": "003"}, 0))
    assert wait_until(lambda: simulator.callbacks_sent >= 4, timeout=20), simulator.stats()
    message.refresh_from_db()
    assert (message.status, message.status_changed_at) == ("004", changed_at)
    assert len(_callback_statuses(message)) == 4  # every push logged, none applied backwards
    assert simulator.callback_refusals == 0


def _json_callbacks(simulator: ClickatellSimulator, live_server: Any, settings: Any) -> None:
    """SENT_TO_SUPPLIER then DEVICE_ACK through the JSON view, each pushed twice and the
    first held back until after the second: the message ends DEVICE_ACK (004)."""
    settings.CLICKATELL = {**settings.CLICKATELL, "CALLBACK_SECRET": ONE_API_SECRET}
    simulator.one_api.callback_url = (
        f"{live_server.url}/clickatell/one-api/default/{ONE_API_SECRET}/"
    )
    simulator.one_api.duplicate_callbacks = 1
    simulator.one_api.reorder_callbacks = True
    [message] = api.send_sms("27999000001", "hello", wait=True)
    assert wait_until(lambda: simulator.callbacks_sent >= 4, timeout=20), simulator.stats()
    message.refresh_from_db()
    assert message.status == "004"
    events = _callback_statuses(message)
    assert len(events) == 4
    assert events[0] == ("004", "DEVICE_ACK")
    assert sorted(status for status, _ in events) == ["003", "003", "004", "004"]
    assert all("not applied" in detail for _, detail in events[1:])
    assert simulator.callback_refusals == 0
