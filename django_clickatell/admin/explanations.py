"""The reason and the next step an operator reads under each state of the message list.

One function per state key of :mod:`.story` (the ``EXPLAIN`` table): each
returns the reason, from the row's own fields (no query), and what to do.
"""

from __future__ import annotations

import re
from typing import Any

from django.template.defaultfilters import date as format_date
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..conf import ACCOUNTS
from ..models import CancelState, OutboundMessage, SendState, WaitingFor
from ..selections import LOCAL_ONLY, NOT_CONFIGURED, stop_reach
from ..services import guards
from ..services.account import looks_up_by_client_id
from ..services.pausing import pause_of
from ..services.waiting import missing_account

_ANSWERED = re.compile(r"^Clickatell \w+ answered ERR (?P<code>\d{3}): (?P<text>.*)$", re.S)
_ERR_CODE = re.compile(r"\bERR (\d{3})\b")
#: Clickatell refused the account itself: the credentials or the account need fixing.
_ACCOUNT_ERRORS = {"001", "002", "004", "007", "108"}
#: Clickatell does not know the id the request named.
_UNKNOWN_ID_ERRORS = {"103", "104"}
_CREDIT_ERRORS = {"301", "302"}


def short_error(text: str) -> str:
    """ "Clickatell sendmsg answered ERR 301: No credit left" -> "No credit left"."""
    match = _ANSWERED.match(text)
    return match.group("text") if match else text


def short_error_with_code(text: str) -> str:
    """ "Clickatell sendmsg answered ERR 301: No credit left" -> "ERR 301: No credit left"."""
    match = _ANSWERED.match(text)
    return f"ERR {match.group('code')}: {match.group('text')}" if match else text


def error_code(text: str) -> str:
    match = _ERR_CODE.search(text)
    return match.group(1) if match else ""


def compact_when(value: Any) -> str:
    """ "29 Nov 05:26" this year, "29 Nov 2025" otherwise: dates that fit a narrow column."""
    if value is None:
        return ""
    local = timezone.localtime(value) if timezone.is_aware(value) else value
    same_year = local.year == timezone.localtime().year
    return str(format_date(local, "j M H:i" if same_year else "j M Y"))


def _status_text(message: OutboundMessage) -> str:
    return f"{message.status} {message.status_label}" if message.status else ""


def _explain_stopped_here(message: OutboundMessage) -> tuple[str, Any]:
    return str(_("Never handed to Clickatell: stopped here, no request needed.")), ""


def _explain_stopped(message: OutboundMessage) -> tuple[str, Any]:
    if message.status == "006":
        return str(_("Clickatell answered 006: it will not be delivered.")), ""
    return str(_("Stopped.")), ""


def _explain_too_late(message: OutboundMessage) -> tuple[str, Any]:
    reason = message.cancel_error or str(
        _("Clickatell reported %(status)s before the stop could act.")
        % {"status": _status_text(message) or "?"}
    )
    if message.send_state == SendState.UNKNOWN:
        # Nobody knows whether Clickatell got it: never claim it is on its way.
        return reason, _("It cannot be stopped from here.")
    return reason, _("Already on its way: it cannot be stopped any more.")


def _explain_stop_queued(message: OutboundMessage) -> tuple[str, Any]:
    if message.send_state in (SendState.QUEUED, SendState.SENDING, SendState.VERIFYING):
        return str(_("Waits for its send to settle, then is stopped.")), ""
    when = compact_when(message.cancel_requested_at)
    return str(_("Requested %(when)s; a worker sends the stop.") % {"when": when}), ""


def _explain_stopping(message: OutboundMessage) -> tuple[str, Any]:
    return str(_("The stop request is on its way to Clickatell.")), ""


#: A failure only the user can fix names its account (``CredentialsRefused``, ``WrongBaseUrl``).
_ACCOUNT_NAMED = re.compile(r"Clickatell account '(?P<account>[A-Za-z0-9_-]{1,32})': ")


def _only_you_can_fix(error: str, then: Any = None) -> Any:
    """The next step when *error* is one only the user can fix (a setting, the account), or "".

    *then* is what to do once it is fixed; by default nothing: it is retried by itself.
    """
    then = then or _("It is then retried by itself.")
    named = _ACCOUNT_NAMED.search(error)
    if named is not None and "settings.CLICKATELL" in error:
        return _("Fix the setting named here (account “%(account)s”): only you can. %(then)s") % {
            "account": named.group("account"),
            "then": then,
        }
    if named is not None or error_code(error) in _ACCOUNT_ERRORS:
        # IP lockdown, a frozen account -- or a row recorded before errors named settings.
        return _(
            "Only you can fix this: the account or its credentials (see the reason). %(then)s"
        ) % {"then": then}
    return ""


def _explain_stop_retrying(message: OutboundMessage) -> tuple[str, Any]:
    hint = _only_you_can_fix(message.cancel_error)
    return message.cancel_error, hint or _("Retried automatically; nothing to do.")


def _explain_stop_gave_up(message: OutboundMessage) -> tuple[str, Any]:
    retry = _("Then choose “Retry failed stops”.")
    hint = _only_you_can_fix(message.cancel_error, retry)
    return message.cancel_error, hint or _("Fix the cause, then choose “Retry failed stops”.")


def _explain_stop_refused(message: OutboundMessage) -> tuple[str, Any]:
    code = error_code(message.cancel_error)
    if code in _UNKNOWN_ID_ERRORS:
        hint = _("Clickatell does not know this id: check the message there.")
    elif code in _ACCOUNT_ERRORS:
        hint = _("Fix the account or credentials, then choose “Retry failed stops”.")
    else:
        hint = _("Fix the cause, then choose “Retry failed stops”.")
    return short_error(message.cancel_error), hint


def _explain_queued(message: OutboundMessage) -> tuple[str, Any]:
    if message.send_error:
        hint = _only_you_can_fix(message.send_error)
        return message.send_error, hint or _("Retried automatically; nothing to do.")
    return str(_("Waiting for a worker to send it.")), ""


#: A held message this late past its release time means no release loop is running.
RELEASE_GRACE_SECONDS = 300


def _explain_held(message: OutboundMessage) -> tuple[str, Any]:
    """Held in Django until due: when it is due, and when it is handed to Clickatell."""
    due, release = compact_when(message.scheduled_for), compact_when(message.release_at)
    if message.release_at is not None and (
        (timezone.now() - message.release_at).total_seconds() > RELEASE_GRACE_SECONDS
    ):
        return str(
            _("Due %(due)s; should have been handed to Clickatell %(when)s.")
            % {"due": due, "when": release}
        ), _(
            "Is the release loop running? Schedule the task “release_due_messages” with "
            "beat, or run “manage.py clickatell_release”."
        )
    return str(
        _("Due %(due)s; held here, handed to Clickatell %(when)s.") % {"due": due, "when": release}
    ), _("Can be stopped here, with no request to Clickatell.")


def _explain_sending(message: OutboundMessage) -> tuple[str, Any]:
    return str(_("The send request is on its way to Clickatell.")), ""


def _explain_verifying(message: OutboundMessage) -> tuple[str, Any]:
    reason = message.send_error or str(_("Asking Clickatell whether it has the message."))
    return reason, _("Checked before anything is resent; nothing to do.")


def _explain_rejected(message: OutboundMessage) -> tuple[str, Any]:
    code = error_code(message.send_error)
    if code in _CREDIT_ERRORS:
        hint = _("Top up the account, then choose “Send again”.")
    elif code in _ACCOUNT_ERRORS:
        hint = _("Fix the account or credentials, then choose “Send again”.")
    else:
        hint = _("Fix the cause, then choose “Send again”.")
    return short_error(message.send_error), hint


def _explain_unknown(message: OutboundMessage) -> tuple[str, Any]:
    if not looks_up_by_client_id(message.account):
        # Asking again cannot help: this API finds a message by its id only (the One API).
        return message.send_error, _(
            "This account's API cannot look a message up by its client message id: a "
            "status report from Clickatell settles it if Clickatell has it. Check the "
            "Clickatell portal before sending it again."
        )
    return message.send_error, _(
        "Choose “Ask Clickatell again”: it is sent only if Clickatell does not have it."
    )


def _explain_failed(message: OutboundMessage) -> tuple[str, Any]:
    if message.send_error.startswith(guards.REFUSED):
        return message.send_error, _(
            "A guard of its account refused it, not Clickatell; nothing left Django. To send "
            "it anyway, take the number off the opt-out list (or allow its country), then "
            "choose “Send again”: the guards are asked again."
        )
    hint = _only_you_can_fix(message.send_error, _("Then choose “Send again”."))
    return message.send_error, hint or _("Choose “Send again” once Clickatell can be reached.")


def _explain_status(message: OutboundMessage) -> tuple[str, Any]:
    return message.status_label, ""


def _explain_handed_on(message: OutboundMessage) -> tuple[str, Any]:
    return message.status_label, _("Too late to stop.")


def account_not_configured(alias: str) -> str:
    """ "Account not configured: <alias>": a message's account the settings no longer define."""
    return str(_("Account not configured: %(account)s") % {"account": alias})


def _stop_hint(message: OutboundMessage) -> str:
    """Whether a message Clickatell has can still be stopped: as its account's API allows
    (the rule of :func:`~..selections.stoppable_q`), never guessed for an account gone."""
    reach = stop_reach().of(message.account)
    if reach == LOCAL_ONLY:
        return str(_("Too late to stop: this account's API cannot stop a submitted message."))
    if reach == NOT_CONFIGURED:
        return str(
            _("%(reason)s; it cannot be stopped from here.")
            % {"reason": account_not_configured(message.account)}
        )
    return str(_("Can still be stopped."))


def _explain_scheduled(message: OutboundMessage) -> tuple[str, Any]:
    if message.scheduled_for:
        due = compact_when(message.scheduled_for)
        return str(_("Due %(when)s.") % {"when": due}), _stop_hint(message)
    return message.status_label, _stop_hint(message)


def _explain_accepted(message: OutboundMessage) -> tuple[str, Any]:
    return str(_("Clickatell accepted it; no status reported yet.")), _stop_hint(message)


def _explain_queued_at_gateway(message: OutboundMessage) -> tuple[str, Any]:
    return message.status_label, _stop_hint(message)


def explain_other(message: OutboundMessage) -> tuple[str, Any]:
    return _status_text(message) or str(_("No status reported yet.")), ""


def _explain_waiting(message: OutboundMessage) -> tuple[str, Any]:
    """Waiting for its account: what waits, since when, and what happens once it is back."""
    if message.waiting_for == WaitingFor.PAUSED:
        return _explain_paused(message)
    if message.waiting_for == WaitingFor.GUARD:
        reason = _(
            "Waiting since %(since)s: a sending cap of account “%(account)s” was reached "
            "(or the cache that counts it did not answer) right before it left. It goes out, "
            "once, at a run of requeue_stalled_work when there is room."
        ) % {"since": compact_when(message.waiting_since), "account": message.account}
        return str(reason), _(
            "Nothing to do, unless the cap is too low: raise the account's GUARD_MAX_* setting."
        )
    if message.waiting_for != WaitingFor.ACCOUNT:
        return str(message.get_waiting_for_display()), ""
    account, since = message.account, compact_when(message.waiting_since)
    stop = message.cancel_state == CancelState.PENDING and message.send_state not in (
        SendState.HELD,
        SendState.QUEUED,
        SendState.SENDING,
        SendState.VERIFYING,
    )
    if stop:
        what = _("its stop is sent to Clickatell")
    elif message.send_state == SendState.HELD:
        what = _("it is handed to Clickatell")
    elif message.send_state == SendState.VERIFYING:
        what = _("Clickatell is asked whether it has it (nothing is resent before)")
    else:
        what = _("it goes out")
    if not missing_account(account):
        reason = _(
            "Account “%(account)s” is configured again: %(what)s at the next run of "
            "requeue_stalled_work (or the release loop)."
        ) % {"account": account, "what": what}
        return str(reason), _("Nothing to do.")
    reason = _(
        "Waiting: account “%(account)s” is not in the settings since %(since)s — "
        "%(what)s when the account is configured again."
    ) % {"account": account, "since": since, "what": what}
    if stop:
        hint = _("Add “%(account)s” back to settings.CLICKATELL[“%(key)s”].")
    else:
        hint = _("Add “%(account)s” back to settings.CLICKATELL[“%(key)s”], or stop it here.")
    return str(reason), hint % {"account": account, "key": ACCOUNTS}


def _explain_paused(message: OutboundMessage) -> tuple[str, Any]:
    """Waiting for the pause of its account: who paused it, when, why (the pauses are read
    once a second per process, not per row)."""
    pause = pause_of(message.account)
    if pause is None:
        reason = _(
            "Account “%(account)s” is resumed: it goes out at the next run of "
            "requeue_stalled_work (or the release loop)."
        ) % {"account": message.account}
        return str(reason), _("Nothing to do.")
    values = {
        "account": message.account,
        "user": pause.paused_by or _("a command or the API"),
        "when": compact_when(pause.paused_at),
        "why": pause.reason or _("no reason given"),
    }
    reason = _("Waiting: account “%(account)s” paused by %(user)s at %(when)s (%(why)s).") % values
    return str(reason), _("It goes out once the account is resumed; or stop it here.")


EXPLAIN = {
    "waiting": _explain_waiting,
    "stopped_here": _explain_stopped_here,
    "stopped": _explain_stopped,
    "too_late": _explain_too_late,
    "stop_queued": _explain_stop_queued,
    "stopping": _explain_stopping,
    "stop_retrying": _explain_stop_retrying,
    "stop_gave_up": _explain_stop_gave_up,
    "stop_refused": _explain_stop_refused,
    "held": _explain_held,
    "queued": _explain_queued,
    "sending": _explain_sending,
    "verifying": _explain_verifying,
    "rejected": _explain_rejected,
    "unknown": _explain_unknown,
    "failed": _explain_failed,
    "delivered": _explain_status,
    "undelivered": _explain_status,
    "handed_on": _explain_handed_on,
    "scheduled": _explain_scheduled,
    "queued_at_gateway": _explain_queued_at_gateway,
    "accepted": _explain_accepted,
}
