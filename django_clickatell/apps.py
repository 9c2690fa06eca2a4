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
        from .views import redact_request_logs

        checks.register(check_settings, "django_clickatell")
        # Request logs write paths, and a One API callback's path carries its secret.
        redact_request_logs()
