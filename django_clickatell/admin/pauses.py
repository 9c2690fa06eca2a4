"""Pausing and resuming accounts from the admin: one page listing every account, a
confirmation page for each move, a permission of its own (``pause_account``).

The list (the "Account pauses" changelist) shows each configured account --
and any paused account since removed from the settings -- as sending or
paused (by whom, since when, why), with what waits.  "Pause…" and "Resume…"
lead to a page that says exactly what will happen before anything does; the
move itself is :mod:`..services.pausing` (stored, logged in the admin's
history, seen by every worker within ``PAUSE_FRESH_SECONDS``).
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.dispatch import receiver
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext as _

from ..dispatch import requeue_stalled
from ..exceptions import InvalidInput
from ..models import AccountPause, Via
from ..services import pausing
from ..services.waiting import configured_accounts
from ..signals import account_paused, account_resumed
from .common import write_history


@receiver(account_paused, dispatch_uid="django_clickatell.admin.log_pause")
@receiver(account_resumed, dispatch_uid="django_clickatell.admin.log_resume")
def log_pause(signal: Any, pause: AccountPause, user: Any, via: str = "", **kwargs: Any) -> None:
    """Every pause and resume in the admin's history of the pause object, whatever face
    set it (a ``LogEntry`` needs a user: one set without -- a command or the API without
    ``by`` -- is in the logs only)."""
    added = signal is account_paused
    if added:
        message = f"Paused account “{pause.account}”" + (
            f": {pause.reason}" if pause.reason else ""
        )
    else:
        message = (
            f"Resumed account “{pause.account}” (paused since {pause.paused_at:%Y-%m-%d %H:%M})"
        )
    write_history(pause, user, added=added, message=message, via=via)


PERMISSION = "django_clickatell.pause_account"


@admin.register(AccountPause)
class AccountPauseAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    """Not edited as rows: the list is every account, and each move has its confirmation."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_view_permission(request, obj) or request.user.has_perm(PERMISSION)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return super().has_module_permission(request) or request.user.has_perm(PERMISSION)

    def get_urls(self) -> list[URLPattern]:
        own = [
            path(
                "pause/<str:alias>/",
                self.admin_site.admin_view(self.pause_view),
                name="django_clickatell_accountpause_pause",
            ),
            path(
                "resume/<str:alias>/",
                self.admin_site.admin_view(self.resume_view),
                name="django_clickatell_accountpause_resume",
            ),
        ]
        return own + super().get_urls()

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """Every account, sending or paused, and what waits on it."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        current = pausing.pauses(fresh=True)
        aliases = sorted({*configured_accounts(), *current})
        rows = [
            {"alias": alias, "pause": current.get(alias), "held": pausing.held_by_pause(alias)}
            for alias in aliases
        ]
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Pause or resume Clickatell accounts"),
            "rows": rows,
            "may_pause": request.user.has_perm(PERMISSION),
            "fresh_seconds": pausing.PAUSE_FRESH_SECONDS,
            **(extra_context or {}),
        }
        return TemplateResponse(
            request, "admin/django_clickatell/accountpause/accounts.html", context
        )

    def _confirm(self, request: HttpRequest, alias: str, pausing_it: bool) -> dict[str, Any]:
        if not request.user.has_perm(PERMISSION):
            raise PermissionDenied
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "alias": alias,
            "held": pausing.held_by_pause(alias),
            "pause": pausing.pauses(fresh=True).get(alias),
            "fresh_seconds": pausing.PAUSE_FRESH_SECONDS,
            "reason_length": pausing.REASON_LENGTH,
        }

    def pause_view(self, request: HttpRequest, alias: str) -> HttpResponse:
        """GET: what pausing *alias* will do; POST (with a reason): do it."""
        context = self._confirm(request, alias, True)
        if alias not in configured_accounts():
            raise Http404(_("No such account in the settings."))
        back = reverse("admin:django_clickatell_accountpause_changelist")
        if request.method == "POST":
            try:
                _pause, created = pausing.pause_account(
                    alias, reason=request.POST.get("reason", ""), by=request.user, via=Via.ADMIN
                )
            except InvalidInput as exc:
                context["error"] = str(exc)
            else:
                if created:
                    self.message_user(
                        request,
                        _(
                            "Account “%(account)s” is paused: nothing more is sent through it "
                            "until it is resumed; stops still go out."
                        )
                        % {"account": alias},
                        messages.WARNING,
                    )
                else:
                    self.message_user(
                        request,
                        _("Account “%(account)s” was already paused; nothing changed.")
                        % {"account": alias},
                        messages.INFO,
                    )
                return HttpResponseRedirect(back)
        context["title"] = _("Pause account “%(account)s”?") % {"account": alias}
        return TemplateResponse(
            request, "admin/django_clickatell/accountpause/pause_confirmation.html", context
        )

    def resume_view(self, request: HttpRequest, alias: str) -> HttpResponse:
        """GET: what resuming *alias* will do; POST: do it and hand the waiting work on."""
        context = self._confirm(request, alias, False)
        back = reverse("admin:django_clickatell_accountpause_changelist")
        if request.method == "POST":
            if pausing.resume_account(alias, by=request.user, via=Via.ADMIN):
                counts = requeue_stalled(via=Via.ADMIN)
                self.message_user(
                    request,
                    _(
                        "Account “%(account)s” is resumed: %(sends)d waiting sends handed on, "
                        "each to go out once; held messages due meanwhile go at the release "
                        "loop's next pass."
                    )
                    % {"account": alias, "sends": counts["sends"]},
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    _("Account “%(account)s” was not paused; nothing changed.")
                    % {"account": alias},
                    messages.INFO,
                )
            return HttpResponseRedirect(back)
        context["title"] = _("Resume account “%(account)s”?") % {"account": alias}
        return TemplateResponse(
            request, "admin/django_clickatell/accountpause/resume_confirmation.html", context
        )
