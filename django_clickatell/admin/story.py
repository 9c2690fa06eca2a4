"""What an operator needs to know about a message, in a few words: its *state*.

A message has two state machines (``send_state``, ``cancel_state``) and
Clickatell's status; an operator wants one answer -- scheduled, stopped, too
late, rejected, gave up -- with the reason and what to do about it.
:data:`STATES` gives that answer once, as ordered rules (the first that matches
wins).  The list's counts and its "State" filter use them as one SQL ``CASE``
(:func:`state_case`, annotated by the admin's queryset as ``operator_state``);
each row reads the annotated key and :func:`describe` adds the reason (from the
row's own fields: no query) and the next step.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Case, CharField, Q, Value, When
from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.translation import gettext_lazy as _

from ..models import CancelState, OutboundMessage, SendState
from ..selections import FINAL, HANDED_ON
from ..services.waiting import WAITING
from .explanations import (
    EXPLAIN,
    error_code,
    explain_other,
)

#: Tones, from good to bad: the colour of a state and of a status badge.
OK, WAIT, INFO, WARN, BAD = "ok", "wait", "info", "warn", "bad"

#: Statuses in two or three words, for the badge (the full description is on hover).
SHORT_STATUS: dict[str, Promise] = {
    "001": _("unknown"),
    "002": _("queued"),
    "003": _("handed on"),
    "004": _("delivered"),
    "005": _("error"),
    "006": _("cancelled"),
    "007": _("not delivered"),
    "008": _("received"),
    "009": _("routing error"),
    "010": _("expired"),
    "011": _("scheduled"),
    "012": _("out of credit"),
    "014": _("MT limit"),
}
_QUEUED_AT_GATEWAY = ("001", "002", "008")
_STOP_REQUESTED = ~Q(cancel_state=CancelState.NOT_REQUESTED)
# "Clickatell sendmsg answered ERR 301: No credit left" -- how the services store a refusal.


@dataclass(frozen=True)
class OperatorState:
    """One answer to "what is going on with this message?"."""

    key: str
    label: Promise
    tone: str
    rule: Q


#: Ordered: the first rule a message matches is its state.  A final status wins over
#: anything this app did (a stop that gave up on a message since delivered was too late).
STATES: tuple[OperatorState, ...] = (
    OperatorState(
        "stopped_here",
        _("Stopped before sending"),
        OK,
        Q(cancel_state=CancelState.CANCELLED, send_state=SendState.WITHDRAWN),
    ),
    OperatorState(
        "stopped", _("Stopped"), OK, Q(cancel_state=CancelState.CANCELLED) | Q(status="006")
    ),
    OperatorState(
        "too_late",
        _("Too late"),
        WARN,
        Q(cancel_state__in=[CancelState.TOO_LATE, CancelState.SKIPPED]) | (_STOP_REQUESTED & FINAL),
    ),
    # A send, release or stop that cannot go now and is not retried: it goes out once
    # the reason is gone (services/waiting.py) -- say so rather than "queued" or "held".
    OperatorState("waiting", _("Waiting"), WARN, WAITING),
    OperatorState("stop_queued", _("Stop queued"), WAIT, Q(cancel_state=CancelState.PENDING)),
    OperatorState("stopping", _("Stopping"), WAIT, Q(cancel_state=CancelState.IN_FLIGHT)),
    OperatorState("stop_retrying", _("Retrying"), WARN, Q(cancel_state=CancelState.RETRYING)),
    OperatorState("stop_gave_up", _("Gave up"), BAD, Q(cancel_state=CancelState.GAVE_UP)),
    OperatorState("stop_refused", _("Refused"), BAD, Q(cancel_state=CancelState.REFUSED)),
    # Scheduled beyond the lead time: kept here, handed to Clickatell at release_at.
    OperatorState("held", _("Held here"), INFO, Q(send_state=SendState.HELD)),
    OperatorState("queued", _("Waiting to be sent"), WAIT, Q(send_state=SendState.QUEUED)),
    OperatorState("sending", _("Sending"), WAIT, Q(send_state=SendState.SENDING)),
    OperatorState(
        "verifying", _("Checking with Clickatell"), WARN, Q(send_state=SendState.VERIFYING)
    ),
    OperatorState("rejected", _("Rejected"), BAD, Q(send_state=SendState.REJECTED)),
    OperatorState("unknown", _("Unknown – not resent"), BAD, Q(send_state=SendState.UNKNOWN)),
    OperatorState("failed", _("Not sent"), BAD, Q(send_state=SendState.FAILED)),
    OperatorState("delivered", _("Delivered"), OK, Q(status="004")),
    OperatorState("undelivered", _("Not delivered"), BAD, FINAL),
    OperatorState("handed_on", _("Handed on"), INFO, HANDED_ON),
    OperatorState("scheduled", _("Scheduled"), INFO, Q(status="011")),
    OperatorState(
        "queued_at_gateway", _("Queued at Clickatell"), INFO, Q(status__in=_QUEUED_AT_GATEWAY)
    ),
    OperatorState("accepted", _("Accepted"), INFO, Q(status="", send_state=SendState.SENT)),
)
OTHER = OperatorState("other", _("Recorded"), INFO, Q())
BY_KEY: dict[str, OperatorState] = {state.key: state for state in (*STATES, OTHER)}


def state_case() -> Case:
    """The state of each message as SQL: annotate with it, filter on it, count by it."""
    return Case(
        *[When(state.rule, then=Value(state.key)) for state in STATES],
        default=Value(OTHER.key),
        output_field=CharField(),
    )


@dataclass(frozen=True)
class StateView:
    """A row's state as shown: label (with its code), tone, why, and what to do."""

    key: str
    label: str
    tone: str
    reason: str
    hint: str


def state_of(message: OutboundMessage) -> OperatorState:
    """The state the admin's queryset annotated (``operator_state``).

    A message read without the annotation is asked for it (one query): a state
    is never guessed.
    """
    key = getattr(message, "operator_state", None)
    if key is None:
        key = (
            OutboundMessage.objects.filter(pk=message.pk)
            .annotate(operator_state=state_case())
            .values_list("operator_state", flat=True)
            .first()
        )
    return BY_KEY.get(key or OTHER.key, OTHER)


def describe(message: OutboundMessage) -> StateView:
    """Label, reason and next step for *message*, from its own fields (no query)."""
    state = state_of(message)
    reason, hint = EXPLAIN.get(state.key, explain_other)(message)
    return StateView(state.key, _label(state, message), state.tone, reason, str(hint))


def render_state(message: OutboundMessage, *, hint: bool = True) -> SafeString:
    """The state as a badge, the reason and (unless *hint* is off) the next step under it."""
    view = describe(message)
    return format_html(
        '<span class="ct-badge ct-{} ct-state" data-state="{}">{}</span>{}{}',
        view.tone,
        view.key,
        view.label,
        _optional('<span class="ct-reason">{}</span>', view.reason),
        _optional('<span class="ct-hint">{}</span>', view.hint if hint else ""),
    )


def render_status(message: OutboundMessage) -> SafeString | str:
    """Clickatell's status as a compact badge: code and a word or two, the description on hover."""
    if not message.status:
        return "–"
    return format_html(
        '<span class="ct-badge ct-{}" title="{} – {}">{} {}</span>',
        status_tone(message.status, message.is_final),
        message.status,
        message.status_label,
        message.status,
        short_status(message.status),
    )


def _optional(template: str, text: str) -> SafeString | str:
    return format_html(template, text) if text else ""


def status_tone(code: str, final: bool) -> str:
    """The badge colour of a status: delivered or cancelled good, other finals bad."""
    if code in ("004", "006"):
        return OK
    if final:
        return BAD
    return WAIT if code in ("003", *_QUEUED_AT_GATEWAY) else INFO


def short_status(code: str) -> str:
    return str(SHORT_STATUS.get(code, code))


# -- what each state means for the row, and what to do ----------------------------------


def _label(state: OperatorState, message: OutboundMessage) -> str:
    code = ""
    if state.key in ("rejected",):
        code = error_code(message.send_error)
    elif state.key == "stop_refused":
        code = error_code(message.cancel_error)
    if code:
        return f"{state.label} (ERR {code})"
    if state.key in ("too_late", "undelivered", "handed_on", "queued_at_gateway") and (
        message.status
    ):
        return f"{state.label} ({message.status})"
    return str(state.label)
