"""Template tags of the app's admin pages: the banner of paused accounts.

Every admin page of the app shows, above its messages, which accounts are
paused (by whom, since when, why) and -- to those allowed -- a link to resume
them: an operator must never wonder why nothing goes out.
"""

from __future__ import annotations

from typing import Any

from django import template

from ..services.pausing import pauses

register = template.Library()


@register.inclusion_tag("admin/django_clickatell/pause_banner.html", takes_context=True)
def clickatell_pause_banner(context: Any) -> dict[str, Any]:
    """The paused accounts, read fresh (one indexed query per page), for the banner."""
    request = context.get("request")
    user = getattr(request, "user", None)
    return {
        "pauses": [pause for _alias, pause in sorted(pauses(fresh=True).items())],
        "may_resume": bool(user is not None and user.has_perm("django_clickatell.pause_account")),
    }
