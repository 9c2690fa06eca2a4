"""A path that carries a callback secret is never written to a log or a page (issue 19, 5).

A One API callback URL carries its account's ``CALLBACK_SECRET``.  The view already
kept Django's request log off its own answers; but a path no route matched -- a
secret with a ``/`` (ordinary base64), one longer than the route allows, a
mistyped one -- got Django's 404, logged by ``django.request`` as
"Not Found: <path>" and shown on the DEBUG 404 page, secret included.  And
``runserver``'s access log (``django.server``) writes every request line, a 200
included.  Checked here through Django's test client and through Django's own
development server over HTTP, with every record of both loggers captured.
"""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.handlers.wsgi import WSGIHandler
from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler
from django.test import Client

from tests.conftest import wait_until

#: Django's request log and runserver's access log: both write request paths.
REQUEST_LOGGERS = ("django.request", "django.server")
SECRET = "Zr8_kQ2-vN5xLp0Ws7Tu4Yb1Mc9Dh6Ef3Gj-Ka8_Pq"
#: Paths carrying a secret (or what its sender thinks is one) that no callback answers.
SECRET_PATHS = {
    "secret with a slash": "/clickatell/one-api/default/Zr8kQ2vN5x/Lp0Ws7Tu4Yb+1Mc9Dh6E==/",
    "secret over 256 characters": "/clickatell/one-api/default/" + "Lp0Ws7Tu4Yb" * 30 + "/",
    "wrong secret": "/clickatell/one-api/default/Lp0Ws7Tu4Yb1Mc9Dh6Ef3GjKa8Pq/",
    "a rotated secret, unknown account": f"/clickatell/one-api/old-platform/{SECRET}/",
    "alias no route accepts": f"/clickatell/one-api/plat.form/{SECRET}/",
    "more after the secret": f"/clickatell/one-api/default/{SECRET}/more/",
}


def secret_of(path: str) -> str:
    """The part of *path* a reader must not see: everything after the account."""
    return path.split("/one-api/", 1)[1].split("/", 1)[1].rstrip("/")


@pytest.fixture
def configured(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "CALLBACK_SECRET": SECRET}


@pytest.fixture
def request_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in REQUEST_LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record's message, arguments and request, as any handler could write them."""
    return "\n".join(
        f"{r.name} {r.getMessage()} {r.args!r} {getattr(r, 'request', '')!s}"
        for r in caplog.records
    )


def assert_unseen(secret: str, text: str) -> None:
    assert secret not in text
    for piece in secret.split("/"):  # no part of one split by a '/' either
        if len(piece) >= 8:
            assert piece not in text


@pytest.mark.parametrize("case", sorted(SECRET_PATHS))
def test_no_request_log_writes_the_path(
    client: Client, configured: None, request_logs: pytest.LogCaptureFixture, case: str
) -> None:
    path = SECRET_PATHS[case]
    response = client.post(path, "{}", content_type="application/json")
    assert response.status_code in (403, 404)
    assert request_logs.records  # the refusal is logged ...
    assert_unseen(secret_of(path), logged(request_logs))  # ... never with the path


def test_a_wrong_route_is_logged_with_its_account_not_its_path(
    client: Client, configured: None, request_logs: pytest.LogCaptureFixture
) -> None:
    path = "/clickatell/one-api/platform/Zr8kQ2vN5x/Lp0Ws7Tu4Yb1Mc9Dh6E/"
    assert client.post(path, "{}", content_type="application/json").status_code == 404
    [record] = [r for r in request_logs.records if r.name == "django_clickatell.callbacks"]
    assert record.levelno == logging.WARNING
    assert "'platform'" in record.getMessage()


@pytest.mark.parametrize("case", sorted(SECRET_PATHS))
def test_the_debug_404_page_shows_no_path(
    client: Client, configured: None, settings: Any, case: str
) -> None:
    """With DEBUG on, Django's 404 page prints the requested URL."""
    settings.DEBUG = True
    path = SECRET_PATHS[case]
    for accept in ("text/html", "text/plain"):
        response = client.post(path, "{}", content_type="application/json", HTTP_ACCEPT=accept)
        assert response.status_code in (403, 404)
        assert_unseen(secret_of(path), response.content.decode())


def test_a_secret_the_url_cannot_carry_refuses_callbacks_and_says_why(
    client: Client, settings: Any, request_logs: pytest.LogCaptureFixture
) -> None:
    """A '+' or '=' of ordinary base64 in the setting: refused (check E008 says so too),
    the log names the key, never the value."""
    secret = "Zr8+kQ2vN5xLp0Ws7Tu4Yb1Mc9Dh6Ef3GjKa8Pq=="
    settings.CLICKATELL = {**settings.CLICKATELL, "CALLBACK_SECRET": secret}
    response = client.post(f"/clickatell/one-api/default/{secret}/", "{}", "application/json")
    assert (response.status_code, response.content) == (500, b"Callback settings are invalid")
    assert "settings.CLICKATELL['CALLBACK_SECRET']" in request_logs.text
    assert_unseen(secret, logged(request_logs))


# -- runserver's access log (django.server), over HTTP ---------------------------------------


@pytest.fixture
def runserver(configured: None) -> Iterator[tuple[str, int]]:
    """Django's development server (its request handler logs every request line)."""
    server = ThreadedWSGIServer(("127.0.0.1", 0), WSGIRequestHandler, allow_reuse_address=True)
    server.set_app(WSGIHandler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    yield str(host), int(port)
    server.shutdown()
    server.server_close()
    thread.join(5)


def fetch(address: tuple[str, int], method: str, path: str) -> int:
    connection = http.client.HTTPConnection(*address, timeout=10)
    try:
        connection.request(method, path, body=b"{}", headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def test_runserver_access_log_writes_no_secret(
    runserver: tuple[str, int], request_logs: pytest.LogCaptureFixture
) -> None:
    """The right secret too: ``runserver`` logs every request line, whatever the answer."""
    right = f"/clickatell/one-api/default/{SECRET}/"
    assert fetch(runserver, "GET", right) == 405  # the secret matched; POST only
    assert fetch(runserver, "GET", right + "?x=1") == 405
    for path in SECRET_PATHS.values():
        assert fetch(runserver, "POST", path) in (403, 404)
    expected = 2 + len(SECRET_PATHS)  # each line is written just after its answer is sent

    def access() -> list[logging.LogRecord]:
        return [r for r in request_logs.records if r.name == "django.server"]

    assert wait_until(lambda: len(access()) == expected, timeout=10), len(access())
    assert all("one-api/" in r.getMessage() for r in access())  # the line is kept, redacted
    assert_unseen(SECRET, logged(request_logs))
    for path in SECRET_PATHS.values():
        assert_unseen(secret_of(path), logged(request_logs))


def test_the_filter_is_on_both_request_loggers() -> None:
    """Put there when the app starts, for every project that installs it."""
    from django_clickatell.protocol.redaction import RedactCallbackSecrets

    for name in REQUEST_LOGGERS:
        filters = logging.getLogger(name).filters
        assert [type(f) for f in filters].count(RedactCallbackSecrets) == 1


def test_the_filter_mends_a_gunicorn_access_record() -> None:
    """As documented for your own access log: gunicorn formats with a dict of atoms."""
    from django_clickatell.protocol.redaction import RedactCallbackSecrets

    atoms = {"h": "10.0.0.1", "r": f"POST /clickatell/one-api/default/{SECRET}/ HTTP/1.1"}
    record = logging.LogRecord(
        "gunicorn.access", logging.INFO, "", 0, '%(h)s "%(r)s"', (atoms,), None
    )
    assert RedactCallbackSecrets().filter(record)
    assert record.getMessage() == '10.0.0.1 "POST /clickatell/one-api/default/[secret] HTTP/1.1"'
