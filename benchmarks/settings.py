"""Benchmark settings: the test settings on their own PostgreSQL database and Redis DBs."""

import json
import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
        "USER": os.environ.get("PGUSER", "postgres"),
        "NAME": os.environ.get("CLICKATELL_BENCH_DB", "bench_django_clickatell"),
    }
}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("CLICKATELL_BENCH_CACHE_URL", "redis://127.0.0.1:6379/12"),
        "KEY_PREFIX": "bench",
    }
}
CELERY_BROKER_URL = os.environ.get("CLICKATELL_BENCH_BROKER", "redis://127.0.0.1:6379/13")
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
_BASE_URL = os.environ.get("CLICKATELL_BENCH_BASE_URL", "http://127.0.0.1:9/http/")
CLICKATELL = {
    "USERNAME": "demo",
    "PASSWORD": "demo-password",
    "API_ID": "1234567",
    "BASE_URL": _BASE_URL,
    "TIMEOUT": (5.0, 30.0),
}
# The bulk path's knobs, set per scenario by run.py for its worker processes; unset, the
# package's defaults apply (so the benchmark measures what an installation gets).
for _option, _variable in (
    ("MAX_IN_FLIGHT", "CLICKATELL_BENCH_MAX_IN_FLIGHT"),
    ("CANCEL_CHUNK_SIZE", "CLICKATELL_BENCH_CHUNK"),
    ("TASK_CHUNK_SIZE", "CLICKATELL_BENCH_SEND_CHUNK"),
):
    if os.environ.get(_variable):
        CLICKATELL[_option] = int(os.environ[_variable])
#: The One API account the ``release`` scenario holds its messages on (benchmarks/sending.py):
#: the simulator serves the One API at its root, with its default key.
ONE_API_ACCOUNT = "platform"
CLICKATELL["ACCOUNTS"] = {
    ONE_API_ACCOUNT: {
        "BACKEND": "one_api",
        "API_KEY": os.environ.get("CLICKATELL_ONE_API_KEY", "demo-one-api-key"),
        "BASE_URL": _BASE_URL.removesuffix("http/"),
    }
}
# Any other option, for trying one without editing this file (a JSON object merged into
# CLICKATELL, e.g. '{"ONE_API_BATCH_SIZE": 100}'): what a run used is printed with it.
CLICKATELL.update(json.loads(os.environ.get("CLICKATELL_BENCH_SETTINGS") or "{}"))
LOGGING = {"version": 1, "disable_existing_loggers": False}
