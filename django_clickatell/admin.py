"""Admin: monitor messages and cancellations, and stop scheduled deliveries.

The ``cancel_delivery`` action is a thin face over
:mod:`django_clickatell.services.cancellation`: it shows what would be
cancelled and what skipped, then queues the work and returns at once.  Its
query count does not depend on the size of the selection.
"""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .dispatch import enqueue_cancellation, enqueue_refresh, enqueue_sending
from .models import (
    CancellationBatch,
    CancelState,
    GatewayExchange,
    OutboundMessage,
    SendState,
    UnmatchedCallback,
    Via,
)
from .services import send_recovery
from .services.balance import balance_for_display
from .services.cancel_requests import preview_cancellation, request_cancellation

PREVIEW_ROWS = 20


class ReadOnlyMixin:
    """Monitoring records: written by the services only, never edited or added by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class GatewayExchangeInline(ReadOnlyMixin, admin.TabularInline):  # type: ignore[type-arg]
    model = GatewayExchange
    extra = 0
    can_delete = False
    ordering = ("-occurred_at", "-pk")
    fields = (
        "occurred_at",
        "command",
        "via",
        "actor",
        "outcome",
        "status",
        "error_code",
        "error_description",
        "detail",
        "duration_ms",
    )
    readonly_fields = fields
    verbose_name_plural = _("exchanges with Clickatell")


@admin.register(OutboundMessage)
class OutboundMessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "recipient",
        "apimsgid",
        "climsgid",
        "status_display",
        "cancel_state",
        "scheduled_for",
        "status_changed_at",
    )
    list_filter = (
        "status",
        "cancel_state",
        "send_state",
        ("scheduled_for", admin.DateFieldListFilter),
        ("batch", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("=apimsgid", "=climsgid", "recipient")
    date_hierarchy = "scheduled_for"
    list_select_related = False
    show_full_result_count = False
    actions = ("cancel_delivery", "refresh_status", "send_again", "ask_again")
    change_list_template = "admin/django_clickatell/outboundmessage/change_list.html"
    inlines = (GatewayExchangeInline,)
    # A message row records what was handed to Clickatell and what Clickatell did with
    # it, so every field is read-only: the message as sent (an edit would make the record
    # claim a text, recipient or schedule the gateway never got -- and for a queued row,
    # race a worker that is sending it), and everything the gateway and the services
    # write. The fields and fieldsets come from these groups, so they cannot drift apart.
    _gateway_groups = (
        (None, ("recipient", "sender", "text", "scheduled_for", "send_options")),
        (
            _("Clickatell"),
            (
                "apimsgid",
                "climsgid",
                "status",
                "status_changed_at",
                "charge",
                "send_state",
                "send_error",
            ),
        ),
        (
            _("Cancellation"),
            (
                "cancel_state",
                "cancel_requested_at",
                "cancel_requested_by",
                "cancel_completed_at",
                "cancel_attempts",
                "cancel_error",
                "batch",
            ),
        ),
        (_("Record"), ("created_at", "updated_at")),
    )
    readonly_fields = tuple(name for _title, names in _gateway_groups for name in names)
    # (django-stubs types fieldset options with a stub-only TypedDict; Django checks them.)
    fieldsets: ClassVar[Any] = tuple((title, {"fields": names}) for title, names in _gateway_groups)

    def has_add_permission(self, request: HttpRequest) -> bool:
        """Messages are recorded when they are sent; a row made by hand was never sent."""
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """The change permission still grants the actions; no message page saves a row.

        A save writes the whole row back as loaded, so even with nothing editable it
        could undo what a worker or callback recorded meanwhile.
        """
        if obj is not None:
            return False
        return super().has_change_permission(request)

    @admin.display(description=_("status"), ordering="status")
    def status_display(self, obj: OutboundMessage) -> str:
        return f"{obj.status} – {obj.status_label}" if obj.status else "–"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = dict(extra_context or {})
        if request.method == "GET":  # shown, not needed to act: an action never waits for it
            reading = balance_for_display()  # bounded: a slow gateway cannot hold the page
            context["clickatell_balance"] = reading.credit
            context["clickatell_balance_reason"] = reading.reason
        return super().changelist_view(request, extra_context=context)

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
            context = {
                **self.admin_site.each_context(request),
                "title": title,
                "subtitle": None,
                "opts": self.opts,
                "explanation": explanation,
                "count": count,
                "skipped": queryset.count() - count,
                "sample": list(eligible.order_by("pk")[:PREVIEW_ROWS]),
                "action": action,
                "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
                "select_across": request.POST.get("select_across", "0"),
                "action_checkbox_name": ACTION_CHECKBOX_NAME,
                "media": self.media,
            }
            request.current_app = self.admin_site.name
            return TemplateResponse(
                request, "admin/django_clickatell/outboundmessage/send_confirmation.html", context
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
        skipped = result.preview.total - queued
        if queued:
            self.log_addition(
                request,
                result.batch,
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
        return None

    def _confirm_cancellation(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> HttpResponse:
        preview = preview_cancellation(queryset)
        sample = list(
            queryset.filter(pk__in=queryset.order_by().values("pk"))
            .exclude(cancel_state=CancelState.CANCELLED)
            .order_by("scheduled_for", "pk")[:PREVIEW_ROWS]
        )
        context = {
            **self.admin_site.each_context(request),
            "title": _("Cancel scheduled delivery?"),
            "subtitle": None,
            "opts": self.opts,
            "preview": preview,
            "sample": sample,
            "more": max(preview.total - len(sample), 0),
            "selected": request.POST.getlist(ACTION_CHECKBOX_NAME),
            "select_across": request.POST.get("select_across", "0"),
            "action_checkbox_name": ACTION_CHECKBOX_NAME,
            "media": self.media,
        }
        request.current_app = self.admin_site.name
        return TemplateResponse(
            request,
            "admin/django_clickatell/outboundmessage/cancel_delivery_confirmation.html",
            context,
        )


_PROGRESS = {
    state.value: state.label for state in CancelState if state != CancelState.NOT_REQUESTED
}


@admin.register(CancellationBatch)
class CancellationBatchAdmin(ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "__str__",
        "created_at",
        "requested_by",
        "via",
        "total",
        "skipped",
        "pending",
        "cancelled",
        "too_late",
        "failed",
        "messages_link",
    )
    list_filter = ("via", "created_at")
    readonly_fields = ("created_at", "requested_by", "via", "total", "skipped", "progress")

    def get_queryset(self, request: HttpRequest) -> QuerySet[CancellationBatch]:
        def count(*states: str) -> Count:
            return Count("messages", filter=Q(messages__cancel_state__in=states))

        queryset: QuerySet[CancellationBatch] = super().get_queryset(request)
        return queryset.select_related("requested_by").annotate(
            n_pending=count(CancelState.PENDING, CancelState.IN_FLIGHT, CancelState.RETRYING),
            n_cancelled=count(CancelState.CANCELLED),
            n_too_late=count(CancelState.TOO_LATE, CancelState.SKIPPED),
            n_failed=count(CancelState.REFUSED, CancelState.GAVE_UP),
        )

    @admin.display(description=_("in progress"), ordering="n_pending")
    def pending(self, obj: Any) -> int:
        return int(obj.n_pending)

    @admin.display(description=_("cancelled"), ordering="n_cancelled")
    def cancelled(self, obj: Any) -> int:
        return int(obj.n_cancelled)

    @admin.display(description=_("too late"), ordering="n_too_late")
    def too_late(self, obj: Any) -> int:
        return int(obj.n_too_late)

    @admin.display(description=_("failed"), ordering="n_failed")
    def failed(self, obj: Any) -> int:
        return int(obj.n_failed)

    @admin.display(description=_("messages"))
    def messages_link(self, obj: CancellationBatch) -> str:
        url = reverse("admin:django_clickatell_outboundmessage_changelist")
        return format_html('<a href="{}?batch__id__exact={}">{}</a>', url, obj.pk, _("view"))

    @admin.display(description=_("progress"))
    def progress(self, obj: CancellationBatch) -> str:
        rows = obj.messages.order_by().values("cancel_state").annotate(n=Count("pk"))
        counts = {row["cancel_state"]: row["n"] for row in rows}
        parts = [f"{_PROGRESS.get(state, state)}: {n}" for state, n in sorted(counts.items())]
        return "; ".join(parts) or "–"


@admin.register(UnmatchedCallback)
class UnmatchedCallbackAdmin(ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "apimsgid",
        "status",
        "reported_at",
        "recipient",
        "received_at",
        "matched_message",
    )
    list_filter = ("status", "received_at")
    search_fields = ("=apimsgid", "=climsgid", "recipient")
