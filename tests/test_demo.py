"""``make demo`` runs: a legacy and a One API account side by side, each outcome as promised.

The demo checks its own outcomes (it exits non-zero when a message ends other
than planned); this runs it as a user would, in a fresh process on the example
project's own settings (SQLite, eager Celery, the embedded simulator).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_make_demo_shows_both_accounts_side_by_side(tmp_path: Path) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("CLICKATELL_", "DJANGO_", "DATABASE_URL", "REDIS_URL", "CELERY_"))
    }
    # The example project keeps its SQLite file beside manage.py; run on a copy of nothing.
    env["HOME"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, str(ROOT / "example_project" / "manage.py"), "clickatell_demo"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "stopped at Clickatell (006)" in output
    assert output.count("stopped here, never sent") == 3
    assert output.count("too late") >= 2
    for secret in ("demo-password", "demo-one-api-key", "demo-callback-secret"):
        assert secret not in output
