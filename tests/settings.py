"""Settings for the test suite: real PostgreSQL and Redis unless told otherwise.

``CLICKATELL_TEST_DB=sqlite`` runs the suite on SQLite instead.  Celery worker
processes started by the tests import these same settings, with the test
database name and the simulator URL passed in the environment.
"""

from __future__ import annotations

import json
import os

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_clickatell",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
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
STATIC_URL = "/static/"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

_DB = os.environ.get("CLICKATELL_TEST_DB", "postgresql")
if _DB == "sqlite":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("CLICKATELL_TEST_DB_NAME", "test-clickatell.sqlite3"),
            "TEST": {"NAME": os.environ.get("CLICKATELL_TEST_DB_NAME", "test-clickatell.sqlite3")},
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "NAME": os.environ.get("CLICKATELL_TEST_DB_NAME", "test"),
            # Worker processes started by tests connect to the test database itself.
            # CLICKATELL_TEST_PG_TEST_NAME gives each developer sharing a server a database of
            # their own (the worker processes then get it as CLICKATELL_TEST_DB_NAME).
            "TEST": {
                "NAME": os.environ.get(
                    "CLICKATELL_TEST_DB_NAME",
                    os.environ.get("CLICKATELL_TEST_PG_TEST_NAME", "test_django_clickatell"),
                )
            },
        }
    }

REDIS_URL = os.environ.get("CLICKATELL_TEST_REDIS", "redis://127.0.0.1:6379")
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("CLICKATELL_TEST_CACHE_URL", f"{REDIS_URL}/14"),
        "KEY_PREFIX": os.environ.get("CLICKATELL_TEST_CACHE_PREFIX", "tests"),
    }
}


def _seconds_from_env(name: str) -> float | None:
    """A lease or timeout a test process is started with; unset keeps the package default."""
    value = os.environ.get(name)
    return float(value) if value else None


# Short timeouts (the fault matrix) need short leases to match: CLAIM_TIMEOUT must cover
# 2 x (2 x (AUTH_WAIT_TIMEOUT + 0.2 + connect + read) + 2 x (connect + read)) and
# AUTH_LOCK_TIMEOUT 1.5 x (connect + read); see django_clickatell.conf.
CLICKATELL = {
    "USERNAME": "demo",
    "PASSWORD": "demo-password",
    "API_ID": "1234567",
    "BASE_URL": os.environ.get("CLICKATELL_TEST_BASE_URL", "http://127.0.0.1:9/http/"),
    "TIMEOUT": (
        float(os.environ.get("CLICKATELL_TEST_CONNECT_TIMEOUT", "2.0")),
        float(os.environ.get("CLICKATELL_TEST_READ_TIMEOUT", "5.0")),
    ),
    "TASK_RETRY_BACKOFF": 0.2,
    "TASK_RETRY_BACKOFF_MAX": 1.0,
    "CLAIM_TIMEOUT": int(os.environ.get("CLICKATELL_TEST_CLAIM_TIMEOUT", "300")),
    "AUTH_LOCK_TIMEOUT": _seconds_from_env("CLICKATELL_TEST_AUTH_LOCK"),
    "AUTH_WAIT_TIMEOUT": _seconds_from_env("CLICKATELL_TEST_AUTH_WAIT"),
    "SESSION_MEMO_SECONDS": float(os.environ.get("CLICKATELL_TEST_SESSION_MEMO", "5")),
    "MAX_IN_FLIGHT": int(os.environ.get("CLICKATELL_TEST_MAX_IN_FLIGHT", "8")),
}
# A worker process for another backend or for several accounts (tests/test_every_backend*.py):
# a JSON object merged into CLICKATELL, e.g. {"BACKEND": "rest", "API_KEY": ..., "ACCOUNTS": ...}.
CLICKATELL.update(json.loads(os.environ.get("CLICKATELL_TEST_EXTRA_SETTINGS") or "{}"))

CELERY_BROKER_URL = os.environ.get("CLICKATELL_TEST_BROKER", f"{REDIS_URL}/15")
CELERY_TASK_ALWAYS_EAGER = False
# Workers started for one purpose (the fault matrix) consume a queue of their own.
CELERY_TASK_DEFAULT_QUEUE = os.environ.get("CLICKATELL_TEST_QUEUE", "celery")
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# As a project's: the release loop is scheduled (check W007), though no test runs beat.
CELERY_BEAT_SCHEDULE = {
    "clickatell-release": {"task": "django_clickatell.release_due_messages", "schedule": 30.0},
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"null": {"class": "logging.NullHandler"}},
    "loggers": {"django_clickatell": {"level": "DEBUG", "handlers": ["null"]}},
}
