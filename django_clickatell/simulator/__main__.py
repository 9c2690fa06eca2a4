"""``python -m django_clickatell.simulator`` runs the simulator in the foreground.

On start it prints, per API, the ``CLICKATELL`` settings that point a project
at it -- what a new user pastes into settings -- and where it pushes status
callbacks.  ``--help`` lists every option and every environment variable.
Secrets (the password and the API keys) are read from the environment only,
never from the command line (``ps`` shows that), and are printed only while
they are the simulator's public demo defaults.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from types import FrameType

from .server import ClickatellSimulator


@dataclass(frozen=True)
class Variable:
    """An environment variable the simulator reads, with its default and what it is."""

    name: str
    default: str
    help: str
    secret: bool = False


USERNAME = Variable("CLICKATELL_USERNAME", "demo", "legacy HTTP API user (USERNAME)")
PASSWORD = Variable(
    "CLICKATELL_PASSWORD", "demo-password", "legacy HTTP API password (PASSWORD)", True
)
API_ID = Variable("CLICKATELL_API_ID", "1234567", "legacy HTTP API product id (API_ID)")
ONE_API_KEY = Variable(
    "CLICKATELL_ONE_API_KEY", "demo-one-api-key", "One API key (API_KEY, BACKEND one_api)", True
)
REST_API_KEY = Variable(
    "CLICKATELL_REST_API_KEY",
    "demo-rest-api-key",
    "legacy REST API key (API_KEY, BACKEND rest)",
    True,
)
CALLBACK_URL = Variable(
    "CLICKATELL_CALLBACK_URL",
    "",
    "where legacy status callbacks are pushed (your /clickatell/callback/ URL); none if empty",
)
CALLBACK_USERNAME = Variable(
    "CLICKATELL_CALLBACK_USERNAME", "", "HTTP Basic user sent with legacy callbacks"
)
CALLBACK_PASSWORD = Variable(
    "CLICKATELL_CALLBACK_PASSWORD", "", "HTTP Basic password sent with legacy callbacks", True
)
ONE_API_CALLBACK_URL = Variable(
    "CLICKATELL_ONE_API_CALLBACK_URL",
    "",
    "where One API (JSON) status callbacks are pushed (your one-api/<account>/<secret>/ URL)",
)
VARIABLES = (
    USERNAME,
    PASSWORD,
    API_ID,
    ONE_API_KEY,
    REST_API_KEY,
    CALLBACK_URL,
    CALLBACK_USERNAME,
    CALLBACK_PASSWORD,
    ONE_API_CALLBACK_URL,
)


def _environment_help() -> str:
    lines = ["environment variables (secrets are read from here only, never from options):"]
    for variable in VARIABLES:
        default = f" (default {variable.default!r})" if variable.default else ""
        lines.append(f"  {variable.name:<33} {variable.help}{default}")
    return "\n".join(lines)


def parser() -> argparse.ArgumentParser:
    arguments = argparse.ArgumentParser(
        prog="python -m django_clickatell.simulator",
        description="A local Clickatell gateway speaking the legacy HTTP API (/http/), the "
        "legacy REST API (/rest/) and the One API (/v1/) on one message store, for "
        "development and tests. Nothing it receives reaches a phone.",
        epilog=_environment_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    env = os.environ.get
    arguments.add_argument("--host", default="127.0.0.1", help="address to listen on")
    arguments.add_argument("--port", type=int, default=8911, help="0 picks a free port")
    arguments.add_argument(
        "--username", default=env(USERNAME.name, USERNAME.default), help=USERNAME.help
    )
    arguments.add_argument("--api-id", default=env(API_ID.name, API_ID.default), help=API_ID.help)
    arguments.add_argument(
        "--latency-ms", type=float, default=0.0, help="delay before every answer"
    )
    arguments.add_argument(
        "--session-idle-timeout",
        type=float,
        default=900.0,
        help="seconds an idle legacy session lives (Clickatell: 15 minutes)",
    )
    arguments.add_argument(
        "--callback-url", default=env(CALLBACK_URL.name) or None, help=CALLBACK_URL.help
    )
    arguments.add_argument(
        "--callback-username",
        default=env(CALLBACK_USERNAME.name) or None,
        help=CALLBACK_USERNAME.help + f" (its password: ${CALLBACK_PASSWORD.name})",
    )
    arguments.add_argument(
        "--callback-method",
        choices=("GET", "POST"),
        default="POST",
        help="how legacy callbacks are pushed, as set up in the Clickatell account",
    )
    arguments.add_argument(
        "--one-api-callback-url",
        default=env(ONE_API_CALLBACK_URL.name) or None,
        help=ONE_API_CALLBACK_URL.help,
    )
    arguments.add_argument("--certfile", help="serve https with this certificate")
    arguments.add_argument("--keyfile", help="the certificate's key")
    return arguments


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    env = os.environ.get
    callback_user = args.callback_username or ""
    callback_auth = (callback_user, env(CALLBACK_PASSWORD.name, "")) if callback_user else None
    simulator = ClickatellSimulator(
        args.host,
        args.port,
        username=args.username,
        password=env(PASSWORD.name, PASSWORD.default),
        api_id=args.api_id,
        latency=args.latency_ms / 1000,
        session_idle_timeout=args.session_idle_timeout,
        certfile=args.certfile,
        keyfile=args.keyfile,
        api_token=env(REST_API_KEY.name, REST_API_KEY.default),
        callback_url=args.callback_url,
        callback_auth=callback_auth,
        callback_method=args.callback_method,
    )
    simulator.one_api.api_key = env(ONE_API_KEY.name, ONE_API_KEY.default)
    simulator.one_api.callback_url = args.one_api_callback_url

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(f"Clickatell simulator listening on {simulator.base_url}", flush=True)
    print(banner(simulator, os.environ), flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        simulator.serve_forever()
    return 0


def banner(simulator: ClickatellSimulator, environ: Mapping[str, str]) -> str:
    """What to paste into settings for each API, and where callbacks go."""

    def value(variable: Variable) -> str:
        """A secret as the code that reads it, unless it is the public demo default."""
        given = environ.get(variable.name)
        if variable.secret and given is not None and given != variable.default:
            return f'os.environ["{variable.name}"]'
        return json.dumps(given if given is not None else variable.default)

    def entry(fields: dict[str, str]) -> str:
        return "{" + ", ".join(f'"{key}": {code}' for key, code in fields.items()) + "}"

    one_api = {
        "BACKEND": '"one_api"',
        "BASE_URL": json.dumps(simulator.root_url),
        "API_KEY": value(ONE_API_KEY),
    }
    legacy = {
        "BASE_URL": json.dumps(simulator.base_url),
        "USERNAME": json.dumps(simulator.username),
        "PASSWORD": value(PASSWORD),
        "API_ID": json.dumps(simulator.api_id),
    }
    rest = {
        "BACKEND": '"rest"',
        "BASE_URL": json.dumps(simulator.rest_url),
        "API_KEY": value(REST_API_KEY),
    }
    legacy_callbacks = simulator.callback_url or f"none (--callback-url or ${CALLBACK_URL.name})"
    json_callbacks = _without_secret(simulator.one_api.callback_url) or (
        f"none (--one-api-callback-url or ${ONE_API_CALLBACK_URL.name})"
    )
    return "\n".join(
        [
            'Settings for CLICKATELL (or an account in CLICKATELL["ACCOUNTS"]):',
            f"  One API (accounts opened since about 2016): {entry(one_api)}",
            f"  Legacy HTTP API: {entry(legacy)}",
            f"  Legacy REST API: {entry(rest)}",
            f"Status callbacks: legacy to {legacy_callbacks}; One API to {json_callbacks}",
        ]
    )


def _without_secret(url: str | None) -> str | None:
    """A One API callback URL ends in the account's callback secret: never printed."""
    if not url:
        return url
    head, _, _ = url.rstrip("/").rpartition("/")
    return f"{head}/<secret>/"


if __name__ == "__main__":
    sys.exit(main())
