"""A status only moves forward, whatever order callbacks, replies and refreshes arrive in.

A Hypothesis state machine interleaves status callbacks -- legacy form callbacks and
One API JSON events -- (stamped with a gateway clock that may be early, late or in
the future), ``delmsg`` replies (stamped with ours) and ``querymsg`` refreshes
(stamped with the gateway's time of the status where the API gives one, as the One
API does, else with ours) against one message in PostgreSQL, and checks after every
step that the record obeys the one rule of
:mod:`django_clickatell.protocol.lifecycle`: an older report never overwrites a newer
one at the same stage, and a status never moves back a stage.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from django_clickatell.conf import app_settings
from django_clickatell.gateway.backends.legacy_http import LegacyHttpBackend
from django_clickatell.models import CancelState, OutboundMessage, SendState, Via
from django_clickatell.protocol import one_api
from django_clickatell.protocol.callbacks import StatusCallback
from django_clickatell.protocol.codes import STATUSES
from django_clickatell.protocol.lifecycle import (
    clamp,
    is_final,
    lifecycle_rank,
    supersedes,
)
from django_clickatell.protocol.replies import MessageStatusReply
from django_clickatell.services.callbacks import receive_json_callback, record_callback
from django_clickatell.services.cancelling import cancel_messages
from django_clickatell.services.refreshing import refresh_statuses

pytestmark = pytest.mark.django_db

# Every documented code and two unknown ones, with the codes that share a stage of the
# lifecycle (002/003; 008 and unknown codes) drawn often, where clocks decide.
CODES = [*sorted(STATUSES), "013", "099"]
STATUS = st.one_of(st.sampled_from(["002", "003", "008", "099"]), st.sampled_from(CODES))
#: Gateway clocks: hours early, a little early, exact, a little late, far in the future.
OFFSET = st.one_of(st.sampled_from([-7200, -3600, -60, 0, 60, 7200]), st.integers(-7200, 7200))
#: A reply's own time, where the API gives one (the One API), or none (legacy, REST).
REPLY_OFFSET = st.one_of(st.none(), OFFSET)
#: One API statuses, by name: every one of its table and one it does not know.
ONE_API_STATUS = st.sampled_from([*sorted(one_api.STATUSES), "SOMETHING_NEW"])


class ScriptedClient:
    """Answers delmsg/querymsg with the status the state machine chose."""

    def __init__(self, apimsgid: str, status: str, reported_at: datetime | None = None) -> None:
        self.reply = MessageStatusReply(apimsgid, status, reported_at=reported_at)
        self.refused_attempts: list[Any] = []  # no session refused on the way

    def delmsg(self, **_: str) -> MessageStatusReply:
        return self.reply

    def querymsg(self, **_: str) -> MessageStatusReply:
        return self.reply


class StatusOrdering(RuleBasedStateMachine):
    message: OutboundMessage
    recorded: tuple[str, datetime | None]

    @initialize(status=st.sampled_from(["", "011", "003"]))
    def create(self, status: str) -> None:
        self.message = OutboundMessage.objects.create(
            apimsgid=uuid.uuid4().hex,
            climsgid=uuid.uuid4().hex,
            recipient="27999000001",
            status=status,
            status_changed_at=timezone.now() - timedelta(hours=3) if status else None,
        )
        self.recorded = (status, self.message.status_changed_at)
        self.history = [status]

    def _expect(self, new: str, reported_at: datetime | None) -> None:
        """Apply the pure rule to the model, exactly as the database must."""
        old, old_at = self.recorded
        when = clamp(reported_at, timezone.now())
        if supersedes(new, when, old, old_at):
            self.recorded = (new, when)

    def _check(self) -> None:
        self.message.refresh_from_db()
        expected_status, expected_at = self.recorded
        assert self.message.status == expected_status
        if expected_at is not None and self.message.status_changed_at is not None:
            # The model's clock read is a hair later than the database's.
            assert abs((self.message.status_changed_at - expected_at).total_seconds()) < 1
        self.history.append(self.message.status)

    @rule(status=STATUS, offset=OFFSET)
    def callback(self, status: str, offset: int) -> None:
        at = (timezone.now() + timedelta(seconds=offset)).replace(microsecond=0)
        self._expect(status, at)
        record_callback(
            StatusCallback(
                api_id="1234567",
                apimsgid=str(self.message.apimsgid),
                climsgid="",
                to="",
                sender="",
                status=status,
                reported_at=at,
                charge=None,
            )
        )
        self._check()

    @rule(status=STATUS)
    def delmsg_reply(self, status: str) -> None:
        # Each step is a new request to stop it (the previous outcome is settled).
        OutboundMessage.objects.filter(pk=self.message.pk).update(
            cancel_state=CancelState.NOT_REQUESTED, send_state=SendState.NOT_SENT_HERE
        )
        if not is_final(self.recorded[0]):
            self._expect(status, None)
        client: Any = ScriptedClient(str(self.message.apimsgid), status)
        cancel_messages(
            [self.message.pk], via=Via.API, backend=LegacyHttpBackend(app_settings, client=client)
        )
        self._check()

    @rule(name=ONE_API_STATUS, offset=OFFSET)
    def one_api_callback(self, name: str, offset: int) -> None:
        at = timezone.now() + timedelta(seconds=offset)
        at_ms = int(at.timestamp() * 1000)
        self._expect(one_api.describe_status(name).meaning, one_api.milliseconds(at_ms))
        event = {"messageId": str(self.message.apimsgid), "status": name, "timestamp": at_ms}
        body = json.dumps({"event": {"messageStatusUpdate": [event]}}).encode()
        receive_json_callback(self.message.account, body)
        self._check()

    @rule(status=STATUS, offset=REPLY_OFFSET)
    def querymsg_refresh(self, status: str, offset: int | None) -> None:
        at = None if offset is None else timezone.now() + timedelta(seconds=offset)
        if not is_final(self.recorded[0]):
            self._expect(status, at)
        client: Any = ScriptedClient(str(self.message.apimsgid), status, at)
        refresh_statuses(
            [self.message.pk], via=Via.TASK, backend=LegacyHttpBackend(app_settings, client=client)
        )
        self._check()

    @invariant()
    def never_backwards(self) -> None:
        if not hasattr(self, "history"):
            return
        ranks = [lifecycle_rank(status) for status in self.history]
        assert ranks == sorted(ranks), self.history
        finals = [status for status in self.history if is_final(status)]
        assert len(set(finals)) <= 1, self.history  # a final status is never replaced

    @invariant()
    def never_in_the_future(self) -> None:
        if hasattr(self, "message") and self.message.status_changed_at is not None:
            assert self.message.status_changed_at <= timezone.now()


def test_status_only_moves_forward() -> None:
    StatusOrdering.TestCase.settings = settings(
        max_examples=80,
        stateful_step_count=12,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    StatusOrdering.TestCase().runTest()


# -- the same rule, by example (issue 19) ------------------------------------------------------


def _legacy_callback(message: OutboundMessage, status: str, at: datetime) -> str:
    return record_callback(
        StatusCallback(
            api_id="1234567",
            apimsgid=str(message.apimsgid),
            climsgid="",
            to="",
            sender="",
            status=status,
            reported_at=at,
            charge=None,
        )
    )


def _refresh(message: OutboundMessage, status: str, at: datetime | None) -> None:
    client: Any = ScriptedClient(str(message.apimsgid), status, at)
    refresh_statuses(
        [message.pk], via=Via.TASK, backend=LegacyHttpBackend(app_settings, client=client)
    )


def test_at_the_same_stage_the_newer_report_wins_and_the_older_never_does() -> None:
    """002 and 003 alternate while the network retries: the report that happened later
    wins, whichever arrives later -- a query reply included, by its own time."""
    now = timezone.now().replace(microsecond=0)
    message = OutboundMessage.objects.create(
        apimsgid=uuid.uuid4().hex, climsgid="c1", recipient="27999000001"
    )
    assert _legacy_callback(message, "003", now - timedelta(minutes=10)) == "applied"
    assert _legacy_callback(message, "002", now - timedelta(minutes=5)) == "applied"  # newer
    assert _legacy_callback(message, "003", now - timedelta(minutes=8)) == "ignored"  # older
    _refresh(message, "003", now - timedelta(minutes=7))  # a reply stamped before the 002
    message.refresh_from_db()
    assert (message.status, message.status_changed_at) == ("002", now - timedelta(minutes=5))
    _refresh(message, "003", now - timedelta(minutes=1))  # stamped after it
    message.refresh_from_db()
    assert (message.status, message.status_changed_at) == ("003", now - timedelta(minutes=1))


def test_a_reply_with_no_time_of_its_own_counts_as_made_when_it_arrived() -> None:
    before = timezone.now()
    message = OutboundMessage.objects.create(
        apimsgid=uuid.uuid4().hex, climsgid="c1", recipient="27999000001"
    )
    _refresh(message, "002", None)
    message.refresh_from_db()
    assert message.status_changed_at is not None
    assert before <= message.status_changed_at <= timezone.now()


def test_a_one_api_event_from_the_future_is_clamped_to_now() -> None:
    message = OutboundMessage.objects.create(
        apimsgid=uuid.uuid4().hex, climsgid="c1", recipient="27999000001"
    )
    in_2090 = 3_786_912_000_000
    event = {"messageId": message.apimsgid, "status": "SENT_TO_SUPPLIER", "timestamp": in_2090}
    body = json.dumps({"event": {"messageStatusUpdate": [event]}}).encode()
    assert receive_json_callback("default", body) == ["applied"]
    message.refresh_from_db()
    assert message.status_changed_at is not None
    assert message.status_changed_at <= timezone.now()
    assert _legacy_callback(message, "002", timezone.now()) == "applied"  # not frozen
