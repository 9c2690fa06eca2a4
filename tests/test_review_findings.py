"""A hostile review of the "exactly once, or honestly unknown" guarantees (issue 11).

Each test reproduces one defect found by reading the services and is marked
``xfail(strict=True)`` while it failed; the markers went with the fixes.
They run against the simulator over real HTTP on PostgreSQL.
"""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db.models import F
from django.utils import timezone

from django_clickatell.conf import app_settings
from django_clickatell.gateway.backends.legacy_http import LegacyHttpBackend
from django_clickatell.gateway.client import ClickatellClient
from django_clickatell.models import CancelState, OutboundMessage, SendState, Via
from django_clickatell.protocol.callbacks import parse_callback
from django_clickatell.services import claims, composing, send_recovery, sending
from django_clickatell.services.callbacks import record_callback
from django_clickatell.services.cancel_requests import request_cancellation
from django_clickatell.services.cancelling import cancel_messages, stalled_cancellations
from django_clickatell.signals import message_status_changed
from django_clickatell.simulator import ClickatellSimulator
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db


class SimulatedClock:
    """Time passing for one run, as the database and the run's monotonic clock see it.

    ``advance(s)`` ages every lease in the database by *s* seconds (the same as *s*
    seconds of wall time passing) and moves the run's monotonic clock on by *s*.
    """

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        OutboundMessage.objects.exclude(claim_expires_at=None).update(
            claim_expires_at=F("claim_expires_at") - timedelta(seconds=seconds)
        )
        self.now += seconds


# -- 1. a second SMS: the lease lapses between a verification and the send it allows -----


def test_lease_outlives_a_verification_and_the_send_that_follows_it(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """``CLAIM_TIMEOUT`` at the bound E005 accepts: 2 x ``command_deadline``.

    ``LeaseKeeper.holds`` is asked once per *message*, but a message in doubt costs
    two client calls under that one check: ``querymsg`` then ``sendmsg``.  A message
    may start with a third of the lease spent (no renewal is due yet), so the send
    can still be on its way ``C/3 + 2 x command_deadline = 4C/3`` after the last
    renewal -- after the lease expired.  A second run (the requeue task, a
    duplicate delivery) takes the message over, asks Clickatell (``ERR 104``: the
    first run's ``sendmsg`` has not arrived -- e.g. it is still waiting for a
    login, which ``command_deadline`` allows for) and sends it.  Then the first
    run's ``sendmsg`` arrives: two SMS under one ``climsgid``.

    Every simulated duration below is within the deadlines the settings promise.
    """
    minimum = math.ceil(app_settings.minimum_claim_timeout)
    settings.CLICKATELL = {**settings.CLICKATELL, "CLAIM_TIMEOUT": minimum}
    lease, call = app_settings.claim_timeout, app_settings.command_deadline
    assert lease == minimum
    assert lease >= 2 * call  # accepted by check E005

    first, in_doubt = composing.create_messages(["27999000001", "27999000002"], "once")
    # A previous run's request for the second message was reset before it arrived.
    OutboundMessage.objects.filter(pk=in_doubt.pk).update(send_state=SendState.VERIFYING)

    clock = SimulatedClock()
    client = ClickatellClient()
    real_sendmsg, real_querymsg = client.sendmsg, client.querymsg

    def sendmsg(fields: dict[str, str]) -> Any:
        if fields["climsgid"] == first.climsgid:
            reply = real_sendmsg(fields)
            clock.advance(lease / 3 - 1)  # a slow send, well within command_deadline
            return reply
        # The send of the message in doubt takes a while too (waits for a login) ...
        waited = lease + 1 - (lease / 3 - 1) - call
        assert waited <= call  # within the deadline of one client call
        clock.advance(waited)
        # ... and meanwhile (before the fix) the lease had expired: a second run, the
        # requeue task, takes it over unless the first run renewed before this send.
        sending.send_messages([in_doubt.pk], via=Via.TASK)
        return real_sendmsg(fields)

    def querymsg(**kwargs: str) -> Any:
        try:
            return real_querymsg(**kwargs)
        finally:
            clock.advance(call)  # the longest a client call may take

    with (
        mock.patch.object(claims, "monotonic", clock.monotonic),
        mock.patch.object(client, "sendmsg", sendmsg),
        mock.patch.object(client, "querymsg", querymsg),
    ):
        sending.send_messages(
            [first.pk, in_doubt.pk],
            via=Via.TASK,
            backend=LegacyHttpBackend(app_settings, client=client),
        )

    assert simulator.duplicate_sends() == []


# -- 2. a cancellation requested during a send that Clickatell rejects: pending for ever --


def test_cancel_requested_while_a_send_is_rejected_is_not_left_pending_for_ever(
    simulator: ClickatellSimulator,
) -> None:
    """An operator asks to stop a message while its ``sendmsg`` is on the wire.

    The request is accepted (``SENDING`` is requestable) and left ``PENDING`` for
    the send to settle.  Clickatell rejects the send (``ERR 301``).  Now the
    message never reached Clickatell, but ``withdraw`` only stops ``QUEUED`` and
    ``FAILED`` messages, the cancel run only claims messages at the gateway, and
    ``_wait_for_sends`` only waits for open sends: every cancel run does nothing
    and the message says "Cancellation queued" for ever, handed on again by
    ``requeue_stalled_work`` every period.  A new request is refused (it is
    "in progress").
    """
    [message] = composing.create_messages("27999000001", "x")
    client = ClickatellClient()
    real_sendmsg = client.sendmsg
    requested: list[int] = []

    def operator_cancels_meanwhile(fields: dict[str, str]) -> Any:
        requested.extend(
            request_cancellation(
                OutboundMessage.objects.filter(pk=message.pk), via=Via.API
            ).message_pks
        )
        simulator.inject("body", command="sendmsg", body="ERR: 301, No credit left")
        return real_sendmsg(fields)

    with mock.patch.object(client, "sendmsg", operator_cancels_meanwhile):
        sending.send_messages(
            [message.pk], via=Via.TASK, backend=LegacyHttpBackend(app_settings, client=client)
        )
    assert requested == [message.pk]
    message.refresh_from_db()
    assert message.send_state == SendState.REJECTED

    cancel_messages(requested, via=Via.TASK)  # what the cancellation task does
    OutboundMessage.objects.update(updated_at=timezone.now() - timedelta(days=1))
    message.refresh_from_db()
    assert message.cancel_state not in (
        CancelState.PENDING,
        CancelState.RETRYING,
        CancelState.IN_FLIGHT,
    ), "still 'Cancellation queued'"
    assert stalled_cancellations() == []


# -- 3. asked again after a refused stop: "queued", but nothing will ever send or stop it ---


def test_asking_again_after_a_refused_stop_leaves_no_message_stuck_queued(
    simulator: ClickatellSimulator,
) -> None:
    """unknown -> stop refused with ERR 104 -> "Ask Clickatell again" -> stuck ``QUEUED``.

    A send whose request never arrived ends ``UNKNOWN`` when ``querymsg`` is
    refused.  The operator stops it: ``delmsg`` by ``climsgid`` is answered
    ``ERR 104`` (Clickatell does not have it), so the stop is ``REFUSED``.  The
    operator then asks Clickatell again: ``querymsg`` says ``ERR 104``, and as a
    stop was asked for, ``_SendRun.process`` sets the message ``QUEUED`` and calls
    ``withdraw`` -- which only stops messages whose cancellation is not requested,
    pending or retrying, so it does nothing.  The message is left ``QUEUED`` with a
    settled cancellation: the send path never claims it (a stop was requested),
    ``stalled_sends`` never hands it on, and the admin shows "Queued for sending".
    """
    [message] = composing.create_messages("27999000001", "x")
    simulator.inject("reset", command="sendmsg")  # never arrived: nothing carried out
    sending.send_messages([message.pk], via=Via.TASK)
    simulator.inject("body", command="querymsg", body="ERR: 101, Invalid or missing parameters")
    sending.send_messages([message.pk], via=Via.TASK)
    message.refresh_from_db()
    assert message.send_state == SendState.UNKNOWN

    request = request_cancellation(OutboundMessage.objects.filter(pk=message.pk), via=Via.API)
    cancel_messages(request.message_pks, via=Via.API)
    message.refresh_from_db()
    assert message.cancel_state == CancelState.REFUSED  # ERR 104: truthfully not there

    assert send_recovery.recheck(OutboundMessage.objects.filter(pk=message.pk)) == [message.pk]
    sending.send_messages([message.pk], via=Via.TASK)
    OutboundMessage.objects.update(updated_at=timezone.now() - timedelta(days=1))
    message.refresh_from_db()
    assert simulator.counts["sendmsg"] == 1  # the reset request only
    stuck = message.send_state == SendState.QUEUED and message.pk not in (
        send_recovery.stalled_sends()
    )
    assert not stuck, (message.send_state, message.cancel_state, message.send_error)


# -- 4. the status signal moves backwards when a final callback lands during a delmsg -----


def test_status_signal_never_reports_a_status_the_record_refused(
    simulator: ClickatellSimulator,
) -> None:
    """``message_status_changed`` fires for the ``delmsg`` reply the lifecycle rule refused.

    A final ``004`` arrives by callback while a ``delmsg`` is on the wire; the reply
    says ``003``.  The record correctly keeps ``004`` (the conditional ``UPDATE``),
    but ``CancelRun._record_reply`` computes ``changed`` from the status read at
    claim time (``011``) and sends ``message_status_changed(new_status="003")``
    after the ``004`` one: a receiver mirroring statuses moves backwards from a
    final status, and is told of a status the record does not hold.
    """
    [message] = scheduled_messages(simulator, 1)
    simulator.messages[str(message.apimsgid)].status = "003"
    client = ClickatellClient()
    real_delmsg = client.delmsg
    seen: list[str] = []

    def on_change(sender: Any, message: OutboundMessage, new_status: str, **kw: Any) -> None:
        seen.append(new_status)

    def delivered_meanwhile(**kwargs: str) -> Any:
        reply = real_delmsg(**kwargs)
        record_callback(
            parse_callback(
                {
                    "api_id": "1234567",
                    "apiMsgId": str(message.apimsgid),
                    "cliMsgId": "",
                    "status": "004",
                    "timestamp": str(int(timezone.now().timestamp())),
                }
            )
        )
        return reply

    message_status_changed.connect(on_change)
    try:
        with mock.patch.object(client, "delmsg", delivered_meanwhile):
            cancel_messages(
                [message.pk], via=Via.API, backend=LegacyHttpBackend(app_settings, client=client)
            )
    finally:
        message_status_changed.disconnect(on_change)
    message.refresh_from_db()
    assert message.status == "004"  # the record holds
    assert seen == ["004"], seen


# -- 5. "Refused by Clickatell" for a delmsg that was never made ---------------------------


def test_an_id_rejected_before_any_request_is_not_recorded_as_refused_by_clickatell(
    simulator: ClickatellSimulator,
) -> None:
    """A message recorded by the host application (sent elsewhere) with an id the client
    will not put in a request (here a space) is marked ``REFUSED`` -- "Refused by
    Clickatell", a final state -- although no ``delmsg`` was made and the exchange
    log holds nothing.  The record says Clickatell answered a request never made.
    """
    [message] = scheduled_messages(None, 1, apimsgid="abc def")
    report = cancel_messages([message.pk], via=Via.API)
    message.refresh_from_db()
    assert simulator.counts["delmsg"] == 0
    # Logged as "not sent" at most: never as an answer from Clickatell.
    assert set(message.exchanges.values_list("outcome", flat=True)) <= {"not_sent"}
    assert report.refused != [message.pk]
    assert message.cancel_state != CancelState.REFUSED, message.cancel_error


# -- 6. a reply naming an id the record already holds: no outcome, a querymsg loop --------


@pytest.mark.django_db(transaction=True)
def test_a_sendmsg_reply_naming_another_messages_id_ends_as_a_recorded_result(
    simulator: ClickatellSimulator,
) -> None:
    """A proxy replaying a cached reply (or a hostile gateway) answers ``ID: <an id we
    already hold>``.  ``_accepted`` writes it into the unique ``apimsgid`` column: the
    ``IntegrityError`` escapes ``send_messages`` (not a retryable database error, so
    the task fails), the message stays ``SENDING`` under the lease, and once the lease
    expires every requeue asks ``querymsg``, gets the same id and fails the same way --
    for ever.  The issue's rule: every reply ends as a recorded result or a typed error.
    """
    [earlier] = scheduled_messages(simulator, 1)
    [message] = composing.create_messages("27999000001", "x")
    simulator.inject("body", command="sendmsg", body=f"ID: {earlier.apimsgid}")
    try:
        sending.send_messages([message.pk], via=Via.TASK)
    finally:
        message.refresh_from_db()
    assert message.send_state not in (SendState.SENDING, SendState.QUEUED)
    assert message.claim_token == ""


# -- 7. a stop asked for while the send in doubt is being checked: sent anyway -------------


def test_a_stop_requested_during_the_verification_is_honoured_before_sending(
    simulator: ClickatellSimulator,
) -> None:
    """``_SendRun.process`` means to withdraw a message found absent when a stop was
    asked for -- but it reads ``cancel_state`` as loaded by the claim.  An operator
    who stops the message while ``querymsg`` is on the wire (accepted: ``VERIFYING``
    is requestable, and left ``PENDING`` because the run holds it) is ignored: the
    run sends the SMS it had every reason not to send, and the cancellation then
    sends a ``delmsg`` -- too late for a message due now.
    """
    [message] = composing.create_messages("27999000001", "x")
    simulator.inject("reset", command="sendmsg")  # never arrived: in doubt
    sending.send_messages([message.pk], via=Via.TASK)
    message.refresh_from_db()
    assert message.send_state == SendState.VERIFYING
    client = ClickatellClient()
    real_querymsg = client.querymsg

    def operator_stops_meanwhile(**kwargs: str) -> Any:
        request_cancellation(OutboundMessage.objects.filter(pk=message.pk), via=Via.API)
        return real_querymsg(**kwargs)

    with mock.patch.object(client, "querymsg", operator_stops_meanwhile):
        sending.send_messages(
            [message.pk], via=Via.TASK, backend=LegacyHttpBackend(app_settings, client=client)
        )
    message.refresh_from_db()
    assert simulator.accepted_sends() == []
    assert message.send_state == SendState.WITHDRAWN


# -- the final whole-change review ------------------------------------------------------


def test_err_901_naming_the_recipient_is_verified_not_rejected(
    simulator: ClickatellSimulator,
) -> None:
    """ "Internal error, please retry" may have been taken: it was recorded as rejected, and
    "Send again" would then have sent it without asking."""
    [message] = composing.create_messages("27999000001", "x")
    simulator.inject("body", command="sendmsg", body="ERR: 901, Internal error To: 27999000001")
    sending.send_messages([message.pk], via=Via.TASK)
    message.refresh_from_db()
    assert message.send_state == SendState.VERIFYING
    assert send_recovery.resend(OutboundMessage.objects.all()) == []


def test_send_again_leaves_messages_someone_asked_to_stop() -> None:
    composing.create_messages("27999000001", "x")
    OutboundMessage.objects.update(send_state=SendState.REJECTED, cancel_state=CancelState.PENDING)
    assert send_recovery.resend(OutboundMessage.objects.all()) == []
    assert OutboundMessage.objects.get().send_state == SendState.REJECTED


def test_giving_up_releases_a_dead_runs_claim() -> None:
    [message] = composing.create_messages("27999000001", "x")
    OutboundMessage.objects.update(
        send_state=SendState.VERIFYING,
        claim_token="dead-run",
        claim_expires_at=timezone.now() - timedelta(seconds=1),
    )
    assert send_recovery.give_up([message.pk], "no answer") == 1
    message.refresh_from_db()
    assert (message.send_state, message.claim_token) == (SendState.UNKNOWN, "")


def test_a_cancellation_finished_from_the_log_is_announced(
    simulator: ClickatellSimulator,
) -> None:
    from django_clickatell.models import GatewayExchange
    from django_clickatell.signals import message_cancelled

    [message] = scheduled_messages(simulator, 1)
    GatewayExchange.objects.create(
        message=message, command="delmsg", via=Via.TASK, outcome="status", status="006"
    )
    heard: list[int] = []

    def listener(sender: Any, message: OutboundMessage, **_: Any) -> None:
        heard.append(message.pk)

    message_cancelled.connect(listener)
    try:
        cancel_messages([message.pk], via=Via.API)
    finally:
        message_cancelled.disconnect(listener)
    message.refresh_from_db()
    assert (message.status, message.cancel_state) == ("006", CancelState.CANCELLED)
    assert heard == [message.pk]
    assert simulator.counts["delmsg"] == 0
