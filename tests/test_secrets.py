"""Neither the password nor any session id may appear in logs, errors, rows or admin pages."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.apps import apps
from django.db import connection
from django.test import Client
from django.urls import reverse

from django_clickatell.exceptions import ClickatellError
from django_clickatell.gateway.client import ClickatellClient
from django_clickatell.models import OutboundMessage, Via
from django_clickatell.services.cancelling import cancel_messages
from django_clickatell.simulator import ClickatellSimulator
from tests import brokers
from tests.conftest import PASSWORD
from tests.factories import scheduled_messages


def leaks(text: str, simulator: ClickatellSimulator) -> list[str]:
    secrets = [PASSWORD, *simulator.issued_session_ids]
    return [secret for secret in secrets if secret and secret in text]


@pytest.mark.django_db
def test_whole_flow_leaks_nothing(
    simulator: ClickatellSimulator,
    caplog: pytest.LogCaptureFixture,
    admin_client: Client,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 included
    texts: list[str] = []
    messages = scheduled_messages(simulator, 6)
    client = ClickatellClient()
    texts += [
        repr(client),
        repr(client.sessions),
        repr(client.transport),
        str(client.config.password),
    ]
    client.auth()
    client.ping()

    # Faults of every kind, including replies that echo a session id back.
    simulator.inject("body", command="delmsg", body=f"OK: {simulator.issued_session_ids[-1]} ??")
    simulator.inject("http_502", command="delmsg")
    simulator.inject("reset", command="delmsg")
    simulator.inject("malformed", command="delmsg")
    simulator.inject("expire_session", command="delmsg", times=2)
    for message in messages:
        try:
            client.delmsg(apimsgid=message.apimsgid)
        except ClickatellError as exc:
            texts += [str(exc), repr(exc), repr(exc.__cause__), str(exc.__cause__)]
    simulator.expire_sessions()
    cancel_messages([m.pk for m in messages], via=Via.API)
    simulator.change_password("rotated")
    try:
        ClickatellClient().auth()
    except ClickatellError as exc:
        texts += [str(exc), repr(exc)]

    texts += [record.getMessage() for record in caplog.records]
    texts += [str(record.args) for record in caplog.records]
    for model in apps.get_app_config("django_clickatell").get_models():
        for row in model._default_manager.values():
            texts.append(repr(row))
    for message in OutboundMessage.objects.all():
        url = reverse("admin:django_clickatell_outboundmessage_change", args=[message.pk])
        texts.append(admin_client.get(url).content.decode())
    texts.append(
        admin_client.get(
            reverse("admin:django_clickatell_outboundmessage_changelist")
        ).content.decode()
    )

    assert len(simulator.issued_session_ids) >= 3
    assert caplog.records, "nothing was logged: the test would prove nothing"
    found = [leak for text in texts for leak in leaks(text, simulator)]
    assert found == []
    assert simulator.secrets_in_url == 0


@pytest.mark.django_db(transaction=True)
def test_no_secret_in_any_database_column(simulator: ClickatellSimulator) -> None:
    messages = scheduled_messages(simulator, 2)
    simulator.inject("body", command="delmsg", body="password=demo-password garbage")
    cancel_messages([m.pk for m in messages], via=Via.API)
    cancel_messages([m.pk for m in messages], via=Via.API)
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            if not table.startswith("django_clickatell"):
                continue
            cursor.execute(f'SELECT * FROM "{table}"')  # noqa: S608 (introspected names)
            dump = repr(cursor.fetchall())
            assert leaks(dump, simulator) == [], table


def test_cached_session_is_the_only_copy(simulator: ClickatellSimulator, settings: Any) -> None:
    """The id lives in the shared cache under a key that names no secret."""
    client = ClickatellClient()
    client.ping()
    assert PASSWORD not in client.sessions.session_key
    assert simulator.issued_session_ids[-1] not in client.sessions.session_key


@pytest.mark.worker
@pytest.mark.skipif(brokers.is_amqp(), reason="records the Redis broker with MONITOR")
@pytest.mark.django_db(transaction=True)
def test_broker_traffic_and_worker_logs_carry_no_secret(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """Send, refresh and cancel through a DEBUG-logging worker while Redis MONITOR records
    every broker command: neither the password nor any session id crosses the broker or
    reaches the worker's log."""
    import subprocess
    from urllib.parse import urlsplit

    from django_clickatell import dispatch, tasks
    from django_clickatell.api import send_sms
    from django_clickatell.services.cancel_requests import request_cancellation
    from tests.conftest import ARTIFACTS, WorkerProcess, wait_until

    broker = urlsplit(settings.CELERY_BROKER_URL)
    broker_db = int(broker.path.strip("/") or 0)
    ARTIFACTS.mkdir(exist_ok=True)
    capture = ARTIFACTS / "broker-monitor.log"
    with capture.open("w") as out:
        host, port = broker.hostname or "127.0.0.1", str(broker.port or 6379)
        monitor = subprocess.Popen(["redis-cli", "-h", host, "-p", port, "MONITOR"], stdout=out)
    app = tasks.cancel_messages.app
    default_queue, app.conf.task_default_queue = app.conf.task_default_queue, "secrets"
    worker = WorkerProcess(
        simulator.base_url,
        concurrency=2,
        name="secrets",
        loglevel="DEBUG",
        extra_env={"CLICKATELL_TEST_QUEUE": "secrets"},
    )
    try:
        messages = send_sms(["27999000001", "27999000002"], "private text", deliver_in_minutes=60)
        assert wait_until(lambda: OutboundMessage.objects.filter(send_state="sent").count() == 2)
        simulator.expire_sessions()  # force a re-auth inside the worker, too
        tasks.refresh_statuses()
        request = request_cancellation(OutboundMessage.objects.all(), via=Via.API)
        dispatch.enqueue_cancellation(request.message_pks)
        assert wait_until(lambda: OutboundMessage.objects.filter(status="006").count() == 2)
    finally:
        worker.stop()
        app.conf.task_default_queue = default_queue
        monitor.terminate()
        monitor.wait()
    broker_lines = [line for line in capture.read_text().splitlines() if f"[{broker_db} " in line]
    assert any("django_clickatell.send_messages" in line for line in broker_lines)
    assert any("django_clickatell.cancel_messages" in line for line in broker_lines)
    assert len(simulator.issued_session_ids) >= 2
    assert [line for line in broker_lines if leaks(line, simulator)] == []
    assert "private text" not in "\n".join(broker_lines)  # message text stays in the database
    log = worker.log_path.read_text()
    assert "Clickatell delmsg answered" in log  # DEBUG records were written
    assert leaks(log, simulator) == []
    assert len(messages) == 2
