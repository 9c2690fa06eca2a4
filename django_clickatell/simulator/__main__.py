"""``python -m django_clickatell.simulator --port 8911`` runs the simulator in the foreground."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from types import FrameType

from .server import ClickatellSimulator

#: Shown by ``--help``: what is read from the environment (secrets only from there: a
#: command line is visible to every user of the machine).
ENVIRONMENT = """\
environment variables:
  CLICKATELL_USERNAME           --username's default (demo)
  CLICKATELL_API_ID             --api-id's default (1234567)
  CLICKATELL_PASSWORD           the legacy account's API password (demo-password)
  CLICKATELL_API_KEY            the legacy REST API's key (demo-rest-api-key)
  CLICKATELL_ONE_API_KEY        the One API's key (demo-one-api-key)
  CLICKATELL_ONE_API_CALLBACK_URL
                                where One API JSON callbacks go (none)
  CLICKATELL_CALLBACK_URL       --callback-url's default (none)
  CLICKATELL_CALLBACK_USERNAME  --callback-username's default (clickatell)
  CLICKATELL_CALLBACK_PASSWORD  the HTTP Basic password of legacy callbacks (none: no
                                Authorization header)

One simulator is one legacy account (one --api-id).  For several legacy accounts,
run one simulator per account, each on its own --port with its own --api-id and
callback credentials; each account's BASE_URL points at its simulator and all of
them push to the same <prefix>/callback/, which routes by api_id.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="A local Clickatell simulator: the legacy HTTP API, the legacy REST API "
        "and the One API, with their status callbacks.",
        epilog=ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8911)
    parser.add_argument("--username", default=os.environ.get("CLICKATELL_USERNAME", "demo"))
    parser.add_argument("--api-id", default=os.environ.get("CLICKATELL_API_ID", "1234567"))
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--session-idle-timeout", type=float, default=900.0)
    parser.add_argument("--certfile")
    parser.add_argument("--keyfile")
    parser.add_argument(
        "--callback-url",
        default=os.environ.get("CLICKATELL_CALLBACK_URL") or None,
        help="push the legacy account's status callbacks (of messages sent asking for "
        "them) to this URL, e.g. http://127.0.0.1:8000/clickatell/callback/ "
        "(default: $CLICKATELL_CALLBACK_URL; none)",
    )
    parser.add_argument(
        "--callback-username",
        default=os.environ.get("CLICKATELL_CALLBACK_USERNAME", "clickatell"),
        help="HTTP Basic user of those callbacks, with $CLICKATELL_CALLBACK_PASSWORD "
        "(default: $CLICKATELL_CALLBACK_USERNAME or clickatell)",
    )
    args = parser.parse_args(argv)
    callback_password = os.environ.get("CLICKATELL_CALLBACK_PASSWORD", "")
    if args.callback_url and not args.callback_url.startswith(("http://", "https://")):
        parser.error("--callback-url must be an http(s) URL")
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
        callback_url=args.callback_url,
        callback_auth=(args.callback_username, callback_password) if callback_password else None,
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
    if args.callback_url:
        print(
            f"Legacy status callbacks (api_id {args.api_id}) pushed to {args.callback_url}",
            flush=True,
        )
    with contextlib.suppress(KeyboardInterrupt):
        simulator.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
