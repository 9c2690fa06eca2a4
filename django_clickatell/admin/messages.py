"""The message list and message page: what was sent, what Clickatell said, every exchange.

The list tells the story row by row: Clickatell's status as a badge, the
operator's *state* (:mod:`.story`) with its reason and next step, counts per
state above the list (one query, whatever the size), and nothing cut off at
1280 pixels -- ids and full dates are on the message page, the list keeps
what an operator scans.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import quote

from django.contrib import admin
from django.contrib.auth import get_permission_codename
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.defaultfilters import date as format_date
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from ..conf import account_aliases
from ..models import GatewayExchange, OutboundMessage
from ..services.balance import balance_for_display
from . import explanations, story
from .campaign_stop import CampaignStop, campaign_form_context
from .cancel_actions import CancelAction
from .common import WIDE_PAGE, ReadOnlyMixin, WidePages
from .filters import AccountFilter, StateFilter, StoppableFilter, TagFilter
from .refresh_action import RefreshAction
from .search import RecipientSearch
from .send_actions import SendActions


def _changelist_url() -> str:
    return reverse("admin:django_clickatell_outboundmessage_changelist")


#: Characters of the text shown in the list; the whole text is on hover and on the page.
TEXT_PREVIEW = 36


class GatewayExchangeInline(ReadOnlyMixin, admin.TabularInline):  # type: ignore[type-arg]
    model = GatewayExchange
    extra = 0
    can_delete = False
    ordering = ("-occurred_at", "-pk")
    fields = ("at", "command", "via", "actor", "recorded", "duration_ms")
    readonly_fields = fields
    verbose_name_plural = _("exchanges with Clickatell")

    def get_queryset(self, request: HttpRequest) -> QuerySet[GatewayExchange]:
        queryset: QuerySet[GatewayExchange] = super().get_queryset(request)
        return queryset.select_related("message", "actor")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """The exchange log is part of the message's record: whoever may view the message
        sees it (read-only), without a second permission an operator would not know to ask
        for -- the page would otherwise drop the log without a word."""
        opts = self.parent_model._meta
        return any(
            request.user.has_perm(f"{opts.app_label}.{get_permission_codename(action, opts)}")
            for action in ("view", "change")
        )

    @admin.display(description=_("at"), ordering="occurred_at")
    def at(self, exchange: GatewayExchange) -> str:
        """To the second: exchanges about one message are often seconds apart."""
        local = timezone.localtime(exchange.occurred_at)
        return format_html(
            '<span class="ct-nowrap" title="{}">{}</span>',
            exchange.occurred_at.isoformat(),
            format_date(local, "j M Y H:i:s"),
        )

    @admin.display(description=_("what was recorded"))
    def recorded(self, exchange: GatewayExchange) -> str:
        """The outcome with what came with it: the status, the accepted id, the error."""
        outcome = exchange.get_outcome_display()
        if exchange.outcome == GatewayExchange.Outcome.STATUS:
            if exchange.status:
                label = exchange.get_status_display()
                return format_html("{}: {}", _("Status"), label)
            if exchange.command == "sendmsg":
                # The accepted id is written to the message in the same outcome.
                return format_html("{}: {}", _("Accepted, id"), exchange.message.apimsgid or "?")
            return str(outcome)
        parts = [str(outcome)]
        if exchange.error_code is not None:
            parts.append(f"ERR {exchange.error_code:03d}")
        for text in (exchange.error_description, exchange.detail):
            if text:
                parts.append(text)
        return " – ".join(parts)


@admin.register(OutboundMessage)
class OutboundMessageAdmin(
    RecipientSearch,
    WidePages,
    CampaignStop,
    CancelAction,
    SendActions,
    RefreshAction,
    admin.ModelAdmin,  # type: ignore[type-arg]
):
    list_display = (
        "recipient",
        "text_preview",
        "status_badge",
        "state_display",
        "scheduled",
        "updated",
    )
    list_filter = (
        StoppableFilter,
        StateFilter,
        TagFilter,
        "status",
        ("scheduled_for", admin.DateFieldListFilter),
        ("batch", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("=apimsgid", "=climsgid", "recipient")
    date_hierarchy = "scheduled_for"
    list_select_related = False
    show_full_result_count = False
    actions = ("cancel_delivery", "retry_stops", "refresh_status", "send_again", "ask_again")
    change_list_template = "admin/django_clickatell/outboundmessage/change_list.html"
    inlines = (GatewayExchangeInline,)
    # A message row records what was handed to Clickatell and what Clickatell did with
    # it, so every field is read-only: the message as sent (an edit would make the record
    # claim a text, recipient or schedule the gateway never got -- and for a queued row,
    # race a worker that is sending it), and everything the gateway and the services
    # write. The fields and fieldsets come from these groups, so they cannot drift apart.
    _gateway_groups = (
        (
            None,
            (
                "state_display",
                "recipient",
                "sender",
                "text",
                "scheduled_for",
                "release_at",
                "send_options",
                "tag_list",
                "metadata",
            ),
        ),
        (
            _("Clickatell"),
            (
                "account",
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

    def get_queryset(self, request: HttpRequest) -> QuerySet[OutboundMessage]:
        """Every row carries its operator state: the list, the filter and the counts read it."""
        queryset: QuerySet[OutboundMessage] = super().get_queryset(request)
        return queryset.annotate(operator_state=story.state_case())

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

    # -- columns -----------------------------------------------------------------------------

    @admin.display(description=_("text"))
    def text_preview(self, obj: OutboundMessage) -> str:
        if not obj.text:
            return "–"
        short = _preview(obj.text)
        return format_html('<span class="ct-text" title="{}">{}</span>', obj.text, short)

    @admin.display(description=_("tags"))
    def tag_list(self, obj: OutboundMessage) -> str:
        """The message's tags, each a link to the list filtered to it (its campaign)."""
        tags = sorted(obj.tags.values_list("tag", flat=True))
        if not tags:
            return "–"
        return format_html_join(
            ", ", '<a href="{}?tag={}">{}</a>', ((_changelist_url(), quote(t), t) for t in tags)
        )

    @admin.display(description=_("status"), ordering="status")
    def status_badge(self, obj: OutboundMessage) -> str:
        return story.render_status(obj)

    @admin.display(description=_("state"), ordering="operator_state")
    def state_display(self, obj: OutboundMessage) -> str:
        return story.render_state(obj)

    @admin.display(description=_("scheduled"), ordering="scheduled_for")
    def scheduled(self, obj: OutboundMessage) -> str:
        return _when_cell(obj.scheduled_for)

    @admin.display(description=_("updated"), ordering="updated_at")
    def updated(self, obj: OutboundMessage) -> str:
        return _when_cell(obj.updated_at)

    # -- several accounts ----------------------------------------------------------------------

    def get_list_display(self, request: HttpRequest) -> Any:
        """The account column, once there is more than one account to tell apart."""
        columns = list(super().get_list_display(request))
        if len(account_aliases()) > 1 and "account" not in columns:
            columns.insert(1, "account")
        return columns

    def get_list_filter(self, request: HttpRequest) -> Any:
        filters = list(super().get_list_filter(request))
        if len(account_aliases()) > 1:
            filters.insert(2, AccountFilter)
        return filters

    # -- pages -------------------------------------------------------------------------------

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        title = capfirst(self.opts.verbose_name_plural)
        context = {**WIDE_PAGE, "title": title, **(extra_context or {})}
        if request.method == "GET" and self.has_cancel_permission(request):
            context.update(campaign_form_context(request, account_aliases()))
        if request.method == "GET":  # shown, not needed to act: an action never waits for it
            reading = balance_for_display()  # bounded: a slow gateway cannot hold the page
            context["clickatell_balance"] = reading.credit
            context["clickatell_balance_reason"] = reading.reason
            others = account_aliases()[1:]
            if others:  # each account has a balance of its own
                context["clickatell_balances"] = [
                    {"account": alias, "credit": r.credit, "reason": r.reason}
                    for alias, r in [("default", reading)]
                    + [(alias, balance_for_display(account=alias)) for alias in others]
                ]
        response = super().changelist_view(request, extra_context=context)
        if isinstance(response, TemplateResponse) and response.context_data is not None:
            changelist = response.context_data.get("cl")
            if changelist is not None:
                response.context_data["state_counts"] = state_counts(request, changelist)
        return response


def state_counts(request: HttpRequest, changelist: Any) -> list[dict[str, Any]]:
    """How many messages of the filtered list are in each state: one ``GROUP BY`` query.

    Each count links to the list filtered to that state (other filters kept).
    """
    rows = (
        changelist.queryset.order_by()
        .values("operator_state")
        .annotate(n=Count("pk"))
        .values_list("operator_state", "n")
    )
    counts = dict(rows)
    current = request.GET.get(StateFilter.parameter_name, "")
    shown = []
    for state in (*story.STATES, story.OTHER):
        if counts.get(state.key):
            shown.append(
                {
                    "key": state.key,
                    "label": state.label,
                    "tone": state.tone,
                    "count": counts[state.key],
                    "active": state.key == current,
                    "url": changelist.get_query_string(
                        {StateFilter.parameter_name: state.key}, ["p"]
                    ),
                }
            )
    return shown


def _preview(text: str) -> str:
    """The first words of *text*, cut at a word boundary where there is one."""
    if len(text) <= TEXT_PREVIEW:
        return text
    head = text[: TEXT_PREVIEW - 1]
    words = head.rsplit(" ", 1)[0] if " " in head else head
    return f"{words.rstrip(' ,.;:')}…"


def _when_cell(value: Any) -> str:
    if value is None:
        return "–"
    return format_html(
        '<span class="ct-nowrap" title="{}">{}</span>',
        value.isoformat(),
        explanations.compact_when(value),
    )
