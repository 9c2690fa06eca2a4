"""Stopping scheduled delivery, and retrying stops that failed; every skip shown with why."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..conf import account_aliases
from ..dispatch import enqueue_batch
from ..models import (
    CancellationBatch,
    CancelState,
    OutboundMessage,
    SendState,
    Via,
)
from ..selections import LOCAL_ONLY, NOT_CONFIGURED, REMOTE, StopReach, stop_reach
from ..services.cancel_batches import BatchRequest, request_batch_cancellation
from ..services.cancel_requests import (
    SKIP_LABELS,
    CancellationPreview,
    preview_cancellation,
    preview_rows,
)
from . import explanations, story
from .common import PREVIEW_ROWS
from .confirmation import ConfirmationPage

#: Cancellation states whose stop failed for good: "Retry failed stops" requests them again.
FAILED_STOPS = (CancelState.GAVE_UP, CancelState.REFUSED)


class CancelAction(ConfirmationPage):
    def has_cancel_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.cancel_{opts.model_name}")

    @admin.action(permissions=["cancel"], description=_("Cancel scheduled delivery"))
    def cancel_delivery(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> HttpResponse | None:
        if request.POST.get("post") != "yes":
            return self._confirm_cancellation(
                request,
                queryset,
                action="cancel_delivery",
                title=_("Cancel scheduled delivery?"),
            )
        self._request_cancellation(request, queryset)
        return None

    @admin.action(
        permissions=["cancel"],
        description=_("Retry failed stops (gave up or refused)"),
    )
    def retry_stops(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> HttpResponse | None:
        """Stops that gave up or were refused, requested again once their cause is fixed."""
        failed = queryset.filter(cancel_state__in=FAILED_STOPS)
        if request.POST.get("post") != "yes":
            return self._confirm_cancellation(
                request,
                failed,
                action="retry_stops",
                title=_("Retry these failed stops?"),
                left_alone=queryset.count() - failed.count(),
            )
        self._request_cancellation(request, failed)
        return None

    def _confirm_cancellation(
        self,
        request: HttpRequest,
        queryset: QuerySet[OutboundMessage],
        *,
        action: str,
        title: Any,
        left_alone: int = 0,
    ) -> HttpResponse:
        """What the action will do, per outcome (grouped counts) and for the first rows.

        The counts come from one grouped query whatever the size; the rows listed are
        limited (``PREVIEW_ROWS`` a side).  Each row names its account when the accounts
        differ in what they can stop, or there are several.
        """
        reach = stop_reach()
        preview = preview_cancellation(queryset, reach)
        rows = preview_rows(queryset, limit=PREVIEW_ROWS)
        show_account = (
            len(account_aliases()) > 1
            or queryset.exclude(account__in=reach.remote).exists()  # one cheap query
        )
        return self.confirmation_page(
            request,
            "cancel_delivery_confirmation.html",
            title,
            action=action,
            preview=preview,
            outcomes=_outcome_counts(preview),
            reasons=_skip_counts(preview),
            show_account=show_account,
            to_stop=[
                (m, story.render_state(m, hint=False), _how(m, reach), _account_cell(m, reach))
                for m in rows.to_stop
            ],
            skipped=[
                (
                    m,
                    story.render_state(m, hint=False),
                    _why_skipped(m),
                    _account_cell(m, reach),
                )
                for m in rows.skipped
            ],
            more_to_stop=max(preview.cancellable - len(rows.to_stop), 0),
            more_skipped=max(preview.skipped - len(rows.skipped), 0),
            left_alone=left_alone,
        )

    def _request_cancellation(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> None:
        """Record the selection as a batch and hand on its id: the same cost at any size.

        No message row is touched here beyond those never sent (stopped at once);
        a worker marks the rest and fans out (:mod:`..services.cancel_batches`).
        """
        with transaction.atomic():
            result = request_batch_cancellation(queryset, via=Via.ADMIN, actor=request.user)
            if not result.batch.total:  # nothing taken on: keep no empty batch
                transaction.set_rollback(True)
        if not result.batch.total:
            self.message_user(
                request,
                _("Nothing to stop: none of the selected messages can still be stopped.")
                + " "
                + _skip_sentence(result.preview),
                messages.INFO,
            )
            return
        published = (
            enqueue_batch(result.batch.pk, via=Via.ADMIN, actor=request.user)
            if result.queued
            else True
        )
        self._log_batch(request, result)
        self._report_cancellation(request, result, published)

    def _log_batch(self, request: HttpRequest, result: BatchRequest) -> None:
        batch = result.batch
        self.log_addition(
            request,
            batch,  # type: ignore[arg-type]
            [
                {
                    "added": {
                        "name": str(CancellationBatch._meta.verbose_name),
                        "object": f"{batch.total} taken on, {batch.skipped} skipped",
                    }
                }
            ],
        )

    def _report_cancellation(
        self, request: HttpRequest, result: BatchRequest, published: bool
    ) -> None:
        """One message for the whole outcome: queued for Clickatell, stopped here, skipped."""
        queued, stopped_here = result.queued, result.stopped_here
        parts = []
        if queued and published:
            parts.append(
                ngettext(
                    "%(count)d message queued for Clickatell.",
                    "%(count)d messages queued for Clickatell.",
                    queued,
                )
                % {"count": queued}
            )
        elif queued:
            parts.append(
                ngettext(
                    "Cancellation of %(count)d message is recorded, but the task queue could "
                    "not be reached: it waits and is carried out once the queue is back (the "
                    "requeue task picks it up).",
                    "Cancellation of %(count)d messages is recorded, but the task queue could "
                    "not be reached: they wait and are carried out once the queue is back (the "
                    "requeue task picks them up).",
                    queued,
                )
                % {"count": queued}
            )
        if stopped_here:
            parts.append(
                ngettext(
                    "%(count)d message stopped here: it had not been handed to Clickatell.",
                    "%(count)d messages stopped here: they had not been handed to Clickatell.",
                    stopped_here,
                )
                % {"count": stopped_here}
            )
        if result.preview.skipped:
            parts.append(_skip_sentence(result.preview))
        url = reverse("admin:django_clickatell_cancellationbatch_change", args=[result.batch.pk])
        self.message_user(
            request,
            format_html('{} <a href="{}">{}</a>', " ".join(parts), url, _("Follow its progress.")),
            messages.SUCCESS if published else messages.WARNING,
        )


def _outcome_counts(preview: CancellationPreview) -> list[tuple[str, int, Any]]:
    """What happens to the messages taken on, with how many: for the confirmation page."""
    labels = (
        ("stop_here", _("stopped here: never handed to Clickatell, no request needed")),
        (
            "after_send",
            _(
                "being sent right now: stopped once the send has settled (here if it never "
                "left; otherwise asked at Clickatell, or too late where the account's API "
                "cannot stop a submitted message)"
            ),
        ),
        ("at_clickatell", _("asked at Clickatell (delmsg)")),
    )
    return [(key, getattr(preview, key), label) for key, label in labels if getattr(preview, key)]


def _skip_counts(preview: CancellationPreview) -> list[tuple[str, int, Any]]:
    """Each reason a message is skipped for, with how many: for the confirmation page."""
    return [(key, count, SKIP_LABELS[key]) for key, count in preview.skipped_by_reason()]


def _skip_sentence(preview: CancellationPreview) -> str:
    reasons = ", ".join(f"{count} {label}" for _key, count, label in _skip_counts(preview))
    return str(
        ngettext(
            "%(count)d message skipped: %(reasons)s.",
            "%(count)d messages skipped: %(reasons)s.",
            preview.skipped,
        )
        % {"count": preview.skipped, "reasons": reasons}
    )


def _how(message: OutboundMessage, reach: StopReach) -> str:
    """How a message taken on will be stopped (its outcome, annotated as ``skip_reason``)."""
    outcome = getattr(message, "skip_reason", "")
    if outcome == "stop_here":
        return str(_("Stopped here, at once: it was never handed to Clickatell."))
    if outcome == "after_send":
        if reach.of(message.account) == REMOTE:
            return str(
                _("Once its send has settled: here if it never left, otherwise at Clickatell.")
            )
        return str(
            _(
                "Once its send has settled: here if it never left; otherwise too late: this "
                "account's API cannot stop a submitted message."
            )
        )
    if message.cancel_state in FAILED_STOPS:
        return str(
            _("Asked at Clickatell again (last time: %(reason)s)")
            % {
                "reason": explanations.short_error(message.cancel_error)
                or message.get_cancel_state_display()
            }
        )
    return str(_("Asked at Clickatell (delmsg)."))


def _account_cell(message: OutboundMessage, reach: StopReach) -> str:
    """The account a message goes through, and what it cannot do (for the rows' column)."""
    reach_of = reach.of(message.account)
    if reach_of == NOT_CONFIGURED:
        return explanations.account_not_configured(message.account)
    if reach_of == LOCAL_ONLY:
        return str(
            _("%(account)s (its API cannot stop a submitted message)")
            % {"account": message.account}
        )
    return message.account


def _why_skipped(message: OutboundMessage) -> str:
    """Why one selected message is left alone, in the operator's words."""
    reason = getattr(message, "skip_reason", "")
    if reason == "final":
        if message.cancel_state == CancelState.CANCELLED:
            if message.send_state == SendState.WITHDRAWN:
                return str(_("Already stopped before it was sent."))
            return str(_("Already stopped."))
        return str(
            _("Final at Clickatell: %(status)s %(label)s.")
            % {"status": message.status, "label": message.status_label}
        )
    if reason == "in_progress":
        return str(
            _("Already being stopped (%(state)s).") % {"state": message.get_cancel_state_display()}
        )
    if reason == "too_late":
        return str(_("Clickatell has handed it on to the network (003): too late to stop."))
    if reason == "api_cannot_stop":
        if message.send_state == SendState.UNKNOWN:  # never claim what nobody knows
            return str(
                _(
                    "Perhaps handed over (unknown): this account's API cannot stop a "
                    "submitted message."
                )
            )
        return str(_("Handed over: too late: this account's API cannot stop a submitted message."))
    if reason == "account_not_configured":
        return str(
            _("%(account)s: it was handed over, and there are no credentials to ask with.")
            % {"account": explanations.account_not_configured(message.account)}
        )
    if message.send_state == SendState.REJECTED:
        return str(
            _("Clickatell rejected it when it was sent (%(error)s): there is nothing to stop.")
            % {"error": explanations.short_error_with_code(message.send_error) or "?"}
        )
    return str(_("It never reached Clickatell: no id to name it by."))
