"""Handing work on: one typed description per kind of work, one way to publish it.

``dispatch`` never imports the tasks (the import contracts keep ``tasks`` above it): the
task module installs the publisher, and each kind of work names the task that runs it.
"""

from __future__ import annotations

from typing import Any

import pytest

from django_clickatell import dispatch, tasks
from django_clickatell.dispatch import (
    WORK_KINDS,
    CancelBatchWork,
    CancelWork,
    RefreshWork,
    SendWork,
    Work,
)


def test_every_kind_of_work_is_run_by_a_registered_task() -> None:
    assert {kind.task for kind in WORK_KINDS} <= set(tasks._RUNS)
    for kind in WORK_KINDS:
        assert tasks._RUNS[kind.task].name == kind.task


def test_the_task_module_installs_the_publisher() -> None:
    assert dispatch._publisher == [tasks.publish]


def test_a_batch_travels_as_its_id_and_keys_as_a_list() -> None:
    assert CancelBatchWork(7).task_args() == (7,)
    assert SendWork((1, 2)).task_args() == ([1, 2],)
    assert RefreshWork((3,)).task_args() == ([3],)


@pytest.mark.parametrize(
    ("count", "limit", "sizes"),
    [
        (10, 50, [10]),
        (50, 50, [50]),
        (51, 50, [26, 25]),  # not 50 and a straggler of 1
        (2000, 200, [200] * 10),
        (1001, 250, [201, 200, 200, 200, 200]),
        (3, 1, [1, 1, 1]),
    ],
)
def test_send_work_splits_into_even_pieces_of_at_most_task_chunk_size(
    settings: Any, count: int, limit: int, sizes: list[int]
) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "TASK_CHUNK_SIZE": limit}
    work = SendWork(tuple(range(count)))
    pieces = list(work.pieces())
    assert [piece.size() for piece in pieces] == sizes
    assert all(isinstance(piece, SendWork) for piece in pieces)
    assert [pk for piece in pieces for pk in piece.task_args()[0]] == list(range(count))


def test_cancel_work_splits_by_cancel_chunk_size(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "CANCEL_CHUNK_SIZE": 4}
    assert [p.size() for p in CancelWork(tuple(range(10))).pieces()] == [4, 3, 3]


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.published: list[Work] = []
        self.fail = fail

    def __call__(self, work: Work) -> None:
        if self.fail:
            raise ConnectionError("broker down")
        self.published.append(work)


@pytest.mark.django_db
def test_work_is_published_piece_by_piece_through_the_installed_publisher(
    settings: Any, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "TASK_CHUNK_SIZE": 3}
    recorder = Recorder()
    monkeypatch.setattr(dispatch, "_publisher", [recorder])
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert dispatch.hand_on(SendWork((1, 2, 3, 4)), via="api")
        assert dispatch.enqueue_batch(9)
        assert recorder.published == []  # not before the transaction commits
    assert len(callbacks) == 2
    assert recorder.published == [SendWork((1, 2)), SendWork((3, 4)), CancelBatchWork(9)]


@pytest.mark.django_db(transaction=True)
def test_a_broker_outage_or_a_missing_task_module_is_reported_not_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(dispatch, "_publisher", [Recorder(fail=True)])
    assert dispatch.enqueue_sending([1]) is False
    monkeypatch.setattr(dispatch, "_publisher", [])
    assert dispatch.enqueue_refresh([1]) is False
    assert dispatch.enqueue_sending([]) is True  # nothing to hand on


def _held_and_due(settings: Any, count: int) -> list[int]:
    from datetime import timedelta

    from django.utils import timezone

    from django_clickatell.models import OutboundMessage
    from django_clickatell.services import composing

    settings.CLICKATELL = {**settings.CLICKATELL, "HOLD_LEAD_TIME": 3600}
    recipients = [f"2799950{n:05d}" for n in range(count)]
    pks = [m.pk for m in composing.create_messages(recipients, "x", deliver_in_minutes=120)]
    OutboundMessage.objects.update(release_at=timezone.now() - timedelta(seconds=1))
    return pks


@pytest.mark.django_db(transaction=True)
def test_a_release_that_stops_at_its_bound_goes_on_at_once_on_a_worker(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a beat later: 10,000 rows a beat made 100,000 due at once take five minutes."""
    from django_clickatell.dispatch import ReleaseWork

    pks = _held_and_due(settings, 5)
    recorder = Recorder()
    monkeypatch.setattr(dispatch, "_publisher", [recorder])
    result = dispatch.release_held(max_batches=2, batch=2)
    assert result == {"released": 4, "rescheduled": 0, "continued": 1}
    assert recorder.published == [
        SendWork(tuple(pks[:2])),
        SendWork(tuple(pks[2:4])),
        ReleaseWork(),
    ]
    # The worker that picks it up goes on where this pass stopped.
    assert dispatch.release_held(max_batches=2, batch=2) == {"released": 1, "rescheduled": 0}
    assert recorder.published[-1] == SendWork((pks[4],))


@pytest.mark.django_db(transaction=True)
def test_without_celery_the_callers_next_pass_goes_on(
    settings: Any, simulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    _held_and_due(settings, 3)
    settings.CLICKATELL = {**settings.CLICKATELL, "USE_CELERY": False}
    recorder = Recorder()
    monkeypatch.setattr(dispatch, "_publisher", [recorder])
    assert dispatch.release_held(max_batches=1, batch=2) == {"released": 2, "rescheduled": 0}
    assert recorder.published == []
