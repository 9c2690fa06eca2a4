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

from ..dispatch import enqueue_batch
from ..models import (
    CancellationBatch,
    CancelState,
    OutboundMessage,
    SendState,
    Via,
)
from ..services.cancel_batches import BatchRequest, request_batch_cancellation
from ..services.cancel_requests import (
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
        preview = preview_cancellation(queryset)
        rows = preview_rows(queryset, limit=PREVIEW_ROWS)
        return self.confirmation_page(
            request,
            "cancel_delivery_confirmation.html",
            title,
            action=action,
            preview=preview,
            reasons=_skip_counts(preview),
            to_stop=[(m, story.render_state(m, hint=False), _how(m)) for m in rows.to_stop],
            skipped=[(m, story.render_state(m, hint=False), _why_skipped(m)) for m in rows.skipped],
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
        """One message for the whole outcome: what was queued, stopped here and skipped."""
        queued, stopped_here = result.queued, result.stopped_here
        parts = []
        if queued and published:
            parts.append(
                ngettext(
                    "Cancellation of %(count)d message queued.",
                    "Cancellation of %(count)d messages queued.",
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


def _skip_counts(preview: CancellationPreview) -> list[tuple[str, int, Any]]:
    """Each reason a message is skipped for, with how many: for the confirmation page."""
    labels = (
        ("final", _("already final or stopped (delivered, failed, expired or cancelled)")),
        ("in_progress", _("already being stopped")),
        ("too_late", _("handed on to the network (003): too late to stop")),
        ("without_id", _("never reached Clickatell (rejected, or no id to name it by)")),
    )
    return [(key, getattr(preview, key), label) for key, label in labels if getattr(preview, key)]


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


def _how(message: OutboundMessage) -> str:
    """How a message taken on will be stopped."""
    if message.send_state in (SendState.HELD, SendState.QUEUED, SendState.FAILED):
        return str(_("Here, at once: it was never handed to Clickatell."))
    if message.send_state in (SendState.SENDING, SendState.VERIFYING):
        return str(_("At Clickatell, once its send has settled."))
    if message.cancel_state in FAILED_STOPS:
        return str(
            _("At Clickatell, again (last time: %(reason)s)")
            % {
                "reason": explanations.short_error(message.cancel_error)
                or message.get_cancel_state_display()
            }
        )
    return str(_("At Clickatell (delmsg)."))


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
    if message.send_state == SendState.REJECTED:
        return str(
            _("Clickatell rejected it when it was sent (%(error)s): there is nothing to stop.")
            % {"error": explanations.short_error_with_code(message.send_error) or "?"}
        )
    return str(_("It never reached Clickatell: no id to name it by."))
