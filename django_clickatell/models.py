"""What django-clickatell remembers: outbound messages, every gateway exchange, and batches.

``OutboundMessage.status`` is Clickatell's own three-digit status code, stored
exactly as the gateway last reported it; ``cancel_state`` is this package's
view of a cancellation in progress.  A message is only ever ``CANCELLED`` after
Clickatell answered ``006``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .protocol.codes import describe_status, status_choices
from .selections import MessageQuerySet
from .states import (
    ACTIVE_CANCEL_STATES,
    OPEN_SEND_STATES,
    CancelState,
    SendState,
    Via,
    WaitingFor,
)

__all__ = [
    "ACTIVE_CANCEL_STATES",
    "OPEN_SEND_STATES",
    "AccountPause",
    "CancelState",
    "CancellationBatch",
    "GatewayExchange",
    "MessageTag",
    "OutboundMessage",
    "SendState",
    "UnmatchedCallback",
    "Via",
    "WaitingFor",
]


class OutboundMessage(models.Model):
    apimsgid = models.CharField(
        _("API message id"),
        max_length=64,
        unique=True,
        null=True,
        blank=True,
        help_text=_("Clickatell's id for the message, known once it was accepted."),
    )
    climsgid = models.CharField(
        _("client message id"),
        max_length=32,
        blank=True,
        db_index=True,
        help_text=_("Our own id for the message, sent to Clickatell as climsgid."),
    )
    recipient = models.CharField(_("recipient"), max_length=32, help_text=_("MSISDN"))
    sender = models.CharField(_("sender"), max_length=32, blank=True)
    text = models.TextField(_("text"), blank=True, help_text=_("Optional copy of the message."))
    scheduled_for = models.DateTimeField(
        _("scheduled for"),
        null=True,
        blank=True,
        db_index=True,
        help_text=_("When Clickatell is due to deliver the message."),
    )
    release_at = models.DateTimeField(
        _("handed over at"),
        null=True,
        blank=True,
        help_text=_(
            "For a message held here: when it is handed to Clickatell (its due time, or "
            "earlier for Clickatell to schedule it)."
        ),
    )
    status = models.CharField(
        _("status"),
        max_length=8,
        blank=True,
        choices=status_choices,
        db_index=True,
        help_text=_("Clickatell's latest status code for the message."),
    )
    status_changed_at = models.DateTimeField(
        _("status changed at"),
        null=True,
        blank=True,
        help_text=_("When the status took effect, by Clickatell's clock where it said."),
    )
    charge = models.DecimalField(
        _("charge"),
        max_digits=12,
        decimal_places=6,
        null=True,
        blank=True,
        help_text=_("Credits charged, as reported by a status callback."),
    )

    send_state = models.CharField(
        _("sending"),
        max_length=16,
        blank=True,
        default=SendState.NOT_SENT_HERE,
        choices=SendState.choices,
        db_index=True,
    )
    send_error = models.CharField(_("sending error"), max_length=255, blank=True)
    send_options = models.JSONField(
        _("sending options"),
        default=dict,
        blank=True,
        editable=False,
        help_text=_("The sendmsg options (schedule, callback, concat, validity) used."),
    )
    account = models.CharField(
        _("account"),
        max_length=32,
        default="default",
        db_index=True,
        editable=False,
        help_text=_(
            "The Clickatell account (its alias in settings) the message goes through; "
            "every request about it uses that account's credentials."
        ),
    )

    cancel_state = models.CharField(
        _("cancellation"),
        max_length=16,
        blank=True,
        default=CancelState.NOT_REQUESTED,
        choices=CancelState.choices,
        db_index=True,
    )
    cancel_requested_at = models.DateTimeField(
        _("cancellation requested at"), null=True, blank=True
    )
    cancel_requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("cancellation requested by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    cancel_completed_at = models.DateTimeField(
        _("cancellation completed at"), null=True, blank=True
    )
    cancel_attempts = models.PositiveIntegerField(_("cancellation attempts"), default=0)
    cancel_error = models.CharField(
        _("cancellation error"),
        max_length=255,
        blank=True,
        help_text=_("Why the last attempt did not stop the message."),
    )
    batch = models.ForeignKey(
        "CancellationBatch",
        verbose_name=_("cancellation batch"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="messages",
    )
    # Open work that cannot go out for a reason only the settings (or an operator) can lift:
    # see services/waiting.py.  Set and cleared by the services only.
    waiting_for = models.CharField(
        _("waiting for"),
        max_length=16,
        blank=True,
        default=WaitingFor.NOTHING,
        choices=WaitingFor.choices,
        editable=False,
        help_text=_("Why its send, release or stop waits; it goes out once this is resolved."),
    )
    waiting_since = models.DateTimeField(_("waiting since"), null=True, blank=True, editable=False)
    # What the caller attached (``send_sms(metadata=...)``, anymail's name): a small JSON
    # object of str -> str/number, checked by services/composing.py.  Carried, never
    # filtered on (tags are: :class:`MessageTag`).
    metadata = models.JSONField(
        _("metadata"),
        default=dict,
        blank=True,
        editable=False,
        help_text=_("What the sending code attached to link the message to an order or a user."),
    )
    # The one lease on a message, whoever holds it (a send run or a cancel run): see
    # services/claims.py.  ``updated_at`` is maintained by every service write, so
    # stall detection can tell work that is waiting from work that was lost.
    claim_token = models.CharField(max_length=64, blank=True, editable=False)
    claim_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    objects = MessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("outbound message")
        verbose_name_plural = _("outbound messages")
        ordering = ("-created_at", "-pk")
        permissions = [
            ("cancel_outboundmessage", _("Can cancel scheduled delivery")),
            ("send_outboundmessage", _("Can send messages again or ask Clickatell about them")),
        ]
        indexes = [
            models.Index(fields=["batch", "cancel_state"], name="clickatell_batch_state"),
            # The release loop's selection: held messages by release time.
            models.Index(fields=["send_state", "release_at"], name="clickatell_held_release"),
            # The few messages that wait (services/waiting.py), by account: found without
            # reading the rest.
            models.Index(
                fields=["account"],
                condition=~models.Q(waiting_for=""),
                name="clickatell_waiting",
            ),
        ]
        constraints = [
            # Clickatell is asked about a send in doubt by its climsgid: two messages
            # sharing one would make the answer ambiguous and a duplicate possible.
            models.UniqueConstraint(
                fields=["climsgid"],
                condition=~models.Q(climsgid=""),
                name="clickatell_unique_climsgid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.recipient} ({self.apimsgid or self.climsgid or _('not sent')})"

    @property
    def status_label(self) -> str:
        return str(describe_status(self.status).label) if self.status else ""

    @property
    def is_final(self) -> bool:
        return bool(self.status) and describe_status(self.status).final


class MessageTag(models.Model):
    """One tag of a message (``send_sms(tags=[...])``): the campaign handle.

    A table of its own rather than an array column: the unique index on
    ``(tag, message)`` finds a tag's messages by a range scan on PostgreSQL and
    SQLite alike (an ``ArrayField`` with a GIN index is PostgreSQL only), costs
    nothing for messages without tags, and leaves ``OutboundMessage`` one
    column wider (``metadata``), not a wide indexed array.  Written once, with
    the message, by services/composing.py; never changed.
    """

    id = models.BigAutoField(primary_key=True)
    message = models.ForeignKey(
        OutboundMessage, on_delete=models.CASCADE, related_name="tags", verbose_name=_("message")
    )
    tag = models.CharField(_("tag"), max_length=50)

    class Meta:
        verbose_name = _("message tag")
        verbose_name_plural = _("message tags")
        constraints = [
            # Also the index a tag filter reads: tag first, then the message keys in order.
            models.UniqueConstraint(fields=["tag", "message"], name="clickatell_tag_message")
        ]

    def __str__(self) -> str:
        return self.tag


class GatewayExchange(models.Model):
    """One request to Clickatell about a message (or one callback from it), and its outcome."""

    class Outcome(models.TextChoices):
        STATUS = "status", _("Status reported")
        GATEWAY_ERROR = "gateway_error", _("Clickatell error")
        TRANSPORT_ERROR = "transport_error", _("Gateway unreachable")
        PROTOCOL_ERROR = "protocol_error", _("Unreadable reply")
        NOT_SENT = "not_sent", _("Not sent (no usable session)")

    message = models.ForeignKey(
        OutboundMessage,
        on_delete=models.CASCADE,
        related_name="exchanges",
        verbose_name=_("message"),
    )
    command = models.CharField(_("command"), max_length=16)
    occurred_at = models.DateTimeField(_("at"), default=timezone.now, db_index=True)
    via = models.CharField(_("via"), max_length=16, choices=Via.choices)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    task_id = models.CharField(_("task id"), max_length=64, blank=True)
    outcome = models.CharField(_("outcome"), max_length=16, choices=Outcome.choices)
    status = models.CharField(_("status"), max_length=8, blank=True, choices=status_choices)
    error_code = models.IntegerField(_("error code"), null=True, blank=True)
    error_description = models.CharField(_("error"), max_length=255, blank=True)
    detail = models.CharField(
        _("detail"),
        max_length=255,
        blank=True,
        help_text=_("Transport failure or a redacted excerpt of an unreadable reply."),
    )
    duration_ms = models.PositiveIntegerField(_("duration (ms)"), null=True, blank=True)

    class Meta:
        verbose_name = _("gateway exchange")
        verbose_name_plural = _("gateway exchanges")
        ordering = ("-occurred_at", "-pk")

    def __str__(self) -> str:
        what = self.status or (f"ERR {self.error_code:03d}" if self.error_code is not None else "")
        what = what or str(self.get_outcome_display())
        return f"{self.command} {what} ({self.occurred_at:%Y-%m-%d %H:%M:%S})"


class UnmatchedCallback(models.Model):
    """A status callback for a message this database does not (yet) know.

    Kept rather than dropped: a message recorded later (or sent from another
    system) is matched when it appears, and nothing Clickatell said is lost.
    """

    received_at = models.DateTimeField(_("received at"), default=timezone.now, db_index=True)
    apimsgid = models.CharField(_("API message id"), max_length=64, db_index=True)
    climsgid = models.CharField(_("client message id"), max_length=32, blank=True)
    account = models.CharField(
        _("account"),
        max_length=32,
        blank=True,
        help_text=_(
            "The account it came to (its callback URL, or the api_id of a legacy "
            "callback); matched only to that account's messages. Empty: kept before "
            "callbacks were scoped to an account, matched to any."
        ),
    )
    recipient = models.CharField(_("recipient"), max_length=32, blank=True)
    sender = models.CharField(_("sender"), max_length=32, blank=True)
    status = models.CharField(_("status"), max_length=8, choices=status_choices)
    reported_at = models.DateTimeField(_("reported at"), null=True, blank=True)
    charge = models.DecimalField(
        _("charge"), max_digits=12, decimal_places=6, null=True, blank=True
    )
    matched_message = models.ForeignKey(
        OutboundMessage,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        verbose_name=_("matched message"),
    )

    class Meta:
        verbose_name = _("unmatched callback")
        verbose_name_plural = _("unmatched callbacks")
        ordering = ("-received_at", "-pk")

    def __str__(self) -> str:
        return f"{self.apimsgid} {self.status}"


class CancellationBatch(models.Model):
    """One operator request to cancel many messages; progress is counted from its messages."""

    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("requested by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    via = models.CharField(_("via"), max_length=16, choices=Via.choices)
    total = models.PositiveIntegerField(_("messages queued"), default=0)
    skipped = models.PositiveIntegerField(
        _("messages skipped"),
        default=0,
        help_text=_("Selected but already final, already being cancelled, or never sent."),
    )

    # Handing the selection to workers (services/cancel_batches.py): the admin action only
    # records which messages were selected; a worker marks them and fans out in chunks.
    prepared_at = models.DateTimeField(
        _("handed to workers at"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("Empty while the batch is being prepared (its messages handed to workers)."),
    )
    prepared_through = models.BigIntegerField(default=0, editable=False)
    prepare_touched_at = models.DateTimeField(null=True, blank=True, editable=False)

    # A campaign stop (services/campaigns.py) stores its filter, never keys: the request
    # writes this row alone, and the worker records the selection from the filter
    # (``selection_pending`` then turns False) before preparing as for any batch.
    campaign_account = models.CharField(
        _("campaign: account"), max_length=32, blank=True, editable=False
    )
    campaign_tag = models.CharField(_("campaign: tag"), max_length=50, blank=True, editable=False)
    campaign_through = models.BigIntegerField(
        _("campaign: up to message"),
        null=True,
        blank=True,
        editable=False,
        help_text=_("The highest message key the stop covers: those recorded when it was asked."),
    )
    selection_pending = models.BooleanField(default=False, editable=False)

    class Meta:
        verbose_name = _("cancellation batch")
        verbose_name_plural = _("cancellation batches")
        ordering = ("-created_at", "-pk")

    def __str__(self) -> str:
        return str(_("Cancellation #%(pk)s") % {"pk": self.pk})


class BatchSelection(models.Model):
    """A run of consecutive selected message keys of a cancellation batch: the selection, as data.

    Filled by one ``INSERT ... SELECT`` inside the database when the operator
    confirms: the keys of the selection are grouped into runs of consecutive
    integers ("gaps and islands"), so a campaign of 100,000 messages recorded
    together is a handful of rows, and no key passes through Python, the
    broker or a task argument.  Only integers are stored -- nothing executable,
    nothing to unpickle -- in the same transaction as the batch, so what a
    worker reads is exactly what was confirmed, even if the filters would match
    other rows by then.  A message is selected when its key lies in one of the
    batch's runs (no foreign key to messages: a deleted one is simply not found).
    """

    id = models.BigAutoField(primary_key=True)
    batch = models.ForeignKey(CancellationBatch, on_delete=models.CASCADE, related_name="+")
    first_id = models.BigIntegerField()
    last_id = models.BigIntegerField()

    class Meta:
        verbose_name = _("selected messages")
        verbose_name_plural = _("selected messages")
        indexes = [models.Index(fields=["batch", "last_id"], name="clickatell_selection_order")]

    def __str__(self) -> str:
        return f"{self.batch_id}:{self.first_id}-{self.last_id}"

    @property
    def size(self) -> int:
        return self.last_id - self.first_id + 1


class AccountPause(models.Model):
    """An account an operator paused: nothing more is sent through it until it is resumed.

    One row per paused account; resuming deletes it.  Stored here (not in a
    setting or the cache) so that it survives restarts and every worker on
    every machine sees it (services/pausing.py reads it at most
    ``PAUSE_FRESH_SECONDS`` late).  Set and cleared only through
    ``services.pausing`` (admin, ``clickatell_pause``/``clickatell_resume``,
    ``api.pause_account``), which also writes the admin's LogEntry.
    """

    account = models.CharField(_("account"), max_length=32, unique=True)
    paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("paused by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    paused_at = models.DateTimeField(_("paused at"), default=timezone.now)
    reason = models.CharField(_("reason"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("account pause")
        verbose_name_plural = _("account pauses")
        ordering = ("account",)
        default_permissions = ("view",)
        permissions = [("pause_account", _("Can pause and resume a Clickatell account"))]

    def __str__(self) -> str:
        return str(_("Pause of account “%(account)s”") % {"account": self.account})


class OptOutSource(models.TextChoices):
    #: Added by someone: the admin, ``api.opt_out``.
    MANUAL = "manual", _("By hand")
    #: Clickatell refused a send to it as opted out (legacy/REST 122, One API 26).
    GATEWAY = "gateway", _("Refused by Clickatell as opted out")


class OptOut(models.Model):
    """A number that must not be sent to (issue 22): the opt-out list.

    One row per number (E.164 digits, as recipients are stored).  *account*
    blank: every account; else only that one.  Checked before every send of an
    account with ``GUARD_OPT_OUT`` (services/guards.py); added and removed only
    through services/guards.py (admin, ``api.opt_out``/``api.opt_in``, and a
    send Clickatell refused as opted out), which writes the admin's LogEntry.
    """

    number = models.CharField(_("number"), max_length=20, unique=True)
    account = models.CharField(
        _("account"), max_length=32, blank=True, help_text=_("Blank: every account.")
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)
    source = models.CharField(
        _("source"), max_length=16, choices=OptOutSource.choices, default=OptOutSource.MANUAL
    )
    created_at = models.DateTimeField(_("added at"), default=timezone.now)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("added by"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )

    class Meta:
        verbose_name = _("opted-out number")
        verbose_name_plural = _("opt-out list")
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"+{self.number}"
