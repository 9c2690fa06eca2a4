"""The test and console backends, driven directly, and the testing face's helpers.

The test backend is what users' own suites run against, so its answers must
have the shapes the HTTP backend gives (reply types, typed errors), its ids
must never repeat, and nothing it holds may leak from one test into the next.
"""

from __future__ import annotations

import dataclasses
import io
import os
import socket
import subprocess
import sys
import threading
import unittest
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from django.test import SimpleTestCase

from django_clickatell import testing
from django_clickatell.conf import app_settings
from django_clickatell.exceptions import (
    AuthenticationError,
    CommandNotSent,
    CredentialsRefused,
    GatewayBusy,
    GatewayTimeout,
    InvalidCallback,
    InvalidMessage,
    UnknownMessage,
)
from django_clickatell.gateway.backends import backend_class, get_backend
from django_clickatell.gateway.backends.base import OutgoingSms
from django_clickatell.gateway.backends.console import ConsoleBackend
from django_clickatell.gateway.backends.locmem import (
    DEFAULT_CAPABILITIES,
    TestBackend,
)
from django_clickatell.models import OutboundMessage
from django_clickatell.protocol.replies import (
    BalanceReply,
    ErrorReply,
    MessageStatusReply,
    SentMessageReply,
    is_message_id,
)
from django_clickatell.signals import message_status_changed


def backend(alias: str = "default", **kwargs: Any) -> TestBackend:
    return TestBackend(app_settings, alias=alias, **kwargs)


def sms(n: int = 1, **kwargs: Any) -> OutgoingSms:
    return OutgoingSms(to=f"2799900000{n % 10}", text=f"Hello {n}", climsgid=f"c{n}", **kwargs)


def sent_id(result: Any) -> str:
    assert isinstance(result, SentMessageReply)
    return result.apimsgid


# -- the registry ----------------------------------------------------------------------------


def test_short_names_name_the_new_backends(settings: Any) -> None:
    assert backend_class("test") is TestBackend
    assert backend_class("locmem") is TestBackend
    assert backend_class("console") is ConsoleBackend
    settings.CLICKATELL = {**settings.CLICKATELL, "BACKEND": "test"}
    assert isinstance(get_backend(), TestBackend)


# -- the outbox ------------------------------------------------------------------------------


def test_outbox_holds_every_message_of_every_instance_in_send_order() -> None:
    first = backend().send([sms(1, sender="Acme"), sms(2, options={"callback": 3})])
    second = backend("other").send([sms(3)])
    assert [m.text for m in testing.outbox] == ["Hello 1", "Hello 2", "Hello 3"]
    one, two, three = testing.outbox
    assert (one.account, one.to, one.climsgid, one.sender) == (
        "default",
        "27999000001",
        "c1",
        "Acme",
    )
    assert dict(two.options) == {"callback": 3}
    assert three.account == "other"
    assert [m.apimsgid for m in testing.outbox] == [sent_id(r) for r in first + second]
    assert all(r.to is None for r in first)  # the reply types the HTTP backend gives
    assert one.sent_at <= two.sent_at <= three.sent_at
    assert testing.requests["sendmsg"] == 2


def test_outbox_records_cannot_be_changed() -> None:
    backend().send([sms(1, options={"validity": 60})])
    [record] = testing.outbox
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.text = "changed"  # type: ignore[misc]
    with pytest.raises(TypeError):
        record.options["validity"] = 1  # type: ignore[index]


def test_ids_are_unique_and_valid_across_instances_and_threads() -> None:
    threads, per_thread = 8, 500
    ids: list[list[str]] = [[] for _ in range(threads)]
    start = threading.Barrier(threads)

    def work(slot: int) -> None:
        start.wait()
        for n in range(per_thread):
            [result] = backend().send([sms(n)])
            ids[slot].append(sent_id(result))

    workers = [threading.Thread(target=work, args=(slot,)) for slot in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    every = [apimsgid for slot in ids for apimsgid in slot]
    assert len(every) == len(set(every)) == threads * per_thread
    assert all(is_message_id(apimsgid) for apimsgid in every)
    assert len(testing.outbox) == threads * per_thread
    assert testing.requests["sendmsg"] == threads * per_thread
    # Each thread's messages are in the outbox in the order that thread sent them.
    position = {m.apimsgid: i for i, m in enumerate(testing.outbox)}
    assert all(sorted(slot, key=position.__getitem__) == slot for slot in ids)


def test_reset_empties_everything_in_place_and_ids_never_repeat() -> None:
    outbox = testing.outbox
    [old] = backend().send([sms(1)])
    testing.script.refuse_next("querymsg", code=901)
    testing.script.balance(0)
    testing.reset_outbox()
    assert outbox == []
    assert testing.outbox is outbox
    assert testing.requests == {}
    with pytest.raises(UnknownMessage):
        backend().query(apimsgid=sent_id(old))  # not a scripted 901: the script is gone too
    assert backend().balance().credit > 0
    [new] = backend().send([sms(1)])
    assert sent_id(new) != sent_id(old)


def test_the_plugin_starts_each_test_empty_a(clickatell_outbox: list[Any]) -> None:
    assert clickatell_outbox == []
    assert testing.requests == {}
    backend().send([sms(1)])
    testing.script.refuse_next("sendmsg", code=301)


def test_the_plugin_starts_each_test_empty_b(clickatell_outbox: list[Any]) -> None:
    """Runs after ``_a`` (file order): nothing ``_a`` sent or scripted is left."""
    assert clickatell_outbox == []
    assert testing.requests == {}
    assert isinstance(backend().send([sms(1)])[0], SentMessageReply)


def test_the_mixin_empties_the_gateway_before_each_django_test() -> None:
    seen: list[int] = []

    class Case(testing.ClickatellTestMixin, SimpleTestCase):
        def setUp(self) -> None:
            super().setUp()
            seen.append(len(testing.outbox))

        def test_something(self) -> None:
            backend().send([sms(1)])

    backend().send([sms(1)])
    result = unittest.TestResult()
    Case("test_something").run(result)
    assert result.wasSuccessful(), result.errors
    assert seen == [0]


def test_the_helpers_work_without_pytest_installed() -> None:
    """Projects on Django's test runner may not have pytest: only the fixtures need it."""
    code = (
        "import sys; sys.modules['pytest'] = None\n"  # ``import pytest`` now fails
        "import django; django.setup()\n"
        "from django_clickatell import testing\n"
        "from django_clickatell.conf import app_settings\n"
        "from django_clickatell.gateway.backends import backend_class\n"
        "from django_clickatell.gateway.backends.base import OutgoingSms\n"
        "testing.reset_outbox()\n"
        "backend_class('test')(app_settings).send([OutgoingSms('27999000001', 'hi', 'c1')])\n"
        "print(len(testing.outbox), testing.outbox[0].text, sys.modules['pytest'] is None)\n"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["1", "hi", "True"]  # pytest still blocked


def test_no_socket_is_ever_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the test backend opened a socket")

    monkeypatch.setattr(socket, "socket", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    b = backend()
    [result] = b.send([sms(1)])
    b.query(apimsgid=sent_id(result))
    b.stop(climsgid="c1")
    b.balance()
    b.check_credentials()
    b.keep_alive()


# -- statuses ----------------------------------------------------------------------------------


def test_statuses_start_queued_or_scheduled() -> None:
    at = int((datetime.now(timezone.utc) + timedelta(days=2)).timestamp())
    results = backend().send(
        [sms(1), sms(2, options={"deliv_time": 60}), sms(3, options={"scheduled_time": at})]
    )
    assert [backend().query(apimsgid=sent_id(r)).status for r in results] == ["002", "011", "011"]


def test_scripted_statuses_by_either_id_are_what_query_answers() -> None:
    [result] = backend().send([sms(7)])
    apimsgid = sent_id(result)
    assert testing.script.status("c7", "3") == apimsgid  # by climsgid, normalised
    assert backend().query(climsgid="c7") == MessageStatusReply(apimsgid, "003")
    testing.set_status(apimsgid, "004")
    reply = backend().query(apimsgid=apimsgid)
    assert (reply.status, reply.final) == ("004", True)
    testing.set_status(apimsgid, "002")  # backwards on purpose: the package must refuse it
    assert testing.status_of(apimsgid) == "002"


def test_ids_belong_to_their_account() -> None:
    [result] = backend("default").send([sms(1)])
    with pytest.raises(UnknownMessage) as caught:
        backend("other").query(climsgid="c1")
    assert caught.value.code == 104
    with pytest.raises(UnknownMessage) as caught:
        backend("other").stop(apimsgid=sent_id(result))
    assert caught.value.code == 103
    assert testing.status_of(sent_id(result)) == "002"
    with pytest.raises(UnknownMessage) as caught:
        backend().query(apimsgid="test-0-ffffffff")
    assert caught.value.code == 103


def test_stop_answers_006_unless_final_then_the_final_status() -> None:
    a, b = (sent_id(r) for r in backend().send([sms(1), sms(2)]))
    testing.set_status(b, "004")
    assert backend().stop(apimsgid=a) == MessageStatusReply(a, "006")
    assert backend().query(apimsgid=a).status == "006"
    assert backend().stop(apimsgid=b) == MessageStatusReply(b, "004")  # too late, as Clickatell
    assert testing.status_of(b) == "004"
    assert testing.requests["delmsg"] == 2


def test_ids_are_checked_as_the_http_client_checks_them() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        backend().query()
    with pytest.raises(ValueError, match="exactly one"):
        backend().stop(apimsgid="a", climsgid="b")
    with pytest.raises(ValueError, match="client message id"):
        backend().query(climsgid="not valid!")


# -- scripted refusals and failures ---------------------------------------------------------


def test_a_refused_message_gets_an_error_reply_the_others_are_sent() -> None:
    testing.script.refuse_next("sendmsg", code=121, times=1)
    results = backend().send([sms(1), sms(2), sms(3)])
    assert results[0] == ErrorReply(121, "Destination mobile number blocked", to="27999000001")
    assert all(isinstance(r, SentMessageReply) for r in results[1:])
    assert [m.climsgid for m in testing.outbox] == ["c2", "c3"]


def test_a_refused_account_fails_the_whole_send_and_sends_nothing() -> None:
    testing.script.refuse_next("sendmsg", code=1, description="Authentication failed")
    with pytest.raises(CommandNotSent) as caught:
        backend().send([sms(1), sms(2)])
    assert isinstance(caught.value.cause, AuthenticationError)
    assert caught.value.code == 1
    assert testing.outbox == []
    assert isinstance(backend().send([sms(1)])[0], SentMessageReply)  # used once


@pytest.mark.parametrize(
    ("command", "code", "expected"),
    [
        ("querymsg", 901, GatewayBusy),
        ("querymsg", 104, UnknownMessage),
        # A refused account: CredentialsRefused on every call, as on every backend (it is
        # an AuthenticationError and a CommandNotSent: nothing was carried out).
        ("delmsg", 1, CredentialsRefused),
        ("delmsg", 5, CommandNotSent),
        ("getbalance", 901, GatewayBusy),
        ("ping", 4, CredentialsRefused),
        ("auth", 1, CredentialsRefused),
    ],
)
def test_refusals_of_other_commands_are_their_typed_errors(
    command: str, code: int, expected: type[Exception]
) -> None:
    [result] = backend().send([sms(1)])
    testing.script.refuse_next(command, code=code)
    calls = {
        "querymsg": lambda b: b.query(apimsgid=sent_id(result)),
        "delmsg": lambda b: b.stop(apimsgid=sent_id(result)),
        "getbalance": lambda b: b.balance(),
        "ping": lambda b: b.keep_alive(),
        "auth": lambda b: b.check_credentials(),
    }
    with pytest.raises(expected) as caught:
        calls[command](backend())
    assert type(caught.value) is expected
    assert testing.status_of(sent_id(result)) == "002"  # a refused stop stopped nothing
    calls[command](backend())  # one request only


def test_a_failure_not_carried_out_changes_nothing() -> None:
    [result] = backend().send([sms(1)])
    testing.script.fail_next("delmsg", error=GatewayTimeout("delmsg", "read timed out"))
    testing.script.fail_next("sendmsg", error=GatewayTimeout("sendmsg", "read timed out"))
    with pytest.raises(GatewayTimeout):
        backend().stop(apimsgid=sent_id(result))
    assert testing.status_of(sent_id(result)) == "002"
    with pytest.raises(GatewayTimeout):
        backend().send([sms(2)])
    assert [m.climsgid for m in testing.outbox] == ["c1"]


def test_a_failure_carried_out_is_a_send_or_stop_in_doubt_that_query_resolves() -> None:
    testing.script.fail_next(
        "sendmsg", error=GatewayTimeout("sendmsg", "read timed out"), carried_out=True
    )
    with pytest.raises(GatewayTimeout):
        backend().send([sms(1)])
    [sent] = testing.outbox
    found = backend().query(climsgid="c1")  # how the services verify before any retry
    assert found == MessageStatusReply(sent.apimsgid, "002")
    testing.script.fail_next(
        "delmsg", error=GatewayTimeout("delmsg", "read timed out"), carried_out=True
    )
    with pytest.raises(GatewayTimeout):
        backend().stop(climsgid="c1")
    assert backend().query(climsgid="c1").status == "006"


def test_scripted_answers_are_used_in_order_then_forgotten() -> None:
    [result] = backend().send([sms(1)])
    testing.script.refuse_next("querymsg", code=901, times=2)
    testing.script.refuse_next("querymsg", code=104)
    for expected in (GatewayBusy, GatewayBusy, UnknownMessage):
        with pytest.raises(expected):
            backend().query(apimsgid=sent_id(result))
    assert backend().query(apimsgid=sent_id(result)).status == "002"
    assert testing.requests["querymsg"] == 4


def test_scripting_mistakes_are_refused() -> None:
    with pytest.raises(ValueError, match="Unknown command"):
        testing.script.refuse_next("sendmessage", code=1)
    with pytest.raises(ValueError, match="at least 1"):
        testing.script.refuse_next("sendmsg", code=1, times=0)
    with pytest.raises(ValueError, match="nothing was carried out"):
        testing.script.fail_next(
            "sendmsg", error=CommandNotSent("sendmsg", GatewayBusy(901)), carried_out=True
        )
    with pytest.raises(LookupError):
        testing.set_status("test-0-00000000", "004")


def test_balance_and_credentials() -> None:
    assert backend().balance() == BalanceReply(Decimal("100"))
    testing.script.balance("0.5")
    assert backend().balance() == BalanceReply(Decimal("0.5"))
    backend().check_credentials()
    assert testing.requests["auth"] == 1


# -- capabilities and what the services may send -------------------------------------------


def test_default_capabilities() -> None:
    caps = backend().capabilities
    assert caps == DEFAULT_CAPABILITIES
    assert (caps.remote_stop, caps.sessions, caps.native_scheduling) == (True, False, True)
    assert (caps.scheduling_horizon, caps.batch_size) == (timedelta(days=7), 200)
    assert (caps.callbacks, caps.query_by_client_id) == ("form", True)


def test_capabilities_per_instance_per_test_and_per_class() -> None:
    own = dataclasses.replace(DEFAULT_CAPABILITIES, batch_size=1)
    assert backend(capabilities=own).capabilities.batch_size == 1
    assert backend().capabilities.batch_size == 200  # the instance's only
    testing.script.capabilities(remote_stop=False)
    assert backend().capabilities.remote_stop is False  # every backend built from now on

    class OneApiLike(TestBackend):
        capabilities = dataclasses.replace(DEFAULT_CAPABILITIES, native_scheduling=False)

    testing.reset_outbox()
    assert OneApiLike(app_settings).capabilities.native_scheduling is False
    assert TestBackend.capabilities == DEFAULT_CAPABILITIES


@pytest.mark.parametrize(
    ("capabilities", "messages", "reason"),
    [
        ({"batch_size": 2}, [sms(1), sms(2), sms(3)], "takes 2"),
        ({}, [sms(1, options={"flash": 1})], "Unknown sending options"),
        ({"native_scheduling": False}, [sms(1, options={"deliv_time": 60})], "cannot schedule"),
        ({}, [sms(1, options={"deliv_time": 8 * 24 * 60})], "horizon"),
        ({}, [OutgoingSms("27999000001", "x", climsgid="not-alnum")], "climsgid"),
    ],
)
def test_what_the_capabilities_forbid_is_refused_before_anything_is_sent(
    capabilities: dict[str, Any], messages: list[OutgoingSms], reason: str
) -> None:
    testing.script.capabilities(**capabilities)
    with pytest.raises(InvalidMessage, match=reason):
        backend().send(messages)
    assert testing.outbox == []


def test_duplicates_name_a_climsgid_sent_twice() -> None:
    backend().send([sms(1), sms(2)])
    assert testing.duplicates() == []
    backend().send([sms(1)])
    assert testing.duplicates() == [("default", "c1")]


# -- the testing face: callbacks --------------------------------------------------------------


@pytest.mark.django_db
def test_deliver_callback_goes_through_the_callback_service() -> None:
    [result] = backend().send([sms(1, sender="Acme")])
    apimsgid = sent_id(result)
    message = OutboundMessage.objects.create(
        apimsgid=apimsgid, climsgid="c1", recipient="27999000001", status="002"
    )
    seen: list[tuple[str, str]] = []

    def handler(sender: Any, old_status: str, new_status: str, **kwargs: Any) -> None:
        seen.append((old_status, new_status))

    message_status_changed.connect(handler)
    try:
        assert testing.deliver_callback(message, "004", charge="0.3") == "applied"
        assert testing.deliver_callback(message, "003") == "ignored"  # never backwards
    finally:
        message_status_changed.disconnect(handler)
    message.refresh_from_db()
    assert (message.status, message.charge) == ("004", Decimal("0.3"))
    assert seen == [("002", "004")]
    assert testing.status_of(message) == "003"  # the gateway took the scripted status


@pytest.mark.django_db
def test_deliver_callback_for_a_message_not_recorded_is_kept_unmatched() -> None:
    [result] = backend().send([sms(1)])
    assert testing.deliver_callback(sent_id(result)) == "unmatched"  # the current status: 002


@pytest.mark.django_db
def test_deliver_callback_for_another_api_product_is_refused() -> None:
    [result] = backend().send([sms(1)])
    with pytest.raises(InvalidCallback, match="api_id"):
        testing.deliver_callback(sent_id(result), "004", api_id="7654321")


@pytest.mark.django_db
def test_deliver_callback_needs_no_api_id_with_the_test_backend(settings: Any) -> None:
    """The test backend needs no legacy credentials; its callbacks carried ``API_ID``, and
    without one raised "missing or malformed api_id"."""
    settings.CLICKATELL = {"BACKEND": "test", "USE_CELERY": False}
    [result] = backend().send([sms(1)])
    message = OutboundMessage.objects.create(
        apimsgid=sent_id(result), climsgid="c1", recipient="27999000001", status="002"
    )
    assert testing.deliver_callback(message, "004") == "applied"
    with pytest.raises(InvalidCallback, match="api_id"):  # another product is still refused
        testing.deliver_callback(message, "004", api_id="7654321")


@pytest.mark.usefixtures("test_backend_settings")
def test_the_simulator_fixture_reaches_the_simulator_whatever_the_backend(
    settings: Any, clickatell_simulator: Any
) -> None:
    """Test settings name the test backend; the fixture left ``BACKEND`` at "test", so a
    test of the HTTP path never reached the simulator."""
    assert settings.CLICKATELL["BACKEND"] == "legacy_http"
    assert settings.CLICKATELL["BASE_URL"] == clickatell_simulator.base_url


@pytest.fixture
def test_backend_settings(settings: Any) -> None:
    settings.CLICKATELL = {"BACKEND": "test", "USE_CELERY": False}


def test_helpers_refuse_a_message_without_ids() -> None:
    with pytest.raises(ValueError, match="no apimsgid"):
        testing.set_status(OutboundMessage(recipient="27999000001"), "004")


# -- the console backend ----------------------------------------------------------------------


def console(**kwargs: Any) -> ConsoleBackend:
    return ConsoleBackend(app_settings, **kwargs)


def test_console_prints_each_message_and_never_a_secret(
    capsys: pytest.CaptureFixture[str], settings: Any
) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "API_KEY": "key-0123456789abcdef"}
    results = console().send(
        [
            sms(1, sender="Acme", options={"deliv_time": 60}),
            OutgoingSms("27999000002", "Grüße ☃", ""),
        ]
    )
    out = capsys.readouterr().out
    assert out.count("-" * 79) == 2
    for expected in ("To: 27999000001", "From: Acme", "Client id: c1", "deliv_time=60"):
        assert expected in out
    assert "Hello 1" in out
    assert "Grüße ☃" in out
    assert all(sent_id(r) in out for r in results)
    for secret in ("demo-password", "key-0123456789abcdef", app_settings.username):
        assert secret not in out


def test_console_messages_stay_queued_until_stopped() -> None:
    stream = io.StringIO()
    b = console(stream=stream)
    first, second = (sent_id(r) for r in b.send([sms(1), sms(2)]))
    assert first != second
    assert is_message_id(first)
    assert console().query(apimsgid=first) == MessageStatusReply(first, "002")
    assert console().query(climsgid="c2") == MessageStatusReply(second, "002")
    assert b.stop(climsgid="c1") == MessageStatusReply(first, "006")
    assert console().query(apimsgid=first).status == "006"
    assert f"SMS {first} stopped" in stream.getvalue()
    assert testing.outbox == []  # the console is not the test gateway


def test_console_knows_only_its_own_messages() -> None:
    with pytest.raises(UnknownMessage):
        console(stream=io.StringIO()).query(apimsgid="test-1-00000001")
    with pytest.raises(UnknownMessage):
        console(stream=io.StringIO()).stop(climsgid="neverSent")
    console().check_credentials()
    assert console().balance().credit > 0
    assert console().capabilities.sessions is False
