"""The opt-out list in the admin: add and remove numbers by hand, see who and why.

Adding needs the model's ``add_optout`` permission, removing ``delete_optout``;
entries are never edited (remove and add again).  Every add and removal goes
through :mod:`..services.guards`, which writes the admin's history (LogEntry)
once -- the admin's own logging is turned off here so nothing is logged twice.
Numbers are read like ``send_sms`` recipients and stored in E.164 digits.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.dispatch import receiver
from django.http import HttpRequest

from ..exceptions import InvalidMessage
from ..models import OptOut, Via
from ..services import guards
from ..services.composing import normalize_recipient
from ..services.waiting import configured_accounts
from ..signals import number_opted_in, number_opted_out
from .common import write_history


@receiver(number_opted_out, dispatch_uid="django_clickatell.admin.log_opt_out")
@receiver(number_opted_in, dispatch_uid="django_clickatell.admin.log_opt_in")
def log_opt_out(signal: Any, entry: OptOut, user: Any, via: str = "", **kwargs: Any) -> None:
    """Every change to the opt-out list in the admin's history of the entry, whatever face
    made it (a ``LogEntry`` needs a user: a change without one is in the logs only)."""
    added = signal is number_opted_out
    scope = f" for account “{entry.account}”" if entry.account else ""
    if added:
        reason = f": {entry.reason}" if entry.reason else ""
        message = f"Opted out +{entry.number}{scope}{reason}"
    else:
        message = (
            f"Opted in +{entry.number}{scope} again (listed since {entry.created_at:%Y-%m-%d})"
        )
    write_history(entry, user, added=added, message=message, via=via)


class OptOutForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = OptOut
        fields = ("number", "account", "reason")

    def clean_number(self) -> str:
        try:
            return normalize_recipient(self.cleaned_data["number"])
        except InvalidMessage as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean_account(self) -> str:
        account = str(self.cleaned_data.get("account") or "").strip()
        if account and account not in configured_accounts():
            raise forms.ValidationError(
                f"No account {account[:40]!r} in settings.CLICKATELL (leave it blank for all)."
            )
        return account


@admin.register(OptOut)
class OptOutAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Added and removed, never edited; each move logged once, by the service."""

    form = OptOutForm
    list_display = ("__str__", "account", "source", "reason", "created_at", "created_by")
    list_filter = ("source", "account")
    search_fields = ("number", "reason")
    readonly_fields = ("source", "created_at", "created_by")

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: OptOut, form: Any, change: bool) -> None:
        row, _created = guards.opt_out(
            obj.number, reason=obj.reason, account=obj.account, by=request.user, via=Via.ADMIN
        )
        obj.pk = row.pk

    def delete_model(self, request: HttpRequest, obj: OptOut) -> None:
        guards.opt_in(obj.number, by=request.user, via=Via.ADMIN)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[OptOut]) -> None:
        for number in queryset.values_list("number", flat=True):
            guards.opt_in(number, by=request.user, via=Via.ADMIN)

    # The service writes the history: the admin's own entries would say it twice.
    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        return None

    def log_deletion(self, request: HttpRequest, obj: Any, object_repr: str) -> Any:
        return None

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        return None
