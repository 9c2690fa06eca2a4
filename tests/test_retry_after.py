"""A gateway's ``Retry-After`` (429/503 of the REST and One API) is honoured by the tasks.

The error carries it (``GatewayHTTPError.retry_after``); the run's report keeps
the longest one it met; the task never retries sooner than it asks, whatever
its own backoff would have been.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_clickatell import api, tasks
from django_clickatell.models import CancelState, OutboundMessage
from django_clickatell.services.cancelling import cancel_messages
from django_clickatell.services.sending import send_messages
from django_clickatell.simulator import ClickatellSimulator

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def rest(simulator: ClickatellSimulator, settings: Any) -> ClickatellSimulator:
    settings.CLICKATELL = {**settings.CLICKATELL, **simulator.rest_settings()}
    return simulator


def test_a_503_with_retry_after_on_a_stop_is_waited_out(
    rest: ClickatellSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    [message] = api.send_sms("27999000001", "hi", deliver_in_minutes=120, wait=True)
    OutboundMessage.objects.filter(pk=message.pk).update(cancel_state=CancelState.PENDING)
    rest.inject("http_503", command="delmsg", body="120")
    report = cancel_messages([message.pk], via="task")
    assert report.retry == [message.pk]
    assert report.gateway_retry_after == 120.0
    assert OutboundMessage.objects.get(pk=message.pk).cancel_state == CancelState.RETRYING

    waits: list[float] = []
    real = tasks._retry

    def spy(*args: Any, at_least: float = 0.0, **kwargs: Any) -> Exception:
        waits.append(at_least)
        return real(*args, at_least=at_least, **kwargs)

    monkeypatch.setattr(tasks, "_retry", spy)
    rest.inject("http_503", command="delmsg", body="90")
    tasks.cancel_messages.apply(args=([message.pk],))
    assert waits[:1] == [90.0]  # the task's own first backoff is 2 s


def test_a_429_with_retry_after_on_a_send_is_waited_out(rest: ClickatellSimulator) -> None:
    [message] = api.send_sms("27999000002", "hi", deliver_in_minutes=120)
    rest.inject("http_429", command="sendmsg", body="45")
    report = send_messages([message.pk], via="task")
    assert report.gateway_retry_after == 45.0
    assert report.transient_error  # the run stopped and waits; nothing was accepted
    assert rest.accepted_sends() == []
