"""Refresh status: ask Clickatell now for a small selection and say what it found."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from ..dispatch import enqueue_refresh
from ..models import (
    GatewayExchange,
    OutboundMessage,
    Via,
)
from ..services.refreshing import refresh_statuses
from .confirmation import _MessageAdmin

#: Selections up to this size are refreshed while the operator waits, and the result is
#: reported; larger ones are queued.
SYNC_REFRESH_LIMIT = 20


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
    unaskable = str(_("its id cannot be asked about"))
    return "; ".join(f"{recipients.get(pk, pk)}: {last.get(pk) or unaskable}" for pk in pks)


# -- send again, ask again -----------------------------------------------------------------
