"""Test helpers for projects using django-clickatell: the simulator as a pytest fixture.

In your ``conftest.py``::

    pytest_plugins = ["django_clickatell.testing"]

    def test_stop(clickatell_simulator):
        apimsgid = clickatell_simulator.add_message()
        ...  # settings.CLICKATELL now points at the simulator

Requires pytest-django (for its ``settings`` fixture).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from .gateway.transport import reset_transports
from .simulator import ClickatellSimulator


@pytest.fixture
def clickatell_simulator(settings: Any) -> Iterator[ClickatellSimulator]:
    """A running simulator; ``settings.CLICKATELL`` points at it for the test's duration."""
    from django.core.cache import caches

    with ClickatellSimulator() as simulator:
        current = dict(getattr(settings, "CLICKATELL", {}) or {})
        settings.CLICKATELL = {**current, **simulator.settings()}
        caches[settings.CLICKATELL.get("CACHE_ALIAS", "default")].clear()
        reset_transports()
        yield simulator
        reset_transports()
