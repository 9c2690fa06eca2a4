"""Settings for the django-clickatell example project.

Secrets come from the environment (see ``.env.example``).  Without any
environment it runs on SQLite, with eager Celery and the bundled Clickatell
simulator, so ``make demo`` works on a fresh clone.  ``DEBUG`` is off unless
``DJANGO_DEBUG=1``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

BASE_DIR = Path(__file__).resolve().parent.parent
env = os.environ.get

SECRET_KEY = env("DJANGO_SECRET_KEY", "example-project-not-secret")
# Off unless asked for with DJANGO_DEBUG=1: Django's debug pages show settings, SQL and every
# frame's local variables to whoever triggers an error. (runserver serves the admin's static
# files only with DEBUG on, or with --insecure.)
DEBUG = env("DJANGO_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "example_project.urls"
WSGI_APPLICATION = "example_project.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_clickatell",
    "demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]


def database_from_url(url: str) -> dict[str, Any]:
    """``postgres://user:password@host:port/name`` -> a DATABASES entry."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"DATABASE_URL must be a postgres:// URL, got scheme {parts.scheme!r}")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": unquote(parts.path.lstrip("/")),
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
    }


DATABASES = {
    "default": database_from_url(env("DATABASE_URL", ""))
    if env("DATABASE_URL")
    else {"ENGINE": "django.db.backends.sqlite3", "NAME": BASE_DIR / "example.sqlite3"}
}

REDIS_URL = env("REDIS_URL")
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    # One process only (eager Celery): a local cache is enough, and the check says so.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    SILENCED_SYSTEM_CHECKS = ["django_clickatell.W001"]

CLICKATELL = {
    "USERNAME": env("CLICKATELL_USERNAME", "demo"),
    "PASSWORD": env("CLICKATELL_PASSWORD", "demo-password"),
    "API_ID": env("CLICKATELL_API_ID", "1234567"),
    # Unset: the demo starts the bundled simulator and points this at it.
    "BASE_URL": env("CLICKATELL_BASE_URL", "http://127.0.0.1:8911/http/"),
    # HTTP Basic credentials set for status callbacks in the Clickatell account.
    "CALLBACK_USERNAME": env("CLICKATELL_CALLBACK_USERNAME", "clickatell"),
    "CALLBACK_PASSWORD": env("CLICKATELL_CALLBACK_PASSWORD", "demo-callback-password"),
    # A second account, of the kind opened since about 2016: the One API, an API key, no
    # stop call -- its scheduled messages are held here until due.  Its callback URL is
    # /clickatell/one-api/platform/<CALLBACK_SECRET>/.
    "ACCOUNTS": {
        "platform": {
            "BACKEND": "one_api",
            "API_KEY": env("CLICKATELL_ONE_API_KEY", "demo-one-api-key"),
            "BASE_URL": env("CLICKATELL_ONE_API_URL", "http://127.0.0.1:8911/"),
            # URL-safe, at least 32 characters (check W008): secrets.token_urlsafe(32).
            "CALLBACK_SECRET": env(
                "CLICKATELL_CALLBACK_SECRET", "demo-callback-secret-0123456789-Xy"
            ),
        }
    },
}

CELERY_BROKER_URL = env("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE = {
    # Clickatell drops an idle session after 15 minutes.
    "clickatell-ping": {"task": "django_clickatell.ping", "schedule": 600.0},
    "clickatell-requeue": {"task": "django_clickatell.requeue_stalled_work", "schedule": 300.0},
    "clickatell-refresh": {"task": "django_clickatell.refresh_statuses", "schedule": 900.0},
    # The "platform" account (One API) cannot schedule: its scheduled messages are held
    # here and handed over when due by this task (check W008 asks for it).
    "clickatell-release": {"task": "django_clickatell.release_due_messages", "schedule": 30.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django_clickatell": {"handlers": ["console"], "level": env("LOG_LEVEL", "WARNING")}
    },
}
