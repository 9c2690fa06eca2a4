"""What the admin pages share."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

#: Messages listed on a confirmation page before "and N more".
PREVIEW_ROWS = 20


class ReadOnlyMixin:
    """Monitoring records: written by the services only, never edited or added by hand."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
