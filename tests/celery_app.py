"""The Celery app real worker processes in the tests run (``celery -A tests.celery_app worker``)."""

import os

import django
from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
django.setup()

app = Celery("django_clickatell_tests")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["django_clickatell"])
