"""The plugin runs the package's on-commit work in a ``db`` test where a commit would.

A pytest-django ``db`` test runs in a transaction that is never committed, so work
``send_sms`` hands on "once the transaction commits" never ran there (the testing
guide's first example failed).  :func:`testing.running_on_commit_work` runs it
where production would: at once outside the code's own transactions, when its
outermost ``atomic`` block exits, never after a rollback.  (The package's own
suite sets ``clickatell_run_on_commit = false``; these tests switch it on.)
"""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from django_clickatell import testing
from django_clickatell.api import send_sms
from django_clickatell.models import OutboundMessage

run_on_commit = pytest.mark.clickatell_run_on_commit(True)


@pytest.fixture(autouse=True)
def test_backend(settings: Any) -> None:
    settings.CLICKATELL = {"BACKEND": "test", "USE_CELERY": False}


@run_on_commit
@pytest.mark.django_db
def test_sent_at_once_outside_the_codes_own_transaction() -> None:
    send_sms("27999000001", "Hello")
    assert [sms.to for sms in testing.outbox] == ["27999000001"]
    assert OutboundMessage.objects.get().send_state == "sent"


@run_on_commit
@pytest.mark.django_db
def test_sent_when_the_outermost_block_of_the_code_exits() -> None:
    with transaction.atomic():
        with transaction.atomic():
            send_sms("27999000001", "Hello")
        assert testing.outbox == []  # the inner block's exit commits nothing
    assert len(testing.outbox) == 1


@run_on_commit
@pytest.mark.django_db
def test_never_sent_when_the_codes_block_rolls_back() -> None:
    def failing_view() -> None:
        with transaction.atomic():
            send_sms("27999000001", "Hello")
            raise RuntimeError("the view failed")

    with pytest.raises(RuntimeError):
        failing_view()
    assert testing.outbox == []
    send_sms("27999000002", "Hello")  # and what follows is not held up by it
    assert [sms.to for sms in testing.outbox] == ["27999000002"]


@run_on_commit
@pytest.mark.django_db
def test_other_on_commit_callbacks_are_left_alone(
    django_capture_on_commit_callbacks: Any,
) -> None:
    ran: list[str] = []
    with django_capture_on_commit_callbacks() as captured:
        transaction.on_commit(lambda: ran.append("yours"))
        send_sms("27999000001", "Hello")
    assert ran == []
    assert len(captured) == 1
    assert len(testing.outbox) == 1


@pytest.mark.clickatell_run_on_commit(False)
@pytest.mark.django_db
def test_switched_off_the_work_waits_for_the_test(
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        send_sms("27999000001", "Hello")
        assert testing.outbox == []
    assert len(testing.outbox) == 1


@pytest.mark.django_db
def test_the_package_suite_leaves_it_off_by_its_ini_option(pytestconfig: Any) -> None:
    assert pytestconfig.getini("clickatell_run_on_commit") is False
    send_sms("27999000001", "Hello")
    assert testing.outbox == []


@run_on_commit
@pytest.mark.django_db(transaction=True)
def test_nothing_changes_where_commits_are_real() -> None:
    with transaction.atomic():
        send_sms("27999000001", "Hello")
        assert testing.outbox == []
    assert len(testing.outbox) == 1


def test_the_patches_are_undone() -> None:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.transaction import Atomic

    before = (BaseDatabaseWrapper.on_commit, Atomic.__exit__)
    with testing.running_on_commit_work():
        assert Atomic.__exit__ is not before[1]
    assert (BaseDatabaseWrapper.on_commit, Atomic.__exit__) == before


@pytest.mark.django_db
def test_the_mixin_runs_the_work_under_djangos_test_runner() -> None:
    """Django's runner has no plugin: the mixin does the same in its ``TestCase``."""
    import unittest

    from django.test import TestCase

    sent: list[int] = []

    class Case(testing.ClickatellTestMixin, TestCase):
        def test_sends(self) -> None:
            send_sms("27999000001", "Hello")
            sent.append(len(testing.outbox))

    class Plain(TestCase):
        def test_sends(self) -> None:
            send_sms("27999000001", "Hello")
            sent.append(len(testing.outbox))

    for case in (Case("test_sends"), Plain("test_sends")):
        testing.reset_outbox()
        result = unittest.TestResult()
        case.run(result)
        assert result.wasSuccessful(), result.errors
    assert sent == [1, 0]  # without the mixin the work waits for a commit that never comes
