"""Hostile and malformed input: whatever arrives, a clear 4xx or error, and nothing changes."""

from __future__ import annotations

import base64
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_clickatell.models import GatewayExchange, OutboundMessage, UnmatchedCallback
from django_clickatell.protocol.callbacks import InvalidCallback, parse_callback
from django_clickatell.simulator import ClickatellSimulator

URL = "/clickatell/callback/"
AUTH: dict[str, Any] = {
    "HTTP_AUTHORIZATION": "Basic " + base64.b64encode(b"cb:cb-password-1").decode()
}
FIELDS = ["api_id", "apiMsgId", "cliMsgId", "to", "from", "timestamp", "status", "charge"]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

values = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="0123456789abcdef", min_size=1, max_size=40),
    st.sampled_from(
        [
            "1234567",
            "003",
            "006",
            "0.300000",
            "1800000000",
            "27999000001",
            "",
            "-1",
            "NaN",
            "1e400",
            "９",
            "\x00",
            "𝟘𝟘𝟞",
            "a" * 300,
        ]
    ),
)
callback_params = st.dictionaries(
    st.one_of(st.sampled_from(FIELDS), st.text(max_size=12)), values, max_size=10
)


@pytest.fixture
def callbacks(settings: Any) -> OutboundMessage:
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "CALLBACK_USERNAME": "cb",
        "CALLBACK_PASSWORD": "cb-password-1",
    }
    return OutboundMessage.objects.create(
        apimsgid="f" * 32, climsgid="abc", recipient="27999000001", status="011"
    )


@pytest.mark.django_db
@FUZZ
@given(params=callback_params, method=st.sampled_from(["get", "post"]))
def test_callback_fuzz(
    client: Client, callbacks: OutboundMessage, params: dict[str, str], method: str
) -> None:
    before = (
        OutboundMessage.objects.get(pk=callbacks.pk).status,
        GatewayExchange.objects.count(),
        UnmatchedCallback.objects.count(),
    )
    response = getattr(client, method)(URL, params, **AUTH)
    assert response.status_code in (200, 400, 403)
    assert len(response.content) < 100
    try:
        parsed = parse_callback({k: str(v) for k, v in params.items()})
    except InvalidCallback:
        parsed = None
    if parsed is None or parsed.api_id != "1234567":
        assert response.status_code in (400, 403)
        after = (
            OutboundMessage.objects.get(pk=callbacks.pk).status,
            GatewayExchange.objects.count(),
            UnmatchedCallback.objects.count(),
        )
        assert after == before  # refused: nothing changed
    else:
        assert response.status_code == 200


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    [b"status=\xff\xfe&apiMsgId=\xc3", b"\x00\x01\x02", b"a=" + b"9" * 100_000, b"%zz=%%%"],
)
def test_callback_undecodable_bodies(
    client: Client, callbacks: OutboundMessage, body: bytes
) -> None:
    response = client.generic(
        "POST", URL, body, content_type="application/x-www-form-urlencoded", **AUTH
    )
    assert response.status_code == 400
    assert OutboundMessage.objects.get(pk=callbacks.pk).status == "011"


@pytest.mark.django_db
def test_callback_huge_request_is_refused(client: Client, callbacks: OutboundMessage) -> None:
    params = {f"k{i}": "v" for i in range(5000)}
    response = client.post(URL, params, **AUTH)
    assert response.status_code == 400  # Django's DATA_UPLOAD_MAX_NUMBER_FIELDS
    assert OutboundMessage.objects.get(pk=callbacks.pk).status == "011"


@pytest.mark.django_db
@FUZZ
@given(value=st.text(max_size=80))
def test_cancel_command_validates_ids_before_any_request(
    simulator: ClickatellSimulator, value: str
) -> None:
    out = StringIO()
    try:
        call_command(
            "clickatell_cancel", "--sync", "--apimsgid", value, stdout=out, stderr=StringIO()
        )
    except CommandError:
        pass  # refused with a clear error (a bad id, or an argument that looks like an option)
    else:
        assert "Selected 0" in out.getvalue()  # a well-formed id that matches nothing
    assert simulator.counts["total"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args",
    [
        ["--status", "٠٠٦"],  # Arabic-Indic digits are not a status code
        ["--status", "9" * 400],
        ["--climsgid", "a\x00b"],
        ["--apimsgid", "x" * 100_000],
        ["--scheduled-before", "2026-13-45T99:99"],
    ],
)
def test_cancel_command_hostile_values(simulator: ClickatellSimulator, args: list[str]) -> None:
    with pytest.raises(CommandError):
        call_command("clickatell_cancel", "--sync", *args, stdout=StringIO(), stderr=StringIO())
    assert simulator.counts["total"] == 0
