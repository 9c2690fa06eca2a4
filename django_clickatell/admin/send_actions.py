"""Ways out of a failed send: "Send again" and "Ask Clickatell again" (their own permission)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..dispatch import enqueue_sending
from ..models import (
    CancelState,
    OutboundMessage,
    SendState,
    Via,
)
from ..services import send_recovery
from . import story
from .common import PREVIEW_ROWS
from .confirmation import ConfirmationPage


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
        else:
            self._hand_on(request, pks)
        return None

    def _hand_on(self, request: HttpRequest, pks: list[int]) -> None:
        """Queue the sends (or do them here without Celery) and say so, in one message."""
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
