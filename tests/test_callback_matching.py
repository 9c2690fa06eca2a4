"""Which message a callback speaks for, and what it proves (issue 19, items 2 and 3).

* A callback that names a message whose send is in doubt (``verifying``, ``unknown``, or
  ``sending`` with no id) settles it: Clickatell has it.  Never by a blind write: a run
  that holds the message decides from its own reply.
* A callback that races its own send (the id being recorded while the callback looks it
  up) is applied or kept and matched -- never dropped as "another account's".
* A callback speaks for one account's messages, legacy form callbacks included.

In-process, on PostgreSQL; the One API end-to-end cases (the simulator pushing to the
live server) are in test_one_api_callbacks.py.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db.models.query import QuerySet, RawQuerySet
from django.utils import timezone

from django_clickatell.models import GatewayExchange, OutboundMessage, SendState, UnmatchedCallback
from django_clickatell.services import callbacks, recording
from django_clickatell.services.callbacks import (
    match_unmatched_callbacks,
    receive_callback,
    receive_json_callback,
)

pytestmark = pytest.mark.django_db

API_ID = "1234567"
ID = "a" * 32


def form(
    status: str = "003", *, apimsgid: str = ID, climsgid: str = "", at: float | None = None
) -> dict[str, str]:
    """A legacy callback's fields."""
    return {
        "api_id": API_ID,
        "apiMsgId": apimsgid,
        "cliMsgId": climsgid,
        "to": "27999000001",
        "timestamp": str(int(at if at is not None else time.time())),
        "status": status,
    }


def json_body(status: str = "SENT_TO_SUPPLIER", *, apimsgid: str = ID, climsgid: str = "") -> bytes:
    event = {
        "channel": "sms",
        "messageId": apimsgid,
        "clientMessageId": climsgid,
        "status": status,
        "timestamp": int(time.time() * 1000),
    }
    return json.dumps({"event": {"messageStatusUpdate": [event]}}).encode()


def message(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {"recipient": "27999000001", "climsgid": "c1"}
    return OutboundMessage.objects.create(**{**values, **fields})


# -- a callback settles a send in doubt ------------------------------------------------------


@pytest.mark.parametrize("state", [SendState.UNKNOWN, SendState.VERIFYING])
def test_a_legacy_callback_by_climsgid_settles_a_send_in_doubt(state: str) -> None:
    sms = message(send_state=state, send_error="Gave up checking: timeout")
    assert receive_callback(form("003", climsgid="c1"), api_id=API_ID) == "applied"
    sms.refresh_from_db()
    assert (sms.send_state, sms.apimsgid, sms.status, sms.send_error) == ("sent", ID, "003", "")


def test_a_legacy_callback_by_apimsgid_settles_a_send_in_doubt() -> None:
    sms = message(send_state=SendState.UNKNOWN, apimsgid=ID)
    assert receive_callback(form("004"), api_id=API_ID) == "applied"
    sms.refresh_from_db()
    assert (sms.send_state, sms.status) == ("sent", "004")


@pytest.mark.parametrize("climsgid", ["", "c1"])
def test_a_one_api_callback_settles_a_send_in_doubt(climsgid: str) -> None:
    """By id (the message learnt it from an earlier callback) or by our client id."""
    sms = message(send_state=SendState.UNKNOWN, apimsgid=None if climsgid else ID)
    assert receive_json_callback("default", json_body(climsgid=climsgid)) == ["applied"]
    sms.refresh_from_db()
    assert (sms.send_state, sms.apimsgid, sms.status) == ("sent", ID, "003")


def test_an_ignored_status_still_settles_the_send() -> None:
    """Stale or not, the callback names the message: Clickatell has it."""
    sms = message(send_state=SendState.UNKNOWN, apimsgid=ID, status="004")
    assert receive_callback(form("003"), api_id=API_ID) == "ignored"
    sms.refresh_from_db()
    assert (sms.send_state, sms.status) == ("sent", "004")


def test_a_running_send_is_not_fought_but_an_abandoned_one_is_settled() -> None:
    """A send in flight holds its lease: the callback records the id and the status, the
    run decides the send state from its own reply.  Once the lease has lapsed (the run
    died), the callback settles it -- and the late run, its token gone, writes nothing."""
    later = timezone.now() + timedelta(minutes=5)
    sms = message(send_state=SendState.SENDING, claim_token="run1", claim_expires_at=later)
    assert receive_callback(form("003", climsgid="c1"), api_id=API_ID) == "applied"
    sms.refresh_from_db()
    assert (sms.send_state, sms.claim_token, sms.apimsgid, sms.status) == (
        "sending",
        "run1",
        ID,
        "003",
    )
    assert recording.write_outcome(sms.pk, {"send_state": "sent"}, None, "run1") == 1

    gone = message(
        climsgid="c2",
        send_state=SendState.SENDING,
        claim_token="run2",
        claim_expires_at=timezone.now() - timedelta(seconds=1),
    )
    receive_callback(form("003", apimsgid="b" * 32, climsgid="c2"), api_id=API_ID)
    gone.refresh_from_db()
    assert (gone.send_state, gone.claim_token, gone.apimsgid) == ("sent", "", "b" * 32)
    assert recording.write_outcome(gone.pk, {"send_state": "verifying"}, None, "run2") == 0


@pytest.mark.parametrize("state", [SendState.QUEUED, SendState.HELD, SendState.REJECTED])
def test_a_callback_never_makes_a_message_that_was_not_handed_over_sent(state: str) -> None:
    sms = message(send_state=state)
    receive_callback(form("003", climsgid="c1"), api_id=API_ID)
    sms.refresh_from_db()
    assert sms.send_state == state


def test_a_callback_naming_another_messages_id_settles_nothing_and_does_not_crash() -> None:
    """Found by client id, but the id it names is another message's (replayed, hostile):
    the unique column would refuse the write -- a 500 before."""
    message(climsgid="other", apimsgid=ID, send_state=SendState.SENT)
    doubtful = message(climsgid="c1", send_state=SendState.UNKNOWN)
    receive_callback(form("003", climsgid="c1"), api_id=API_ID)
    doubtful.refresh_from_db()
    assert (doubtful.send_state, doubtful.apimsgid) == ("unknown", None)


# -- a callback racing its own send ----------------------------------------------------------


@pytest.mark.parametrize("kind", ["form", "json"])
@pytest.mark.parametrize("climsgid", ["", "c1"])
def test_a_callback_racing_its_send_is_applied_not_called_another_accounts(
    kind: str, climsgid: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The issue's report: "One API callback on account 'default' names another account's
    message ... ignored" for a message on ``default``, and the event dropped.  The look-up
    by id missed because the send was recording the id; the check "is it anybody's?" ran
    after the record and found it.  Here the send records the id right after the first
    look-up, every time."""
    sms = message(send_state=SendState.SENDING)
    looked = 0

    def after(real_fetch: Any) -> Any:
        def send_records_the_id_meanwhile(self: Any) -> None:
            """Right after the first look-up of a message (whatever method makes it)."""
            nonlocal looked
            real_fetch(self)
            if self.model is OutboundMessage:
                looked += 1
                if looked == 1:
                    OutboundMessage.objects.filter(pk=sms.pk).update(
                        apimsgid=ID, send_state=SendState.SENT
                    )

        return send_records_the_id_meanwhile

    caplog.set_level(logging.INFO, logger="django_clickatell")
    with (
        mock.patch.object(QuerySet, "_fetch_all", after(QuerySet._fetch_all)),
        mock.patch.object(RawQuerySet, "_fetch_all", after(vars(RawQuerySet)["_fetch_all"])),
    ):
        if kind == "form":
            outcomes = [receive_callback(form("003", climsgid=climsgid), api_id=API_ID)]
        else:
            outcomes = receive_json_callback("default", json_body(climsgid=climsgid))
    assert outcomes == ["applied"]
    assert "another account" not in caplog.text
    sms.refresh_from_db()
    assert (sms.apimsgid, sms.status) == (ID, "003")
    assert match_unmatched_callbacks(sms) == 0  # the send's own matching finds nothing more
    assert GatewayExchange.objects.filter(message=sms, command="callback").count() == 1


@pytest.mark.parametrize("kind", ["form", "json"])
def test_a_callback_before_its_send_recorded_the_id_is_kept_then_matched(kind: str) -> None:
    sms = message(send_state=SendState.SENDING)
    if kind == "form":
        outcome = receive_callback(form("003"), api_id=API_ID)
    else:
        [outcome] = receive_json_callback("default", json_body())
    assert outcome == "unmatched"
    assert UnmatchedCallback.objects.get().account == "default"
    OutboundMessage.objects.filter(pk=sms.pk).update(apimsgid=ID, send_state=SendState.SENT)
    sms.refresh_from_db()
    assert match_unmatched_callbacks(sms) == 1  # what the send does after recording the id
    sms.refresh_from_db()
    assert sms.status == "003"


# -- a legacy callback speaks for its own account's messages ---------------------------------


def test_a_legacy_callback_of_one_account_cannot_touch_anothers_message(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The issue's report: the default account's credentials with its api_id changed the
    second account's message to 004."""
    theirs = message(account="second", apimsgid=ID, status="011", send_state=SendState.SENT)
    caplog.set_level(logging.WARNING, logger="django_clickatell")
    assert receive_callback(form("004"), api_id=API_ID) == "ignored"
    theirs.refresh_from_db()
    assert theirs.status == "011"
    assert not UnmatchedCallback.objects.exists()  # not its news: not kept for it either
    assert "another account" in caplog.text
    # By client id neither.
    other = message(account="second", climsgid="c9", send_state=SendState.UNKNOWN)
    receive_callback(form("004", apimsgid="d" * 32, climsgid="c9"), api_id=API_ID)
    other.refresh_from_db()
    assert (other.send_state, other.apimsgid, other.status) == ("unknown", None, "")
    # Routed to its own account (by api_id, in the view), it applies.
    assert receive_callback(form("004"), api_id=API_ID, account="second") == "applied"
    theirs.refresh_from_db()
    assert theirs.status == "004"


def test_a_kept_legacy_callback_is_matched_to_its_own_accounts_message_only() -> None:
    assert receive_callback(form("004"), api_id=API_ID, account="second") == "unmatched"
    assert UnmatchedCallback.objects.get().account == "second"
    mine = message(account="default", apimsgid=ID, send_state=SendState.SENT)
    assert match_unmatched_callbacks(mine) == 0
    OutboundMessage.objects.filter(pk=mine.pk).update(account="second")
    mine.refresh_from_db()
    assert match_unmatched_callbacks(mine) == 1
    mine.refresh_from_db()
    assert mine.status == "004"


def test_callbacks_kept_before_they_were_scoped_still_match_any_account() -> None:
    UnmatchedCallback.objects.create(apimsgid=ID, status="003", account="")
    sms = message(account="second", apimsgid=ID, send_state=SendState.SENT)
    assert callbacks.match_unmatched_callbacks(sms) == 1


def test_a_send_left_in_doubt_with_the_id_a_callback_gave_is_settled_without_a_request(
    simulator: Any, settings: Any
) -> None:
    """A callback came while the send was in flight (so it recorded only the id), then the
    send lost its reply.  The One API cannot be asked by client id: the verification
    ended ``unknown`` although the id was known.  Clickatell named it: it has it."""
    from django_clickatell.models import Via
    from django_clickatell.services import sending

    simulator.one_api.reset()
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        **simulator.one_api_settings(),
        "USE_CELERY": False,
    }
    sms = message(send_state=SendState.VERIFYING, apimsgid=ID)
    report = sending.send_messages([sms.pk], via=Via.TASK)
    assert report.sent == [sms.pk]
    sms.refresh_from_db()
    assert (sms.send_state, sms.apimsgid, sms.claim_token) == ("sent", ID, "")
    assert simulator.counts["total"] == 0  # nothing asked, nothing sent again
