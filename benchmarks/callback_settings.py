"""Settings of the gunicorn that receives callbacks in the ``callbacks`` scenario.

The benchmark's settings, deployed as docs/deployment.rst says: persistent
connections with health checks (``CLICKATELL_BENCH_CONN_MAX_AGE`` overrides, to
measure Django's default 0), ``DEBUG`` off, a legacy account (the default) with
callback credentials and a One API account with its ``CALLBACK_SECRET``.
"""

import os

from benchmarks import settings
from benchmarks.settings import *  # noqa: F403
from benchmarks.settings import CLICKATELL

# (mypy reads the test settings' DATABASES as holding text only)
DATABASES = {
    "default": {
        **settings.DATABASES["default"],
        "CONN_MAX_AGE": int(os.environ.get("CLICKATELL_BENCH_CONN_MAX_AGE", "600")),  # type: ignore[dict-item]
        "CONN_HEALTH_CHECKS": True,  # type: ignore[dict-item]
    }
}

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "tests.urls"

#: The credentials the driver presents (not secrets: a benchmark's throwaway values).
CALLBACK_USER = "bench-cb"
CALLBACK_PASSWORD = "bench-callback-password"
CALLBACK_SECRET = "benchSecret_0123456789abcdefghijKLMNOP"
ONE_API_ACCOUNT = "platform"

CLICKATELL = {
    **CLICKATELL,
    "CALLBACK_USERNAME": CALLBACK_USER,
    "CALLBACK_PASSWORD": CALLBACK_PASSWORD,
    "ACCOUNTS": {
        ONE_API_ACCOUNT: {
            "BACKEND": "one_api",
            "API_KEY": "bench-api-key",
            "CALLBACK_SECRET": CALLBACK_SECRET,
        }
    },
}
