"""What the admin pages share."""

from __future__ import annotations

from typing import Any

from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

#: Rows a confirmation page lists on each side (to do, skipped) before it says how many
#: more there are; the counts per reason above it always cover the whole selection.
PREVIEW_ROWS = 100

#: The message pages need the width: Django's navigation sidebar is left out there
#: (the breadcrumbs lead back), so a 1280-pixel screen shows every column.
WIDE_PAGE: dict[str, Any] = {"is_nav_sidebar_enabled": False}


class WidePages:
    """The message and batch pages leave Django's navigation sidebar out (see WIDE_PAGE)."""

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        response: HttpResponse = super().change_view(  # type: ignore[misc]
            request, object_id, form_url, {**WIDE_PAGE, **(extra_context or {})}
        )
        return response


class ReadOnlyMixin:
    """Monitoring records: written by the services only, never edited or added by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


def write_history(obj: Model, user: Any, *, added: bool, message: str, via: str = "") -> None:
    """One ``LogEntry`` on *obj* for a change a service announced (a pause, an opt-out),
    whatever face made it; a change without a user is in the logs only (a ``LogEntry``
    needs one)."""
    if user is None:
        return
    LogEntry.objects.create(
        user_id=user.pk,
        content_type=ContentType.objects.get_for_model(type(obj)),
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        action_flag=ADDITION if added else DELETION,
        change_message=f"{message} [{via}]" if via else message,
    )
