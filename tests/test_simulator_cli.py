"""The simulator teaches its own use (issue 21): ``--help`` lists every option and
environment variable, the start-up banner gives each API's settings to paste, a legacy
callback URL can be set, and a wrong path says which ``BASE_URL`` is right."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from django_clickatell.simulator import ClickatellSimulator
from django_clickatell.simulator.__main__ import VARIABLES, banner, parser
from tests.conftest import wait_until

SIMULATOR = [sys.executable, "-m", "django_clickatell.simulator"]


def test_help_lists_every_option_and_environment_variable() -> None:
    out = subprocess.run([*SIMULATOR, "--help"], capture_output=True, text=True, check=True)
    for variable in VARIABLES:
        assert variable.name in out.stdout
    for action in parser()._actions:
        for option in action.option_strings:
            assert option in out.stdout
    assert "/v1/" in out.stdout  # it says it speaks the One API too


class TestBanner:
    @pytest.fixture
    def sim(self) -> Iterator[ClickatellSimulator]:
        with ClickatellSimulator() as sim:
            yield sim

    def test_each_api_with_the_demo_credentials(self, sim: ClickatellSimulator) -> None:
        text = banner(sim, {})
        one_api, legacy, rest = text.splitlines()[1:4]
        assert f'"BACKEND": "one_api", "BASE_URL": "{sim.root_url}"' in one_api
        assert '"API_KEY": "demo-one-api-key"' in one_api
        assert f'"BASE_URL": "{sim.base_url}"' in legacy
        assert '"PASSWORD": "demo-password"' in legacy
        assert '"API_ID": "1234567"' in legacy
        assert f'"BACKEND": "rest", "BASE_URL": "{sim.rest_url}"' in rest

    def test_secrets_from_the_environment_are_named_never_printed(
        self, sim: ClickatellSimulator
    ) -> None:
        environ = {
            "CLICKATELL_PASSWORD": "s3cret-pass",
            "CLICKATELL_ONE_API_KEY": "s3cret-key",
            "CLICKATELL_REST_API_KEY": "s3cret-rest",
        }
        text = banner(sim, environ)
        assert "s3cret" not in text
        for name in environ:
            assert f'os.environ["{name}"]' in text

    def test_the_one_api_callback_secret_is_not_printed(self, sim: ClickatellSimulator) -> None:
        sim.one_api.callback_url = "http://127.0.0.1:8000/clickatell/one-api/default/Sup3rSecret/"
        text = banner(sim, {})
        assert "Sup3rSecret" not in text
        assert "one-api/default/<secret>/" in text


def _start(extra_env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*SIMULATOR, "--port", "0", *args],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, **extra_env},
    )


def _stop(process: subprocess.Popen[str]) -> None:
    process.terminate()
    assert process.wait(timeout=10) == 0
    if process.stdout is not None:
        process.stdout.close()


def _banner_of(process: subprocess.Popen[str]) -> list[str]:
    assert process.stdout is not None
    lines: list[str] = []
    while not lines or not lines[-1].startswith("Status callbacks"):
        lines.append(process.stdout.readline())
        assert len(lines) < 20, lines
    return lines


def test_a_legacy_callback_url_can_be_set(receiver: Any) -> None:
    url, received = receiver
    process = _start(
        {"CLICKATELL_CALLBACK_USERNAME": "cb", "CLICKATELL_CALLBACK_PASSWORD": "cb-pass"},
        "--callback-url",
        url,
    )
    try:
        lines = _banner_of(process)
        assert f"legacy to {url}" in lines[-1]
        base = lines[0].rsplit(" ", 1)[1].strip()
        sid = requests.post(
            base + "auth",
            data={"user": "demo", "password": "demo-password", "api_id": "1234567"},
            timeout=5,
        ).text.removeprefix("OK: ")
        reply = requests.post(
            base + "sendmsg",
            data={"session_id": sid, "to": "27831234567", "text": "hi", "callback": "3"},
            timeout=5,
        ).text
        assert reply.startswith("ID: ")
        wait_until(lambda: received, timeout=10)
        fields, authorization = received[0]
        assert fields["apiMsgId"] == reply.removeprefix("ID: ").strip()
        assert authorization.startswith("Basic ")
    finally:
        _stop(process)


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[tuple[dict[str, str], str]]]]:
    """A tiny HTTP server standing in for the project's callback view."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from urllib.parse import parse_qsl

    received: list[tuple[dict[str, str], str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
            received.append((dict(parse_qsl(body)), self.headers.get("Authorization", "")))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/clickatell/callback/", received
    finally:
        server.shutdown()
        server.server_close()


class TestAWrongPathSaysWhichBaseUrlIsRight:
    @pytest.fixture
    def sim(self) -> Iterator[ClickatellSimulator]:
        with ClickatellSimulator() as sim:
            yield sim

    def _get(self, url: str, **headers: str) -> tuple[int, str]:
        request = urllib.request.Request(url, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def test_the_one_api_under_v1_twice(self, sim: ClickatellSimulator) -> None:
        status, body = self._get(sim.root_url + "v1/v1/balance", Authorization="demo-one-api-key")
        assert status == 404
        assert f"BASE_URL should be {sim.root_url}" in json.loads(body)["error"]["description"]

    def test_rest_under_a_wrong_prefix(self, sim: ClickatellSimulator) -> None:
        status, body = self._get(sim.rest_url + "rest/account/balance")
        assert status == 404
        assert f"BASE_URL should be {sim.rest_url}" in json.loads(body)["error"]["description"]

    def test_no_api_at_all(self, sim: ClickatellSimulator) -> None:
        status, body = self._get(sim.root_url + "api/")
        assert status == 404
        assert sim.base_url in body
        assert sim.root_url in body
