from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from django.core.checks import Tags, run_checks
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections
from django.test import override_settings
from django.views.debug import SafeExceptionReporterFilter

from django_clickatell import checks
from django_clickatell.conf import (
    ClickatellSettings,
    CredentialsInUrl,
    LeaseTooShort,
    Malformed,
    MalformedUrl,
    Missing,
    OutOfRange,
    WrongType,
    account_aliases,
    account_settings,
    app_settings,
)
from django_clickatell.protocol.redaction import Secret

BASE = {"USERNAME": "u", "PASSWORD": "p4ssword", "API_ID": "1234567"}
REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/14",
    }
}


#: A URLconf without the status callback, so W003 (routed without credentials) stays out
#: of the checks below; ``tests.urls`` routes it.
urlpatterns: list[Any] = []


@contextmanager
def conn_max_age(seconds: int | None) -> Iterator[None]:
    """The default database's ``CONN_MAX_AGE`` as W010 reads it (persistent unless told)."""
    with mock.patch.dict(connections[DEFAULT_DB_ALIAS].settings_dict, {"CONN_MAX_AGE": seconds}):
        yield


def ids(
    config: Any,
    caches: Any = None,
    urlconf: str = __name__,
    deploy: bool = False,
    max_age: int | None = 600,
) -> list[str]:
    with (
        override_settings(CLICKATELL=config, CACHES=caches or REDIS, ROOT_URLCONF=urlconf),
        conn_max_age(max_age),
    ):
        found = run_checks(tags=["django_clickatell"], include_deployment_checks=deploy)
        return sorted(m.id for m in found if m.id)


class TestSettings:
    def test_defaults(self) -> None:
        with override_settings(CLICKATELL=BASE):
            assert app_settings.base_url == "https://api.clickatell.com/http/"
            assert app_settings.timeout == (5.0, 15.0)
            assert app_settings.cache_alias == "default"
            assert app_settings.session_ttl == 600
            assert app_settings.auth_lock_timeout == 30.0
            assert app_settings.auth_wait_timeout == 31.0
            assert app_settings.claim_timeout == 300

    def test_override_settings_is_seen(self) -> None:
        with override_settings(CLICKATELL={**BASE, "USERNAME": "first"}):
            assert app_settings.username == "first"
        with override_settings(CLICKATELL={**BASE, "USERNAME": "second"}):
            assert app_settings.username == "second"

    def test_password_is_wrapped(self) -> None:
        with override_settings(CLICKATELL=BASE):
            assert isinstance(app_settings.password, Secret)
            assert "p4ssword" not in repr(app_settings.password)

    @pytest.mark.parametrize("key", ["USERNAME", "PASSWORD", "API_ID"])
    def test_missing_key_is_named(self, key: str) -> None:
        config = {k: v for k, v in BASE.items() if k != key}
        with override_settings(CLICKATELL=config), pytest.raises(ImproperlyConfigured) as info:
            getattr(app_settings, key.lower())
        assert f"settings.CLICKATELL[{key!r}] is missing" in str(info.value)

    @pytest.mark.parametrize(
        ("key", "value", "fragment"),
        [
            ("TIMEOUT", "slow", "'TIMEOUT'"),
            ("TIMEOUT", (1, 2, 3), "(connect, read)"),
            ("SESSION_TTL", 900, "at most 840"),
            ("API_ID", "abc", "numeric"),
            ("BASE_URL", "ftp://x", "http(s) URL"),
            ("BASE_URL", "https://user:pw@api.clickatell.com/http/", "credentials"),
            ("TASK_CHUNK_SIZE", 0, "positive integer"),
            ("TASK_CHUNK_SIZE", True, "positive integer"),
        ],
    )
    def test_mistyped_key_is_named(self, key: str, value: object, fragment: str) -> None:
        with (
            override_settings(CLICKATELL={**BASE, key: value}),
            pytest.raises(ImproperlyConfigured) as info,
        ):
            getattr(app_settings, key.lower())
        assert fragment in str(info.value)
        assert f"[{key!r}]" in str(info.value)

    @pytest.mark.parametrize(
        ("key", "value"),
        [
            ("TIMEOUT", math.inf),
            ("TIMEOUT", math.nan),
            ("TIMEOUT", (1.0, math.inf)),
            ("TIMEOUT", (math.nan, 1.0)),
            ("TIMEOUT", 1e9),
            ("TIMEOUT", (0, 5)),
            ("TIMEOUT", (5, -1)),
            ("SESSION_MEMO_SECONDS", math.nan),
            ("SESSION_MEMO_SECONDS", math.inf),
            ("SESSION_MEMO_SECONDS", -1),
            ("SESSION_TOUCH_INTERVAL", 10**9),
            ("AUTH_LOCK_TIMEOUT", math.inf),
            ("AUTH_LOCK_TIMEOUT", math.nan),
            ("AUTH_WAIT_TIMEOUT", math.inf),
            ("AUTH_WAIT_TIMEOUT", 1e12),
            ("AUTH_FAILURE_TTL", 10**12),
            ("CLAIM_TIMEOUT", 10**12),
            ("CLAIM_TIMEOUT", 0),
            ("TASK_CHUNK_SIZE", 10**9),
            ("TASK_MAX_RETRIES", 10**9),
            ("TASK_RETRY_BACKOFF", math.inf),
            ("TASK_RETRY_BACKOFF", math.nan),
            ("TASK_RETRY_BACKOFF_MAX", 1e308),
            ("REFRESH_CHUNK_SIZE", 10**9),
            ("BALANCE_CACHE_SECONDS", 10**12),
        ],
    )
    def test_numbers_are_finite_and_bounded(self, key: str, value: object) -> None:
        """inf, nan and absurd sizes used to pass and crash at run time (timedelta overflow,
        a socket timeout of inf, a lease that never expires).  Reported as E007 (out of
        bounds); E002 is a wrong type only."""
        with (
            override_settings(CLICKATELL={**BASE, key: value}),
            pytest.raises(ImproperlyConfigured) as info,
        ):
            getattr(app_settings, key.lower())
        assert f"[{key!r}]" in str(info.value)
        assert ids({**BASE, key: value}) == ["django_clickatell.E007"]

    def test_not_a_dict(self) -> None:
        with override_settings(CLICKATELL=["nope"]), pytest.raises(ImproperlyConfigured):
            app_settings.username  # noqa: B018

    def test_base_url_gets_trailing_slash(self) -> None:
        with override_settings(CLICKATELL={**BASE, "BASE_URL": "https://gw.example/http"}):
            assert app_settings.base_url == "https://gw.example/http/"

    @pytest.mark.parametrize("document", ["docs/configuration.rst"])
    def test_every_option_documented(self, document: str) -> None:
        from pathlib import Path

        text = (Path(__file__).parent.parent / document).read_text()
        for key in ClickatellSettings.options():
            assert f"``{key}``" in text, key


class TestDeadlines:
    """Leases outlive the work they guard; the numbers come from the client's code paths."""

    def test_request_deadline_is_connect_plus_read(self) -> None:
        with override_settings(CLICKATELL={**BASE, "TIMEOUT": (2.5, 7.5)}):
            assert app_settings.request_deadline == 10.0
        with override_settings(CLICKATELL={**BASE, "TIMEOUT": 4}):
            assert app_settings.request_deadline == 8.0

    def test_command_deadline_counts_two_logins_and_two_requests(self) -> None:
        config = {**BASE, "TIMEOUT": (1, 2), "AUTH_LOCK_TIMEOUT": 10, "AUTH_WAIT_TIMEOUT": 4}
        with override_settings(CLICKATELL=config):
            # (wait 4 + poll 0.2 + login 3) + command 3, twice (one renewal)
            assert app_settings.command_deadline == pytest.approx(2 * (4 + 0.2 + 3 + 3))
            assert app_settings.minimum_claim_timeout == pytest.approx(
                2 * app_settings.command_deadline
            )

    def test_short_claim_is_refused_naming_the_key(self) -> None:
        config = {**BASE, "TIMEOUT": (1, 2), "AUTH_WAIT_TIMEOUT": 4, "CLAIM_TIMEOUT": 40}
        with override_settings(CLICKATELL=config), pytest.raises(LeaseTooShort) as info:
            app_settings.claim_timeout  # noqa: B018
        assert isinstance(info.value, ImproperlyConfigured)
        assert "['CLAIM_TIMEOUT']" in str(info.value)
        assert "40.8" in str(info.value)  # 2 x 20.4 s
        assert ids(config) == ["django_clickatell.E005"]
        assert ids({**config, "CLAIM_TIMEOUT": 41}) == []

    def test_short_auth_lock_is_refused_naming_the_key(self) -> None:
        config = {**BASE, "TIMEOUT": (5, 15), "AUTH_LOCK_TIMEOUT": 20}
        with override_settings(CLICKATELL=config), pytest.raises(LeaseTooShort) as info:
            app_settings.auth_lock_timeout  # noqa: B018
        assert "['AUTH_LOCK_TIMEOUT']" in str(info.value)
        assert ids(config) == ["django_clickatell.E006"]
        assert ids({**config, "AUTH_LOCK_TIMEOUT": 30}) == []

    def test_client_refuses_short_leases_before_any_request(self) -> None:
        from django_clickatell.gateway.client import ClickatellClient

        with (
            override_settings(CLICKATELL={**BASE, "AUTH_LOCK_TIMEOUT": 1}),
            pytest.raises(ImproperlyConfigured, match="AUTH_LOCK_TIMEOUT"),
        ):
            ClickatellClient()

    @pytest.mark.parametrize("timeout", [(5, 15), (10, 60), (60, 300), 0.1])
    def test_default_leases_follow_the_timeouts(self, timeout: object) -> None:
        config = {**BASE, "TIMEOUT": timeout}
        with override_settings(CLICKATELL=config):
            assert app_settings.claim_timeout >= app_settings.minimum_claim_timeout
            assert app_settings.auth_lock_timeout >= app_settings.minimum_auth_lock_timeout
            assert app_settings.auth_wait_timeout > app_settings.auth_lock_timeout
            assert app_settings.claim_timeout >= 300
        assert ids(config) == []

    def test_suite_settings_satisfy_the_rules(self) -> None:
        """The test settings (and the fault matrix's short ones) are themselves valid."""
        fault_matrix = {
            **BASE,
            "TIMEOUT": (0.25, 0.5),
            "AUTH_LOCK_TIMEOUT": 1.5,
            "AUTH_WAIT_TIMEOUT": 0.5,
            "CLAIM_TIMEOUT": 9,
        }
        assert ids(fault_matrix) == []
        assert app_settings.claim_timeout >= app_settings.minimum_claim_timeout


class TestChecks:
    def test_clean(self) -> None:
        assert ids(BASE) == []

    def test_e001_missing_credentials(self) -> None:
        assert ids({"USERNAME": "u"}) == ["django_clickatell.E001"] * 2

    def test_e002_mistyped(self) -> None:
        assert ids({**BASE, "TIMEOUT": "x"}) == ["django_clickatell.E002"]

    def test_e002_not_a_dict(self) -> None:
        assert ids("x") == ["django_clickatell.E002"]

    def test_e003_plain_http(self) -> None:
        assert ids({**BASE, "BASE_URL": "http://api.clickatell.com/http/"}) == [
            "django_clickatell.E003"
        ]

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]", "127.0.0.5"])
    def test_e003_loopback_allowed(self, host: str) -> None:
        assert ids({**BASE, "BASE_URL": f"http://{host}:8911/http/"}) == []

    def test_e003_is_also_refused_at_run_time(self) -> None:
        from django_clickatell.gateway.transport import Transport

        with pytest.raises(ImproperlyConfigured, match="BASE_URL"):
            Transport("http://api.clickatell.com/http/", (1.0, 1.0))

    def test_e004_unknown_alias(self) -> None:
        assert ids({**BASE, "CACHE_ALIAS": "sessions"}) == ["django_clickatell.E004"]

    @pytest.mark.parametrize(
        "backend", ["locmem.LocMemCache", "dummy.DummyCache", "filebased.FileBasedCache"]
    )
    def test_w001_per_process_cache(self, backend: str) -> None:
        caches = {
            "default": {"BACKEND": f"django.core.cache.backends.{backend}", "LOCATION": "/tmp/x"}
        }
        assert ids(BASE, caches) == ["django_clickatell.W001"]

    def test_w001_only_for_the_session_alias(self) -> None:
        caches = {**REDIS, "local": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
        assert ids(BASE, caches) == []
        assert ids({**BASE, "CACHE_ALIAS": "local"}, caches) == ["django_clickatell.W001"]

    def test_w002_unknown_key(self) -> None:
        assert ids({**BASE, "PASSWROD": "x"}) == ["django_clickatell.W002"]

    def test_check_messages_never_echo_the_password(self) -> None:
        with override_settings(CLICKATELL={**BASE, "TIMEOUT": "x", "PASSWROD": "p4ssword"}):
            text = " ".join(str(m) for m in run_checks(tags=["django_clickatell"]))
        assert "p4ssword" not in text


#: A second legacy account, and a One API one (its backend is a stand-in until it lands).
LEGACY = {"USERNAME": "other", "PASSWORD": "0ther-pass", "API_ID": "7654321"}
PLATFORM = {"BACKEND": "tests.test_accounts.NoRemoteStop", "API_KEY": "k3y"}

#: One configuration per problem, producing exactly that problem's id (and nothing else).
NO_CALLBACK = __name__
PROBLEM_CASES: dict[str, tuple[dict[str, Any], Any, str]] = {
    "django_clickatell.E001": ({"USERNAME": "u", "PASSWORD": "p4ssword"}, None, NO_CALLBACK),
    "django_clickatell.E002": ({**BASE, "KEEP_TEXT": "yes"}, None, NO_CALLBACK),
    "django_clickatell.E003": ({**BASE, "BASE_URL": "http://gw.example/http/"}, None, NO_CALLBACK),
    "django_clickatell.E004": ({**BASE, "CACHE_ALIAS": "sessions"}, None, NO_CALLBACK),
    "django_clickatell.E005": (
        {**BASE, "TIMEOUT": (1, 2), "AUTH_WAIT_TIMEOUT": 4, "CLAIM_TIMEOUT": 40},
        None,
        NO_CALLBACK,
    ),
    "django_clickatell.E006": ({**BASE, "AUTH_LOCK_TIMEOUT": 20}, None, NO_CALLBACK),
    "django_clickatell.E007": ({**BASE, "SESSION_TTL": 900}, None, NO_CALLBACK),
    "django_clickatell.E008": ({**BASE, "API_ID": "abc"}, None, NO_CALLBACK),
    "django_clickatell.E009": ({**BASE, "BASE_URL": "https://gw.example/?a=1"}, None, NO_CALLBACK),
    "django_clickatell.E010": (
        {**BASE, "BASE_URL": "https://u:hunter2@gw.example/"},
        None,
        NO_CALLBACK,
    ),
    "django_clickatell.E011": ({**BASE, "ACCOUNTS": [PLATFORM]}, None, NO_CALLBACK),
    "django_clickatell.E012": ({**BASE, "ACCOUNTS": {"two words": LEGACY}}, None, NO_CALLBACK),
    "django_clickatell.E013": (
        {**BASE, "ACCOUNTS": {"other": {**LEGACY, "BACKEND": "no.such.Backend"}}},
        None,
        NO_CALLBACK,
    ),
    "django_clickatell.W006": (
        {**BASE, "ACCOUNTS": {"other": {**LEGACY, "KEEP_TEXT": False}}},
        None,
        NO_CALLBACK,
    ),
    "django_clickatell.W001": (
        BASE,
        {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        NO_CALLBACK,
    ),
    "django_clickatell.W002": ({**BASE, "CALLBACK_CREDENTIALS": []}, None, NO_CALLBACK),
    "django_clickatell.W003": (BASE, None, "tests.urls"),
    "django_clickatell.W004": ({**BASE, "CALLBACK_PASSWORD": "cb-secret"}, None, NO_CALLBACK),
    "django_clickatell.W005": (
        {**BASE, "CALLBACK_BASIC_AUTH": [("cb", "other"), ("cb", BASE["PASSWORD"])]},
        None,
        NO_CALLBACK,
    ),
    "django_clickatell.E014": (
        {**BASE, "ACCOUNTS": {"other": {**LEGACY, "API_ID": BASE["API_ID"]}}},
        None,
        NO_CALLBACK,
    ),
    "django_clickatell.W008": ({**BASE, "CALLBACK_SECRET": "short-secret"}, None, NO_CALLBACK),
    "django_clickatell.W011": (
        {**BASE, "GUARD_MAX_PER_HOUR": 100, "GUARD_MAX_PER_DAY": 50},
        None,
        NO_CALLBACK,
    ),
}
#: A secret W008 has nothing to say about: secrets.token_urlsafe(32)'s length and variety.
GOOD_SECRET = "Xq3_vB9-kLm2Np7RsT4uWy8zA1cD5eF6gH0jK3oP9iQ"


#: Problems that rest on more than ``CLICKATELL``, caches and URLs, tested by id on their
#: own: W007 (the release loop's schedule) in test_release_loop_check.py, W010 (the
#: database's CONN_MAX_AGE) in TestCallbackConnections below.
TESTED_ELSEWHERE = {"django_clickatell.W007", "django_clickatell.W010"}


def messages(
    config: Any, caches: Any, urlconf: str, tags: list[str], max_age: int | None = 600
) -> list[Any]:
    """What ``check --deploy --tag ...`` reports (with persistent connections unless told)."""
    with (
        override_settings(CLICKATELL=config, CACHES=caches or REDIS, ROOT_URLCONF=urlconf),
        conn_max_age(max_age),
    ):
        return list(run_checks(tags=tags, include_deployment_checks=True))


class TestCheckIds:
    """One stable id per problem; each tested by id; security problems carry the tag."""

    def test_every_documented_problem_has_a_case(self) -> None:
        # The database problems need rows: tests/test_account_comes_and_goes.py has theirs.
        database = {p.id for p in checks.DATABASE_PROBLEMS}
        assert set(PROBLEM_CASES) | TESTED_ELSEWHERE == set(checks.BY_ID) - database
        assert len(checks.BY_ID) == len(checks.PROBLEMS)  # no id used twice

    @pytest.mark.parametrize("check_id", sorted(PROBLEM_CASES))
    def test_each_problem_reports_its_own_id(self, check_id: str) -> None:
        config, caches, urlconf = PROBLEM_CASES[check_id]
        found = [m.id for m in messages(config, caches, urlconf, ["django_clickatell"])]
        assert set(found) == {check_id}

    @pytest.mark.parametrize("check_id", sorted(PROBLEM_CASES))
    def test_security_problems_carry_the_security_tag(self, check_id: str) -> None:
        config, caches, urlconf = PROBLEM_CASES[check_id]
        found = messages(config, caches, urlconf, [Tags.security])
        tagged = {m.id for m in found if m.id.startswith("django_clickatell.")}
        assert tagged == ({check_id} if checks.BY_ID[check_id].security else set())

    def test_the_security_problems(self) -> None:
        security = {p.id for p in checks.PROBLEMS if p.security}
        assert security == {
            "django_clickatell.E003",
            "django_clickatell.E010",
            "django_clickatell.W003",
            "django_clickatell.W005",
            "django_clickatell.W008",
        }

    def test_every_setting_error_maps_to_a_documented_id(self) -> None:
        classes = [WrongType, OutOfRange, Malformed, MalformedUrl, CredentialsInUrl, Missing]
        assert {cls.check_id for cls in classes} <= set(checks.BY_ID)
        assert len({cls.check_id for cls in classes}) == len(classes)

    @pytest.mark.parametrize(
        ("key", "value", "check_id"),
        [
            ("TIMEOUT", "slow", "E002"),
            ("TIMEOUT", (1, 2, 3), "E002"),
            ("TASK_CHUNK_SIZE", True, "E002"),
            ("TASK_CHUNK_SIZE", 0, "E007"),
            ("TIMEOUT", math.inf, "E007"),
            ("CACHE_ALIAS", "  ", "E008"),
            ("CALLBACK_USERNAME", "a:b", "E008"),
            ("BASE_URL", "ftp://gw.example/", "E009"),
            ("BASE_URL", "https://gw.example/#x", "E009"),
            ("CALLBACK_BASIC_AUTH", {"cb": "pw"}, "E002"),
            ("CALLBACK_BASIC_AUTH", [("cb", "pw", "x")], "E002"),
            ("CALLBACK_BASIC_AUTH", [("cb", 5)], "E002"),
            ("CALLBACK_BASIC_AUTH", [("cb", f"pw{n}") for n in range(6)], "E007"),
            ("CALLBACK_BASIC_AUTH", [("cb", "")], "E008"),
            ("CALLBACK_BASIC_AUTH", [("c:b", "pw")], "E008"),
            # A secret the callback URL cannot carry as it is (issue 19): base64's / + =.
            ("CALLBACK_SECRET", "abcdefghij/klmnopqrstuvwxyz0123456789ABCD", "E008"),
            ("CALLBACK_SECRET", "abcdefghij+klmnopqrstuvwxyz0123456789ABC=", "E008"),
            ("CALLBACK_SECRET", "abcdefghij klmnopqrstuvwxyz0123456789ABCD", "E008"),
            ("CALLBACK_SECRET", GOOD_SECRET * 7, "E007"),
            ("CALLBACK_SECRET", 12345678, "E002"),
        ],
    )
    def test_type_bounds_and_form_are_told_apart(
        self, key: str, value: object, check_id: str
    ) -> None:
        assert ids({**BASE, key: value}) == [f"django_clickatell.{check_id}"]

    def test_w003_only_where_the_view_is_routed_without_credentials(self) -> None:
        routed = "tests.urls"
        assert ids(BASE, urlconf=routed, deploy=True) == ["django_clickatell.W003"]
        pair = {"CALLBACK_USERNAME": "cb", "CALLBACK_PASSWORD": "x"}
        assert ids({**BASE, **pair}, urlconf=routed, deploy=True) == []
        listed = {**BASE, "CALLBACK_BASIC_AUTH": [("cb", "x")]}
        assert ids(listed, urlconf=routed, deploy=True) == []
        assert ids(BASE, deploy=True) == []  # not routed: callbacks are not in use

    def test_w003_looks_at_each_account_and_names_it(self) -> None:
        """W003 asked for credentials the legacy account had set (it looked at the top
        level only); now each account receiving callbacks is asked for its own."""
        routed = "tests.urls"
        pair = {"CALLBACK_USERNAME": "cb", "CALLBACK_PASSWORD": "x0ther-cb"}
        one_api = {"BACKEND": "one_api", "API_KEY": "k3y", "CALLBACK_SECRET": GOOD_SECRET}
        # A One API default account with its secret, the legacy account named, with its pair.
        config = {**one_api, "ACCOUNTS": {"legacy": {**LEGACY, **pair}}}
        assert ids(config, urlconf=routed, deploy=True) == []
        # Without the pair: W003 names the account and its keys.
        config = {**one_api, "ACCOUNTS": {"legacy": LEGACY}}
        found = messages(config, None, routed, ["django_clickatell"])
        assert [m.id for m in found] == ["django_clickatell.W003"]
        assert "account 'legacy'" in found[0].msg
        assert "settings.CLICKATELL['ACCOUNTS']['legacy']['CALLBACK_USERNAME']" in found[0].msg
        # A One API account without its secret: W003 names CALLBACK_SECRET and its account.
        config = {**BASE, **pair, "ACCOUNTS": {"platform": {**one_api, "CALLBACK_SECRET": ""}}}
        found = messages(config, None, routed, ["django_clickatell"])
        assert [m.id for m in found] == ["django_clickatell.W003"]
        assert "settings.CLICKATELL['ACCOUNTS']['platform']['CALLBACK_SECRET']" in found[0].msg
        # An account whose API pushes no callbacks is asked for nothing.
        assert (
            ids({**BASE, **pair, "ACCOUNTS": {"dev": {"BACKEND": "console"}}}, None, routed, True)
            == []
        )

    def test_callback_checks_name_the_account_and_the_key(self) -> None:
        other = {
            **LEGACY,
            "CALLBACK_USERNAME": "cb",
            "CALLBACK_BASIC_AUTH": [("cb", LEGACY["PASSWORD"])],
            "CALLBACK_SECRET": "too-short",
        }
        found = messages(
            {**BASE, "ACCOUNTS": {"other": other}}, None, NO_CALLBACK, ["django_clickatell"]
        )
        by_id = {m.id: m.msg for m in found}
        assert set(by_id) == {
            "django_clickatell.W004",
            "django_clickatell.W005",
            "django_clickatell.W008",
        }
        where = "settings.CLICKATELL['ACCOUNTS']['other']"
        assert f"{where}['CALLBACK_USERNAME']" in by_id["django_clickatell.W004"]
        assert f"{where}['CALLBACK_PASSWORD']" in by_id["django_clickatell.W004"]
        assert "account 'other'" in by_id["django_clickatell.W005"]
        assert f"{where}['PASSWORD']" in by_id["django_clickatell.W005"]
        assert f"{where}['CALLBACK_SECRET']" in by_id["django_clickatell.W008"]
        assert "too-short" not in " ".join(f"{m.msg} {m.hint}" for m in found)

    @pytest.mark.parametrize(
        "secret",
        ["a" * 40, "abab" * 10, "0123456789abcdefghijklmnopqrstu"],  # repetitive; 31 chars
    )
    def test_a_weak_secret_is_w007(self, secret: str) -> None:
        assert ids({**BASE, "CALLBACK_SECRET": secret}) == ["django_clickatell.W008"]

    def test_a_malformed_secret_is_named_never_shown(self) -> None:
        secret = "S3cr3t/with+base64=chars0123456789abcdef"
        with override_settings(
            CLICKATELL={**BASE, "ACCOUNTS": {"other": {**LEGACY, "CALLBACK_SECRET": secret}}}
        ):
            found = list(run_checks(tags=["django_clickatell"]))
            with pytest.raises(Malformed) as info:
                account_settings("other").callback_secret  # noqa: B018
        assert [m.id for m in found] == ["django_clickatell.E008"]
        assert "settings.CLICKATELL['ACCOUNTS']['other']['CALLBACK_SECRET']" in found[0].msg
        for text in (found[0].msg, str(info.value)):
            assert "S3cr3t" not in text
            assert "base64=" not in text

    def test_w003_is_a_deploy_check(self) -> None:
        """Not before every management command (routing the view before configuring it is
        normal while developing), but with ``check --deploy``."""
        assert ids(BASE, urlconf="tests.urls") == []
        out = StringIO()
        with (
            override_settings(CLICKATELL=BASE, CACHES=REDIS, ROOT_URLCONF="tests.urls"),
            conn_max_age(600),
        ):
            call_command("check", "--deploy", "--tag", "security", stdout=out, stderr=out)
        assert "django_clickatell.W003" in out.getvalue()

    def test_the_routed_view_is_found_by_its_dotted_name(self) -> None:
        from django_clickatell.views import status_callback

        name = f"{status_callback.__module__}.{status_callback.__qualname__}"
        assert name == checks.CALLBACK_VIEW

    def test_secret_values_never_echoed(self) -> None:
        config = {
            **BASE,
            "BASE_URL": "ftp://u:hunter2@gw.example/?password=hunter3",
            "CALLBACK_BASIC_AUTH": [("cb", "hunter4"), ("cb", "hunter5", "x")],
            "CALLBACK_PASSWORD": "p4ssword",
        }
        with override_settings(CLICKATELL=config, ROOT_URLCONF="tests.urls"):
            text = " ".join(f"{m} {m.hint}" for m in run_checks(tags=["django_clickatell"]))
        for secret in ("hunter2", "hunter3", "hunter4", "hunter5", "p4ssword"):
            assert secret not in text


class TestCallbackCredentials:
    def test_pairs_are_parsed_and_wrapped(self) -> None:
        pairs = [["cb", "old-pw"], ("cb", "new-pw")]
        with override_settings(CLICKATELL={**BASE, "CALLBACK_BASIC_AUTH": pairs}):
            accepted = app_settings.callback_credentials
        assert [user for user, _ in accepted] == ["cb", "cb"]
        assert [p.reveal() for _, p in accepted] == ["old-pw", "new-pw"]
        assert all(isinstance(p, Secret) for _, p in accepted)
        assert "old-pw" not in repr(accepted)

    def test_single_pair_first_then_the_list_and_half_a_pair_ignored(self) -> None:
        config = {
            **BASE,
            "CALLBACK_USERNAME": "legacy",
            "CALLBACK_PASSWORD": "legacy-pw",
            "CALLBACK_BASIC_AUTH": [("cb", "new-pw")],
        }
        with override_settings(CLICKATELL=config):
            assert [u for u, _ in app_settings.callback_credentials] == ["legacy", "cb"]
        with override_settings(CLICKATELL={**config, "CALLBACK_PASSWORD": ""}):
            assert [u for u, _ in app_settings.callback_credentials] == ["cb"]

    def test_every_secret_key_is_hidden_by_djangos_error_reports(self) -> None:
        """Django's error pages and reports show settings whose names lack API, AUTH, KEY,
        PASS, SECRET, TOKEN... in full: a key holding passwords must be named so it is
        hidden (``CALLBACK_CREDENTIALS`` would not be)."""
        hidden = SafeExceptionReporterFilter.hidden_settings
        for key, option in ClickatellSettings.options().items():
            if "secret" in option.kind.type:
                assert hidden.search(key), key
        assert not hidden.search("CALLBACK_CREDENTIALS")


def test_names_importable_from_conf_before_the_split_still_are() -> None:
    import django_clickatell.conf as conf

    for name in (
        "AUTH_POLL_MAX",
        "CLAIM_HEADROOM",
        "DEFAULT_AUTH_LOCK_TIMEOUT",
        "DEFAULT_CLAIM_TIMEOUT",
        "LOCK_HEADROOM",
        "MAX_CONNECT_TIMEOUT",
        "MAX_READ_TIMEOUT",
        "MAX_SESSION_TTL",
        "ClickatellSettings",
        "Derived",
        "LeaseTooShort",
        "Option",
        "app_settings",
        "count",
        "insecure_base_url_reason",
        "is_loopback",
        "require_secure_base_url",
        "seconds",
        "user_settings",
    ):
        assert hasattr(conf, name), name


class TestAccounts:
    """Named accounts: own keys from their own dict, process-wide keys from the top level."""

    def test_a_named_account_inherits_no_account_key(self) -> None:
        config = {
            **BASE,
            "BASE_URL": "http://127.0.0.1:8911/http/",
            "TIMEOUT": 3,
            "KEEP_TEXT": False,
            "ACCOUNTS": {"platform": {"BACKEND": "one_api", "API_KEY": "k3y"}},
        }
        with override_settings(CLICKATELL=config):
            platform = account_settings("platform")
            assert platform.base_url == "https://platform.clickatell.com/"  # not the legacy one
            assert platform.timeout == (5.0, 15.0)  # the default, not the top-level 3
            assert (platform.username, platform.api_id) == ("", "")
            assert platform.password.reveal() == ""
            assert platform.api_key.reveal() == "k3y"
            assert platform.keep_text is False  # process-wide: from the top level
            assert account_settings("default") is app_settings
            assert app_settings.base_url == "http://127.0.0.1:8911/http/"
            assert account_aliases() == ["default", "platform"]

    @pytest.mark.parametrize(
        ("backend", "url"),
        [
            ("legacy_http", "https://api.clickatell.com/http/"),
            ("rest", "https://api.clickatell.com/rest/"),
            ("one_api", "https://platform.clickatell.com/"),
        ],
    )
    def test_base_url_defaults_by_backend(self, backend: str, url: str) -> None:
        config = {**BASE, "ACCOUNTS": {"x": {**LEGACY, "API_KEY": "k", "BACKEND": backend}}}
        with override_settings(CLICKATELL=config):
            assert account_settings("x").base_url == url
        with override_settings(CLICKATELL={**BASE, "API_KEY": "k", "BACKEND": backend}):
            assert app_settings.base_url == url

    def test_unknown_account_is_named(self) -> None:
        with (
            override_settings(CLICKATELL={**BASE, "ACCOUNTS": {"platform": PLATFORM}}),
            pytest.raises(ImproperlyConfigured, match=r"'marketing'.*default, platform"),
        ):
            account_settings("marketing")

    def test_missing_api_key_names_the_account(self) -> None:
        config = {**BASE, "ACCOUNTS": {"platform": {"BACKEND": "one_api"}}}
        with override_settings(CLICKATELL=config), pytest.raises(Missing) as info:
            account_settings("platform").api_key  # noqa: B018
        assert "settings.CLICKATELL['ACCOUNTS']['platform']['API_KEY'] is missing" in str(
            info.value
        )
        found = messages(config, None, NO_CALLBACK, ["django_clickatell"])
        e001 = [str(m.msg) for m in found if m.id == "django_clickatell.E001"]
        assert e001 == ["settings.CLICKATELL['ACCOUNTS']['platform']['API_KEY'] is missing."]

    def test_legacy_credentials_are_required_of_legacy_accounts_only(self) -> None:
        platform = {"BACKEND": "tests.test_accounts.NoRemoteStop", "API_KEY": "k"}
        assert ids({"API_KEY": "k", "BACKEND": "one_api"}) == []
        assert ids({"API_KEY": "k", "BACKEND": "no_such_api"}) == ["django_clickatell.E013"]
        assert ids({**BASE, "ACCOUNTS": {"platform": platform}}) == []
        config = {**BASE, "ACCOUNTS": {"old": {"USERNAME": "u2", "API_ID": "1"}}}
        found = messages(config, None, NO_CALLBACK, ["django_clickatell"])
        assert [(m.id, m.msg) for m in found] == [
            (
                "django_clickatell.E001",
                "settings.CLICKATELL['ACCOUNTS']['old']['PASSWORD'] is missing.",
            )
        ]

    def test_a_bad_value_in_an_account_names_the_account(self) -> None:
        config = {**BASE, "ACCOUNTS": {"old": {**LEGACY, "TIMEOUT": "slow"}}}
        found = messages(config, None, NO_CALLBACK, ["django_clickatell"])
        assert [m.id for m in found] == ["django_clickatell.E002"]
        assert "settings.CLICKATELL['ACCOUNTS']['old']['TIMEOUT']" in str(found[0].msg)

    def test_e003_names_the_account(self) -> None:
        config = {**BASE, "ACCOUNTS": {"old": {**LEGACY, "BASE_URL": "http://gw.example/"}}}
        found = messages(config, None, NO_CALLBACK, ["django_clickatell"])
        assert [m.id for m in found] == ["django_clickatell.E003"]
        assert "['ACCOUNTS']['old']['BASE_URL']" in str(found[0].msg)

    @pytest.mark.parametrize("alias", ["default", "", "x" * 33, "a/b", 7])
    def test_e012_bad_aliases(self, alias: Any) -> None:
        assert ids({**BASE, "ACCOUNTS": {alias: LEGACY}}) == ["django_clickatell.E012"]

    @pytest.mark.parametrize("accounts", [[LEGACY], "platform", {"platform": "one_api"}])
    def test_e011_not_a_dict_of_dicts(self, accounts: Any) -> None:
        assert ids({**BASE, "ACCOUNTS": accounts}) == ["django_clickatell.E011"]

    def test_w002_unknown_key_in_an_account(self) -> None:
        assert ids({**BASE, "ACCOUNTS": {"old": {**LEGACY, "PASWORD": "x"}}}) == [
            "django_clickatell.W002"
        ]

    def test_e013_names_the_account(self) -> None:
        config = {**BASE, "ACCOUNTS": {"old": {**LEGACY, "BACKEND": "no.such.Backend"}}}
        found = messages(config, None, NO_CALLBACK, ["django_clickatell"])
        assert [m.id for m in found] == ["django_clickatell.E013"]
        assert "['ACCOUNTS']['old']['BACKEND'] = 'no.such.Backend'" in str(found[0].msg)
        not_a_backend = {**BASE, "BACKEND": "django_clickatell.conf.Option"}
        assert ids(not_a_backend) == ["django_clickatell.E013"]

    def test_claim_timeout_outlives_the_slowest_account(self) -> None:
        slow = {**LEGACY, "TIMEOUT": (60, 300)}
        with override_settings(CLICKATELL={**BASE, "ACCOUNTS": {"slow": slow}}):
            assert app_settings.claim_timeout > 300  # derived from the slow account's calls
            assert app_settings.claim_timeout >= 2 * account_settings("slow").command_deadline
        config = {**BASE, "CLAIM_TIMEOUT": 300, "ACCOUNTS": {"slow": slow}}
        assert ids(config) == ["django_clickatell.E005"]


class TestCallbackConnections:
    """W010: callbacks are routed and every request opens a database connection (issue 20:
    204 callbacks/s at CONN_MAX_AGE 0, 5.5 of 9.1 ms of CPU per callback spent by
    PostgreSQL starting a backend)."""

    PAIR = {"CALLBACK_USERNAME": "cb", "CALLBACK_PASSWORD": "x0ther-cb"}

    def test_routed_callbacks_without_persistent_connections(self) -> None:
        config = {**BASE, **self.PAIR}
        found = messages(config, None, "tests.urls", ["django_clickatell"], max_age=0)
        assert [m.id for m in found] == ["django_clickatell.W010"]
        assert "CONN_MAX_AGE = 0" in found[0].msg
        assert "django_clickatell.views.status_callback" in found[0].msg
        assert "CONN_HEALTH_CHECKS" in (found[0].hint or "")
        assert checks.BY_ID["django_clickatell.W010"].security is False

    @pytest.mark.parametrize("max_age", [60, None])  # None: connections never closed
    def test_persistent_connections_satisfy_it(self, max_age: int | None) -> None:
        assert ids({**BASE, **self.PAIR}, None, "tests.urls", True, max_age) == []

    def test_only_where_callbacks_are_routed_and_only_with_deploy(self) -> None:
        assert ids(BASE, deploy=True, max_age=0) == []  # no callback view routed
        assert ids({**BASE, **self.PAIR}, None, "tests.urls", False, 0) == []  # developing

    def test_the_one_api_view_alone_counts_too(self) -> None:
        one_api = {"BACKEND": "one_api", "API_KEY": "k3y", "CALLBACK_SECRET": GOOD_SECRET}
        assert ids(one_api, None, "tests.urls", True, 0) == ["django_clickatell.W010"]
