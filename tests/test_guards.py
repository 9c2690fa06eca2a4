"""Issue 22, item 3: guards against runaway sending, per account, off by default.

Each guard trips at its bound and says which guard and which setting; a bulk
``send_sms`` is refused whole, recording nothing; right before a request leaves
the guards are asked again (an opted-out number is settled unsent, a reached
cap makes the message wait); the opt-out list fills itself from Clickatell's
"opted out" refusals (One API 26, legacy 122) and by hand (API, admin), every
change logged; counting is shared and never overshoots, and refuses while the
cache is down; a trip can pause the account.  Over HTTP against the simulator.
"""

from __future__ import annotations

import json
import multiprocessing
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import connections
from django.test import Client
from django.urls import reverse

from django_clickatell import api
from django_clickatell.admin.story import describe
from django_clickatell.conf import SettingError, account_settings, app_settings
from django_clickatell.exceptions import GuardTripped, InvalidInput, InvalidMessage
from django_clickatell.models import (
    OptOut,
    OptOutSource,
    OutboundMessage,
    SendState,
    Via,
    WaitingFor,
)
from django_clickatell.services import composing, guards, pausing, sending, waiting
from django_clickatell.simulator import ClickatellSimulator
from tests.every_backend import BACKENDS, backend_settings

pytestmark = pytest.mark.django_db

ALIAS = "platform"
ZA = "27999000001"
ZA2 = "27999000002"
ZA3 = "27999000003"
GB = "447700900123"


@pytest.fixture
def account(simulator: ClickatellSimulator, settings: Any) -> Iterator[Any]:
    """Builds the account ``platform`` on a backend with some guard settings, no Celery."""

    def build(backend: str = "legacy_http", **guard_settings: Any) -> None:
        simulator.one_api.reset()
        values = {**backend_settings(simulator, backend), **guard_settings}
        settings.CLICKATELL = {
            **settings.CLICKATELL,
            "USE_CELERY": False,
            "ACCOUNTS": {ALIAS: values},
        }

    cache.clear()
    guards.forget()
    yield build
    cache.clear()
    guards.forget()


def sends_of(simulator: ClickatellSimulator) -> int:
    return sum(simulator.sendmsg_requests_by_recipient().values())


def send(to: str | list[str], text: str = "hello") -> list[OutboundMessage]:
    return api.send_sms(to, text, account=ALIAS, wait=True)


# -- each guard trips at its bound, naming guard and key, refusing a bulk send whole ----------


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("key", "guard"),
    [("GUARD_MAX_PER_HOUR", "max_per_hour"), ("GUARD_MAX_PER_DAY", "max_per_day")],
)
def test_an_account_cap_trips_at_its_bound_and_refuses_a_bulk_send_whole(
    key: str, guard: str, backend: str, account: Any, simulator: ClickatellSimulator
) -> None:
    account(backend, **{key: 3})
    send([ZA, ZA2])
    with pytest.raises(GuardTripped) as raised:
        send([ZA3, "27999000004"])  # 2 + 2 > 3: neither is recorded, neither is sent
    assert (raised.value.guard, raised.value.account) == (guard, ALIAS)
    assert raised.value.key == key
    assert f"settings.CLICKATELL['ACCOUNTS']['{ALIAS}']['{key}']" in str(raised.value)
    assert "raise" in str(raised.value)
    assert isinstance(raised.value, InvalidMessage)
    assert OutboundMessage.objects.count() == 2
    send(ZA3)  # exactly at the bound
    with pytest.raises(GuardTripped):
        send("27999000004")
    assert OutboundMessage.objects.count() == 3
    assert sends_of(simulator) == 3


def test_the_per_recipient_cap_trips_for_that_number_only(account: Any) -> None:
    account(GUARD_MAX_PER_RECIPIENT_PER_HOUR=2)
    send(ZA)
    send([ZA, ZA2])
    with pytest.raises(GuardTripped) as raised:
        send([ZA2, ZA])  # ZA is full: the whole call is refused
    assert raised.value.guard == "max_per_recipient_per_hour"
    assert raised.value.key == "GUARD_MAX_PER_RECIPIENT_PER_HOUR"
    assert f"+{ZA}" in str(raised.value)
    assert OutboundMessage.objects.count() == 3
    send(ZA2)
    assert OutboundMessage.objects.filter(send_state=SendState.SENT).count() == 4


@pytest.mark.parametrize("allowed", [["ZA"], [27], ["+27"], ["za", 44]])
def test_destinations_outside_the_allowed_ones_are_refused(
    account: Any, allowed: list[Any]
) -> None:
    account(GUARD_ALLOWED_DESTINATIONS=allowed)
    send(ZA)
    if 44 in allowed:
        send(GB)
        return
    with pytest.raises(GuardTripped) as raised:
        send([ZA2, GB])
    assert raised.value.guard == "destinations"
    assert raised.value.key == "GUARD_ALLOWED_DESTINATIONS"
    assert f"+{GB}" in str(raised.value)
    assert OutboundMessage.objects.count() == 1


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("ZA", "must be a list"),
        (["ZZ"], "neither a calling code"),
        ([999], "not a country calling code"),
        ([True], "neither a calling code"),
    ],
)
def test_a_wrong_destinations_setting_names_the_key(settings: Any, value: Any, words: str) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "GUARD_ALLOWED_DESTINATIONS": value}
    with pytest.raises(SettingError) as raised:
        app_settings.guard_allowed_destinations  # noqa: B018
    assert "GUARD_ALLOWED_DESTINATIONS" in str(raised.value)
    assert words in str(raised.value)


def test_guards_are_off_by_default(account: Any) -> None:
    account()
    api.opt_out(ZA)
    send([ZA, GB])  # listed, any destination, no cap
    assert OutboundMessage.objects.filter(send_state=SendState.SENT).count() == 2


# -- the opt-out list ----------------------------------------------------------------------------


def test_an_opted_out_number_is_refused_at_send_sms(
    account: Any, simulator: ClickatellSimulator
) -> None:
    account(GUARD_OPT_OUT=True)
    assert api.opt_out("+27 99 900 0001", reason="asked by SMS") is True
    assert api.is_opted_out(ZA)
    assert api.is_opted_out(ZA, account=ALIAS)
    with pytest.raises(GuardTripped) as raised:
        send([ZA2, ZA])
    assert raised.value.guard == "opt_out"
    assert raised.value.key == "GUARD_OPT_OUT"
    assert OutboundMessage.objects.count() == 0
    assert sends_of(simulator) == 0
    assert api.opt_in(ZA) is True
    send(ZA)
    assert sends_of(simulator) == 1


def test_an_opt_out_for_another_account_does_not_refuse_this_one(account: Any) -> None:
    account(GUARD_OPT_OUT=True)
    api.opt_out(ZA, account="default")
    assert api.is_opted_out(ZA)
    assert not api.is_opted_out(ZA, account=ALIAS)
    send(ZA)


def test_opted_out_after_composing_it_is_not_sent_and_says_why(
    account: Any, simulator: ClickatellSimulator
) -> None:
    """Checked again right before the request: final, unsent, with the reason."""
    account(GUARD_OPT_OUT=True)
    [message] = composing.create_messages(ZA, "hi", account=ALIAS)
    api.opt_out(ZA, reason="replied STOP")
    report = sending.send_messages([message.pk], via=Via.API)
    message.refresh_from_db()
    assert message.send_state == SendState.FAILED
    assert "opt_out guard" in message.send_error
    assert "GUARD_OPT_OUT" in message.send_error
    assert message.claim_token == ""
    assert report.rejected == [message.pk]
    assert sends_of(simulator) == 0
    assert not message.exchanges.exists()  # no request made, none logged as asked
    view = describe(message)
    assert view.key == "failed"
    assert "not Clickatell" in view.hint


def test_a_number_clickatell_refuses_as_opted_out_is_listed_automatically(
    account: Any, simulator: ClickatellSimulator
) -> None:
    """One API 207 with error 26 (the simulator's ``refused`` numbers)."""
    account("one_api", GUARD_OPT_OUT=True)
    simulator.one_api.refused.add(ZA)
    try:
        message, other = send([ZA, ZA2])
    finally:
        simulator.one_api.refused.clear()
    message.refresh_from_db()
    other.refresh_from_db()
    assert message.send_state == SendState.REJECTED
    assert other.send_state == SendState.SENT
    assert not OptOut.objects.filter(number=ZA2).exists()
    entry = OptOut.objects.get(number=ZA)
    assert (entry.account, entry.source) == (ALIAS, OptOutSource.GATEWAY)
    assert "026" in entry.reason
    assert "opted out" in entry.reason.lower()
    with pytest.raises(GuardTripped):
        send(ZA)  # refused here from now on: no second request
    assert simulator.sendmsg_requests_by_recipient()[ZA] == 1


def _refusal(backend: str, code: int, description: str, to: str) -> str:
    """A refusal of one recipient as *backend* words it (legacy table codes)."""
    if backend == "legacy_http":
        return f"ERR: {code}, {description}"
    error = {"code": str(code), "description": description}
    entry = {"apiMessageId": "", "accepted": False, "to": to, "error": error}
    return json.dumps({"data": {"message": [entry]}})


@pytest.mark.parametrize("backend", ["legacy_http", "rest"])
def test_error_122_lists_the_number_and_other_refusals_do_not(
    backend: str, account: Any, simulator: ClickatellSimulator
) -> None:
    """The legacy and REST APIs' "Destination mobile opted out" (122)."""
    account(backend)
    body = _refusal(backend, 105, "Invalid destination address", ZA2)
    simulator.inject("body", command="sendmsg", body=body)
    [other] = send(ZA2)
    other.refresh_from_db()
    assert other.send_state == SendState.REJECTED
    body = _refusal(backend, 122, "Destination mobile opted out", ZA)
    simulator.inject("body", command="sendmsg", body=body)
    [message] = send(ZA)
    message.refresh_from_db()
    assert message.send_state == SendState.REJECTED
    assert "122" in message.send_error
    assert list(OptOut.objects.values_list("number", "source")) == [(ZA, OptOutSource.GATEWAY)]


def test_a_one_api_code_26_is_not_read_as_legacy_and_vice_versa() -> None:
    from django_clickatell.exceptions import GatewayError

    assert GatewayError(26, "x", table="one_api").opted_out
    assert not GatewayError(26, "x").opted_out  # legacy 026 is something else
    assert GatewayError(122, "x").opted_out
    assert not GatewayError(122, "x", table="one_api").opted_out


def test_changes_by_a_user_are_logged_in_the_admin_history(account: Any, admin_user: User) -> None:
    account()
    api.opt_out(ZA, reason="complaint", by=admin_user)
    api.opt_in(ZA, by=admin_user)
    entries = LogEntry.objects.order_by("pk")
    assert [e.action_flag for e in entries] == [ADDITION, DELETION]
    assert "Opted out +27999000001: complaint" in entries[0].change_message
    assert "Opted in +27999000001" in entries[1].change_message
    with pytest.raises(InvalidMessage):
        api.opt_out("not a number")
    with pytest.raises(InvalidInput, match="No Clickatell account 'typo'"):
        api.opt_out(ZA, account="typo")
    with pytest.raises(InvalidInput, match="at most 200"):
        api.opt_out(ZA, reason="x" * 201)
    assert not OptOut.objects.exists()


def test_the_admin_adds_and_removes_by_hand_with_its_permission_logged_once(
    account: Any, client: Client
) -> None:
    account()
    user = User.objects.create_user("operator", password="pw", is_staff=True)
    client.force_login(user)
    add = reverse("admin:django_clickatell_optout_add")
    assert client.get(add).status_code == 403  # no permission
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["add_optout", "delete_optout", "view_optout"])
    )
    response = client.post(add, {"number": "+27 99 900 0001", "account": "", "reason": "STOP"})
    assert response.status_code == 302, response.content.decode()[:2000]
    entry = OptOut.objects.get()
    assert (entry.number, entry.created_by, entry.source) == (ZA, user, OptOutSource.MANUAL)
    assert LogEntry.objects.filter(action_flag=ADDITION).count() == 1
    pausing.pause_account(ALIAS, reason="bad day")
    page = client.get(reverse("admin:django_clickatell_optout_changelist")).content.decode()
    assert 'id="clickatell-pause-banner"' in page  # the list shows a paused account too
    assert "+27999000001" in page
    bad = client.post(add, {"number": "hello", "account": "", "reason": ""})
    assert bad.status_code == 200
    assert OptOut.objects.count() == 1
    delete = reverse("admin:django_clickatell_optout_delete", args=[entry.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not OptOut.objects.exists()
    assert LogEntry.objects.filter(action_flag=DELETION).count() == 1


# -- right before a request: a reached cap waits, then goes out once -----------------------------


def test_a_cap_reached_by_others_since_composing_makes_the_message_wait(
    account: Any, simulator: ClickatellSimulator
) -> None:
    account(GUARD_MAX_PER_HOUR=2)
    [message] = composing.create_messages(ZA, "hi", account=ALIAS)
    config = account_settings(ALIAS)
    counter = guards.Counter(config, ALIAS)
    [cap] = guards.caps_of(config)
    assert counter.take(cap, time.time())
    assert counter.take(cap, time.time())
    report = sending.send_messages([message.pk], via=Via.API)
    message.refresh_from_db()
    assert (message.send_state, message.waiting_for) == (SendState.QUEUED, WaitingFor.GUARD)
    assert report.waiting == [message.pk]
    assert message.claim_token == ""
    view = describe(message)  # the admin says why it waits and what happens next
    assert "sending cap" in view.reason
    assert "GUARD_MAX" in view.hint
    assert sends_of(simulator) == 0
    cache.clear()  # the hour has passed: room again
    guards.forget()
    resumed = waiting.resume()
    assert resumed.sends == [message.pk]
    sending.send_messages(resumed.sends, via=Via.API)
    sending.send_messages(resumed.sends, via=Via.API)  # a duplicate delivery: no second send
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    assert sends_of(simulator) == 1


# -- counting: shared, no overshoot; the cache down refuses -------------------------------------


def _take_many(times: int, limit: int) -> int:
    """Take *times* messages against an hourly cap of *limit*; how many were let through."""
    from django.db import connections

    connections.close_all()  # a forked child never uses the parent's connections
    config = account_settings("default")
    counter = guards.Counter(config, "race")
    cap = guards.Cap("max_per_hour", limit, guards.HOUR, "hour")
    return sum(bool(counter.take(cap, time.time())) for _ in range(times))


def test_threads_and_processes_racing_never_pass_the_cap(redis_cache: None) -> None:
    limit = 120
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(_take_many(40, limit))) for _ in range(6)
    ]
    for thread in threads:
        thread.start()
    with multiprocessing.get_context("fork").Pool(3) as pool:
        processes = pool.starmap(_take_many, [(40, limit)] * 3)
    for thread in threads:
        thread.join()
    assert sum(results) + sum(processes) == limit  # 360 tried: exactly the cap let through
    config = account_settings("default")
    [held] = guards.Counter(config, "race").counts([guards.Cap("h", limit, guards.HOUR, "hour")], 0)
    assert held == 0  # a different window: old buckets do not count
    now = time.time()
    [held] = guards.Counter(config, "race").counts(
        [guards.Cap("h", limit, guards.HOUR, "hour")], now
    )
    assert held == limit  # refusals gave back what they counted


def test_the_window_covers_at_least_the_hour_and_the_day() -> None:
    for window, span in ((guards.HOUR, 3600), (guards.DAY, 86400)):
        assert (window.buckets - 1) * window.bucket >= span


class _DownCache:
    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("cache down")

        return fail


def test_with_the_cache_down_capped_sends_are_refused_and_wait(
    account: Any, simulator: ClickatellSimulator, monkeypatch: Any
) -> None:
    account(GUARD_MAX_PER_HOUR=100, GUARD_ALLOWED_DESTINATIONS=["ZA"])
    [message] = composing.create_messages(ZA, "hi", account=ALIAS)
    monkeypatch.setattr(guards, "caches", {"default": _DownCache()})
    with pytest.raises(GuardTripped) as raised:
        send(ZA2)
    assert raised.value.guard == "cache"
    assert raised.value.key == "CACHE_ALIAS"
    with pytest.raises(GuardTripped) as raised:
        send(GB)  # the guards that need no count still work
    assert raised.value.guard == "destinations"
    sending.send_messages([message.pk], via=Via.API)
    message.refresh_from_db()
    assert (message.send_state, message.waiting_for) == (SendState.QUEUED, WaitingFor.GUARD)
    assert sends_of(simulator) == 0
    monkeypatch.undo()
    sending.send_messages(waiting.resume().sends, via=Via.API)
    message.refresh_from_db()
    assert message.send_state == SendState.SENT
    assert sends_of(simulator) == 1


# -- a trip can pause the account ----------------------------------------------------------------


def test_a_trip_pauses_the_account_when_asked(account: Any, simulator: ClickatellSimulator) -> None:
    account(GUARD_MAX_PER_HOUR=1, GUARDS_PAUSE_ON_TRIP=True)
    send(ZA)
    assert not pausing.is_paused(ALIAS)
    with pytest.raises(GuardTripped):
        send(ZA2)
    pause = pausing.pause_of(ALIAS)
    assert pause is not None
    assert "max_per_hour" in pause.reason
    assert "GUARD_MAX_PER_HOUR" in pause.reason


def test_a_trip_does_not_pause_unless_asked_nor_for_an_opt_out(account: Any) -> None:
    account(GUARD_MAX_PER_HOUR=1, GUARD_OPT_OUT=True, GUARDS_PAUSE_ON_TRIP=True)
    api.opt_out(ZA)
    with pytest.raises(GuardTripped):
        send(ZA)
    assert not pausing.is_paused(ALIAS)


# -- system checks -----------------------------------------------------------------------------


def test_caps_that_contradict_each_other_are_reported(settings: Any) -> None:
    from django_clickatell.checks import check_settings

    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "GUARD_MAX_PER_HOUR": 100,
        "GUARD_MAX_PER_DAY": 50,
        "GUARD_MAX_PER_RECIPIENT_PER_HOUR": 500,
    }
    found = [m for m in check_settings() if m.id == "django_clickatell.W011"]
    assert len(found) == 2
    assert "GUARD_MAX_PER_DAY" in found[0].msg
    assert "GUARD_MAX_PER_RECIPIENT_PER_HOUR" in found[1].msg
    settings.CLICKATELL = {**settings.CLICKATELL, "GUARD_MAX_PER_DAY": 2000}
    settings.CLICKATELL["GUARD_MAX_PER_RECIPIENT_PER_HOUR"] = 5
    assert not [m for m in check_settings() if m.id == "django_clickatell.W011"]


def test_caps_counted_in_a_per_process_cache_are_reported(settings: Any) -> None:
    from django_clickatell.checks import check_settings

    settings.CACHES = {
        **settings.CACHES,
        "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    }
    settings.CLICKATELL = {**settings.CLICKATELL, "CACHE_ALIAS": "local"}
    assert not [m for m in check_settings() if m.id == "django_clickatell.W011"]
    settings.CLICKATELL = {**settings.CLICKATELL, "GUARD_MAX_PER_HOUR": 100}
    [found] = [m for m in check_settings() if m.id == "django_clickatell.W011"]
    assert "count alone" in found.msg


@pytest.mark.django_db(transaction=True)
def test_send_runs_racing_with_duplicate_deliveries_send_exactly_the_cap(
    account: Any, simulator: ClickatellSimulator, settings: Any
) -> None:
    """Three workers, each handed all 30 messages twice (duplicate task deliveries),
    against an hourly cap of 10: exactly 10 requests leave, each number at most once;
    the other 20 wait, and go out as room opens."""
    account()
    numbers = [f"279900002{n:02d}" for n in range(30)]
    messages = composing.create_messages(numbers, "campaign", account=ALIAS)
    pks = [m.pk for m in messages]
    account(GUARD_MAX_PER_HOUR=10)
    simulator.latency = 0.01
    barrier = threading.Barrier(3)

    def worker() -> None:
        try:
            barrier.wait()
            for _ in range(2):
                sending.send_messages(pks, via=Via.TASK)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    by_recipient = simulator.sendmsg_requests_by_recipient()
    assert sum(by_recipient.values()) == 10
    assert set(by_recipient.values()) == {1}
    rows = OutboundMessage.objects.filter(pk__in=pks)
    assert rows.filter(send_state=SendState.SENT).count() == 10
    assert rows.filter(send_state=SendState.QUEUED, waiting_for=WaitingFor.GUARD).count() == 20
    cache.clear()  # an hour later: room for ten more
    guards.forget()
    sending.send_messages(waiting.resume().sends, via=Via.TASK)
    assert rows.filter(send_state=SendState.SENT).count() == 20
    assert sum(simulator.sendmsg_requests_by_recipient().values()) == 20
    assert simulator.duplicate_sends() == []


def test_a_held_message_released_to_a_number_opted_out_since_is_not_sent(
    account: Any, simulator: ClickatellSimulator
) -> None:
    """The release passes the same check right before its request."""
    from datetime import timedelta

    from django.utils import timezone

    from django_clickatell.services.release import release_due

    account(GUARD_OPT_OUT=True)
    later = timezone.now() + timedelta(days=30)
    [message] = composing.create_messages(ZA, "later", account=ALIAS, scheduled_for=later)
    assert message.send_state == SendState.HELD
    api.opt_out(ZA)
    now = timezone.now()
    OutboundMessage.objects.filter(pk=message.pk).update(release_at=now, scheduled_for=now)
    report = release_due()
    assert report.released == [message.pk]
    sending.send_messages(report.released, via=Via.TASK)
    message.refresh_from_db()
    assert message.send_state == SendState.FAILED
    assert "opt_out" in message.send_error
    assert sends_of(simulator) == 0


def test_a_count_that_lands_after_its_bucket_ended_moves_to_the_new_one(
    redis_cache: None, monkeypatch: Any
) -> None:
    """An ended bucket never grows, so what a process remembers of it stays true."""
    guards.forget()
    config = account_settings("default")
    counter = guards.Counter(config, "late")
    cap = guards.Cap("max_per_hour", 5, guards.HOUR, "hour")
    start = 1_000_000 * guards.HOUR.bucket  # the start of a bucket
    clock = iter([start + guards.HOUR.bucket, start + guards.HOUR.bucket])

    class Clock:
        @staticmethod
        def time() -> float:
            return next(clock)  # the clock moved on right after the incr

    monkeypatch.setattr(guards, "time", Clock)
    key = counter.take(cap, start + guards.HOUR.bucket - 0.001)
    old, new = (f"{counter.base}:hour:{n}" for n in (1_000_000, 1_000_001))
    assert key == new
    assert (cache.get(old), cache.get(new)) == (0, 1)
    guards.forget()
