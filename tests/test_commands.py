from __future__ import annotations

import os
import shlex
import subprocess
import sys
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command, load_command_class
from django.core.management.base import CommandError
from django.db import connection

from django_clickatell.models import CancellationBatch, CancelState, OutboundMessage
from django_clickatell.simulator import ClickatellSimulator, Fault
from tests.conftest import ROOT
from tests.factories import scheduled_messages

# The documented exit codes of clickatell_cancel (README, "Management commands").
EXIT_BAD_INPUT = 1
EXIT_NOT_STOPPED = 3
EXIT_LEFT_WAITING = 4


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


def test_auth_without_account_checks_every_account(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """Issue 21: with a One API and a legacy account, ``clickatell_auth`` as the README
    shows it checked only ``default`` and said nothing of the other."""
    settings.CLICKATELL = {
        **simulator.one_api_settings(),
        "ACCOUNTS": {"legacy": simulator.settings(), "broken": simulator.rest_settings()},
    }
    settings.CLICKATELL["ACCOUNTS"]["broken"]["API_KEY"] = "wrong-key-wrong-key"
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("clickatell_auth", stdout=out, stderr=err)
    assert "API key of account 'default'" in out.getvalue()
    assert "accepted user 'demo'" in out.getvalue()
    assert simulator.counts["auth"] == 1
    assert "account 'broken'" in err.getvalue()
    assert "API_KEY" in err.getvalue()
    assert "1 of 3 accounts failed the check: 'broken'" in str(raised.value)
    assert "wrong-key-wrong-key" not in str(raised.value) + out.getvalue() + err.getvalue()
    # --account still checks that one alone.
    out = StringIO()
    call_command("clickatell_auth", "--account", "legacy", stdout=out)
    assert "API key" not in out.getvalue()


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
        with pytest.raises(CommandError, match="waiting to retry") as error:
            run("clickatell_cancel", "--sync", "--status", "011")
        assert error.value.returncode == EXIT_LEFT_WAITING

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


def run_cli(*args: str) -> int:
    """Run the command as ``manage.py`` does (argv parsing included); returns the exit code.

    Only the command-line path shows what an operator sees: ``call_command`` turns
    argument errors into exceptions that ``manage.py`` would print as a traceback.
    """
    command = load_command_class("django_clickatell", args[0])
    try:
        command.run_from_argv(["manage.py", *args])
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Any:
    # run_from_argv closes the database connections when it ends; the test's
    # transaction must outlive it.
    monkeypatch.setattr("django.core.management.base.connections.close_all", lambda: None)
    return run_cli


def one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    return one_line_error_of(capsys.readouterr().err)


def one_line_error_of(err: str) -> str:
    """The whole of stderr: one ``CommandError:`` line, never a traceback or usage text."""
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("CommandError: "), err
    return lines[0]


@pytest.mark.django_db
class TestCancelCommandLine:
    """Defects found by a hostile tester, each seen failing before its fix."""

    @pytest.mark.parametrize(
        ("args", "says"),
        [
            (["--scheduled-after", "yesterday"], "yesterday"),
            (["--scheduled-before", "2026-13-45T10:00"], "2026-13-45"),
            (["--scheduled-after", "2026-01-01T10:00+99:00"], "+99:00"),
            (["--scheduled-after", "\x00"], "date"),
            (["--scheduled-before", "0001-01-01T00:00+05:00"], "out of range"),
            (["--scheduled-before", "9999-12-31T23:59-05:00"], "out of range"),
            (
                ["--scheduled-after", "2026-02-01T00:00", "--scheduled-before", "2026-01-01T00:00"],
                "before",
            ),
            (["abc"], "abc"),
            (["99999999999999999999999"], "999999"),
            (["-5"], "-5"),
            (["--status", "abc"], "abc"),
            (["--status", "999"], "999"),
            (["--status", "6" * 40], "status"),
            (["--apimsgid", "not an id"], "not an id"),
            (["--climsgid", "dash-ed"], "dash-ed"),
            (["--batch", "x"], "x"),
            ([], "Choose messages"),
        ],
    )
    def test_malformed_input_is_one_line_error(
        self,
        cli: Any,
        capsys: pytest.CaptureFixture[str],
        simulator: ClickatellSimulator,
        args: list[str],
        says: str,
    ) -> None:
        scheduled_messages(simulator, 1)
        assert cli("clickatell_cancel", "--sync", *args) == EXIT_BAD_INPUT
        assert says in one_line_error(capsys)
        assert simulator.counts["total"] == 0
        assert not CancellationBatch.objects.exists()
        assert OutboundMessage.objects.filter(cancel_state=CancelState.NOT_REQUESTED).count() == 1

    @pytest.mark.parametrize(
        "kind", ["pk", "apimsgid", "climsgid", "batch"], ids=lambda kind: f"unknown-{kind}"
    )
    def test_unknown_ids_are_named_and_nothing_is_done(
        self,
        cli: Any,
        capsys: pytest.CaptureFixture[str],
        simulator: ClickatellSimulator,
        kind: str,
    ) -> None:
        [known] = scheduled_messages(simulator, 1)
        unknown = {
            "pk": [str(known.pk), str(known.pk + 1000)],
            "apimsgid": ["--apimsgid", known.apimsgid or "", "--apimsgid", "f" * 32],
            "climsgid": ["--climsgid", "c0", "--climsgid", "nosuchid"],
            "batch": ["--batch", "424242"],
        }[kind]
        assert cli("clickatell_cancel", "--sync", *unknown) == EXIT_BAD_INPUT
        line = one_line_error(capsys)
        assert unknown[-1] in line
        assert "nknown" in line
        assert simulator.counts["total"] == 0
        assert not CancellationBatch.objects.exists()

    def test_unpadded_status_is_normalised(self, simulator: ClickatellSimulator) -> None:
        scheduled_messages(simulator, 2)
        output = run("clickatell_cancel", "--sync", "--status", "11")
        assert "Selected 2: 2 to cancel" in output
        assert OutboundMessage.objects.filter(status="006").count() == 2

    def test_nothing_to_cancel_creates_no_batch(
        self, cli: Any, capsys: pytest.CaptureFixture[str], simulator: ClickatellSimulator
    ) -> None:
        [message] = scheduled_messages(simulator, 1, status="004")
        for sync in (["--sync"], []):
            assert cli("clickatell_cancel", *sync, str(message.pk)) == 0
            assert "Nothing to cancel" in capsys.readouterr().out
        assert not CancellationBatch.objects.exists()
        assert simulator.counts["total"] == 0

    def test_refusal_exits_non_zero(
        self, cli: Any, capsys: pytest.CaptureFixture[str], simulator: ClickatellSimulator
    ) -> None:
        scheduled_messages(simulator, 2)
        scheduled_messages(None, 1, climsgid="c9")  # unknown to Clickatell: ERR 103
        assert cli("clickatell_cancel", "--sync", "--status", "011") == EXIT_NOT_STOPPED
        captured = capsys.readouterr()
        assert "Cancelled 2," in captured.out
        assert "refused 1," in captured.out
        assert "1 message was not stopped" in one_line_error_of(captured.err)
        assert OutboundMessage.objects.filter(cancel_state=CancelState.REFUSED).count() == 1

    def test_all_cancelled_exits_zero(
        self, cli: Any, capsys: pytest.CaptureFixture[str], simulator: ClickatellSimulator
    ) -> None:
        scheduled_messages(simulator, 2)
        assert cli("clickatell_cancel", "--sync", "--status", "011") == 0
        assert "Cancelled 2," in capsys.readouterr().out

    @pytest.mark.django_db(transaction=True)  # the task is published on commit
    def test_broker_down_is_reported(
        self,
        cli: Any,
        capsys: pytest.CaptureFixture[str],
        simulator: ClickatellSimulator,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        from kombu.exceptions import OperationalError

        from django_clickatell import tasks

        def refuse(*args: Any, **kwargs: Any) -> None:
            raise OperationalError("[Errno 111] Connection refused")

        monkeypatch.setattr(tasks.cancel_messages, "apply_async", refuse)
        scheduled_messages(simulator, 2)
        assert cli("clickatell_cancel", "--status", "011") == EXIT_LEFT_WAITING
        line = one_line_error(capsys)
        assert "task queue" in line
        assert "--resume" in line
        assert OutboundMessage.objects.filter(cancel_state=CancelState.PENDING).count() == 2

    def test_rerun_after_502_picks_up_what_was_left(
        self, cli: Any, capsys: pytest.CaptureFixture[str], simulator: ClickatellSimulator
    ) -> None:
        """End to end against the simulator: the advice printed after a 502 really works."""
        messages = scheduled_messages(simulator, 5)
        simulator.inject(Fault("http_502", command="delmsg", times=1))
        assert cli("clickatell_cancel", "--sync", "--status", "011") == EXIT_LEFT_WAITING
        captured = capsys.readouterr()
        assert "left to retry 5" in captured.out
        advice = one_line_error_of(captured.err)
        assert "HTTP 502" in advice
        rerun = shlex.split(advice.split("run: ", 1)[1].split(";")[0])
        assert rerun[:2] == ["python", "manage.py"]
        # The same selection again selects nothing new and says how to go on.
        assert cli("clickatell_cancel", "--sync", "--status", "011") == 0
        assert "5 already being cancelled" in capsys.readouterr().out
        assert simulator.counts["delmsg"] == 1

        assert cli(*rerun[2:]) == 0
        assert "Cancelled 5," in capsys.readouterr().out
        assert OutboundMessage.objects.filter(cancel_state=CancelState.CANCELLED).count() == 5
        assert {simulator.messages[m.apimsgid or ""].status for m in messages} == {"006"}
        assert simulator.counts["delmsg"] == 1 + 5  # the 502, then one per message
        assert CancellationBatch.objects.count() == 1

    def test_resume_without_anything_waiting(
        self, cli: Any, capsys: pytest.CaptureFixture[str], simulator: ClickatellSimulator
    ) -> None:
        scheduled_messages(simulator, 2)
        assert cli("clickatell_cancel", "--resume", "--sync") == 0
        assert "Nothing is waiting" in capsys.readouterr().out
        assert simulator.counts["total"] == 0
        assert not CancellationBatch.objects.exists()

    def test_real_manage_py_process_prints_one_line(self, simulator: ClickatellSimulator) -> None:
        """The same, as a real process: what an operator's shell gets."""
        env = {
            **os.environ,
            "CLICKATELL_TEST_DB_NAME": connection.settings_dict["NAME"],
            "PYTHONPATH": str(ROOT),
        }
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "django",
                "clickatell_cancel",
                "--settings=tests.settings",
                "--scheduled-after",
                "yesterday",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == EXIT_BAD_INPUT
        assert result.stderr.strip().splitlines() == [
            "CommandError: --scheduled-after: not a date and time (use ISO 8601, e.g. "
            "2026-11-25T10:00): 'yesterday'"
        ]


def test_balance_command_says_why(simulator: ClickatellSimulator) -> None:
    simulator.change_password("rotated")
    with pytest.raises(CommandError, match=r"Balance unavailable \(credentials refused\)"):
        run("clickatell_balance")
