"""What an operator can do to a selection of messages: each a thin face over one service.

Every action needs its permission (a forged POST without it is refused by
Django), shows a confirmation page before it changes anything, and reports
with ``message_user`` -- a broker outage included, never as an error page.
The work itself is handed on through :mod:`django_clickatell.dispatch`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..dispatch import enqueue_cancellation, enqueue_refresh, enqueue_sending
from ..models import CancellationBatch, CancelState, OutboundMessage, SendState, Via
from ..services import send_recovery
from ..services.cancel_requests import (
    CancellationRequest,
    preview_cancellation,
    request_cancellation,
)
from .common import PREVIEW_ROWS

if TYPE_CHECKING:
    _MessageAdmin = admin.ModelAdmin[OutboundMessage]
else:
    _MessageAdmin = object  # the actions are mixed into OutboundMessageAdmin


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


class RefreshAction(_MessageAdmin):
    @admin.action(permissions=["change"], description=_("Refresh status from Clickatell"))
    def refresh_status(self, request: HttpRequest, queryset: QuerySet[OutboundMessage]) -> None:
        pks = list(queryset.order_by().values_list("pk", flat=True))
        if not enqueue_refresh(pks, via=Via.ADMIN, actor=request.user):
            self.message_user(request, _("The task queue could not be reached."), messages.ERROR)
            return
        count = len(pks)
        self.message_user(
            request,
            ngettext(
                "Status refresh of %(count)d message queued.",
                "Status refresh of %(count)d messages queued.",
                count,
            )
            % {"count": count},
            messages.SUCCESS,
        )


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
                "once more, with the same client message id."
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
            return self.confirmation_page(
                request,
                "send_confirmation.html",
                title,
                explanation=explanation,
                count=count,
                skipped=queryset.count() - count,
                sample=list(eligible.order_by("pk")[:PREVIEW_ROWS]),
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
                _(
                    "The task queue could not be reached. The messages wait and will be "
                    "picked up when it is back."
                ),
                messages.ERROR,
            )
        return None


class CancelAction(ConfirmationPage):
    def has_cancel_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.cancel_{opts.model_name}")

    @admin.action(permissions=["cancel"], description=_("Cancel scheduled delivery"))
    def cancel_delivery(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> HttpResponse | None:
        if request.POST.get("post") != "yes":
            return self._confirm_cancellation(request, queryset)
        result = request_cancellation(queryset, via=Via.ADMIN, actor=request.user)
        queued = len(result.message_pks)
        if not enqueue_cancellation(result.message_pks, via=Via.ADMIN, actor=request.user):
            self.message_user(
                request,
                _(
                    "The task queue could not be reached. The messages stay queued for "
                    "cancellation and will be picked up when it is back."
                ),
                messages.ERROR,
            )
        self._report_cancellation(request, result, queued)
        return None

    def _report_cancellation(
        self, request: HttpRequest, result: CancellationRequest, queued: int
    ) -> None:
        skipped = result.preview.total - queued
        if queued:
            self.log_addition(
                request,
                result.batch,  # type: ignore[arg-type]
                [
                    {
                        "added": {
                            "name": str(CancellationBatch._meta.verbose_name),
                            "object": f"{queued} queued, {skipped} skipped",
                        }
                    }
                ],
            )
            url = reverse(
                "admin:django_clickatell_cancellationbatch_change", args=[result.batch.pk]
            )
            self.message_user(
                request,
                format_html(
                    '{} <a href="{}">{}</a>',
                    ngettext(
                        "Cancellation of %(count)d message queued.",
                        "Cancellation of %(count)d messages queued.",
                        queued,
                    )
                    % {"count": queued},
                    url,
                    _("Follow its progress."),
                ),
                messages.SUCCESS,
            )
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(count)d message skipped: final, already being cancelled or never sent.",
                    "%(count)d messages skipped: final, already being cancelled or never sent.",
                    skipped,
                )
                % {"count": skipped},
                messages.WARNING,
            )
        if not queued and not skipped:
            self.message_user(request, _("Nothing to cancel."), messages.INFO)

    def _confirm_cancellation(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> HttpResponse:
        preview = preview_cancellation(queryset)
        sample = list(
            queryset.filter(pk__in=queryset.order_by().values("pk"))
            .exclude(cancel_state=CancelState.CANCELLED)
            .order_by("scheduled_for", "pk")[:PREVIEW_ROWS]
        )
        return self.confirmation_page(
            request,
            "cancel_delivery_confirmation.html",
            _("Cancel scheduled delivery?"),
            preview=preview,
            sample=sample,
            more=max(preview.total - len(sample), 0),
        )
