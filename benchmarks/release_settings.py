"""Settings of the release benchmark (:mod:`benchmarks.release_lag`): the benchmark's own,
with the default account on the One API (the simulator's), so every scheduled message is
held in Django and handed over by the release loop."""

import os

from benchmarks.settings import *  # noqa: F403
from benchmarks.settings import CLICKATELL as _BENCH

CLICKATELL = {
    **_BENCH,
    "BACKEND": "one_api",
    "API_KEY": os.environ.get("CLICKATELL_BENCH_ONE_API_KEY", "demo-one-api-key"),
    "BASE_URL": os.environ.get("CLICKATELL_BENCH_ROOT_URL", "http://127.0.0.1:9/"),
}
for _option, _variable in (
    ("SEND_BATCH_SIZE", "CLICKATELL_BENCH_BATCH"),
    ("TASK_CHUNK_SIZE", "CLICKATELL_BENCH_TASK_CHUNK"),
):
    if os.environ.get(_variable):
        CLICKATELL[_option] = int(os.environ[_variable])
