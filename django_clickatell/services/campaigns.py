"""Stopping a whole campaign in one move: everything still stoppable on an account, or with a tag.

A campaign is named by a filter -- an account, a tag (``send_sms(tags=[...])``),
or both -- never by a list of ids.  The admin's button, ``api.cancel_campaign``
and ``clickatell_cancel --tag/--account`` all build the same :class:`Campaign`;
the request stores it as a cancellation batch row (the filter and the highest
message key it covers) and publishes the batch id -- one ``SELECT max(id)`` on
the tag's index and one ``INSERT``, the same for ten messages or a million.
The worker records the selection from the filter inside the database
(:func:`.cancel_batches.record_campaign`: the ``INSERT ... SELECT`` of the
batch machinery), stops at once what never left Django, and stops the rest
at Clickatell, each exactly once.  Until it has run (at once without Celery,
within moments with a worker), a message never sent may still be handed over:
it is then stopped at Clickatell instead.

What is taken on is the one per-account rule (:func:`~..selections.stoppable_q`).
**Messages added to the campaign after the stop** -- a loop still calling
``send_sms(tags=["promo"])`` -- are not touched: the stop covers the messages
recorded when it was confirmed (the admin's confirmation page also fixes the
highest key it counted, ``through``, so the stop does exactly what the page
said), and later ones go out as usual.  To stop a campaign that is still being
fed, pause the account first (:mod:`.pausing`), then stop the campaign.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db.models import Count, Max, QuerySet
from django.utils import timezone

from ..conf import account_aliases
from ..exceptions import InvalidInput
from ..models import CancellationBatch, MessageTag, OutboundMessage
from ..selections import StopReach, stop_reach
from .cancel_requests import CancellationPreview, PreviewRows, outcome_case

#: Longest account alias a message can carry (``OutboundMessage.account``).
_MAX_ACCOUNT = 32
_MAX_TAG = MessageTag._meta.get_field("tag").max_length or 50


@dataclass(frozen=True)
class Campaign:
    """The messages of an account, of a tag, or of a tag on an account (at least one given).

    ``through``: only messages whose key is at most this (those recorded when the
    operator was shown the counts); ``None``: every message recorded when the
    stop is requested.
    """

    account: str | None = None
    tag: str | None = None
    through: int | None = None

    def messages(self) -> QuerySet[OutboundMessage]:
        """Every message of the campaign (stoppable or not): the tag through its index."""
        queryset: QuerySet[OutboundMessage] = OutboundMessage.objects.all()
        if self.tag is not None:
            queryset = OutboundMessage.objects.tagged(self.tag)
        if self.account is not None:
            queryset = queryset.filter(account=self.account)
        if self.through is not None:
            queryset = queryset.filter(pk__lte=self.through)
        return queryset

    def describe(self) -> str:
        """ "tag “promo” on account “default”", for pages, logs and the command."""
        parts = []
        if self.tag is not None:
            parts.append(f"tag “{self.tag}”")
        if self.account is not None:
            parts.append(f"account “{self.account}”")
        return " on ".join(parts)


def campaign(
    *, account: str | None = None, tag: str | None = None, through: int | None = None
) -> Campaign:
    """A :class:`Campaign`, checked: raises :class:`~..exceptions.InvalidInput` naming the problem.

    An account must be configured or carry messages (one that was removed from the
    settings may still have messages that never left, which can be stopped here);
    a tag must be one ``send_sms`` could have stored.  A tag nobody used is not an
    error here: the stop then has nothing to do, and says so.
    """
    if account is None and tag is None:
        raise InvalidInput("Name the campaign: an account, a tag, or both.")
    if account is not None:
        if not isinstance(account, str) or not 0 < len(account) <= _MAX_ACCOUNT:
            raise InvalidInput(f"Not an account alias: {str(account)[:40]!r}.")
        if (
            account not in account_aliases()
            and not OutboundMessage.objects.filter(account=account).exists()
        ):
            raise InvalidInput(
                f"No account named {account!r}: it is not in the settings and no message "
                f"went through it (configured: {', '.join(account_aliases())})."
            )
    if tag is not None and (
        not isinstance(tag, str) or not 0 < len(tag) <= _MAX_TAG or not tag.isprintable()
    ):
        raise InvalidInput(f"Not a tag (1 to {_MAX_TAG} printable characters): {str(tag)[:60]!r}.")
    if through is not None and (isinstance(through, bool) or not isinstance(through, int)):
        raise InvalidInput("through must be a message key (an integer).")
    return Campaign(account=account, tag=tag, through=through)


def snapshot(target: Campaign) -> Campaign:
    """*target* fixed to the messages recorded now (its highest key): what a page counted."""
    if target.through is not None:
        return target
    # An upper bound read from an index's end (O(log n)): the tag's highest message key, or
    # the table's; the account filter still applies to what lies below it.
    if target.tag is not None:
        highest = MessageTag.objects.filter(tag=target.tag).aggregate(k=Max("message_id"))["k"]
    else:
        highest = OutboundMessage.objects.aggregate(k=Max("pk"))["k"]
    return Campaign(account=target.account, tag=target.tag, through=int(highest or 0))


def preview_by_account(
    target: Campaign, reach: StopReach | None = None
) -> list[tuple[str, CancellationPreview]]:
    """What stopping *target* would do, per account: counts per outcome and reason skipped.

    One grouped query (``account``, outcome) whatever the size: the confirmation
    page's table.  The overall counts are the sum of the rows.
    """
    reach = reach or stop_reach()
    rows = (
        target.messages()
        .order_by()
        .annotate(skip_reason=outcome_case(reach))
        .values("account", "skip_reason")
        .annotate(n=Count("pk"))
        .values_list("account", "skip_reason", "n")
    )
    per_account: dict[str, dict[str, int]] = {}
    for account, outcome, count in rows:
        per_account.setdefault(account, {})[outcome] = count
    return [(alias, CancellationPreview(**counts)) for alias, counts in sorted(per_account.items())]


#: Tag rows read, at most, to find a tagged campaign's sample rows (a bounded cost).
SAMPLE_SCAN = 5000


def sample_rows(
    target: Campaign, *, limit: int, reach: StopReach | None = None, **annotations: Any
) -> PreviewRows:
    """Up to *limit* messages of the campaign on each side (taken on, skipped), in key order.

    For a tag, the first ``SAMPLE_SCAN`` keys are read from the tag's index and only
    those messages are looked at: a bounded cost whatever the campaign's size (the
    selection pages' query, sorting the whole campaign by due time, took 1.8 s at
    100,000 messages).  A side may then show fewer rows than it has; the counts
    above the rows always cover the whole campaign.  Each row carries
    ``skip_reason`` (its outcome, or why it is skipped), and *annotations* (the
    admin's ``operator_state``: read with the rows, not one query per row).
    """
    reach = reach or stop_reach()
    messages = target.messages()
    if target.tag is not None:
        keys = MessageTag.objects.filter(tag=target.tag).order_by("message_id")
        if target.through is not None:
            keys = keys.filter(message_id__lte=target.through)
        window = list(keys.values_list("message_id", flat=True)[:SAMPLE_SCAN])
        messages = OutboundMessage.objects.filter(pk__in=window)
        if target.account is not None:
            messages = messages.filter(account=target.account)
    annotated = messages.annotate(skip_reason=outcome_case(reach), **annotations).order_by("pk")
    return PreviewRows(
        to_stop=list(annotated.filter(reach.stoppable)[:limit]),
        skipped=list(annotated.exclude(reach.stoppable)[:limit]),
    )


def total_preview(previews: list[tuple[str, CancellationPreview]]) -> CancellationPreview:
    """The per-account counts added up."""
    totals: dict[str, int] = {}
    for _alias, preview in previews:
        for key, value in vars(preview).items():
            totals[key] = totals.get(key, 0) + value
    return CancellationPreview(**totals)


def request_campaign_stop(target: Campaign, *, via: str, actor: Any = None) -> CancellationBatch:
    """Record the stop of everything still stoppable in *target*: one batch row, no keys.

    *target* is fixed to the messages recorded now unless it already says
    ``through`` (the confirmation page's count).  Call inside
    ``transaction.atomic()`` and hand the batch on with
    :func:`~django_clickatell.dispatch.enqueue_batch`; the worker records and
    stops its messages (:func:`.cancel_batches.record_campaign`).  Two operators
    stopping the same campaign at once make two batches; each message is taken
    by one of them (the worker re-checks the rule when it marks), and stopped once.
    """
    fixed = snapshot(target)
    return CancellationBatch.objects.create(
        requested_by_id=getattr(actor, "pk", None),
        via=via,
        prepare_touched_at=timezone.now(),
        campaign_account=fixed.account or "",
        campaign_tag=fixed.tag or "",
        campaign_through=fixed.through,
        selection_pending=True,
    )
