"""No secret on Django's error pages (issue 11, item 7).

With ``DEBUG = True`` the technical 500 page shows every frame's local variables for
the whole ``__cause__``/``__context__`` chain, library frames included -- and Django's
``sensitive_variables`` filter is *off* when ``DEBUG`` is on.  Failures are forced
inside ``auth`` and inside commands against the simulator, raised through a real view,
and the HTML and plain-text pages are scanned for the password and every session id the
simulator issued.  The e-mail report (``DEBUG = False``) is scanned the same way.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from django.views.debug import ExceptionReporter

from django_clickatell.exceptions import ClickatellError
from django_clickatell.gateway.client import ClickatellClient
from django_clickatell.gateway.session import forget_local_sessions
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import PASSWORD

MSG_FIELDS = {"to": "27999000001", "text": "hello"}

#: The failing call the next request runs (set by the test, outside the traceback).
_pending: list[Callable[[], object]] = []


def fail(request: HttpRequest) -> HttpResponse:
    _pending.pop()()
    return HttpResponse("no failure")  # pragma: no cover


def email_report(request: HttpRequest) -> HttpResponse:
    """What AdminEmailHandler would mail (DEBUG off): the filtered technical report."""
    try:
        _pending.pop()()
    except ClickatellError:
        exc_type, exc_value, traceback = sys.exc_info()
        reporter = ExceptionReporter(request, exc_type, exc_value, traceback, is_email=True)
        return HttpResponse(reporter.get_traceback_html() + reporter.get_traceback_text())
    return HttpResponse("no failure")  # pragma: no cover


urlpatterns = [path("fail/", fail), path("report/", email_report)]


@pytest.fixture
def debug_page(simulator: ClickatellSimulator, settings: Any) -> Iterator[ClickatellSimulator]:
    settings.DEBUG = True
    settings.CLICKATELL = {**settings.CLICKATELL, "TIMEOUT": (1.0, 0.5)}
    _pending.clear()
    yield simulator
    _pending.clear()


def with_session(simulator: ClickatellSimulator) -> str:
    """Open a session (so commands reach the gateway) and return its id."""
    ClickatellClient().ping()
    return simulator.issued_session_ids[-1]


def without_session(simulator: ClickatellSimulator) -> None:
    cache.clear()
    forget_local_sessions()
    simulator.expire_sessions()


def delmsg(apimsgid: str) -> Callable[[], object]:
    return lambda: ClickatellClient().delmsg(apimsgid=apimsgid)


def prepare(name: str, simulator: ClickatellSimulator) -> Callable[[], object]:
    """Inject the fault of scenario *name*; return the call that will meet it."""
    apimsgid = simulator.add_message()
    issued = with_session(simulator)  # commands reach the gateway; one id to look for
    if name.startswith("auth_"):
        without_session(simulator)
    if name == "auth_transport_error":
        simulator.inject("reset", command="auth")
        return delmsg(apimsgid)
    if name == "auth_timeout":
        simulator.inject("delay", command="auth", delay=1.0)
        return delmsg(apimsgid)
    if name == "auth_protocol_error_echoing_secrets":
        simulator.inject("body", command="auth", body=f"OK: {issued} password={PASSWORD} user=demo")
        return delmsg(apimsgid)
    if name == "auth_refused":
        simulator.inject("body", command="auth", body="ERR: 001, Authentication failed")
        return lambda: ClickatellClient().auth()
    if name == "renewal_transport_error":
        simulator.expire_sessions()  # the memoised id gets ERR 003; its renewal fails
        simulator.inject("reset", command="auth")
        return delmsg(apimsgid)
    if name == "delmsg_transport_error":
        simulator.inject("reset", command="delmsg")
        return delmsg(apimsgid)
    if name == "delmsg_timeout":
        simulator.inject("delay", command="delmsg", delay=1.0)
        return delmsg(apimsgid)
    if name == "delmsg_reply_echoing_secrets":
        simulator.inject(
            "body", command="delmsg", body=f"OK: {issued} session_id={issued} pwd={PASSWORD}"
        )
        return delmsg(apimsgid)
    if name == "sendmsg_http_error":
        simulator.inject("http_502", command="sendmsg")
        return lambda: ClickatellClient().sendmsg(dict(MSG_FIELDS))
    if name == "sendmsg_reset":
        simulator.inject("reset", command="sendmsg")
        return lambda: ClickatellClient().sendmsg(dict(MSG_FIELDS))
    if name == "session_refused_twice":
        simulator.inject("expire_session", command="delmsg", times=2)
        return delmsg(apimsgid)
    raise AssertionError(name)


SCENARIOS = [
    ("auth_transport_error", "CommandNotSent"),
    ("auth_timeout", "CommandNotSent"),
    ("auth_protocol_error_echoing_secrets", "CommandNotSent"),
    ("auth_refused", "AuthenticationError"),
    ("renewal_transport_error", "CommandNotSent"),
    ("delmsg_transport_error", "GatewayUnreachable"),
    ("delmsg_timeout", "GatewayTimeout"),
    ("delmsg_reply_echoing_secrets", "ProtocolError"),
    # A 502: the GatewayHTTPError of a server error, one type on every API.
    ("sendmsg_http_error", "GatewayServerError"),
    ("sendmsg_reset", "GatewayUnreachable"),
    ("session_refused_twice", "CommandNotSent"),
]


def secrets_in(text: str, simulator: ClickatellSimulator) -> list[str]:
    secrets = [PASSWORD, *simulator.issued_session_ids]
    return sorted({secret for secret in secrets if secret in text})


@pytest.mark.urls("tests.test_debug_page")
@pytest.mark.parametrize(("scenario", "error"), SCENARIOS)
@pytest.mark.parametrize("accept", ["text/html", "text/plain"])
def test_technical_500_page_shows_no_secret(
    debug_page: ClickatellSimulator, scenario: str, error: str, accept: str
) -> None:
    _pending.append(prepare(scenario, debug_page))
    response = Client(raise_request_exception=False).get("/fail/", HTTP_ACCEPT=accept)
    page = response.content.decode()
    assert response.status_code == 500
    assert error in page  # the real technical page of the real failure
    assert "Local vars" in page or "Local Vars" in page or "Traceback" in page
    assert "django_clickatell/gateway/client.py" in page  # our frames are shown...
    assert secrets_in(page, debug_page) == []  # ...without a secret in any of them


@pytest.mark.urls("tests.test_debug_page")
@pytest.mark.parametrize(("scenario", "error"), SCENARIOS)
def test_error_email_shows_no_secret(
    debug_page: ClickatellSimulator, settings: Any, scenario: str, error: str
) -> None:
    settings.DEBUG = False
    _pending.append(prepare(scenario, debug_page))
    response = Client().get("/report/")
    report = response.content.decode()
    assert error in report
    assert secrets_in(report, debug_page) == []
