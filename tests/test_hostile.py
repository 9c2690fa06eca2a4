"""Hostile and malformed input: whatever arrives, a clear 4xx or error, and nothing changes."""

from __future__ import annotations

import base64
from io import StringIO
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from django_clickatell.exceptions import InvalidCallback
from django_clickatell.models import GatewayExchange, OutboundMessage, UnmatchedCallback
from django_clickatell.protocol.callbacks import parse_callback
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


# -- out-of-range callback fields: a 400, never a 500, and nothing stored -----------------

VALID_CALLBACK = {
    "api_id": "1234567",
    "apiMsgId": "e" * 32,
    "cliMsgId": "",
    "to": "27999000001",
    "from": "Sender",
    "timestamp": "1800000000",
    "status": "004",
    "charge": "0.300000",
}


def stored_state(message: OutboundMessage) -> tuple[object, ...]:
    message.refresh_from_db()
    return (
        message.status,
        message.charge,
        message.apimsgid,
        GatewayExchange.objects.count(),
        UnmatchedCallback.objects.count(),
    )


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("charge", "999999.9999999"),  # passed the range check, rounded to 1000000 on quantize
        ("charge", "999999.9999995"),
        ("charge", "1000000"),
        ("charge", "1E+999999999"),
        ("charge", "1E-999999999"),
        ("charge", "0E+999999999"),
        ("charge", "9" * 250),
        ("charge", "-0"),
        ("charge", "-0.0000001"),
        ("charge", "+1"),
        ("charge", " 1"),
        ("charge", "1_000"),
        ("charge", "١"),
        ("charge", "NaN"),
        ("charge", "Infinity"),
        ("charge", "0x10"),
        ("timestamp", "9" * 250),
        ("timestamp", "1" + "0" * 20),
        ("status", "9999"),
        ("status", "9" * 250),
        ("status", "٠٠٤"),
        ("to", "1" * 21),
        ("to", "+" + "1" * 21),
        ("from", "S" * 33),
        ("from", "Sender\x00"),
        ("apiMsgId", "e" * 65),
        ("cliMsgId", "c" * 33),
        ("cliMsgId", "c\x00"),
        ("api_id", "1" * 250),
    ],
)
def test_callback_out_of_range_field_is_a_400(
    client: Client, callbacks: OutboundMessage, method: str, field: str, value: str
) -> None:
    callbacks.apimsgid = VALID_CALLBACK["apiMsgId"]
    callbacks.save()
    before = stored_state(callbacks)
    params = {**VALID_CALLBACK, field: value}
    response = getattr(client, method)(URL, params, **AUTH)
    assert response.status_code == 400, response.content
    assert 0 < len(response.content) < 60
    assert stored_state(callbacks) == before


@pytest.mark.django_db
@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("charge", "999999.999999"),
        ("charge", "999999.9999994"),  # rounds down to the largest storable charge
        ("charge", "0.0000004"),
        ("charge", "0"),
        ("charge", "12."),
        ("charge", ".5"),
        ("charge", "0" * 200 + "1.5"),
        ("to", "+" + "1" * 20),
        ("from", "S" * 32),
        ("apiMsgId", "e" * 64),
        ("cliMsgId", "c" * 32),
        ("status", "0000004"),
    ],
)
def test_callback_largest_values_are_stored(
    client: Client, callbacks: OutboundMessage, method: str, field: str, value: str
) -> None:
    params = {**VALID_CALLBACK, field: value}
    response = getattr(client, method)(URL, params, **AUTH)
    assert response.status_code == 200, response.content
    row = UnmatchedCallback.objects.get()
    parsed = parse_callback(params)
    assert (row.apimsgid, row.climsgid, row.recipient, row.sender, row.status, row.charge) == (
        parsed.apimsgid,
        parsed.climsgid,
        parsed.to,
        parsed.sender,
        parsed.status,
        parsed.charge,
    )


def test_callback_limits_match_the_columns() -> None:
    """Every parsed field fits the column it lands in, in both models."""
    from django.db.models import CharField, DecimalField

    from django_clickatell.protocol import callbacks

    limits = {
        "apimsgid": callbacks.APIMSGID_MAX_LENGTH,
        "climsgid": callbacks.CLIMSGID_MAX_LENGTH,
        "recipient": callbacks.RECIPIENT_MAX_LENGTH,
        "sender": callbacks.SENDER_MAX_LENGTH,
        "status": callbacks.STATUS_MAX_LENGTH,
    }
    for model in (OutboundMessage, UnmatchedCallback):
        for name, limit in limits.items():
            column = model._meta.get_field(name)
            assert isinstance(column, CharField)
            assert column.max_length is not None
            assert limit <= column.max_length, (model, name)
        charge = model._meta.get_field("charge")
        assert isinstance(charge, DecimalField)
        assert (charge.max_digits, charge.decimal_places) == (
            callbacks.CHARGE_MAX_DIGITS,
            callbacks.CHARGE_DECIMAL_PLACES,
        )


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data; boundary=xyz", b"--xyz\r\nContent-Disposition: garbage\r\n\r\n"),
        ("multipart/form-data", b"no boundary"),
        ("application/json", b'{"apiMsgId": "x"}'),
        ("application/x-www-form-urlencoded", b"apiMsgId=%00&status=004&api_id=1234567"),
        ("application/x-www-form-urlencoded", b"charge=999999.9999999&" * 10),
    ],
)
def test_callback_hostile_bodies_are_a_4xx(
    client: Client, callbacks: OutboundMessage, content_type: str, body: bytes
) -> None:
    before = stored_state(callbacks)
    response = client.generic("POST", URL, body, content_type=content_type, **AUTH)
    assert 400 <= response.status_code < 500
    assert stored_state(callbacks) == before


def _near_valid(field: str) -> st.SearchStrategy[str]:
    """Values around each field's limits, plus anything at all."""
    shaped = {
        "api_id": st.just("1234567"),
        "apiMsgId": st.text("abcdef0123456789._-", min_size=1, max_size=70),
        "cliMsgId": st.text("abcXYZ019", max_size=36),
        "to": st.from_regex(r"\A\+?[0-9]{0,24}\Z"),
        "from": st.text(st.characters(codec="utf-8"), max_size=36),
        "timestamp": st.integers(0, 2**70).map(str),
        "status": st.integers(0, 10**9).map(lambda n: str(n).zfill(3)),
        "charge": st.one_of(
            st.decimals(allow_nan=False, allow_infinity=False).map(str),
            st.from_regex(r"\A[0-9]{0,8}(\.[0-9]{0,9})?\Z"),
        ),
    }[field]
    return st.one_of(shaped, shaped, st.just(VALID_CALLBACK[field]), st.text(max_size=12))


@pytest.mark.django_db
@FUZZ
@given(
    params=st.fixed_dictionaries({field: _near_valid(field) for field in VALID_CALLBACK}),
    method=st.sampled_from(["get", "post"]),
)
@example(params={**VALID_CALLBACK, "charge": "999999.9999999"}, method="post")
def test_any_accepted_callback_can_be_stored(
    client: Client, callbacks: OutboundMessage, params: dict[str, str], method: str
) -> None:
    """The view answers 200 or 400 -- a 500 would raise here -- and what it accepts is kept."""
    unmatched = UnmatchedCallback.objects.count()
    response = getattr(client, method)(URL, params, **AUTH)
    if params["api_id"] != VALID_CALLBACK["api_id"]:
        assert response.status_code in (400, 403), response.content
        return
    assert response.status_code in (200, 400), response.content
    if response.status_code == 200:
        assert UnmatchedCallback.objects.count() == unmatched + 1
        row = UnmatchedCallback.objects.latest("pk")
        row.full_clean(exclude=["status"])  # unknown codes are kept outside the choices
        assert row.apimsgid == params["apiMsgId"]
