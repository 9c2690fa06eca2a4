"""Keeping up to ``MAX_IN_FLIGHT`` requests on the wire for one run: sends and cancellations.

A run (:mod:`.send_run`, :mod:`.cancel_run`) splits each request into two
halves: *attempt* makes the request and builds its unsaved exchange row -- no
database access, so a pipeline thread may run it -- and *record* writes what it
learnt, on the run's own thread (through its :class:`~.recording.OutcomeWriter`).
This module is the loop between them, shared by every kind of run:

- the run's thread decides each request: it checks the previous writes
  (``check``), then asks ``admit`` (the lease, and whatever else the run must know
  first) before a request leaves;
- the first request goes alone (it renews a stale session once, for everyone, and
  its record proves the database), then up to *width* are outstanding;
- *record* may ask for another request about the same item (:class:`Again`: a send
  in doubt, verified absent, is sent next) or stop the run with a transient error:
  then no new request leaves for that item's *group* (its account: one API's outage
  or refused key must neither hold back nor fail another account's messages, which
  a release or a requeue hands on in one task), the ones in flight are recorded,
  and the group's untried items are returned for the caller to hand back;
- inside the caller's transaction (a view with ``ATOMIC_REQUESTS``, a test) or at a
  width of 1, requests are made one at a time on the calling thread, which keeps the
  run inside the caller's unit of work.

The replies a killed process had received but not written are at most one outcome
group, plus the requests it had on the wire (see :mod:`.recording`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from queue import SimpleQueue
from typing import Generic, TypeVar

from django.db import connections, transaction

from ..exceptions import ClickatellError

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass(frozen=True)
class Again(Generic[Item]):
    """What *record* returns to have another request made about *item* (ahead of the rest)."""

    item: Item


#: What *record* returns: nothing (go on), another request, or the error that stops the run.
Next = ClickatellError | Again[Item] | None
#: Per group (account) a transient error stopped: its untried items, and that error.
Stopped = dict[Hashable, tuple[list[Item], ClickatellError]]


def _whole_run(item: object) -> Hashable:
    return None


def run(
    items: Sequence[Item],
    *,
    width: int,
    attempt: Callable[[Item], Result],
    record: Callable[[Result], Next[Item]],
    admit: Callable[[Item], bool],
    check: Callable[[], None],
    name: str,
    group: Callable[[Item], Hashable] = _whole_run,
) -> Stopped[Item]:
    """Make one request per admitted item (more where *record* asks), *width* at a time.

    A transient error stops the requests of its item's *group* only (default: the
    whole run).  Returns, by stopped group, the items never tried and the error
    (empty when every item was done).  An item *admit* refuses (its lease was lost:
    another run decides it) is skipped.
    """
    if width <= 1 or transaction.get_connection().in_atomic_block:
        return _one_by_one(items, attempt, record, admit, check, group)
    return _threaded(items, width, attempt, record, admit, check, name, group)


def _one_by_one(
    items: Sequence[Item],
    attempt: Callable[[Item], Result],
    record: Callable[[Result], Next[Item]],
    admit: Callable[[Item], bool],
    check: Callable[[], None],
    group: Callable[[Item], Hashable],
) -> Stopped[Item]:
    waiting = deque(items)
    stopped: Stopped[Item] = {}
    while waiting:
        item = waiting.popleft()
        key = group(item)
        if key in stopped:
            stopped[key][0].append(item)
            continue
        check()
        if not admit(item):
            continue
        step = record(attempt(item))
        if isinstance(step, Again):
            waiting.appendleft(step.item)
        elif step is not None:
            stopped[key] = ([], step)
    return stopped


def _threaded(
    items: Sequence[Item],
    width: int,
    attempt: Callable[[Item], Result],
    record: Callable[[Result], Next[Item]],
    admit: Callable[[Item], bool],
    check: Callable[[], None],
    name: str,
    group: Callable[[Item], Hashable],
) -> Stopped[Item]:
    waiting = deque(items)
    stopped: Stopped[Item] = {}
    #: The item each outstanding request is about, by its future.
    asked: dict[Future[Result], Item] = {}
    crash: BaseException | None = None
    limit, in_flight = 1, 0
    # Each request's future is handed back here as it completes: O(1) per reply.
    completed: SimpleQueue[Future[Result]] = SimpleQueue()

    def on_thread(item: Item) -> Result:
        """One request on a pipeline thread, which never keeps a database connection:
        *attempt* opens none, and should anything below it (a signal receiver, an
        instrumented client) open one, it is closed here, not leaked."""
        try:
            return attempt(item)
        finally:
            connections.close_all()  # this thread's own connections, if any

    with ThreadPoolExecutor(
        max_workers=max(1, min(width, len(items))), thread_name_prefix=f"clickatell-{name}"
    ) as pool:
        while True:
            while waiting and in_flight < limit and crash is None:
                item = waiting.popleft()
                key = group(item)
                if key in stopped:  # its group has stopped: returned untried
                    stopped[key][0].append(item)
                    continue
                check()
                if admit(item):
                    future = pool.submit(on_thread, item)
                    asked[future] = item
                    future.add_done_callback(completed.put)
                    in_flight += 1
            if not in_flight:
                break
            future = completed.get()
            in_flight -= 1
            key = group(asked.pop(future))
            try:
                result = future.result()
            except BaseException as exc:  # a bug below us: re-raised once all are in
                crash = crash or exc
                continue
            step = record(result)  # every reply is recorded, after an error too
            if isinstance(step, Again):
                waiting.appendleft(step.item)  # returned untried if its group has stopped
            elif step is not None and key not in stopped:
                stopped[key] = ([], step)
            limit = width
    if crash is not None:
        raise crash
    return stopped
