"""The message list's "Stop a campaign" button: everything still stoppable on an account or tag.

The form on the list posts a filter (account, tag), never ids.  The
confirmation page is the cancel action's own, with the counts per outcome
for each account (one grouped query) and the highest message key it counted
(``through``), posted back with the filter: the stop then takes exactly the
messages the page counted, never ones recorded since.  Confirming stores the
stoppable part as one cancellation batch inside the database
(:mod:`..services.campaigns`) and hands its id to a worker: the same
statements for ten messages or a million.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from ..dispatch import enqueue_batch
from ..exceptions import InvalidInput
from ..models import Via
from ..selections import stop_reach
from ..services import campaigns
from . import story
from .cancel_actions import (
    CancelAction,
    _account_cell,
    _how,
    _outcome_counts,
    _skip_counts,
    _why_skipped,
)
from .common import PREVIEW_ROWS

if TYPE_CHECKING:
    _Base = CancelAction
else:
    _Base = object  # mixed into OutboundMessageAdmin, after CancelAction

#: The URL name of the button's page (``admin:<this>``).
URL_NAME = "django_clickatell_outboundmessage_stop_campaign"


class CampaignStop(_Base):
    """``stop-campaign/``: the confirmation page (GET) and the stop (POST ``post=yes``)."""

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "stop-campaign/",
                self.admin_site.admin_view(self.stop_campaign_view),
                name=URL_NAME,
            )
        ]
        return own + super().get_urls()

    def stop_campaign_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        data = request.POST if request.method == "POST" else request.GET
        changelist = reverse("admin:django_clickatell_outboundmessage_changelist")
        try:
            target = campaigns.campaign(
                account=data.get("account") or None,
                tag=data.get("tag") or None,
                through=_key(data.get("through")),
            )
        except InvalidInput as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return HttpResponseRedirect(changelist)
        if request.method == "POST" and data.get("post") == "yes":
            if target.through is None:  # only the page's own form posts, and it says through
                self.message_user(
                    request,
                    _("The confirmation was incomplete: nothing was stopped. Open it again."),
                    messages.ERROR,
                )
                return HttpResponseRedirect(changelist)
            self._stop_campaign(request, target)
            return HttpResponseRedirect(changelist)
        return self._confirm_campaign(request, campaigns.snapshot(target))

    def _confirm_campaign(self, request: HttpRequest, target: campaigns.Campaign) -> HttpResponse:
        """The cancel action's confirmation page, for the campaign: per account and overall."""
        reach = stop_reach()
        per_account = campaigns.preview_by_account(target, reach)
        preview = campaigns.total_preview(per_account)
        rows = campaigns.sample_rows(
            target, limit=PREVIEW_ROWS, reach=reach, operator_state=story.state_case()
        )
        return self.confirmation_page(
            request,
            "cancel_delivery_confirmation.html",
            _("Stop the campaign: %(what)s?") % {"what": target.describe()},
            action="stop_campaign",
            campaign=target,
            campaign_accounts=[
                (alias, p, _outcome_counts(p), _skip_counts(p)) for alias, p in per_account
            ],
            preview=preview,
            outcomes=_outcome_counts(preview),
            reasons=_skip_counts(preview),
            show_account=len(per_account) > 1
            or any(reach.of(alias) != "remote" for alias, _p in per_account),
            to_stop=[
                (m, story.render_state(m, hint=False), _how(m, reach), _account_cell(m, reach))
                for m in rows.to_stop
            ],
            skipped=[
                (m, story.render_state(m, hint=False), _why_skipped(m), _account_cell(m, reach))
                for m in rows.skipped
            ],
            more_to_stop=max(preview.cancellable - len(rows.to_stop), 0),
            more_skipped=max(preview.skipped - len(rows.skipped), 0),
            left_alone=0,
        )

    def _stop_campaign(self, request: HttpRequest, target: campaigns.Campaign) -> None:
        """One batch row holding the filter, its id handed on: the same cost at any size."""
        with transaction.atomic():
            batch = campaigns.request_campaign_stop(target, via=Via.ADMIN, actor=request.user)
        published = enqueue_batch(batch.pk, via=Via.ADMIN, actor=request.user)
        self.log_addition(
            request,
            batch,  # type: ignore[arg-type]
            [{"added": {"name": "campaign stop", "object": target.describe()}}],
        )
        batch.refresh_from_db()
        url = reverse("admin:django_clickatell_cancellationbatch_change", args=[batch.pk])
        if batch.prepared_at is not None:  # carried out here (no Celery): the counts are known
            done = _(
                "Campaign %(what)s: %(total)d messages taken on (stopped, or being stopped), "
                "%(skipped)d skipped."
            ) % {"what": target.describe(), "total": batch.total, "skipped": batch.skipped}
        elif published:
            done = _(
                "The stop of the campaign %(what)s is recorded: a worker takes on every message "
                "of it still stoppable among those the page counted, stops at once those never "
                "handed over and asks Clickatell for the rest."
            ) % {"what": target.describe()}
        else:
            done = _(
                "The stop of the campaign %(what)s is recorded, but the task queue could not be "
                "reached: it waits and is carried out once the queue is back (the requeue task "
                "picks it up)."
            ) % {"what": target.describe()}
        self.message_user(
            request,
            format_html('{} <a href="{}">{}</a>', done, url, _("Follow its progress.")),
            messages.SUCCESS if published else messages.WARNING,
        )
        self.message_user(
            request,
            _(
                "Messages of the campaign recorded after the confirmation page was shown are "
                "not touched: pause the account if it is still sending."
            ),
            messages.INFO,
        )


def _key(value: str | None) -> int | None:
    """The ``through`` key the page posted back, or None (a mangled one counts as none)."""
    if value and value.isascii() and value.isdigit() and len(value) <= 19:
        return int(value)
    return None


def campaign_form_context(request: HttpRequest, aliases: list[str]) -> dict[str, Any]:
    """What the list's "Stop a campaign" form shows: the accounts, and the current filters."""
    return {
        "clickatell_campaign_accounts": aliases,
        "clickatell_campaign_account": request.GET.get("account", ""),
        "clickatell_campaign_tag": request.GET.get("tag", ""),
        "clickatell_campaign_url": reverse(f"admin:{URL_NAME}"),
    }


__all__ = ["URL_NAME", "CampaignStop", "campaign_form_context"]
