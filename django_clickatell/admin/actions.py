"""What an operator can do to a selection of messages: each a thin face over one service.

Every action needs its permission (a forged POST without it is refused by
Django), shows a confirmation page before it changes anything, and reports
with one ``message_user`` -- a broker outage included, never as an error page
and never as a red error beside a green "queued".  The work itself is handed on
through :mod:`django_clickatell.dispatch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..dispatch import enqueue_cancellation, enqueue_refresh, enqueue_sending
from ..models import (
    CancellationBatch,
    CancelState,
    GatewayExchange,
    OutboundMessage,
    SendState,
    Via,
)
from ..services import send_recovery
from ..services.cancel_requests import (
    CancellationPreview,
    CancellationRequest,
    preview_cancellation,
    preview_rows,
    request_cancellation,
)
from ..services.refreshing import refresh_statuses
from . import story
from .common import PREVIEW_ROWS, WIDE_PAGE

if TYPE_CHECKING:
    _MessageAdmin = admin.ModelAdmin[OutboundMessage]
else:
    _MessageAdmin = object  # the actions are mixed into OutboundMessageAdmin

#: Selections up to this size are refreshed while the operator waits, and the result is
#: reported; larger ones are queued.
SYNC_REFRESH_LIMIT = 20
#: Cancellation states whose stop failed for good: "Retry failed stops" requests them again.
FAILED_STOPS = (CancelState.GAVE_UP, CancelState.REFUSED)


class ConfirmationPage(_MessageAdmin):
    """Every action's "are you sure?" page: the same form that posts the selection back."""

    def confirmation_page(
        self, request: HttpRequest, template: str, title: Any, **context: Any
    ) -> HttpResponse:
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request,
            f"admin/django_clickatell/outboundmessage/{template}",
            {
                **self.admin_site.each_context(request),
                **WIDE_PAGE,
                "title": title,
                "subtitle": None,
                "opts": self.opts,
                "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "media": self.media,
                **context,
            },
        )


# -- refresh -------------------------------------------------------------------------------


class RefreshAction(_MessageAdmin):
    @admin.action(permissions=["change"], description=_("Refresh status from Clickatell"))
    def refresh_status(self, request: HttpRequest, queryset: QuerySet[OutboundMessage]) -> None:
        """Small selections are asked now and the answer reported; large ones are queued."""
        pks = list(queryset.order_by("pk").values_list("pk", flat=True))
        if len(pks) <= SYNC_REFRESH_LIMIT:
            self._refresh_now(request, pks)
            return
        if not enqueue_refresh(pks, via=Via.ADMIN, actor=request.user):
            self.message_user(
                request,
                _(
                    "The task queue could not be reached: nothing was refreshed. The "
                    "scheduled refresh picks the messages up when it is back."
                ),
                messages.WARNING,
            )
            return
        self.message_user(
            request,
            ngettext(
                "Status refresh of %(count)d message queued.",
                "Status refresh of %(count)d messages queued.",
                len(pks),
            )
            % {"count": len(pks)},
            messages.SUCCESS,
        )

    def _refresh_now(self, request: HttpRequest, pks: list[int]) -> None:
        report = refresh_statuses(pks, via=Via.ADMIN, actor=request.user)
        asked = len(report.changed) + len(report.unchanged) + len(report.failed)
        parts = [
            str(
                _("Asked Clickatell about %(asked)d of %(total)d: %(changed)d changed, ")
                % {"asked": asked, "total": len(pks), "changed": len(report.changed)}
            )
            + str(
                _("%(unchanged)d unchanged, %(failed)d failed")
                % {"unchanged": len(report.unchanged), "failed": len(report.failed)}
            )
            + (f": {_failure_reasons(report.failed)}." if report.failed else ".")
        ]
        if report.retry:
            parts.append(
                str(
                    _(
                        "Clickatell could not be reached (%(error)s): %(count)d not asked; "
                        "the scheduled refresh asks again."
                    )
                    % {"error": report.transient_error, "count": len(report.retry)}
                )
            )
        left_out = len(pks) - asked - len(report.retry)
        if left_out:
            parts.append(
                str(
                    ngettext(
                        "%(count)d left alone: final, or not at Clickatell.",
                        "%(count)d left alone: final, or not at Clickatell.",
                        left_out,
                    )
                    % {"count": left_out}
                )
            )
        troubled = report.failed or report.retry
        self.message_user(
            request, " ".join(parts), messages.WARNING if troubled else messages.SUCCESS
        )


def _failure_reasons(pks: list[int]) -> str:
    """ "27999000001: ERR 103 Unknown API message ID; …" from each message's last ``querymsg``."""
    recipients = dict(OutboundMessage.objects.filter(pk__in=pks).values_list("pk", "recipient"))
    last: dict[int, str] = {}
    exchanges = GatewayExchange.objects.filter(message_id__in=pks, command="querymsg").order_by(
        "-occurred_at", "-pk"
    )
    for exchange in exchanges.only("message_id", "error_code", "error_description", "detail"):
        if exchange.message_id not in last:
            code = f"ERR {exchange.error_code:03d} " if exchange.error_code is not None else ""
            last[exchange.message_id] = (
                f"{code}{exchange.error_description or exchange.detail}".strip()
            )
    return "; ".join(
        f"{recipients.get(pk, pk)}: {last.get(pk) or _('its id cannot be asked about')}"
        for pk in pks
    )


# -- send again, ask again -----------------------------------------------------------------


class SendActions(ConfirmationPage):
    def has_send_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.send_{opts.model_name}")

    @admin.action(
        permissions=["send"],
        description=_("Send again (rejected by Clickatell or never reached it)"),
    )
    def send_again(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> HttpResponse | None:
        return self._send_action(
            request,
            queryset,
            action="send_again",
            states=(SendState.REJECTED, SendState.FAILED),
            move=send_recovery.resend,
            title=_("Send these messages again?"),
            explanation=_(
                "Clickatell rejected these messages or never received them: each is sent "
                "once more, with the same client message id. Fix the cause first (credit, "
                "number, credentials): otherwise Clickatell rejects them again."
            ),
        )

    @admin.action(
        permissions=["send"],
        description=_("Ask Clickatell again whether it has the message (unknown sends)"),
    )
    def ask_again(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> HttpResponse | None:
        return self._send_action(
            request,
            queryset,
            action="ask_again",
            states=(SendState.UNKNOWN,),
            move=send_recovery.recheck,
            title=_("Ask Clickatell about these messages?"),
            explanation=_(
                "Nobody knows whether Clickatell got these messages. Clickatell is asked by "
                "client message id: what it has is recorded as sent, and only what it does "
                "not know is sent, once."
            ),
        )

    def _send_action(
        self,
        request: HttpRequest,
        queryset: QuerySet[OutboundMessage],
        *,
        action: str,
        states: tuple[str, ...],
        move: Any,
        title: Any,
        explanation: Any,
    ) -> HttpResponse | None:
        eligible = queryset.filter(send_state__in=states).exclude(
            cancel_state=CancelState.CANCELLED
        )
        if request.POST.get("post") != "yes":
            count = eligible.count()
            sample = list(eligible.order_by("pk")[:PREVIEW_ROWS])
            return self.confirmation_page(
                request,
                "send_confirmation.html",
                title,
                explanation=explanation,
                count=count,
                skipped=queryset.count() - count,
                rows=[(message, story.render_state(message)) for message in sample],
                more=max(count - len(sample), 0),
                action=action,
            )
        pks = move(queryset)
        if not pks:
            self.message_user(request, _("Nothing to do for this selection."), messages.INFO)
            return None
        if enqueue_sending(pks, via=Via.ADMIN):
            self.message_user(
                request,
                ngettext(
                    "%(count)d message queued for sending (checked with Clickatell first "
                    "where needed).",
                    "%(count)d messages queued for sending (checked with Clickatell first "
                    "where needed).",
                    len(pks),
                )
                % {"count": len(pks)},
                messages.SUCCESS,
            )
        else:
            self.message_user(
                request,
                ngettext(
                    "%(count)d message is queued for sending, but the task queue could not "
                    "be reached: it waits and is sent once the queue is back.",
                    "%(count)d messages are queued for sending, but the task queue could not "
                    "be reached: they wait and are sent once the queue is back.",
                    len(pks),
                )
                % {"count": len(pks)},
                messages.WARNING,
            )
        return None


# -- stopping ------------------------------------------------------------------------------


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
        with transaction.atomic():
            result = request_cancellation(queryset, via=Via.ADMIN, actor=request.user)
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
        published = enqueue_cancellation(result.message_pks, via=Via.ADMIN, actor=request.user)
        self._log_batch(request, result)
        self._report_cancellation(request, result, published)

    def _log_batch(self, request: HttpRequest, result: CancellationRequest) -> None:
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
        self, request: HttpRequest, result: CancellationRequest, published: bool
    ) -> None:
        """One message for the whole outcome: what was queued, stopped here and skipped."""
        queued = len(result.message_pks)
        stopped_here = result.batch.total - queued
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
    if message.send_state in (SendState.QUEUED, SendState.FAILED):
        return str(_("Here, at once: it was never handed to Clickatell."))
    if message.send_state in (SendState.SENDING, SendState.VERIFYING):
        return str(_("At Clickatell, once its send has settled."))
    if message.cancel_state in FAILED_STOPS:
        return str(
            _("At Clickatell, again (last time: %(reason)s)")
            % {
                "reason": story.short_error(message.cancel_error)
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
            % {"error": story.short_error_with_code(message.send_error) or "?"}
        )
    return str(_("It never reached Clickatell: no id to name it by."))
