"""Check W007: an account holds scheduled messages in Django, and nothing would release them.

Issue 21: on a One API account a scheduled message is held here and only the beat task
``release_due_messages`` hands it over; without it the message looked normal for five
minutes and was then never sent, with nothing at start-up to say why.
"""

from __future__ import annotations

from collections.abc import Iterator
from io import StringIO
from typing import Any

import pytest
from celery import Celery
from django.core.checks import run_checks
from django.core.management import call_command
from django.test import override_settings

from django_clickatell import release_loop, tasks

W007 = "django_clickatell.W007"
LEGACY = {"USERNAME": "u", "PASSWORD": "p4ssword", "API_ID": "1234567"}
ONE_API = {"BACKEND": "one_api", "API_KEY": "k3y-for-tests"}
RELEASE = {"clickatell-release": {"task": release_loop.RELEASE_TASK, "schedule": 30.0}}
PING_ONLY = {"clickatell-ping": {"task": "django_clickatell.ping", "schedule": 600.0}}


@pytest.fixture
def celery_schedule(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The Celery app's schedule, empty unless a test fills it (the test process may have
    loaded the test Celery app's configuration, which schedules the release task)."""
    schedule: dict[str, Any] = {}
    monkeypatch.setattr(tasks, "beat_schedule", lambda: schedule)
    return schedule


def found(databases: list[str] | None = None, **overrides: Any) -> list[Any]:
    with override_settings(**overrides):
        # With a database, as ``check --database`` and ``migrate`` run them: the database
        # checks too (Django 6 hands every check all databases, so the package's own
        # checks must not read one unasked).
        if databases:
            reported = run_checks(databases=databases)
        else:
            reported = run_checks(tags=["django_clickatell"])
        return [m for m in reported if m.id == W007]


@pytest.mark.usefixtures("celery_schedule")
class TestWithoutTheTask:
    def test_a_one_api_account_without_the_release_task_is_reported(self) -> None:
        (message,) = found(CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE=PING_ONLY)
        assert release_loop.RELEASE_TASK in message.msg
        assert "'default'" in message.msg
        assert "CELERY_BEAT_SCHEDULE" in (message.hint or "")
        assert "SILENCED_SYSTEM_CHECKS" in (message.hint or "")

    def test_a_legacy_account_holds_beyond_its_horizon_too(self) -> None:
        assert found(CLICKATELL=LEGACY, CELERY_BEAT_SCHEDULE={})

    def test_the_message_names_every_account_that_holds(self) -> None:
        config = {**LEGACY, "ACCOUNTS": {"platform": ONE_API}}
        (message,) = found(CLICKATELL=config, CELERY_BEAT_SCHEDULE={})
        assert "'default'" in message.msg
        assert "'platform'" in message.msg

    def test_the_old_setting_name_counts(self) -> None:
        assert not found(CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE={}, CELERYBEAT_SCHEDULE=RELEASE)

    def test_a_schedule_in_the_settings_silences_it(self) -> None:
        assert not found(CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE=RELEASE)

    def test_a_malformed_schedule_is_no_schedule_not_a_crash(self) -> None:
        junk = {"a": "not a dict", "b": {"task": 5}, "c": None}
        assert found(CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE=junk)
        assert found(CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE=["nope"])

    def test_manage_py_check_shows_it_and_it_can_be_silenced_for_a_cron_job(self) -> None:
        out = StringIO()
        with override_settings(CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE={}):
            call_command("check", stdout=out, stderr=out)
        assert W007 in out.getvalue()
        out = StringIO()
        with override_settings(
            CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE={}, SILENCED_SYSTEM_CHECKS=[W007]
        ):
            call_command("check", stdout=out, stderr=out)
        assert W007 not in out.getvalue()

    def test_bad_settings_are_left_to_the_settings_checks(self) -> None:
        assert not found(CLICKATELL={**ONE_API, "BACKEND": "no.such.Backend"})


class TestTheCeleryAppsOwnSchedule:
    """A schedule set in the project's ``celery.py`` (``app.conf.beat_schedule``) counts."""

    @pytest.fixture
    def project_app(self) -> Iterator[Celery]:
        from celery._state import get_current_app

        previous = get_current_app()
        app = Celery("a_project", set_as_current=True)
        yield app
        previous.set_current()

    def test_set_on_the_app(self, project_app: Celery) -> None:
        project_app.conf.beat_schedule = RELEASE
        assert not found(CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE={})

    def test_not_set_on_the_app(self, project_app: Celery) -> None:
        project_app.conf.beat_schedule = PING_ONLY
        assert found(CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE={})


@pytest.mark.django_db
@pytest.mark.usefixtures("celery_schedule")
class TestDjangoCeleryBeat:
    """django-celery-beat keeps its schedule in the database: read it only when the checks
    are given one (``check --database``, ``migrate``), and stay quiet otherwise."""

    @pytest.fixture(autouse=True)
    def installed(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        tasks_in_db: list[str] = []
        monkeypatch.setattr(release_loop, "uses_database_scheduler", lambda: True)
        monkeypatch.setattr(release_loop, "database_schedule", lambda databases: set(tasks_in_db))
        return tasks_in_db

    def test_without_a_database_it_does_not_guess(self) -> None:
        assert not found(CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE={})

    def test_with_a_database_a_missing_task_is_reported(self) -> None:
        assert found(["default"], CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE={})

    def test_with_a_database_a_periodic_task_silences_it(self, installed: list[str]) -> None:
        installed.append(release_loop.RELEASE_TASK)
        assert not found(["default"], CLICKATELL=ONE_API, CELERY_BEAT_SCHEDULE={})


def test_the_database_schedule_is_not_read_when_the_app_is_not_installed() -> None:
    assert release_loop.database_schedule(["default"]) is None
