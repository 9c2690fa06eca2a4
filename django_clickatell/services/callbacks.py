"""Status callbacks pushed by Clickatell: applied to their message, or kept until it appears.

Clickatell retries callbacks for days, so duplicates and reordering are
normal: each goes through the one lifecycle rule (:func:`.status.apply_status`),
ordered by the time the callback says the status happened, and is logged
whether it changed anything or not.  A callback speaks for one account's
messages only -- the account whose URL (One API) or ``api_id`` (legacy) it came
to: a message of another account is never touched, and a message this
database does not know yet is kept (``UnmatchedCallback``) and applied when the
message learns its ``apimsgid``.  A callback that names a message whose send
is in doubt proves Clickatell accepted it, and settles it
(:func:`.status.settle_send`).

Every report goes through :func:`record_reports`, which applies a whole POST's
reports (a One API callback carries up to 200) in one transaction with a
constant number of statements; a legacy callback is a batch of one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import connection, router, transaction
from django.db.models import Q
from django.utils import timezone

from ..conf import DEFAULT_ACCOUNT, ClickatellSettings
from ..exceptions import InvalidCallback
from ..gateway.backends import account_settings
from ..models import (
    CancelState,
    GatewayExchange,
    OutboundMessage,
    SendState,
    UnmatchedCallback,
    Via,
)
from ..protocol import one_api
from ..protocol.callbacks import StatusCallback, json_fields, parse_callback
from ..protocol.codes import CANCELLED_STATUS
from ..protocol.lifecycle import clamp, supersedes
from ..signals import message_cancelled, message_status_changed
from . import recording
from .status import apply_status, settle_send

logger = logging.getLogger("django_clickatell.status")


class CallbackOutcome:
    APPLIED = "applied"
    IGNORED = "ignored"  # duplicate, stale, after a final status, or another account's
    UNMATCHED = "unmatched"
    INVALID = "invalid"  # a malformed event of a One API callback whose others were applied


#: Send states in which a callback naming the message may settle its send.
_DOUBTFUL = frozenset({SendState.SENDING, SendState.VERIFYING, SendState.UNKNOWN})


@dataclass(frozen=True)
class _Report:
    """One status report of a callback, whichever API's form it came in."""

    apimsgid: str
    climsgid: str
    status: str
    reported_at: datetime | None
    charge: Decimal | None = None
    recipient: str = ""
    sender: str = ""
    #: The API's own name for the status (the One API's ``SENT_TO_SUPPLIER``).
    gateway_status: str = ""


def legacy_json_fields(body: bytes) -> dict[str, str]:
    """The fields of a legacy callback pushed as a JSON POST, as the form would carry
    them; ``InvalidCallback`` for a body that is not one flat object
    (:func:`~django_clickatell.protocol.callbacks.json_fields`)."""
    return json_fields(body)


def receive_callback(
    params: Mapping[str, str], *, api_id: str, account: str = DEFAULT_ACCOUNT
) -> str:
    """Validate a pushed callback's fields and record it for *account*; raises ``InvalidCallback``.

    A callback for another API product (``api_id``) is refused as invalid too:
    it cannot concern this account's messages.  *account* is the alias of the
    account that owns *api_id* (the view routes by it): the callback touches
    that account's messages only.
    """
    callback = parse_callback(params)
    if callback.api_id != api_id:
        raise ForeignCallback("Unknown api_id")
    return record_callback(callback, account=account)


class ForeignCallback(InvalidCallback):
    """The callback names another API product than the configured one."""


def record_callback(callback: StatusCallback, *, account: str = DEFAULT_ACCOUNT) -> str:
    """Apply a legacy status callback to its message on *account*, or keep it for later."""
    return _record(
        account,
        _Report(
            apimsgid=callback.apimsgid,
            climsgid=callback.climsgid,
            status=callback.status,
            reported_at=callback.reported_at,
            charge=callback.charge,
            recipient=callback.to,
            sender=callback.sender,
        ),
    )


def _record(account: str, report: _Report) -> str:
    """Apply one report (a legacy callback): the batch path with a batch of one."""
    [outcome] = record_reports(account, [report])
    return outcome


@dataclass
class _Change:
    """A status change applied in a batch, announced once the batch is committed."""

    message: OutboundMessage
    old_status: str
    new_status: str


def record_reports(account: str, reports: Sequence[_Report]) -> list[str]:
    """Apply *reports* to *account*'s messages together; one outcome per report, in order.

    The reports of one POST are applied in one transaction with a constant number
    of statements, whatever their number:

    1. one ``SELECT ... FOR UPDATE`` of the account's messages they name by
       ``apimsgid`` (in ``pk`` order, so two batches never deadlock each other);
       only when some are not found, one look for their holder on another account
       (refused, logged, not kept) and one by ``climsgid`` among messages with no
       id yet (a send whose reply was lost);
    2. each report, in the order of the gateway's own time (ties in arrival
       order), decided by the one ordering rule
       (:func:`~django_clickatell.protocol.lifecycle.supersedes`) against the
       locked row -- exact, as nothing else can change it until the commit --
       so several reports about one message in one POST end where they would
       one by one, and duplicates, stale and post-final reports are ignored;
    3. one ``UPDATE`` of the changed messages (``bulk_update``), one ``INSERT``
       of every report's exchange row (:func:`.recording.save_many`), one commit.

    A report naming a message whose send is in doubt settles it first
    (:func:`.status.settle_send`; rare, one message at a time).  Signals
    (``message_status_changed``, ``message_cancelled``) are sent after the
    commit, one per status change, in order: a receiver sees what is stored.
    Reports for messages not known yet are kept after the commit, then looked
    up once more (:func:`_keep_unmatched`), as one at a time.
    """
    now = timezone.now()
    order = sorted(range(len(reports)), key=lambda index: clamp(reports[index].reported_at, now))
    outcomes: list[str] = [CallbackOutcome.IGNORED] * len(reports)
    changes: list[_Change] = []
    learned: list[tuple[int, OutboundMessage]] = []
    unmatched: list[int] = []
    with transaction.atomic(savepoint=False):
        found = _lock_named(account, reports, order)
        exchanges: list[GatewayExchange] = []
        changed: dict[int, OutboundMessage] = {}
        charged: dict[int, OutboundMessage] = {}
        settled_once: set[int] = set()
        for index in order:
            report = reports[index]
            message = found.get(report.apimsgid)
            if message is None:
                if report.apimsgid not in found:  # None: another account's message
                    unmatched.append(index)
                continue
            settled = False
            if message.pk not in settled_once and (
                message.apimsgid != report.apimsgid or message.send_state in _DOUBTFUL
            ):
                settled_once.add(message.pk)
                had_id = bool(message.apimsgid)
                settled = settle_send(message, report.apimsgid)
                if not had_id and message.apimsgid:
                    learned.append((index, message))
            when = clamp(report.reported_at, now)
            applied = supersedes(report.status, when, message.status, message.status_changed_at)
            if applied:
                changes.append(_Change(message, message.status, report.status))
                message.status, message.status_changed_at = report.status, when
                message.updated_at = now
                if report.status == CANCELLED_STATUS:
                    message.cancel_state = CancelState.CANCELLED
                    message.cancel_completed_at = now
                changed[message.pk] = message
            if report.charge is not None:
                message.charge = report.charge
                message.updated_at = now
                charged[message.pk] = message
            outcomes[index] = CallbackOutcome.APPLIED if applied else CallbackOutcome.IGNORED
            exchanges.append(_exchange(message.pk, report, applied=applied, settled=settled))
        _write_statuses([*changed.values(), *(m for pk, m in charged.items() if pk not in changed)])
        recording.save_many(exchanges)
    _announce(changes)
    for index, outcome in _keep_unmatched(account, [reports[index] for index in unmatched]):
        outcomes[unmatched[index]] = outcome
    for index, message in learned:
        # It learned its id from this report: reports kept under that id are its too.
        if match_unmatched_callbacks(message):
            outcomes[index] = CallbackOutcome.APPLIED
    return outcomes


#: What a report writes to its message (``updated_at`` too: ``bulk_update`` sets it only
#: when told).
_STATUS_FIELDS = (
    "status",
    "status_changed_at",
    "updated_at",
    "cancel_state",
    "cancel_completed_at",
    "charge",
)


def _write_statuses(messages: Sequence[OutboundMessage]) -> None:
    """Store the :data:`_STATUS_FIELDS` of *messages* (locked by the caller) in one ``UPDATE``.

    On PostgreSQL ``UPDATE ... FROM (VALUES ...)``, built directly: Django's
    ``bulk_update`` (one ``CASE`` per field and message) cost more CPU than the rest of
    a legacy callback.  Elsewhere ``bulk_update``.  The rows are locked
    (:func:`_lock_named`), so writing back a field the report did not change is safe.
    """
    if not messages:
        return
    if connection.vendor != "postgresql":
        OutboundMessage.objects.bulk_update(messages, _STATUS_FIELDS)
        return
    meta = OutboundMessage._meta
    quote = connection.ops.quote_name
    column_of = {field.name: str(field.column) for field in meta.concrete_fields}
    columns = [quote(column_of[name]) for name in _STATUS_FIELDS]
    key = quote(str(meta.pk.column if meta.pk else "id"))
    # The first row's casts type the columns (a NULL alone would be text).
    first = (
        "(%s::bigint, %s::text, %s::timestamptz, %s::timestamptz, %s::text, "
        "%s::timestamptz, %s::numeric)"
    )
    rows = ", ".join([first] + ["(%s, %s, %s, %s, %s, %s, %s)"] * (len(messages) - 1))
    params: list[Any] = []
    for message in messages:
        params += [message.pk, *(getattr(message, name) for name in _STATUS_FIELDS)]
    names = ", ".join(f"v{index}" for index in range(len(columns)))
    assignments = ", ".join(f"{column} = v.v{index}" for index, column in enumerate(columns))
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(meta.db_table)} AS m SET {assignments} "  # noqa: S608 (names, not input)
            f"FROM (VALUES {rows}) AS v(k, {names}) WHERE m.{key} = v.k",
            params,
        )


def _lock_named(
    account: str, reports: Sequence[_Report], order: Sequence[int]
) -> dict[str, OutboundMessage | None]:
    """*account*'s messages the reports name, locked, by the report's ``apimsgid``.

    An id held by another account's message maps to None (the report is refused);
    an id no message holds is absent (the report is kept).  A report whose id is
    unknown but whose ``climsgid`` names a message with no id yet gets that message
    (the first report in gateway-time order to name it does).
    """
    ids = {report.apimsgid for report in reports}
    mine = OutboundMessage.objects.filter(account=account).select_for_update()
    found: dict[str, OutboundMessage | None] = {
        message.apimsgid: message
        for message in _locked_by_id(account, sorted(ids))
        if message.apimsgid is not None
    }
    missing = ids - found.keys()
    if not missing:
        return found
    holders = dict(
        OutboundMessage.objects.filter(apimsgid__in=missing).values_list("apimsgid", "account")
    )
    for apimsgid, holder in holders.items():
        if holder != account:
            logger.warning(
                "Status callback on account %r names another account's message %s: ignored",
                account[:40],
                apimsgid,
            )
            found[apimsgid] = None
    recorded_meanwhile = [apimsgid for apimsgid, holder in holders.items() if holder == account]
    if recorded_meanwhile:  # this account's: its send recorded the id after the first look
        found.update(
            {
                message.apimsgid: message
                for message in mine.filter(apimsgid__in=recorded_meanwhile)
                if message.apimsgid
            }
        )
    wanted: dict[str, str] = {}
    for index in order:
        report = reports[index]
        if report.apimsgid not in found and report.climsgid:
            wanted.setdefault(report.climsgid, report.apimsgid)
    if wanted:
        by_climsgid: dict[str, OutboundMessage] = {}
        for message in mine.filter(climsgid__in=wanted, apimsgid__isnull=True):
            by_climsgid.setdefault(message.climsgid, message)
        for climsgid, message in by_climsgid.items():
            found.setdefault(wanted[climsgid], message)
    return found


#: The look-up of :func:`_locked_by_id` as SQL, by (database, number of ids): Django's
#: query compiler cost more CPU than the rest of the look-up, for the same text every time.
_LOOKUP_SQL: dict[tuple[str, int], str] = {}


def _locked_by_id(account: str, ids: list[str]) -> list[OutboundMessage]:
    """*account*'s messages holding *ids*, locked ``FOR UPDATE`` in ``pk`` order (so two
    batches never deadlock each other); call inside a transaction.

    The SQL is the ORM's own, compiled once per number of ids and reused with new
    parameters -- only when the compiled parameters are exactly ``[account, *ids]``.
    """
    database = router.db_for_write(OutboundMessage)
    key = (database, len(ids))
    sql = _LOOKUP_SQL.get(key)
    if sql is None:
        query = (
            OutboundMessage.objects.using(database)
            .filter(account=account, apimsgid__in=ids)
            .select_for_update()
            .order_by("pk")
        )
        sql, params = query.query.sql_with_params()
        if list(params) != [account, *ids]:
            return list(query)
        _LOOKUP_SQL[key] = sql
    return list(OutboundMessage.objects.raw(sql, [account, *ids], using=database))


def _announce(changes: Sequence[_Change]) -> None:
    """Send the signals of committed changes, every one even if a receiver fails.

    The first receiver's error is raised after all are sent (the callback then
    answers 500 and Clickatell retries it; the retry is ignored as a duplicate).
    """
    error: Exception | None = None
    for change in changes:
        try:
            message_status_changed.send(
                sender=OutboundMessage,
                message=change.message,
                old_status=change.old_status,
                new_status=change.new_status,
                via=Via.CALLBACK,
            )
            if change.new_status == CANCELLED_STATUS:
                message_cancelled.send(
                    sender=OutboundMessage, message=change.message, via=Via.CALLBACK
                )
        except Exception as exc:  # every receiver hears every change first
            logger.exception("A receiver of a status change failed")
            error = error or exc
    if error is not None:
        raise error


def _exchange(
    message_pk: int, report: _Report, *, applied: bool, settled: bool, note: str = ""
) -> GatewayExchange:
    """The unsaved exchange row logging *report*, applied or not."""
    exchange = recording.answered(
        recording.new_exchange(message_pk, "callback", via=Via.CALLBACK), report.status
    )
    exchange.duration_ms = None
    details = [report.gateway_status] if report.gateway_status else []
    if applied:
        details += [note] if note else []
    else:
        details.append(
            "not applied: duplicate, older than the recorded status, earlier in the "
            "lifecycle, or after a final one"
        )
    if settled:
        details.append("the send was in doubt: Clickatell has it, recorded sent")
    exchange.detail = recording.clean_text("; ".join(details))
    return exchange


def _apply_callback(message: OutboundMessage, report: _Report, *, note: str = "") -> bool:
    """Apply a report's status, settle a send in doubt, and log it, applied or not.

    The report names the message, so Clickatell has it: a send in doubt is
    settled (or, while a run holds it, the id recorded) before the status is
    applied.  Skipped -- no query -- for the usual message, sent under this id.
    """
    settled = False
    if message.apimsgid != report.apimsgid or message.send_state in _DOUBTFUL:
        settled = settle_send(message, report.apimsgid)
    extra: dict[str, Any] = {} if report.charge is None else {"charge": report.charge}
    applied = apply_status(
        message, report.status, reported_at=report.reported_at, via=Via.CALLBACK, extra=extra
    )
    recording.save(_exchange(message.pk, report, applied=applied, settled=settled, note=note))
    return applied


def _keep_unmatched(account: str, reports: Sequence[_Report]) -> list[tuple[int, str]]:
    """Keep reports for messages not known yet, then look for the messages once more.

    One ``INSERT`` for all of them, then one look-up.  The send that learns the
    ``apimsgid`` matches kept callbacks right after recording it; a callback looked
    up just before that record and kept just after that matching would be missed
    by both.  Each side writes, then reads what the other wrote, so at least one of
    them sees the other; a row is applied by whichever claims it first
    (:func:`match_unmatched_callbacks`).  Kept after the batch's commit, so the send
    can see them.  Returns (position in *reports*, outcome) pairs.
    """
    if not reports:
        return []
    UnmatchedCallback.objects.bulk_create(
        [
            UnmatchedCallback(
                apimsgid=report.apimsgid,
                climsgid=report.climsgid,
                account=account,
                recipient=report.recipient,
                sender=report.sender,
                status=report.status,
                reported_at=report.reported_at,
                charge=report.charge,
            )
            for report in reports
        ]
    )
    ids = {report.apimsgid for report in reports}
    arrived = OutboundMessage.objects.filter(account=account, apimsgid__in=ids)
    matched = {message.apimsgid for message in arrived if match_unmatched_callbacks(message)}
    outcomes = []
    for index, report in enumerate(reports):
        if report.apimsgid in matched:
            outcomes.append((index, CallbackOutcome.APPLIED))
        else:
            logger.info("Status callback for unknown message %s kept for matching", report.apimsgid)
            outcomes.append((index, CallbackOutcome.UNMATCHED))
    return outcomes


def match_unmatched_callbacks(message: OutboundMessage) -> int:
    """Apply callbacks that arrived before *message* knew its ``apimsgid``.

    Each kept row is claimed (a conditional ``UPDATE``) before it is applied, so a
    callback the send and the callback view both find is applied once.  Only
    rows kept for the message's own account match (and rows kept before
    callbacks were scoped to an account, whose account is empty).
    """
    if not message.apimsgid:
        return 0
    pending = list(
        UnmatchedCallback.objects.filter(
            Q(account="") | Q(account=message.account),
            apimsgid=message.apimsgid,
            matched_message__isnull=True,
        ).order_by("reported_at", "pk")
    )
    applied = 0
    for callback in pending:
        claimed = UnmatchedCallback.objects.filter(
            pk=callback.pk, matched_message__isnull=True
        ).update(matched_message=message)
        if claimed:
            report = _Report(
                apimsgid=callback.apimsgid,
                climsgid=callback.climsgid,
                status=callback.status,
                reported_at=callback.reported_at,
                charge=callback.charge,
            )
            _apply_callback(message, report, note="matched after arrival")
            applied += 1
    return applied


# -- JSON callbacks (the One API) ----------------------------------------------------------


def callback_account(alias: str) -> ClickatellSettings | None:
    """The settings of the account a JSON callback names, or None if there is no such account."""
    try:
        return account_settings(alias)
    except ImproperlyConfigured:
        return None


def receive_json_callback(account: str, body: bytes) -> list[str]:
    """Apply every status event of a One API callback; one outcome per event, in order.

    The events are applied together (:func:`record_reports`: one transaction, a
    constant number of statements), ordered by their own millisecond
    ``timestamp``: duplicates and events older than the recorded status are
    logged and ignored; an unknown One API status means ``001`` and never
    replaces anything recorded.  Events for messages this database does not
    know are kept (``UnmatchedCallback``).  *account* is the alias the callback
    URL named (its secret checked by the view): the events touch that account's
    messages only, so one account's secret can never change what another
    account's messages say.

    A malformed event among well-formed ones does not cost them: they are
    recorded, and its outcome is ``invalid`` (logged with the reason and its
    position).  Clickatell would send the same malformed event again on every
    retry, so refusing the whole POST would only lose the good ones.  Raises
    ``InvalidCallback`` (nothing applied, the view answers 400) for a body that is
    not a callback, or whose every event is malformed.
    """
    parsed = one_api.parse_callback_events(body)
    good = [
        (index, event) for index, event in enumerate(parsed) if not isinstance(event, Exception)
    ]
    bad = [(index, event) for index, event in enumerate(parsed) if isinstance(event, Exception)]
    if not good:
        raise bad[0][1]
    outcomes = [CallbackOutcome.INVALID] * len(parsed)
    for index, error in bad:
        logger.warning(
            "One API callback for account %r: event %d of %d is malformed (%s): not applied; "
            "the other events were",
            account[:40],
            index + 1,
            len(parsed),
            error,
        )
    applied = record_reports(account, [_event_report(event) for _, event in good])
    for (index, _), outcome in zip(good, applied, strict=True):
        outcomes[index] = outcome
    return outcomes


def _event_report(event: one_api.StatusEvent) -> _Report:
    return _Report(
        apimsgid=event.apimsgid,
        climsgid=event.climsgid,
        status=event.status.meaning,
        reported_at=event.reported_at,
        gateway_status=event.status.name,
    )
