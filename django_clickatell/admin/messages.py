"""The message list and message page: what was sent, what Clickatell said, every exchange."""

from __future__ import annotations

from typing import Any, ClassVar

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _

from ..models import GatewayExchange, OutboundMessage
from ..services.balance import balance_for_display
from .actions import CancelAction, RefreshAction, SendActions
from .common import ReadOnlyMixin


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
class OutboundMessageAdmin(
    CancelAction,
    SendActions,
    RefreshAction,
    admin.ModelAdmin,  # type: ignore[type-arg]
):
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
