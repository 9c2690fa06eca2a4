"""Callbacks for messages this database did not know when they arrived."""

from __future__ import annotations

from django.contrib import admin

from ..models import UnmatchedCallback
from .common import ReadOnlyMixin
from .search import RecipientSearch


@admin.register(UnmatchedCallback)
class UnmatchedCallbackAdmin(RecipientSearch, ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[type-arg]
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
