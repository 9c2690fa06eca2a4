"""Callback credentials can be rotated: several pairs accepted, every one compared, none shown.

Through the real view (Django's test client on ``tests.urls``): during a rotation
the old and the new pair both get in; once the old one is removed it gets a bare
401.  Every accepted pair is compared on every request, in constant time, so the
answer's timing says neither which pair matched nor how many there are.  No
password reaches a response, a log record or Django's DEBUG error page.
"""

from __future__ import annotations

import base64
import hmac
import logging
from typing import Any

import pytest
from django.test import Client

from django_clickatell import views
from django_clickatell.conf import MAX_CALLBACK_CREDENTIALS, app_settings
from django_clickatell.models import OutboundMessage, UnmatchedCallback
from tests.factories import scheduled_messages

pytestmark = pytest.mark.django_db
URL = "/clickatell/callback/"
USER = "clickatell"
OLD, NEW, LEGACY = "cb-old-8d1f5a", "cb-new-47c2e9", "cb-legacy-93ab10"
PASSWORDS = (OLD, NEW, LEGACY)


def basic(user: str, password: str) -> dict[str, Any]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"HTTP_AUTHORIZATION": f"Basic {token}"}


def fields(message: OutboundMessage, status: str = "003") -> dict[str, str]:
    return {
        "api_id": "1234567",
        "apiMsgId": str(message.apimsgid),
        "cliMsgId": message.climsgid,
        "to": message.recipient,
        "from": "Clinic",
        "timestamp": "1700000000",
        "status": status,
        "charge": "0.300000",
    }


@pytest.fixture
def accept(settings: Any) -> Any:
    """Set the accepted pairs: ``accept(pairs, username=..., password=...)``."""

    def configure(pairs: list[tuple[str, str]], username: str = "", password: str = "") -> None:
        settings.CLICKATELL = {
            **settings.CLICKATELL,
            "CALLBACK_BASIC_AUTH": pairs,
            "CALLBACK_USERNAME": username,
            "CALLBACK_PASSWORD": password,
        }

    return configure


@pytest.fixture
def everything_logged(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    return caplog


def assert_no_password(text: str) -> None:
    for password in PASSWORDS:
        assert password not in text
        assert base64.b64encode(password.encode()).decode() not in text


def shown(response: Any, caplog: pytest.LogCaptureFixture) -> str:
    """Everything a response and the log records show: body, headers, messages, arguments."""
    records = " ".join(f"{r.getMessage()} {r.args!r} {r.__dict__!r}" for r in caplog.records)
    return f"{response.content.decode(errors='replace')} {dict(response.items())!r} {records}"


class TestRotation:
    def test_old_and_new_both_accepted_during_rotation(
        self, client: Client, accept: Any, everything_logged: pytest.LogCaptureFixture
    ) -> None:
        accept([(USER, OLD), (USER, NEW)])
        first, second = scheduled_messages(None, 2)
        for message, password in ((first, OLD), (second, NEW)):
            response = client.post(URL, fields(message), **basic(USER, password))
            assert response.status_code == 200, response.content
            message.refresh_from_db()
            assert message.status == "003"
            assert_no_password(shown(response, everything_logged))

    def test_removed_pair_gets_a_bare_401_and_changes_nothing(
        self, client: Client, accept: Any, everything_logged: pytest.LogCaptureFixture
    ) -> None:
        accept([(USER, NEW)])
        [message] = scheduled_messages(None, 1)
        response = client.post(URL, fields(message), **basic(USER, OLD))
        assert (response.status_code, response.content) == (401, b"Unauthorized")
        assert response["WWW-Authenticate"].startswith("Basic ")
        message.refresh_from_db()
        assert message.status == "011"
        assert not message.exchanges.exists()
        assert_no_password(shown(response, everything_logged))
        assert client.post(URL, fields(message), **basic(USER, NEW)).status_code == 200

    def test_the_single_pair_and_the_list_are_accepted_together(
        self, client: Client, accept: Any
    ) -> None:
        accept([(USER, NEW)], username="legacy", password=LEGACY)
        first, second = scheduled_messages(None, 2)
        assert client.post(URL, fields(first), **basic("legacy", LEGACY)).status_code == 200
        assert client.post(URL, fields(second), **basic(USER, NEW)).status_code == 200
        # A user of one pair with the password of another is no pair at all.
        response = client.post(URL, fields(first, "004"), **basic("legacy", NEW))
        assert response.status_code == 401

    def test_same_user_two_passwords_each_only_with_its_own(
        self, client: Client, accept: Any
    ) -> None:
        accept([("a", OLD), ("b", NEW)])
        [message] = scheduled_messages(None, 1)
        assert client.post(URL, fields(message), **basic("a", NEW)).status_code == 401
        assert client.post(URL, fields(message), **basic("b", OLD)).status_code == 401
        assert client.post(URL, fields(message), **basic("b", NEW)).status_code == 200

    def test_only_the_list_is_enough(self, client: Client, accept: Any) -> None:
        accept([(USER, NEW)])
        assert app_settings.callback_credentials[0][0] == USER
        ghost = OutboundMessage(apimsgid="f" * 32, recipient="27999000009", climsgid="")
        assert client.post(URL, fields(ghost), **basic(USER, NEW)).status_code == 200
        assert UnmatchedCallback.objects.count() == 1

    def test_nothing_configured_is_403(
        self, client: Client, accept: Any, everything_logged: pytest.LogCaptureFixture
    ) -> None:
        accept([], username=USER)  # half a pair counts for nothing
        [message] = scheduled_messages(None, 1)
        response = client.post(URL, fields(message), **basic(USER, OLD))
        assert response.status_code == 403
        assert "CALLBACK_BASIC_AUTH" in everything_logged.text


class TestConstantTime:
    """Every request compares the same number of same-length values, matched or not."""

    @pytest.fixture
    def compared(self, monkeypatch: pytest.MonkeyPatch) -> list[tuple[bytes, bytes]]:
        calls: list[tuple[bytes, bytes]] = []
        real = hmac.compare_digest

        def spy(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return real(a, b)

        monkeypatch.setattr(hmac, "compare_digest", spy)
        return calls

    @pytest.mark.parametrize(
        ("configured", "sent", "status"),
        [
            (1, 0, 200),  # one pair, matched
            (MAX_CALLBACK_CREDENTIALS, 0, 200),  # the first of many
            (MAX_CALLBACK_CREDENTIALS, MAX_CALLBACK_CREDENTIALS - 1, 200),  # the last
            (1, None, 401),  # no match
            (MAX_CALLBACK_CREDENTIALS, None, 401),
        ],
    )
    def test_every_candidate_compared_whatever_matched(
        self,
        client: Client,
        accept: Any,
        compared: list[tuple[bytes, bytes]],
        configured: int,
        sent: int | None,
        status: int,
    ) -> None:
        pairs = [(f"user{n}", f"{NEW}-{n}") for n in range(configured)]
        accept(pairs, username="legacy", password=LEGACY)
        user, password = pairs[sent] if sent is not None else ("nobody", "wrong")
        [message] = scheduled_messages(None, 1)
        assert client.post(URL, fields(message), **basic(user, password)).status_code == status
        assert len(compared) == 2 * views.COMPARED_PAIRS == 2 * (MAX_CALLBACK_CREDENTIALS + 1)
        assert {len(a) for pair in compared for a in pair} == {32}  # digests, never the text

    def test_matches_one_has_no_early_exit(self) -> None:
        digest = views._digest
        candidates = [(digest(f"u{n}"), digest(f"p{n}"), 1) for n in range(3)]
        filler = [(digest(""), digest(""), 0)] * 3
        assert views.matches_one((digest("u0"), digest("p0")), candidates + filler)
        assert views.matches_one((digest("u2"), digest("p2")), candidates + filler)
        assert not views.matches_one((digest("u0"), digest("p1")), candidates + filler)
        # Filler never matches, not even an empty user and password.
        assert not views.matches_one((digest(""), digest("")), candidates + filler)


class TestNothingShown:
    def test_debug_page_of_a_failing_callback_shows_no_password(
        self, accept: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """A crash after authentication, DEBUG on: Django's technical 500 page shows the
        settings and every frame's locals; no accepted or sent password may be among them."""
        settings.DEBUG = True
        accept([(USER, OLD), (USER, NEW)], username="legacy", password=LEGACY)

        def crash(*args: object, **kwargs: object) -> None:
            raise RuntimeError("database went away")

        monkeypatch.setattr(views, "receive_callback", crash)
        client = Client(raise_request_exception=False)
        [message] = scheduled_messages(None, 1)
        for accept_header in ("text/html", "text/plain"):
            response = client.post(
                URL, fields(message), HTTP_ACCEPT=accept_header, **basic(USER, NEW)
            )
            assert response.status_code == 500
            page = response.content.decode()
            assert "database went away" in page  # it is the technical page
            assert "CALLBACK_BASIC_AUTH" in page
            assert_no_password(page)

    def test_debug_page_of_a_bad_list_shows_no_password(self, settings: Any) -> None:
        """One bad pair in the list: the error is raised afresh where no frame holds the
        raw settings, so the valid pairs' passwords are not among the locals."""
        settings.DEBUG = True
        settings.CLICKATELL = {
            **settings.CLICKATELL,
            "PASSWORD": LEGACY,
            "CALLBACK_BASIC_AUTH": [(USER, OLD), (USER, NEW, "third")],
        }
        client = Client(raise_request_exception=False)
        for accept_header in ("text/html", "text/plain"):
            response = client.post(URL, {}, HTTP_ACCEPT=accept_header, **basic(USER, NEW))
            assert response.status_code == 500
            page = response.content.decode()
            assert "pair 2 must be a (user, password) pair" in page
            assert_no_password(page)
