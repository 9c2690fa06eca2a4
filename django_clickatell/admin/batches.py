"""Cancellation batches: one operator request each, with its progress counted from its messages."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ..models import CancellationBatch, CancelState
from .common import ReadOnlyMixin

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
