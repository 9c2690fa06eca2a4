"""One API JSON callbacks: the secret URL, the status rule, hostile bodies, and end to end."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from django_clickatell.conf import ClickatellSettings
from django_clickatell.exceptions import InvalidCallback
from django_clickatell.gateway.backends.base import OutgoingSms
from django_clickatell.gateway.backends.one_api import OneApiBackend
from django_clickatell.models import GatewayExchange, OutboundMessage, UnmatchedCallback
from django_clickatell.protocol import one_api
from django_clickatell.protocol.replies import SentMessageReply
from django_clickatell.services.callbacks import match_unmatched_callbacks
from django_clickatell.simulator import ClickatellSimulator
from tests.conftest import wait_until

pytestmark = pytest.mark.django_db
SECRET = "cb-SECRET-0123456789abcdefXYZ"
URL = f"/clickatell/one-api/default/{SECRET}/"
ID = "a" * 32
T0 = 1_700_000_000_000


@pytest.fixture
def configured(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "CALLBACK_SECRET": SECRET}


def event(status: str, at: int = T0, apimsgid: str = ID, climsgid: str = "") -> dict[str, Any]:
    return {
        "channel": "sms",
        "messageId": apimsgid,
        "clientMessageId": climsgid,
        "status": status,
        "timestamp": at,
    }


def envelope(*events: dict[str, Any]) -> str:
    return json.dumps(
        {"integrationId": "i", "integrationName": "n", "event": {"messageStatusUpdate": events}}
    )


def post(client: Client, body: str | bytes, url: str = URL, **extra: Any) -> Any:
    return client.post(url, body, content_type="application/json", **extra)


def message(**fields: Any) -> OutboundMessage:
    values: dict[str, Any] = {"recipient": "27999000001", "apimsgid": ID, "climsgid": "c1"}
    return OutboundMessage.objects.create(**{**values, **fields})


def test_an_event_is_applied_in_our_terms_and_keeps_its_name(
    client: Client, configured: None
) -> None:
    sms = message()
    response = post(client, envelope(event("SENT_TO_SUPPLIER")))
    assert (response.status_code, response.content) == (200, b"OK applied")
    sms.refresh_from_db()
    assert sms.status == "003"
    assert sms.status_changed_at is not None
    assert sms.status_changed_at.timestamp() == T0 / 1000  # milliseconds -> aware UTC
    exchange = GatewayExchange.objects.get(message=sms, command="callback")
    assert exchange.detail.startswith("SENT_TO_SUPPLIER")


def test_duplicates_and_out_of_order_never_move_a_status_backwards(
    client: Client, configured: None
) -> None:
    sms = message(status="003")
    body = envelope(
        event("DEVICE_ACK", T0 + 2000),
        event("DEVICE_ACK", T0 + 2000),  # duplicate
        event("SENT_TO_SUPPLIER", T0 + 1000),  # older, arriving late
        event("QUEUED", T0 + 3000),  # earlier in the lifecycle, with a newer clock
        event("SOMETHING_NEW", T0 + 4000),  # unknown: never replaces anything
    )
    response = post(client, body)
    assert response.content == b"OK applied ignored ignored ignored ignored"
    sms.refresh_from_db()
    assert sms.status == "004"


def test_an_unknown_status_does_not_replace_a_recorded_one(
    client: Client, configured: None
) -> None:
    sms = message(status="011")
    assert post(client, envelope(event("BRAND_NEW"))).content == b"OK ignored"
    sms.refresh_from_db()
    assert sms.status == "011"


def test_stopped_by_user_is_the_one_stop(client: Client, configured: None) -> None:
    sms = message(status="002")
    post(client, envelope(event("STOPPED_BY_ADMIN")))
    sms.refresh_from_db()
    assert (sms.status, sms.cancel_state) == ("007", "")
    other = message(apimsgid="b" * 32, climsgid="c2", status="002")
    post(client, envelope(event("STOPPED_BY_USER", apimsgid="b" * 32)))
    other.refresh_from_db()
    assert other.status == "006"
    assert other.cancel_state == "cancelled"


def test_unknown_messages_are_kept_and_climsgid_matches(client: Client, configured: None) -> None:
    assert post(client, envelope(event("QUEUED", apimsgid="e" * 32))).content == b"OK unmatched"
    kept = UnmatchedCallback.objects.get()
    assert (kept.apimsgid, kept.status) == ("e" * 32, "008")  # QUEUED: accepted, not sent on
    sms = message(apimsgid=None, climsgid="order42")
    post(client, envelope(event("SENT_TO_SUPPLIER", apimsgid="f" * 32, climsgid="order42")))
    sms.refresh_from_db()
    assert (sms.apimsgid, sms.status) == ("f" * 32, "003")


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "/clickatell/one-api/default/wrong-secret/",
        f"/clickatell/one-api/default/{SECRET}x/",
        f"/clickatell/one-api/nosuchaccount/{SECRET}/",
    ],
)
def test_a_wrong_secret_or_account_is_refused_and_never_logged(
    client: Client, configured: None, caplog: pytest.LogCaptureFixture, url: str
) -> None:
    caplog.set_level(logging.DEBUG)
    sms = message(status="002")
    response = post(client, envelope(event("DEVICE_ACK")), url=url)
    assert response.status_code == 403
    sms.refresh_from_db()
    assert sms.status == "002"
    assert not GatewayExchange.objects.exists()
    secret = url.rstrip("/").rsplit("/", 1)[-1]
    assert caplog.records  # refusals are logged ...
    for record in caplog.records:  # ... never with the secret (django.request logs paths)
        assert secret not in record.getMessage()
        assert SECRET not in record.getMessage()


def test_until_a_secret_is_set_every_callback_is_refused(client: Client) -> None:
    message(status="002")
    assert post(client, envelope(event("DEVICE_ACK"))).status_code == 403
    assert OutboundMessage.objects.get().status == "002"


def test_basic_auth_where_configured(client: Client, settings: Any) -> None:
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "CALLBACK_SECRET": SECRET,
        "CALLBACK_USERNAME": "clickatell",
        "CALLBACK_PASSWORD": "cb-pass-42",
    }
    message()
    assert post(client, envelope(event("QUEUED"))).status_code == 401
    token = base64.b64encode(b"clickatell:cb-pass-42").decode()
    response = post(client, envelope(event("QUEUED")), HTTP_AUTHORIZATION=f"Basic {token}")
    assert response.status_code == 200


def test_only_post(client: Client, configured: None) -> None:
    assert client.get(URL).status_code == 405


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ("[" * 100_000 + "]" * 100_000, "not JSON"),  # deep nesting
        (json.dumps({"event": {"messageStatusUpdate": "x"}}), "no status updates"),
        (json.dumps({"event": {"messageStatusUpdate": []}}), "no status updates"),
        (envelope({"messageId": 5, "status": "QUEUED"}), "messageId"),
        (envelope({"messageId": ID, "status": "QUEUED", "timestamp": "soon"}), "timestamp"),
        (envelope({"messageId": ID, "status": ["QUEUED"]}), "status"),
        (envelope({"messageId": ID, "clientMessageId": "x" * 40, "status": "QUEUED"}), "client"),
        (envelope(*[event("QUEUED")] * 201), "no status updates"),
    ],
)
def test_malformed_bodies_are_400_with_a_short_reason(
    client: Client, configured: None, body: str, reason: str
) -> None:
    message(status="002")
    response = post(client, body)
    assert response.status_code == 400
    assert reason.lower() in response.content.decode().lower()
    assert len(response.content) < 100
    assert OutboundMessage.objects.get().status == "002"


def test_hostile_bodies_are_typed_invalid_callbacks() -> None:
    for body in ("{" * 50_000, '{"event": null}', "1e999999", '"x"', "\udcff", b"\xff\xfe"):
        with pytest.raises(InvalidCallback):
            one_api.parse_callback(body)


def test_too_large_is_413(client: Client, configured: None) -> None:
    body = envelope(event("QUEUED")) + " " * 1_000_001
    assert post(client, body).status_code == 413


# -- end to end: the simulator pushes to the live view ---------------------------------------


@pytest.fixture
def pushing(
    simulator: ClickatellSimulator, live_server: Any, settings: Any
) -> Iterator[ClickatellSimulator]:
    settings.CLICKATELL = {**settings.CLICKATELL, "CALLBACK_SECRET": SECRET}
    simulator.one_api.reset()
    simulator.one_api.callback_url = live_server.url + URL
    simulator.handset_delay = 0.3
    yield simulator
    simulator.one_api.reset()
    simulator.handset_delay = 1.0


@pytest.mark.django_db(transaction=True)
def test_simulator_pushes_duplicated_and_reordered_callbacks_end_to_end(
    pushing: ClickatellSimulator,
) -> None:
    """SENT_TO_SUPPLIER is held back and pushed after DEVICE_ACK, every push twice: the
    message ends DEVICE_ACK (004) and the late and repeated events are logged, not applied."""
    pushing.one_api.duplicate_callbacks = 1
    pushing.one_api.reorder_callbacks = True
    sms = OutboundMessage.objects.create(recipient="27999000001", climsgid="e2e1")
    gateway = OneApiBackend(ClickatellSettings(pushing.one_api_settings()))
    [sent] = gateway.send([OutgoingSms("27999000001", "hi", "e2e1")])
    assert isinstance(sent, SentMessageReply)
    assert wait_until(lambda: pushing.callbacks_sent >= 4, timeout=20), pushing.stats()
    sms.refresh_from_db()
    assert (sms.apimsgid, sms.status) == (sent.apimsgid, "004")
    details = list(
        GatewayExchange.objects.filter(message=sms, command="callback")
        .order_by("pk")
        .values_list("status", "detail")
    )
    assert len(details) == 4
    assert details[0] == ("004", "DEVICE_ACK")
    assert all("not applied" in detail for _, detail in details[1:])
    assert pushing.callback_refusals == 0


@pytest.mark.django_db(transaction=True)
def test_a_wrong_secret_from_the_simulator_is_refused_and_retried(
    pushing: ClickatellSimulator, live_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pushing.one_api.callback_url = live_server.url + "/clickatell/one-api/default/guess/"
    pushing.callback_retry_delays = (0.1,)
    try:
        apimsgid = pushing.add_message(status="002", deliver_in=None)
        pushing.one_api.push_status(apimsgid, "DEVICE_ACK")
        assert wait_until(lambda: pushing.callbacks_failed >= 1, timeout=10)
    finally:
        pushing.callback_retry_delays = (0.2, 0.5, 1.0, 2.0)
    assert pushing.callback_refusals == 2
    assert not UnmatchedCallback.objects.exists()
    assert all("guess" not in record.getMessage() for record in caplog.records)


def test_a_failure_inside_shows_and_logs_no_secret(
    client: Client,
    configured: None,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Even with DEBUG on, a bug under the view answers a bare 500: Django's error page and
    its request log would both show the path, and the path carries the secret."""
    from django_clickatell import views

    def broken(account: str, body: bytes) -> list[str]:
        raise RuntimeError("database on fire")

    settings.DEBUG = True
    caplog.set_level(logging.DEBUG)
    monkeypatch.setattr(views, "receive_json_callback", broken)
    response = post(client, envelope(event("QUEUED")))
    assert response.status_code == 500
    assert SECRET.encode() not in response.content
    assert caplog.records
    assert SECRET not in caplog.text  # tracebacks included
    for record in caplog.records:
        assert SECRET not in str(getattr(record, "request", ""))


# -- one account's secret speaks for that account only --------------------------------------

PLATFORM_SECRET = "platform-SECRET-0123456789abcdef"


@pytest.fixture
def two_accounts(settings: Any) -> None:
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "CALLBACK_SECRET": SECRET,
        "ACCOUNTS": {
            "platform": {
                "BACKEND": "one_api",
                "API_KEY": "k" * 20,
                "CALLBACK_SECRET": PLATFORM_SECRET,
            }
        },
    }


def test_a_callback_cannot_touch_another_accounts_message(
    client: Client, two_accounts: None
) -> None:
    """Whoever holds the platform account's secret must not make a default-account message
    look stopped (STOPPED_BY_USER is 006) -- nor anything else."""
    legacy = message(status="011")
    url = f"/clickatell/one-api/platform/{PLATFORM_SECRET}/"
    response = post(client, envelope(event("STOPPED_BY_USER")), url=url)
    assert response.status_code == 200
    legacy.refresh_from_db()
    assert legacy.status == "011"
    assert legacy.cancel_state == ""
    assert not UnmatchedCallback.objects.exists()  # not kept to be matched to it later either


def test_a_kept_callback_is_matched_to_its_own_accounts_message_only(
    client: Client, two_accounts: None
) -> None:
    url = f"/clickatell/one-api/platform/{PLATFORM_SECRET}/"
    assert post(client, envelope(event("DEVICE_ACK")), url=url).status_code == 200
    [kept] = UnmatchedCallback.objects.all()
    assert kept.account == "platform"
    # The id turns up on a message of another account: the kept callback is not its news.
    other = message(apimsgid=None, climsgid="c2")
    OutboundMessage.objects.filter(pk=other.pk).update(apimsgid=ID)
    other.refresh_from_db()
    assert match_unmatched_callbacks(other) == 0
    # On a message of its own account, it is.
    OutboundMessage.objects.filter(pk=other.pk).update(account="platform")
    other.refresh_from_db()
    assert match_unmatched_callbacks(other) == 1
    other.refresh_from_db()
    assert other.status == "004"


# -- issue 19: reports ordered by when they happened; a callback settles a send in doubt -----


@pytest.fixture
def platform(pushing: ClickatellSimulator, settings: Any) -> ClickatellSimulator:
    """The default account on the One API at the simulator, its callbacks pushed to the live
    server, everything in this process (no Celery)."""
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        **pushing.one_api_settings(),
        "CALLBACK_SECRET": SECRET,
        "USE_CELERY": False,
    }
    return pushing


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@pytest.mark.django_db(transaction=True)
def test_a_query_older_than_a_callback_never_moves_the_status_back(
    platform: ClickatellSimulator,
) -> None:
    """The issue's report: SENT_TO_SUPPLIER (003) pushed, then a status query answering
    QUEUED with an older timestamp -- the record went back to 002.  QUEUED was read as
    legacy 002 ("awaiting redelivery", the same stage as 003, so the newer clock won) and
    the query was stamped with the time its reply arrived.  QUEUED comes before
    SENT_TO_SUPPLIER: it never replaces it, and the reply's own time is kept."""
    from django_clickatell.services.refreshing import refresh_statuses

    apimsgid = platform.add_message(status="002", deliver_in=None)  # QUEUED there, since t0
    queued_at = platform.messages[apimsgid].status_at
    sms = OutboundMessage.objects.create(
        recipient="27999000001", climsgid="order1", apimsgid=apimsgid, send_state="sent"
    )
    import time

    time.sleep(0.05)
    pushed_at = _ms(time.time())  # after QUEUED, and not in the future (which counts as now)
    assert pushed_at > _ms(queued_at)
    platform.one_api.push_status(apimsgid, "SENT_TO_SUPPLIER", code=4, at_ms=pushed_at)
    assert wait_until(lambda: OutboundMessage.objects.get(pk=sms.pk).status == "003", timeout=10)
    report = refresh_statuses([sms.pk], via="task")
    assert report.unchanged == [sms.pk]
    sms.refresh_from_db()
    assert sms.status == "003"
    assert sms.status_changed_at is not None
    assert _ms(sms.status_changed_at.timestamp()) == pushed_at
    [query] = GatewayExchange.objects.filter(message=sms, command="querymsg")
    assert query.status == "008"  # the reply was read and logged, then not applied


@pytest.mark.django_db(transaction=True)
def test_a_query_records_when_the_status_happened_not_when_it_arrived(
    platform: ClickatellSimulator,
) -> None:
    import time

    from django_clickatell.services.refreshing import refresh_statuses

    apimsgid = platform.add_message(status="002", deliver_in=None)
    happened = _ms(platform.messages[apimsgid].status_at)
    sms = OutboundMessage.objects.create(
        recipient="27999000001", climsgid="order2", apimsgid=apimsgid, send_state="sent"
    )
    time.sleep(0.3)
    assert refresh_statuses([sms.pk], via="task").changed == [sms.pk]
    sms.refresh_from_db()
    assert sms.status == "008"
    assert sms.status_changed_at is not None
    assert _ms(sms.status_changed_at.timestamp()) == happened  # not 300 ms later


@pytest.mark.django_db(transaction=True)
def test_a_callback_settles_a_send_whose_reply_was_lost(platform: ClickatellSimulator) -> None:
    """The issue's report: a One API send whose reply was lost stays ``unknown`` (the API
    has no look-up by client id) even after a callback names it, id, status and all.  The
    callback carries our clientMessageId: it proves Clickatell accepted the send."""
    from django_clickatell import api
    from django_clickatell.models import SendState, Via
    from django_clickatell.services import sending

    callback_url = platform.one_api.callback_url
    platform.one_api.callback_url = None  # nothing pushed until the send is given up on
    platform.inject("drop_reply", command="sendmsg")
    [sms] = api.send_sms("27999000001", "once", wait=True)
    sending.send_messages([sms.pk], via=Via.TASK)
    sms.refresh_from_db()
    assert (sms.send_state, sms.apimsgid) == (SendState.UNKNOWN, None)
    [at_gateway] = platform.accepted_sends()
    platform.one_api.callback_url = callback_url
    platform.one_api.push_status(at_gateway.apimsgid, "DEVICE_ACK", code=5)
    assert wait_until(
        lambda: OutboundMessage.objects.get(pk=sms.pk).send_state == SendState.SENT, timeout=10
    )
    sms.refresh_from_db()
    assert (sms.apimsgid, sms.status, sms.send_error) == (at_gateway.apimsgid, "004", "")
    assert (sms.claim_token, sms.claim_expires_at) == ("", None)
    callback = GatewayExchange.objects.filter(message=sms, command="callback").first()
    assert callback is not None
    assert "recorded sent" in callback.detail
    assert platform.executed["sendmsg"] == 1
    assert platform.duplicate_sends() == []


@pytest.mark.django_db(transaction=True)
def test_a_callback_during_a_send_whose_reply_is_lost_settles_it_afterwards(
    platform: ClickatellSimulator, settings: Any
) -> None:
    """The callbacks come while the send is still waiting for its reply (the gateway
    carried it out and answers too late): the run holds the message, so the callback
    records only the id and the statuses.  The send then times out -- in doubt -- and its
    verification, which cannot ask the One API by client id, ended ``unknown`` though
    the id was known.  It is settled from that id, with no request and no resend."""
    from django_clickatell import api
    from django_clickatell.models import SendState, Via
    from django_clickatell.services import sending

    # The callbacks are pushed as the gateway accepts it: two seconds to arrive.
    settings.CLICKATELL = {**settings.CLICKATELL, "TIMEOUT": (2.0, 2.0)}
    platform.inject("delay_after", command="sendmsg", delay=2.5)
    [sms] = api.send_sms("27999000001", "once", wait=True)
    sms.refresh_from_db()
    [at_gateway] = platform.accepted_sends()
    assert sms.send_state == SendState.VERIFYING
    assert sms.apimsgid == at_gateway.apimsgid  # recorded by a callback meanwhile
    requests = platform.counts["total"]
    sending.send_messages([sms.pk], via=Via.TASK)
    sms.refresh_from_db()
    assert (sms.send_state, sms.apimsgid) == (SendState.SENT, at_gateway.apimsgid)
    assert platform.counts["total"] == requests  # settled without asking
    assert wait_until(lambda: OutboundMessage.objects.get(pk=sms.pk).status == "004", timeout=10)
    assert platform.executed["sendmsg"] == 1
    assert platform.duplicate_sends() == []
    assert not UnmatchedCallback.objects.filter(matched_message__isnull=True).exists()
