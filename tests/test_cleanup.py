"""Old history is deleted in batches; messages and recent history are kept."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_clickatell import tasks
from django_clickatell.models import GatewayExchange, OutboundMessage, UnmatchedCallback
from django_clickatell.services.cleanup import delete_old_history
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db


def history(days_ago: int, count: int) -> None:
    [message] = scheduled_messages(None, 1)
    when = timezone.now() - timedelta(days=days_ago)
    GatewayExchange.objects.bulk_create(
        GatewayExchange(
            message=message, command="delmsg", via="task", outcome="status", occurred_at=when
        )
        for _ in range(count)
    )
    UnmatchedCallback.objects.create(apimsgid="a" * 32, status="003", received_at=when)


def test_deletes_only_what_is_older_in_batches() -> None:
    history(100, 25)
    history(10, 3)
    counts = delete_old_history(30, batch_size=10)
    assert counts == {"exchanges": 25, "unmatched_callbacks": 1}
    assert GatewayExchange.objects.count() == 3
    assert UnmatchedCallback.objects.count() == 1
    assert OutboundMessage.objects.count() == 2  # messages are never deleted here


def test_command_and_task() -> None:
    history(100, 2)
    out = StringIO()
    call_command("clickatell_cleanup", "--days", "30", stdout=out)
    assert out.getvalue().strip() == (
        "Deleted 2 exchanges and 1 unmatched callbacks older than 30 days."
    )
    history(100, 1)
    assert tasks.cleanup(30) == {"exchanges": 1, "unmatched_callbacks": 1}


@pytest.mark.parametrize("days", ["0", "-1", "x", "1.5", "", "9999999"])
def test_command_refuses_bad_days(days: str) -> None:
    history(100, 1)
    with pytest.raises(CommandError, match="--days must be a whole number"):
        call_command("clickatell_cleanup", "--days", days)
    assert GatewayExchange.objects.count() == 1
