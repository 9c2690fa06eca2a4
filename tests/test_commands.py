from __future__ import annotations

from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from django_clickatell.models import CancelState, OutboundMessage
from django_clickatell.simulator import ClickatellSimulator
from tests.factories import scheduled_messages


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_auth_ok_never_prints_session(simulator: ClickatellSimulator) -> None:
    output = run("clickatell_auth")
    assert "accepted user 'demo'" in output
    assert simulator.counts["auth"] == 1
    for session_id in simulator._sessions:
        assert session_id not in output


def test_auth_failure_exits_non_zero(simulator: ClickatellSimulator) -> None:
    simulator.change_password("rotated")
    with pytest.raises(CommandError, match="ERR 001"):
        run("clickatell_auth")


def test_ping(simulator: ClickatellSimulator) -> None:
    assert "alive" in run("clickatell_ping")


def test_ping_unreachable(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "BASE_URL": "http://127.0.0.1:9/http/"}
    with pytest.raises(CommandError, match="connection failed"):
        run("clickatell_ping")


@pytest.mark.django_db
class TestCancelCommand:
    def test_sync_by_apimsgid(self, simulator: ClickatellSimulator) -> None:
        messages = scheduled_messages(simulator, 3)
        output = run(
            "clickatell_cancel",
            "--sync",
            "--apimsgid",
            messages[0].apimsgid or "",
            "--apimsgid",
            messages[1].apimsgid or "",
        )
        assert "Cancelled 2," in output
        assert OutboundMessage.objects.filter(status="006").count() == 2

    def test_sync_by_filter_and_pk(self, simulator: ClickatellSimulator) -> None:
        messages = scheduled_messages(simulator, 3)
        scheduled_messages(simulator, 1, status="004")
        output = run("clickatell_cancel", "--sync", "--status", "11")
        assert "Selected 3: 3 to cancel" in output
        assert OutboundMessage.objects.filter(status="006").count() == 3
        assert "0 to cancel" in run("clickatell_cancel", "--sync", str(messages[0].pk))

    def test_queues_by_default(
        self, simulator: ClickatellSimulator, django_capture_on_commit_callbacks: Any
    ) -> None:
        scheduled_messages(simulator, 2)
        with django_capture_on_commit_callbacks() as callbacks:
            output = run("clickatell_cancel", "--climsgid", "c0", "--climsgid", "c1")
        assert "Queued batch" in output
        assert len(callbacks) == 1
        assert OutboundMessage.objects.filter(cancel_state=CancelState.PENDING).count() == 2
        assert simulator.counts["delmsg"] == 0

    def test_gateway_down_leaves_work_queued(self, settings: Any) -> None:
        settings.CLICKATELL = {**settings.CLICKATELL, "BASE_URL": "http://127.0.0.1:9/http/"}
        scheduled_messages(None, 2)
        with pytest.raises(CommandError, match="left queued"):
            run("clickatell_cancel", "--sync", "--status", "011")

    @pytest.mark.parametrize(
        "args",
        [
            [],
            ["--apimsgid", "not an id"],
            ["--apimsgid", "x" * 500],
            ["--climsgid", "dash-ed"],
            ["--status", "abc"],
            ["--scheduled-after", "yesterday"],
        ],
    )
    def test_bad_input_is_refused_before_any_request(
        self, simulator: ClickatellSimulator, args: list[str]
    ) -> None:
        scheduled_messages(simulator, 1)
        with pytest.raises((CommandError, SystemExit)):
            run("clickatell_cancel", "--sync", *args)
        assert simulator.counts["total"] == 0
        assert OutboundMessage.objects.filter(cancel_state=CancelState.NOT_REQUESTED).count() == 1

    def test_scheduled_window(self, simulator: ClickatellSimulator) -> None:
        scheduled_messages(simulator, 2)
        output = run(
            "clickatell_cancel",
            "--sync",
            "--scheduled-after",
            "2000-01-01T00:00",
            "--scheduled-before",
            "2000-01-02T00:00",
        )
        assert "Selected 0" in output
