from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from django_clickatell.conf import ClickatellSettings, app_settings
from django_clickatell.protocol.redaction import Secret

BASE = {"USERNAME": "u", "PASSWORD": "p4ssword", "API_ID": "1234567"}
REDIS = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": "redis://127.0.0.1:6379/14",
    }
}


def ids(config: Any, caches: Any = None) -> list[str]:
    with override_settings(CLICKATELL=config, CACHES=caches or REDIS):
        return sorted(m.id for m in run_checks(tags=["django_clickatell"]) if m.id)


class TestSettings:
    def test_defaults(self) -> None:
        with override_settings(CLICKATELL=BASE):
            assert app_settings.base_url == "https://api.clickatell.com/http/"
            assert app_settings.timeout == (5.0, 30.0)
            assert app_settings.cache_alias == "default"
            assert app_settings.session_ttl == 600

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

    def test_not_a_dict(self) -> None:
        with override_settings(CLICKATELL=["nope"]), pytest.raises(ImproperlyConfigured):
            app_settings.username  # noqa: B018

    def test_base_url_gets_trailing_slash(self) -> None:
        with override_settings(CLICKATELL={**BASE, "BASE_URL": "https://gw.example/http"}):
            assert app_settings.base_url == "https://gw.example/http/"

    @pytest.mark.parametrize("document", ["README.rst", "docs/configuration.rst"])
    def test_every_option_documented(self, document: str) -> None:
        from pathlib import Path

        text = (Path(__file__).parent.parent / document).read_text()
        for key in ClickatellSettings.options():
            assert f"``{key}``" in text, key


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
