"""Reading what ``python -m django_clickatell.simulator`` prints on start."""

from __future__ import annotations

import re
from typing import IO

_BASE_URL = re.compile(r'"BASE_URL": "([^"]+)"')


def base_url_printed_for(stdout: IO[str], api: str) -> str:
    """The ``BASE_URL`` the start-up banner gives for *api* (the start of its line)."""
    for _ in range(20):
        line = stdout.readline()
        if api in line:
            found = _BASE_URL.search(line)
            assert found, line
            return found.group(1)
    raise AssertionError(f"no line for {api!r} in the simulator's banner")
