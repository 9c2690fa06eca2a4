"""The base of every message action: a typed mixin and the one "are you sure?" page."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import admin
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from ..models import (
    OutboundMessage,
)
from .common import WIDE_PAGE

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
