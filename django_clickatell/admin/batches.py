"""Cancellation batches: one operator request each, with its progress, rate and what is left.

Progress is counted from the batch's messages with the same states the message
list shows (:mod:`.story`), so a count here and the list it links to agree.  A
page of batches costs one extra grouped query, whatever its size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib import admin
from django.contrib.admin.views.main import ChangeList
from django.db.models import Count, Max
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import capfirst
from django.utils.translation import gettext_lazy as _

from ..models import CancellationBatch, OutboundMessage
from . import explanations, story
from .common import WIDE_PAGE, ReadOnlyMixin, WidePages

#: How the operator's states add up for a batch: (group, states, tone, label).
GROUPS: tuple[tuple[str, tuple[str, ...], str, Any], ...] = (
    ("stopped", ("stopped", "stopped_here"), story.OK, _("stopped")),
    ("too_late", ("too_late",), story.WARN, _("too late")),
    ("failed", ("stop_gave_up", "stop_refused"), story.BAD, _("failed")),
    ("left", ("being_prepared", "stop_queued", "stopping", "stop_retrying"), story.WAIT, _("left")),
)
#: Selected but not yet handed to workers: counted from the batch, not from its messages
#: (a batch is recorded at once; a worker marks its messages a page at a time).
PREPARING = "being_prepared"
_GROUP_OF = {state: group for group, states, _tone, _label in GROUPS for state in states}


@dataclass
class BatchProgress:
    """Where a batch's messages are, by operator state, and when the last one settled."""

    created_at: datetime
    by_state: dict[str, int] = field(default_factory=dict)
    last_settled: datetime | None = None

    def count(self, group: str) -> int:
        return sum(n for state, n in self.by_state.items() if _GROUP_OF.get(state) == group)

    @property
    def total(self) -> int:
        return sum(self.by_state.values())

    @property
    def left(self) -> int:
        return self.count("left")

    @property
    def settled(self) -> int:
        return self.total - self.left

    def elapsed_seconds(self, now: datetime) -> float:
        """Since the request: until now while work is left, until the last settled once done."""
        end = now if self.left or self.last_settled is None else self.last_settled
        return max((end - self.created_at).total_seconds(), 1.0)

    def per_minute(self, now: datetime) -> float | None:
        """Messages settled per minute since the request."""
        return self.settled * 60 / self.elapsed_seconds(now) if self.settled else None

    def minutes_left(self, now: datetime) -> float | None:
        rate = self.per_minute(now)
        return self.left / rate if rate and self.left else None


def attach_progress(batches: Iterable[CancellationBatch]) -> None:
    """Give each batch its :class:`BatchProgress` (one grouped query for all of them)."""
    batches = list(batches)
    progress = {batch.pk: BatchProgress(batch.created_at) for batch in batches}
    if not progress:
        return
    rows = (
        OutboundMessage.objects.filter(batch_id__in=list(progress))
        .annotate(operator_state=story.state_case())
        .order_by()
        .values("batch_id", "operator_state")
        .annotate(n=Count("pk"), last=Max("cancel_completed_at"))
    )
    last: dict[int, list[datetime]] = defaultdict(list)
    for row in rows:
        progress[row["batch_id"]].by_state[row["operator_state"]] = row["n"]
        if row["last"] is not None:
            last[row["batch_id"]].append(row["last"])
    for batch in batches:
        batch_progress = progress[batch.pk]
        batch_progress.last_settled = max(last[batch.pk], default=None)
        if batch.prepared_at is None:
            waiting = batch.total - batch_progress.total
            if waiting > 0:
                batch_progress.by_state[PREPARING] = waiting
        batch.progress_info = batch_progress  # type: ignore[attr-defined]


class _BatchChangeList(ChangeList):
    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        attach_progress(self.result_list)


@admin.register(CancellationBatch)
class CancellationBatchAdmin(WidePages, ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "__str__",
        "created",
        "requested_by",
        "taken_on",
        "progress_bar",
        "outcome",
        "rate",
        "messages_link",
    )
    list_filter = ("via", "created_at")
    readonly_fields = ("created_at", "requested_by", "via", "campaign", "taken_on", "progress")
    fields = readonly_fields

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return _BatchChangeList

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        """Whoever may stop messages may follow the batches stops make: the admin links
        every stop it queues to its batch page, and the permission to stop is the one the
        docs tell operators to ask for -- that link must not answer 403."""
        messages = OutboundMessage._meta
        return super().has_view_permission(request, obj) or request.user.has_perm(
            f"{messages.app_label}.cancel_{messages.model_name}"
        )

    def get_queryset(self, request: HttpRequest) -> Any:
        return super().get_queryset(request).select_related("requested_by")

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        batch = super().get_object(request, object_id, from_field)
        if batch is not None:
            attach_progress([batch])
        return batch

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {**WIDE_PAGE, "title": capfirst(self.opts.verbose_name_plural)}
        return super().changelist_view(request, {**context, **(extra_context or {})})

    # -- columns -----------------------------------------------------------------------------

    @admin.display(description=_("requested"), ordering="created_at")
    def created(self, batch: CancellationBatch) -> str:
        return format_html(
            '<span class="ct-nowrap" title="{}">{}</span>',
            batch.created_at.isoformat(),
            explanations.compact_when(batch.created_at),
        )

    @admin.display(description=_("campaign"))
    def campaign(self, batch: CancellationBatch) -> str:
        """A campaign stop's filter (account, tag, up to which message); "–" for a selection."""
        if batch.campaign_through is None:
            return "–"
        parts = []
        if batch.campaign_tag:
            parts.append(str(_("tag “%(tag)s”") % {"tag": batch.campaign_tag}))
        if batch.campaign_account:
            parts.append(str(_("account “%(account)s”") % {"account": batch.campaign_account}))
        return str(
            _("Everything still stoppable of %(what)s, messages up to #%(through)d")
            % {"what": " / ".join(parts), "through": batch.campaign_through}
        )

    @admin.display(description=_("taken on"))
    def taken_on(self, batch: CancellationBatch) -> str:
        if batch.selection_pending:
            return str(_("Recording the campaign's messages…"))
        if not batch.skipped:
            return str(batch.total)
        return format_html(
            '<span class="ct-nowrap">{}</span>',
            _("%(total)d, %(skipped)d skipped") % {"total": batch.total, "skipped": batch.skipped},
        )

    @admin.display(description=_("progress"))
    def progress_bar(self, batch: CancellationBatch) -> str:
        progress = _progress(batch)
        return format_html(
            '{}<span class="ct-nowrap">{}</span>',
            _bar(progress),
            _("%(settled)d of %(total)d settled")
            % {"settled": progress.settled, "total": progress.total},
        )

    @admin.display(description=_("outcome"))
    def outcome(self, batch: CancellationBatch) -> str:
        return _outcome_links(batch, _progress(batch))

    @admin.display(description=_("rate"))
    def rate(self, batch: CancellationBatch) -> str:
        return format_html(
            '<span class="ct-nowrap">{}</span>', _rate_text(_progress(batch), timezone.now())
        )

    @admin.display(description=_("messages"))
    def messages_link(self, batch: CancellationBatch) -> str:
        return format_html('<a href="{}">{}</a>', _messages_url(batch), _("view"))

    @admin.display(description=_("progress"))
    def progress(self, batch: CancellationBatch) -> str:
        """The batch page: bar, counts linking to the messages, rate, what is left."""
        progress = _progress(batch)
        now = timezone.now()
        return format_html(
            '<div id="batch-progress">{}<ul class="ct-facts">'
            "{}<li>{}</li><li>{}</li><li>{}</li></ul></div>",
            _bar(progress),
            _preparing_text(progress),
            _("%(settled)d of %(total)d settled (%(percent)d%%)")
            % {
                "settled": progress.settled,
                "total": progress.total,
                "percent": 100 * progress.settled // progress.total if progress.total else 100,
            },
            _outcome_links(batch, progress),
            _rate_text(progress, now, long=True),
        )


def _preparing_text(progress: BatchProgress) -> SafeString:
    """While a worker hands the selection on: how many are not yet with the workers."""
    waiting = progress.by_state.get(PREPARING, 0)
    if not waiting:
        return mark_safe("")
    return format_html(
        '<li class="ct-preparing">{}</li>',
        _("Being prepared: %(waiting)d of %(total)d not yet handed to workers.")
        % {"waiting": waiting, "total": progress.total},
    )


def _progress(batch: CancellationBatch) -> BatchProgress:
    info = getattr(batch, "progress_info", None)
    if info is None:
        attach_progress([batch])
        info = batch.progress_info  # type: ignore[attr-defined]
    return info  # type: ignore[no-any-return]


def _messages_url(batch: CancellationBatch, state: str = "") -> str:
    url = f"{reverse('admin:django_clickatell_outboundmessage_changelist')}"
    url += f"?batch__id__exact={batch.pk}"
    return f"{url}&state={state}" if state else url


def _bar(progress: BatchProgress) -> SafeString:
    total = progress.total or 1
    parts = [
        (f"ct-bar-{tone}", 100 * progress.count(group) / total)
        for group, _states, tone, _label in GROUPS
        if group != "left" and progress.count(group)
    ]
    return format_html(
        '<div class="ct-progress" role="img" aria-label="{}">{}</div>',
        _("%(settled)d of %(total)d settled") % {"settled": progress.settled, "total": total},
        format_html_join(
            "", '<span class="{}" style="width: {}%"></span>', ((c, f"{w:.2f}") for c, w in parts)
        ),
    )


def _outcome_links(batch: CancellationBatch, progress: BatchProgress) -> SafeString:
    """ "15 stopped · 2 too late · 1 failed · 2 left", each linking to those messages."""
    links = []
    for group, states, tone, label in GROUPS:
        count = progress.count(group)
        if not count:
            continue
        # Messages of one state link to exactly those; a mix of states to the whole batch.
        present = [s for s in states if progress.by_state.get(s) and s != PREPARING]
        state = present[0] if len(present) == 1 else ""
        links.append(
            format_html(
                '<a class="ct-badge ct-{}" href="{}">{} {}</a>',
                tone,
                _messages_url(batch, state),
                count,
                label,
            )
        )
    if not links:
        return format_html("{}", "–")
    return format_html_join(" ", "{}", ((link,) for link in links))


def _rate_text(progress: BatchProgress, now: datetime, *, long: bool = False) -> str:
    """The pace since the request: "12/min" -- or "6 in 4 s" before a minute has gone by.

    With *long*, for the batch page: the same in words, and what is left.
    """
    rate = progress.per_minute(now)
    if rate is None:
        return str(_("nothing settled yet")) if long else "–"
    seconds = round(progress.elapsed_seconds(now))
    values = {
        "settled": progress.settled,
        "seconds": seconds,
        "rate": f"{rate:.0f}" if rate >= 10 else f"{rate:.1f}",
    }
    if not long:
        short = _("%(settled)d in %(seconds)d s") if seconds < 60 else _("%(rate)s/min")
        return str(short % values)
    pace = (
        _("%(settled)d settled within %(seconds)d s of the request")
        if seconds < 60
        else _("%(rate)s/min since the request")
    ) % values
    if not progress.left:
        return str(_("%(pace)s; nothing left.") % {"pace": pace})
    return str(
        _("%(pace)s; %(left)d left, about %(eta)s at this rate.")
        % {"pace": pace, "left": progress.left, "eta": _duration(progress.minutes_left(now) or 0)}
    )


def _duration(minutes: float) -> str:
    if minutes < 1:
        return str(_("%(seconds)d s") % {"seconds": max(round(minutes * 60), 1)})
    if minutes < 90:
        return str(_("%(minutes)d min") % {"minutes": round(minutes)})
    return str(_("%(hours).1f h") % {"hours": minutes / 60})
