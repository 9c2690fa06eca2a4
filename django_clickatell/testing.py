"""Test helpers for projects using django-clickatell: the test backend and the simulator.

The test backend (``CLICKATELL = {"BACKEND": "test", ...}``) keeps every SMS in
memory, like Django's ``mail.outbox``::

    from django_clickatell import testing

    send_sms("27999000001", "Hello", wait=True)
    assert testing.outbox[0].text == "Hello"
    testing.deliver_callback(testing.outbox[0].apimsgid, "004")   # your handlers run

With pytest, in your ``conftest.py``::

    pytest_plugins = ["django_clickatell.testing"]

which empties the test gateway before every test and provides the
``clickatell_outbox`` and ``clickatell_simulator`` fixtures (the latter needs
pytest-django).  With Django's test runner, mix :class:`ClickatellTestMixin`
into your test cases, or call :func:`reset_outbox` in ``setUp``.  pytest is
not needed for anything but the fixtures.  See docs/testing.rst.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

from .services import testing_support
from .services.testing_support import SentSms
from .simulator import ClickatellSimulator

F = TypeVar("F", bound=Callable[..., Any])

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
    ``"unmatched"`` (kept until the message is known).  Needs the ``API_ID`` of the
    message's account, and speaks for that account's messages only, as the callback
    view does.
    """
    return testing_support.deliver_callback(
        _reference(message), status, charge=charge, reported_at=reported_at, api_id=api_id
    )


def duplicates() -> list[tuple[str, str]]:
    """``(account, climsgid)`` pairs sent more than once: an SMS someone received twice."""
    return testing_support.duplicates()


class ClickatellTestMixin:
    """For Django's ``TestCase``: every test starts with an empty test gateway.

    ``class SmsTests(ClickatellTestMixin, TestCase): ...`` -- the reset happens
    in ``setUp``, before yours runs its ``super().setUp()``.
    """

    def setUp(self) -> None:
        reset_outbox()
        super().setUp()  # type: ignore[misc]


# -- pytest ------------------------------------------------------------------------------


@_fixture(autouse=True)
def _clickatell_reset_test_gateway() -> Iterator[None]:
    """Every test starts and ends with an empty test gateway (as ``mail.outbox``)."""
    reset_outbox()
    yield
    reset_outbox()


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
        settings.CLICKATELL = {**current, **simulator.settings()}
        caches[settings.CLICKATELL.get("CACHE_ALIAS", "default")].clear()
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
    "script",
    "set_status",
    "status_of",
]
