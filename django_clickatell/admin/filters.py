"""The message list's own filters: what can still be stopped, the operator's states, accounts."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from ..conf import account_aliases
from ..models import MessageTag, OutboundMessage
from ..selections import stoppable_q
from .story import STATES


class StoppableFilter(admin.SimpleListFilter):
    """ "Can still be stopped": the one rule the cancel action and ``cancel_sms`` take on
    (per message, from its account's capabilities: :func:`~..selections.stoppable_q`)."""

    title = _("what can still be stopped")
    parameter_name = "stoppable"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [("yes", _("Can still be stopped")), ("no", _("Cannot be stopped"))]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> QuerySet[OutboundMessage]:
        if self.value() == "yes":
            return queryset.filter(stoppable_q())
        if self.value() == "no":
            return queryset.filter(~stoppable_q())
        return queryset


class StateFilter(admin.SimpleListFilter):
    """The states of :mod:`.story`, as the counts above the list link to them."""

    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return [(state.key, state.label) for state in STATES]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> QuerySet[OutboundMessage]:
        value = self.value()
        if value:
            # ``operator_state`` is annotated by the admin's queryset.
            return queryset.filter(Q(operator_state=value))
        return queryset


class AccountFilter(admin.SimpleListFilter):
    """The Clickatell account a message goes through (shown when there are several)."""

    title = _("account")
    parameter_name = "account"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(alias, alias) for alias in account_aliases()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(account=value) if value else queryset


class TagFilter(admin.SimpleListFilter):
    """A tag (``send_sms(tags=[...])``): the campaign handle.

    Lists the tags of the most recently sent messages (read from the newest
    ``RECENT_TAG_ROWS`` tag rows: a constant cost, never a ``GROUP BY`` over
    millions); any other tag is reached with ``?tag=...`` or by searching
    ``tag:NAME``.  The filter reads the ``(tag, message)`` index.
    """

    title = _("tag")
    parameter_name = "tag"
    #: Tag rows read for the list of recent tags, and tags shown at most.
    RECENT_TAG_ROWS = 2000
    SHOWN = 12

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        recent = MessageTag.objects.order_by("-pk").values_list("tag", flat=True)
        tags = list(dict.fromkeys(recent[: self.RECENT_TAG_ROWS]))[: self.SHOWN]
        current = self.value()
        if current and current not in tags:
            tags.insert(0, current)
        return [(tag, tag) for tag in tags]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[OutboundMessage]
    ) -> QuerySet[OutboundMessage]:
        value = self.value()
        return queryset.filter(tags__tag=value) if value else queryset
