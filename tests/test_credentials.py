"""Credentials failures stay local and truthful (issue 11, item 4), on the simulator and Redis.

Two processes of one deployment may hold different passwords for the same account (a
stale host, a rotation in progress).  What one of them learns about *its* password must
neither evict nor block the session the other obtained, and a command that never reached
Clickatell must say so (``CommandNotSent``) instead of passing a login refusal off as the
command's answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import cache
from django.test import override_settings

from django_clickatell.exceptions import (
    AuthenticationError,
    CommandNotSent,
    GatewayError,
    SessionExpired,
)
from django_clickatell.gateway.client import ClickatellClient
from django_clickatell.gateway.session import forget_local_sessions
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import PASSWORD

STALE_PASSWORD = "stale-password-9f2c"


def client_with(password: str) -> ClickatellClient:
    """A client configured like another host whose settings carry *password*."""
    with override_settings(CLICKATELL={**django_settings.CLICKATELL, "PASSWORD": password}):
        return ClickatellClient()


def as_another_process() -> None:
    """Forget what this process memoised, so the next read goes to the shared cache."""
    forget_local_sessions()


def raw_cache_dump() -> list[bytes]:
    """Every key and value in the cache's Redis database, as stored bytes."""
    raw: Any = redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])
    dump: list[bytes] = []
    for key in raw.scan_iter(count=1000):
        dump.append(key)
        if raw.type(key) == b"string":  # what Django's cache writes (GET: never compressed)
            dump.append(raw.get(key) or b"")
        else:
            dump.append(repr(raw.dump(key)).encode())
    return dump


def test_stale_password_auth_leaves_the_good_session_usable(
    simulator: ClickatellSimulator,
) -> None:
    apimsgid = simulator.add_message()
    good = client_with(PASSWORD)
    good.ping()
    issued = simulator.issued_session_ids[-1]
    issued_before = len(simulator.issued_session_ids)

    with pytest.raises(AuthenticationError) as refused:
        client_with(STALE_PASSWORD).auth()
    assert refused.value.code == 1

    as_another_process()
    fresh_good = client_with(PASSWORD)
    assert fresh_good.delmsg(apimsgid=apimsgid).status == "006"
    assert simulator.counts["auth"] == 2  # the good login and the stale one: nothing more
    assert simulator.issued_session_ids[issued_before - 1 :] == [issued]


def test_remembered_failure_blocks_only_its_own_credentials(
    simulator: ClickatellSimulator,
) -> None:
    stale = client_with(STALE_PASSWORD)
    with pytest.raises(CommandNotSent):
        stale.ping()
    as_another_process()
    client_with(PASSWORD).ping()  # no session cached yet, a failure remembered for another password
    assert simulator.counts["auth"] == 2
    assert simulator.counts["ping"] == 1


def test_stale_password_command_is_not_sent_with_the_login_code(
    simulator: ClickatellSimulator,
) -> None:
    apimsgid = simulator.add_message()
    stale = client_with(STALE_PASSWORD)
    for _attempt in range(2):  # the login refusal, then the remembered one
        with pytest.raises(CommandNotSent) as info:
            stale.delmsg(apimsgid=apimsgid)
        error = info.value
        assert not isinstance(error, GatewayError), "a login refusal is not delmsg's answer"
        assert error.command == "delmsg"
        assert error.code == 1
        assert isinstance(error.cause, AuthenticationError)
        assert error.cause.code == 1
        assert error.retryable
        assert "delmsg was not sent" in str(error)
    assert simulator.counts["auth"] == 1
    assert simulator.counts["delmsg"] == 0
    assert simulator.status_of(apimsgid) != "006"


@pytest.mark.parametrize("command", ["ping", "getbalance", "querymsg", "sendmsg"])
def test_no_command_passes_a_login_refusal_off_as_its_answer(
    simulator: ClickatellSimulator, command: str
) -> None:
    apimsgid = simulator.add_message()
    stale = client_with(STALE_PASSWORD)
    calls: dict[str, Callable[[], object]] = {
        "ping": stale.ping,
        "getbalance": stale.getbalance,
        "querymsg": lambda: stale.querymsg(apimsgid=apimsgid),
        "sendmsg": lambda: stale.sendmsg({"to": "27999000001", "text": "hi"}),
    }
    with pytest.raises(CommandNotSent) as info:
        calls[command]()
    assert info.value.command == command
    assert info.value.code == 1
    assert simulator.counts[command] == 0


def test_stale_forget_touches_only_its_own_entries(simulator: ClickatellSimulator) -> None:
    good = client_with(PASSWORD)
    good.ping()
    stale = client_with(STALE_PASSWORD)
    stale.sessions.forget()
    as_another_process()
    client_with(PASSWORD).ping()
    assert simulator.counts["auth"] == 1


def test_session_refused_twice_is_not_sent_and_retryable(simulator: ClickatellSimulator) -> None:
    apimsgid = simulator.add_message()
    client = client_with(PASSWORD)
    client.ping()
    simulator.inject("expire_session", command="delmsg", times=2)
    with pytest.raises(CommandNotSent) as info:
        client.delmsg(apimsgid=apimsgid)
    error = info.value
    assert not isinstance(error, GatewayError)
    assert error.retryable
    assert isinstance(error.cause, SessionExpired)
    assert error.code == 3
    assert simulator.counts["auth"] == 2  # exactly one renewal per call
    assert simulator.counts["delmsg"] == 2
    assert simulator.status_of(apimsgid) != "006"
    # The next call works: the renewed session is good.
    assert client.delmsg(apimsgid=apimsgid).status == "006"


def test_cache_holds_neither_password_nor_session_id(simulator: ClickatellSimulator) -> None:
    cache.clear()
    good = client_with(PASSWORD)
    good.ping()
    simulator.inject(
        "body", command="auth", body=f"ERR: 001, Authentication failed for {STALE_PASSWORD}"
    )
    with pytest.raises(AuthenticationError):
        client_with(STALE_PASSWORD).auth()
    dump = raw_cache_dump()
    assert len(dump) >= 4, "the session and the failure should both be cached"
    secrets = [PASSWORD, STALE_PASSWORD, *simulator.issued_session_ids]
    found = [s for s in secrets for item in dump if s.encode() in item]
    assert found == []


def test_tampered_session_entry_counts_as_absent(simulator: ClickatellSimulator) -> None:
    client = client_with(PASSWORD)
    client.ping()
    raw: Any = redis.Redis.from_url(django_settings.CACHES["default"]["LOCATION"])
    key = cache.make_key(client.sessions.session_key)
    stored = raw.get(key)
    assert stored
    flipped = bytearray(stored)
    flipped[-8] ^= 0x01
    raw.set(key, bytes(flipped))
    as_another_process()
    client_with(PASSWORD).ping()
    assert simulator.counts["auth"] == 2
    assert simulator.counts["ping"] == 2  # no request was made with the damaged id


def test_settings_change_yields_separate_sessions(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """Different SECRET_KEYs never share (or can read) each other's cached session."""
    client_with(PASSWORD).ping()
    settings.SECRET_KEY = "another-deployment"
    as_another_process()
    client_with(PASSWORD).ping()
    assert simulator.counts["auth"] == 2
