"""``python -m django_clickatell.simulator --port 8911`` runs the simulator in the foreground."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from types import FrameType

from .server import ClickatellSimulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A local Clickatell HTTP API simulator.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8911)
    parser.add_argument("--username", default=os.environ.get("CLICKATELL_USERNAME", "demo"))
    parser.add_argument("--api-id", default=os.environ.get("CLICKATELL_API_ID", "1234567"))
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--session-idle-timeout", type=float, default=900.0)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    args = parser.parse_args(argv)
    # The password and the REST API key come from the environment only: never from a
    # command line (ps shows it).
    password = os.environ.get("CLICKATELL_PASSWORD", "demo-password")
    api_token = os.environ.get("CLICKATELL_API_KEY", "demo-rest-api-key")
    simulator = ClickatellSimulator(
        args.host,
        args.port,
        username=args.username,
        password=password,
        api_id=args.api_id,
        latency=args.latency_ms / 1000,
        session_idle_timeout=args.session_idle_timeout,
        certfile=args.certfile,
        keyfile=args.keyfile,
        api_token=api_token,
    )

    # The One API's key, like the password, from the environment only.
    simulator.one_api.api_key = os.environ.get("CLICKATELL_ONE_API_KEY", simulator.one_api.api_key)
    simulator.one_api.callback_url = os.environ.get("CLICKATELL_ONE_API_CALLBACK_URL") or None

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"Clickatell simulator listening on {simulator.base_url}", flush=True)
    print(f"Legacy REST API on {simulator.rest_url}", flush=True)
    print(f"One API (BACKEND one_api) at {simulator.root_url}v1/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        simulator.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
