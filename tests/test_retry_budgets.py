"""Gateway failures and database failures are retried on separate budgets."""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from unittest import mock

import pytest
from django.db import OperationalError

from django_clickatell import tasks
from django_clickatell.models import OutboundMessage, SendState
from django_clickatell.services import sending
from django_clickatell.services.composing import create_messages
from django_clickatell.services.send_run import SendReport

pytestmark = pytest.mark.django_db


def scripted(outcomes: list[Any]) -> Any:
    """A stand-in for the service: raise or report, in order."""
    calls = iter(outcomes)

    def run(pks: list[int], **_: Any) -> SendReport:
        outcome = next(calls)
        if isinstance(outcome, BaseException):
            raise outcome
        report: SendReport = outcome
        return report

    return run


def test_database_outage_does_not_use_up_the_gateway_budget(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "TASK_MAX_RETRIES": 1}
    [message] = create_messages("27999000001", "x")
    database_down = OperationalError("connection refused")
    outcomes = [database_down, database_down, database_down, SendReport(retry=[message.pk])]
    outcomes.append(SendReport(sent=[message.pk]))
    with mock.patch.object(sending, "send_messages", scripted(outcomes)):
        result = tasks.send_messages.apply(args=([message.pk],)).get()
    assert result["sent"] == 1  # three database retries, then one gateway retry, then done
    message.refresh_from_db()
    assert message.send_state == SendState.QUEUED  # never given up on


def test_gateway_budget_exhausted_gives_up_whatever_the_database_did(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "TASK_MAX_RETRIES": 1}
    [message] = create_messages("27999000001", "x")
    outcomes = [SendReport(retry=[message.pk]), SendReport(retry=[message.pk])]
    with mock.patch.object(sending, "send_messages", scripted(outcomes)):
        tasks.send_messages.apply(args=([message.pk],)).get()
    message.refresh_from_db()
    assert message.send_state == SendState.FAILED  # never reached Clickatell: not resent


def test_database_budget_is_bounded() -> None:
    [message] = create_messages("27999000001", "x")
    with (
        mock.patch.object(sending, "send_messages", side_effect=OperationalError("down")),
        mock.patch.object(tasks, "DATABASE", replace(tasks.DATABASE, attempts=lambda: 2)),
        pytest.raises(OperationalError),
    ):
        tasks.send_messages.apply(args=([message.pk],)).get()
    assert OutboundMessage.objects.get().send_state == SendState.QUEUED
