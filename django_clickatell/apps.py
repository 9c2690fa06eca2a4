from __future__ import annotations

import logging

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from .protocol.redaction import RedactCallbackSecrets


class ClickatellConfig(AppConfig):
    name = "django_clickatell"
    verbose_name = _("Clickatell")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core import checks

        from .checks import check_settings

        checks.register(check_settings, "django_clickatell")
        redact_request_logs()
        from .dispatch import celery_in_use

        if celery_in_use():
            # The task module publishes work for dispatch (which never imports it): load
            # it now, so the tasks are registered with Celery and dispatch can reach them.
            from . import tasks  # noqa: F401


#: The loggers that write request paths: Django's request log and runserver's access log.
REQUEST_LOGGERS = ("django.request", "django.server")


def redact_request_logs() -> None:
    """Put :class:`~.protocol.redaction.RedactCallbackSecrets` on :data:`REQUEST_LOGGERS`,
    once: a One API callback's path carries its secret."""
    for name in REQUEST_LOGGERS:
        request_logger = logging.getLogger(name)
        if not any(isinstance(f, RedactCallbackSecrets) for f in request_logger.filters):
            request_logger.addFilter(RedactCallbackSecrets())
