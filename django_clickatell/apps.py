from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ClickatellConfig(AppConfig):
    name = "django_clickatell"
    verbose_name = _("Clickatell")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from .checks import check_settings

        checks.register(check_settings, "django_clickatell")
        from .dispatch import celery_in_use

        if celery_in_use():
            # The task module publishes work for dispatch (which never imports it): load
            # it now, so the tasks are registered with Celery and dispatch can reach them.
            from . import tasks  # noqa: F401
