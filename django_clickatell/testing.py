"""Test helpers for projects using django-clickatell: the test backend and the simulator.

The test backend (``CLICKATELL = {"BACKEND": "test", ...}``) keeps every SMS in
memory, like Django's ``mail.outbox``::

    from django_clickatell import testing

    send_sms("27999000001", "Hello", wait=True)
    assert testing.outbox[0].text == "Hello"
    testing.deliver_callback(testing.outbox[0].apimsgid, "004")   # your handlers run

With pytest, in your ``conftest.py``::

    pytest_plugins = ["django_clickatell.testing"]

which empties the test gateway before every test, runs the package's deferred
work in pytest-django's ``db`` tests as a commit would (see
:func:`running_on_commit_work`), and provides the ``clickatell_outbox`` and
``clickatell_simulator`` fixtures (the latter needs pytest-django).  With
Django's test runner, mix :class:`ClickatellTestMixin` into your test cases, or
call :func:`reset_outbox` in ``setUp``.  pytest is not needed for anything but
the fixtures.  See docs/testing.rst.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

from .services import guards, testing_support
from .services.testing_support import SentSms
from .simulator import ClickatellSimulator

F = TypeVar("F", bound=Callable[..., Any])

logger = logging.getLogger("django_clickatell.testing")

#: pytest is needed for the fixtures only: Django's test runner uses the rest without it.
_WITH_PYTEST = importlib.util.find_spec("pytest") is not None


def _fixture(*, autouse: bool = False) -> Callable[[F], F]:
    """``pytest.fixture`` when pytest is installed; the plain function otherwise."""

    def decorate(function: F) -> F:
        if not _WITH_PYTEST:  # pragma: no cover - exercised only without pytest
            return function
        import pytest

        return cast(F, pytest.fixture(autouse=autouse)(function))

    return decorate


#: Every SMS the test backend sent since the last reset, in send order (a live list).
outbox: list[SentSms] = testing_support.outbox
#: Script the test gateway's next answers: ``script.refuse_next("sendmsg", code=301)``,
#: ``script.fail_next("delmsg", error=GatewayTimeout("delmsg", "timed out"))``,
#: ``script.balance(0)``,
#: ``script.capabilities(remote_stop=False)``.
script = testing_support.script
#: How many requests of each command the test backend answered (``requests["delmsg"]``).
requests = testing_support.requests


def reset_outbox() -> None:
    """Start afresh: empty the outbox, forget every status, scripted answer and count."""
    testing_support.reset()


def _reference(message: Any) -> str:
    """An ``apimsgid`` or ``climsgid`` string, or the ids of an ``OutboundMessage``."""
    if isinstance(message, str):
        return message
    reference = getattr(message, "apimsgid", None) or getattr(message, "climsgid", None)
    if not reference:
        raise ValueError(f"{message!r} has no apimsgid or climsgid the test gateway could know.")
    return str(reference)


def set_status(message: Any, status: str) -> str:
    """Give a sent message a status at the test gateway; returns its ``apimsgid``.

    *message* is an ``apimsgid``, a ``climsgid`` or an ``OutboundMessage``.
    Nothing changes in your database until the package learns it: refresh
    (``refresh_sms``) or push it with :func:`deliver_callback`.
    """
    return script.status(_reference(message), status)


def status_of(message: Any) -> str:
    """The test gateway's current status of a sent message."""
    return testing_support.status_of(_reference(message))


def deliver_callback(
    message: Any,
    status: str | None = None,
    *,
    charge: Decimal | str | None = None,
    reported_at: datetime | None = None,
    api_id: str | None = None,
) -> str:
    """Push a status callback for a sent message through the package's callback service.

    Signal handlers run as they would for Clickatell's callback.  Returns
    ``"applied"``, ``"ignored"`` (duplicate, stale or after a final status) or
    ``"unmatched"`` (kept until the message is known).  The callback carries the
    ``API_ID`` of the message's account, or the test backend's own when none is
    configured, and speaks for that account's messages only, as the callback view does.
    """
    return testing_support.deliver_callback(
        _reference(message), status, charge=charge, reported_at=reported_at, api_id=api_id
    )


def duplicates() -> list[tuple[str, str]]:
    """``(account, climsgid)`` pairs sent more than once: an SMS someone received twice."""
    return testing_support.duplicates()


# -- deferred work in a test's transaction ----------------------------------------------------


def _is_ours(callback: Callable[[], object]) -> bool:
    """Whether an on-commit callback is this package's deferred work (a send, a stop...)."""
    target = getattr(callback, "func", callback)
    return str(getattr(target, "__module__", "")).startswith("django_clickatell.")


def _only_the_tests_transaction(connection: Any) -> bool:
    """True while the open atomic blocks are the test case's own and nothing failed.

    Django's ``TestCase`` (and pytest-django's ``db`` fixture, built on it) wraps
    each test in atomic blocks it marks ``_from_testcase``; a block the code under
    test opens is not marked.  At this depth, in production, the work would have
    been committed.
    """
    blocks = getattr(connection, "atomic_blocks", [])
    return (
        bool(blocks)
        and all(getattr(block, "_from_testcase", False) for block in blocks)
        and not connection.needs_rollback
    )


def _run_committed_work(connection: Any) -> None:
    """Run (and forget) the package's callbacks a commit at this depth would have run."""
    while _only_the_tests_transaction(connection):
        ours = [entry for entry in connection.run_on_commit if _is_ours(entry[1])]
        if not ours:
            return
        connection.run_on_commit = [e for e in connection.run_on_commit if e not in ours]
        for _savepoints, callback, robust in ours:
            if not robust:
                callback()
                continue
            try:
                callback()
            except Exception:
                logger.exception("Error calling %r on commit", callback)


@contextmanager
def running_on_commit_work() -> Iterator[None]:
    """Inside a test wrapped in a transaction, run the package's deferred work as a commit would.

    ``send_sms``, ``cancel_sms``, ``refresh_sms`` and the admin actions hand their
    work on once the transaction commits (to Celery, or to this process).  A
    ``TestCase`` -- and pytest-django's ``db`` fixture -- never commits: the work
    would never run, and a test of "my view sends a reminder" would find an empty
    outbox.  Within this context, the package's work registered with
    ``transaction.on_commit`` runs where production would run it: at once when the
    code under test opened no transaction of its own, or when its outermost
    ``atomic`` block exits -- and not at all when that block rolls back.  Other
    on-commit callbacks (yours, Django's) are left alone.

    Nothing changes where a commit really happens (``transactional_db``,
    ``TransactionTestCase``): there the work already runs after commit.  The
    plugin and :class:`ClickatellTestMixin` enter it for every test.
    """
    from django.db import connections
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.transaction import Atomic

    original_on_commit = BaseDatabaseWrapper.on_commit
    original_exit = Atomic.__exit__

    def on_commit(self: Any, func: Callable[[], object], robust: bool = False) -> None:
        original_on_commit(self, func, robust)
        if self.in_atomic_block and _is_ours(func):
            _run_committed_work(self)

    def exit_block(self: Any, *exc_info: Any) -> Any:
        result = original_exit(self, *exc_info)
        _run_committed_work(connections[self.using or "default"])
        return result

    BaseDatabaseWrapper.on_commit = on_commit  # type: ignore[method-assign]
    Atomic.__exit__ = exit_block  # type: ignore[method-assign]
    try:
        yield
    finally:
        BaseDatabaseWrapper.on_commit = original_on_commit  # type: ignore[method-assign]
        Atomic.__exit__ = original_exit  # type: ignore[method-assign]


class ClickatellTestMixin:
    """For Django's ``TestCase``: every test starts with an empty test gateway, and the
    package's deferred work runs as a commit would (:func:`running_on_commit_work`).

    ``class SmsTests(ClickatellTestMixin, TestCase): ...`` -- the reset happens
    in ``setUp``, before yours runs its ``super().setUp()``.
    """

    def setUp(self) -> None:
        reset_outbox()
        context = running_on_commit_work()
        context.__enter__()
        self.addCleanup(context.__exit__, None, None, None)  # type: ignore[attr-defined]
        super().setUp()  # type: ignore[misc]


# -- pytest ------------------------------------------------------------------------------


@_fixture(autouse=True)
def _clickatell_reset_test_gateway() -> Iterator[None]:
    """Every test starts and ends with an empty test gateway (as ``mail.outbox``)."""
    reset_outbox()
    yield
    reset_outbox()


def pytest_addoption(parser: Any) -> None:
    parser.addini(
        "clickatell_run_on_commit",
        "Run django-clickatell's deferred work in db tests as a commit would (default true).",
        type="bool",
        default=True,
    )


def pytest_configure(config: Any) -> None:
    config.addinivalue_line(
        "markers",
        "clickatell_run_on_commit(on): run (True) or leave (False) django-clickatell's "
        "on-commit work in this test, whatever the clickatell_run_on_commit ini option says",
    )


@_fixture(autouse=True)
def _clickatell_run_on_commit(request: Any) -> Iterator[None]:
    """The package's deferred work runs in ``db`` tests as a commit would (see
    :func:`running_on_commit_work`); the ini option ``clickatell_run_on_commit = false``
    or the marker ``clickatell_run_on_commit(False)`` leaves it to the test."""
    marker = request.node.get_closest_marker("clickatell_run_on_commit")
    enabled = marker.args[0] if marker else request.config.getini("clickatell_run_on_commit")
    if not enabled:
        yield
        return
    with running_on_commit_work():
        yield


@_fixture()
def clickatell_outbox() -> list[SentSms]:
    """The test backend's outbox, empty at the start of the test."""
    return outbox


@_fixture()
def clickatell_simulator(settings: Any) -> Iterator[ClickatellSimulator]:
    """A running simulator; ``settings.CLICKATELL`` points at it for the test's duration."""
    from django.core.cache import caches

    with ClickatellSimulator() as simulator:
        current = dict(getattr(settings, "CLICKATELL", {}) or {})
        # The simulator speaks the HTTP API: a test configured for the test backend
        # would otherwise never reach it.
        settings.CLICKATELL = {**current, "BACKEND": "legacy_http", **simulator.settings()}
        caches[settings.CLICKATELL.get("CACHE_ALIAS", "default")].clear()
        guards.forget()  # the guards' counts went with the cache
        testing_support.reset_connections()
        yield simulator
        testing_support.reset_connections()


__all__ = [
    "ClickatellTestMixin",
    "SentSms",
    "clickatell_outbox",
    "clickatell_simulator",
    "deliver_callback",
    "duplicates",
    "outbox",
    "requests",
    "reset_outbox",
    "running_on_commit_work",
    "script",
    "set_status",
    "status_of",
]
