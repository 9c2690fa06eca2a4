"""Issue 19, re-tried from outside (helper w2c): what broke, each test failing before its fix."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from django_clickatell.gateway.backends import get_backend
from django_clickatell.simulator import ClickatellSimulator
from tests.every_backend import BACKENDS, backend_settings

pytestmark = pytest.mark.django_db

INSECURE = "http://gateway.example.com/"


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_named_accounts_plain_http_url_names_that_accounts_setting(
    backend: str, simulator: ClickatellSimulator, settings: Any
) -> None:
    """Item 7: it named ``settings.CLICKATELL['BASE_URL']``, a key the project may not even
    set, for a URL written in ``ACCOUNTS['platform']``."""
    values = {**backend_settings(simulator, backend), "BASE_URL": INSECURE}
    settings.CLICKATELL = {**settings.CLICKATELL, "ACCOUNTS": {"platform": values}}
    with pytest.raises(ImproperlyConfigured) as raised:
        get_backend("platform").balance()
    text = str(raised.value)
    assert "settings.CLICKATELL['ACCOUNTS']['platform']['BASE_URL'] is not https" in text
    assert "settings.CLICKATELL['BASE_URL']" not in text


def test_the_default_accounts_plain_http_url_names_its_top_level_setting(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    settings.CLICKATELL = {**simulator.settings(), "BASE_URL": INSECURE}
    with pytest.raises(ImproperlyConfigured, match=r"settings.CLICKATELL\['BASE_URL'\] is not"):
        get_backend().balance()


# -- one account's failure stops only that account's work ------------------------------------

LAST_TRY = {"gateway_retries": 10_000}


def _two_accounts(simulator: ClickatellSimulator, settings: Any, **legacy: Any) -> None:
    from django.core.cache import cache

    simulator.one_api.reset()
    accounts = {
        "legacy": {**simulator.settings(), **legacy},
        "platform": simulator.one_api_settings(),
    }
    settings.CLICKATELL = {**settings.CLICKATELL, "USE_CELERY": False, "ACCOUNTS": accounts}
    cache.clear()


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({"PASSWORD": "wrong-Pa55word-w2c"}, id="refused password"),
        pytest.param({"BASE_URL": "http://127.0.0.1:9/"}, id="legacy API unreachable"),
    ],
)
def test_one_accounts_failure_neither_holds_back_nor_fails_another_accounts_messages(
    broken: dict[str, str], simulator: ClickatellSimulator, settings: Any
) -> None:
    """The release loop and ``requeue_stalled_work`` hand held and stalled messages of every
    account on in one task.  A failure of the first account stopped the whole run: the
    One API message behind it was never tried, retried behind it again and again, and on
    the last try ended ``failed`` with the *legacy* account's error ("Gave up sending:
    Clickatell account 'legacy': its login was refused") though its own account worked."""
    from django_clickatell import tasks
    from django_clickatell.models import OutboundMessage, SendState
    from django_clickatell.services import composing

    _two_accounts(simulator, settings, **broken)
    [legacy] = composing.create_messages("27990000011", "legacy", account="legacy")
    [platform] = composing.create_messages("27990000012", "platform", account="platform")
    assert legacy.pk < platform.pk  # the broken account's message comes first in the run
    tasks.send_messages.apply(args=([legacy.pk, platform.pk],), kwargs=LAST_TRY)
    legacy.refresh_from_db()
    platform.refresh_from_db()
    assert platform.send_state == SendState.SENT, platform.send_error
    assert platform.apimsgid in simulator.one_api.sent  # sent once, at the One API
    assert simulator.sendmsg_requests_by_recipient().get(platform.recipient) == 1
    assert legacy.send_state == SendState.FAILED
    assert "platform" not in legacy.send_error
    assert not OutboundMessage.objects.filter(send_error__contains="'legacy'").exclude(pk=legacy.pk)


def test_when_two_accounts_fail_each_message_gives_up_with_its_own_accounts_error(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """The last try gave every message of the task one reason: the last failure met."""
    from django_clickatell import tasks
    from django_clickatell.services import composing

    _two_accounts(simulator, settings, PASSWORD="wrong-Pa55word-w2c")
    settings.CLICKATELL["ACCOUNTS"]["platform"]["API_KEY"] = "wrong-K3y-w2c-0123456789"
    [legacy] = composing.create_messages("27990000021", "legacy", account="legacy")
    [platform] = composing.create_messages("27990000022", "platform", account="platform")
    tasks.send_messages.apply(args=([legacy.pk, platform.pk],), kwargs=LAST_TRY)
    legacy.refresh_from_db()
    platform.refresh_from_db()
    assert (legacy.send_state, platform.send_state) == ("failed", "failed")
    assert "account 'legacy'" in legacy.send_error
    assert "account 'platform'" in platform.send_error


def _stops_of_two_accounts(simulator: ClickatellSimulator, settings: Any) -> tuple[Any, Any]:
    """A stop queued for a legacy message (its API unreachable) and one for a REST message."""
    from django.core.cache import cache
    from django.utils import timezone

    from django_clickatell.models import CancelState, OutboundMessage, SendState
    from tests.factories import scheduled_messages

    accounts = {
        "legacy": {**simulator.settings(), "BASE_URL": "http://127.0.0.1:9/"},
        "restful": simulator.rest_settings(),
    }
    settings.CLICKATELL = {**settings.CLICKATELL, "USE_CELERY": False, "ACCOUNTS": accounts}
    cache.clear()
    [legacy] = scheduled_messages(simulator, 1, account="legacy", send_state=SendState.SENT)
    [rest] = scheduled_messages(
        simulator, 1, account="restful", send_state=SendState.SENT, recipient="27990000031"
    )
    OutboundMessage.objects.filter(pk__in=[legacy.pk, rest.pk]).update(
        cancel_state=CancelState.PENDING, cancel_requested_at=timezone.now()
    )
    assert legacy.pk < rest.pk
    return legacy, rest


def _assert_each_stop_on_its_own_account(legacy: Any, rest: Any, simulator: Any) -> None:
    from django_clickatell.models import CancelState

    legacy.refresh_from_db()
    rest.refresh_from_db()
    assert (rest.cancel_state, rest.status) == (CancelState.CANCELLED, "006"), rest.cancel_error
    assert simulator.api_requests["rest"] == 1
    assert legacy.cancel_state == CancelState.GAVE_UP
    assert "legacy" in legacy.cancel_error or "auth" in legacy.cancel_error


def test_one_accounts_outage_does_not_give_up_another_accounts_stops(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """A stop run is a selection of the admin -- several accounts.  The legacy API being
    unreachable stopped the run, and on the last try the REST message's stop ended
    ``gave_up`` "Not attempted: Clickatell auth: connection failed" though its API
    answered."""
    from django_clickatell import tasks

    legacy, rest = _stops_of_two_accounts(simulator, settings)
    tasks.cancel_messages.apply(args=([legacy.pk, rest.pk],), kwargs=LAST_TRY)
    _assert_each_stop_on_its_own_account(legacy, rest, simulator)


@pytest.mark.django_db(transaction=True)
def test_one_accounts_outage_does_not_give_up_another_accounts_stops_pipelined(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """The same outside a transaction, where stops go out several at a time."""
    from django_clickatell import tasks

    settings.CLICKATELL = {**settings.CLICKATELL, "MAX_IN_FLIGHT": 4}
    legacy, rest = _stops_of_two_accounts(simulator, settings)
    tasks.cancel_messages.apply(args=([legacy.pk, rest.pk],), kwargs=LAST_TRY)
    _assert_each_stop_on_its_own_account(legacy, rest, simulator)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param({"PASSWORD": ""}, id="password left empty by a deploy"),
        pytest.param({"BACKEND": "legacy-http"}, id="backend mistyped"),
    ],
)
def test_an_unusable_account_is_shown_as_only_you_can_fix(
    broken: dict[str, str], simulator: ClickatellSimulator, settings: Any
) -> None:
    """Item 7: "the admin never says 'nothing to do' about a failure only the user can
    fix".  An account whose settings cannot be used (an empty password, a mistyped
    BACKEND) showed its queued messages as "Retried automatically; nothing to do." and,
    once given up on, "Choose “Send again” once Clickatell can be reached."."""
    from django_clickatell import tasks
    from django_clickatell.admin.story import describe
    from django_clickatell.services import composing, sending

    _two_accounts(simulator, settings)
    [message] = composing.create_messages("27990000041", "legacy", account="legacy")
    settings.CLICKATELL["ACCOUNTS"]["legacy"].update(broken)
    sending.send_messages([message.pk], via="task")  # one run: retried later
    message.refresh_from_db()
    assert message.send_state == "queued"
    view = describe(message)
    assert "account 'legacy'" in view.reason
    assert "nothing to do" not in str(view.hint)
    assert "only you can" in str(view.hint)
    tasks.send_messages.apply(args=([message.pk],), kwargs=LAST_TRY)
    message.refresh_from_db()
    view = describe(message)
    assert message.send_state == "failed"
    assert "once Clickatell can be reached" not in str(view.hint)
    assert "only you can" in str(view.hint)
    assert simulator.counts["total"] == 0


def test_one_accounts_refused_key_does_not_keep_another_accounts_statuses_from_arriving(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """The periodic refresh asks about every account's messages in one chunk.  A refused
    legacy password (retryable: nothing was carried out) stopped the chunk at the first
    legacy message, so the REST messages after it were never asked about -- on every
    refresh, for as long as the legacy key stayed wrong."""
    from django.core.cache import cache

    from django_clickatell.models import SendState, Via
    from django_clickatell.services import refreshing
    from tests.factories import scheduled_messages

    accounts = {
        "legacy": {**simulator.settings(), "PASSWORD": "wrong-Pa55word-w2c"},
        "restful": simulator.rest_settings(),
    }
    settings.CLICKATELL = {**settings.CLICKATELL, "USE_CELERY": False, "ACCOUNTS": accounts}
    cache.clear()
    [legacy] = scheduled_messages(simulator, 1, account="legacy", send_state=SendState.SENT)
    [rest] = scheduled_messages(
        simulator, 1, account="restful", send_state=SendState.SENT, status="", recipient="2799001"
    )
    report = refreshing.refresh_statuses([legacy.pk, rest.pk], via=Via.TASK)
    rest.refresh_from_db()
    assert rest.status == "011"  # what the REST API answered
    assert report.changed == [rest.pk]
    assert report.retry == [legacy.pk]


def test_an_unknown_send_on_the_one_api_is_not_promised_a_lookup_it_cannot_have(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """ "The screen never promises what the account cannot do": a One API send in doubt
    was shown "Choose “Ask Clickatell again”: it is sent only if Clickatell does not
    have it." -- before and after asking, though that API cannot look a message up by
    its client message id (``Capabilities.query_by_client_id``), so asking only ever
    ends "Could not check whether Clickatell has it"."""
    from django_clickatell.admin.story import describe
    from django_clickatell.models import OutboundMessage, SendState
    from django_clickatell.services import send_recovery, sending
    from tests.factories import scheduled_messages

    _two_accounts(simulator, settings)
    [platform, legacy] = [
        scheduled_messages(
            None,
            1,
            account=alias,
            apimsgid=None,
            send_state=SendState.UNKNOWN,
            status="",
            send_error="Gave up checking: no answer",
            recipient=f"2799000005{n}",
        )[0]
        for n, alias in enumerate(("platform", "legacy"))
    ]
    assert "Ask Clickatell again" in str(describe(legacy).hint)  # the legacy API can say
    for attempt in range(2):
        hint = str(describe(platform).hint)
        assert "Ask Clickatell again" not in hint, attempt
        assert "client message id" in hint
        send_recovery.recheck(OutboundMessage.objects.filter(pk=platform.pk))
        sending.send_messages([platform.pk], via="task")
        platform.refresh_from_db()
        assert platform.send_state == SendState.UNKNOWN  # never resent blindly
    assert simulator.api_requests["v1"] == 0


# -- a 404 at a wrong BASE_URL is never "unknown message" ------------------------------------


def _rest_account(simulator: ClickatellSimulator, settings: Any, base_url: str) -> None:
    from django.core.cache import cache

    values = {**simulator.rest_settings(), "BASE_URL": base_url}
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "USE_CELERY": False,
        "ACCOUNTS": {"restful": values},
    }
    cache.clear()


def test_a_send_in_doubt_is_not_resent_because_the_base_url_404s(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """Item 7 and "exactly once": a REST send in doubt (accepted, its reply lost) was
    verified at a BASE_URL that 404s (a bad deploy) -- read as "Clickatell does not know
    this climsgid" -- and sent again: refused there too (the URL), it was queued as never
    sent, and once the URL was fixed it went out a second time."""
    from django_clickatell.models import SendState
    from django_clickatell.services import sending
    from tests.factories import scheduled_messages

    [message] = scheduled_messages(
        None, 1, account="restful", apimsgid=None, send_state=SendState.VERIFYING, status=""
    )
    accepted = simulator.add_message(climsgid=message.climsgid, to=message.recipient)
    simulator.reset_counts()
    _rest_account(simulator, settings, simulator.root_url + "nowhere/")
    sending.send_messages([message.pk], via="task")
    message.refresh_from_db()
    assert message.send_state == SendState.VERIFYING  # still in doubt: nothing was learnt
    assert "BASE_URL" in message.send_error
    _rest_account(simulator, settings, simulator.rest_settings()["BASE_URL"])
    sending.send_messages([message.pk], via="task")
    message.refresh_from_db()
    assert (message.send_state, message.apimsgid) == (SendState.SENT, accepted)
    assert simulator.counts["sendmsg"] == 0  # Clickatell had it: never sent twice


def test_a_stop_at_a_base_url_that_404s_is_not_refused_as_an_unknown_message(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """It ended ``refused`` "delmsg answered ERR 103: Unknown API message ID" ("Clickatell
    does not know this id"), though nothing had answered at that URL."""
    from django_clickatell.exceptions import UnknownMessage, WrongBaseUrl
    from django_clickatell.gateway.backends import get_backend
    from tests.factories import scheduled_messages

    [message] = scheduled_messages(simulator, 1, account="restful")
    _rest_account(simulator, settings, simulator.root_url + "nowhere/")
    for call in ("stop", "query"):
        with pytest.raises(WrongBaseUrl) as raised:
            getattr(get_backend("restful"), call)(apimsgid=message.apimsgid)
        assert not isinstance(raised.value, UnknownMessage)
        assert "settings.CLICKATELL['ACCOUNTS']['restful']['BASE_URL']" in str(raised.value)
    # The API's own "unknown message" (a JSON error) is still that.
    _rest_account(simulator, settings, simulator.rest_settings()["BASE_URL"])
    with pytest.raises(UnknownMessage):
        get_backend("restful").query(apimsgid="0123456789abcdef0123456789abcdef")


def test_a_stop_too_late_for_a_send_in_doubt_does_not_claim_it_is_on_its_way(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    """A One API send in doubt with a stop queued: the stop ends "too late" with an honest
    reason (whether Clickatell got it is unknown), but the admin added "Already on its
    way", which nobody knows."""
    from django.utils import timezone

    from django_clickatell.admin.story import describe
    from django_clickatell.models import CancelState, OutboundMessage, SendState
    from django_clickatell.services import cancelling, sending
    from tests.factories import scheduled_messages

    _two_accounts(simulator, settings)
    [message] = scheduled_messages(
        None, 1, account="platform", apimsgid=None, send_state=SendState.VERIFYING, status=""
    )
    OutboundMessage.objects.filter(pk=message.pk).update(
        cancel_state=CancelState.PENDING, cancel_requested_at=timezone.now()
    )
    sending.send_messages([message.pk], via="task")
    cancelling.cancel_messages([message.pk], via="task")
    message.refresh_from_db()
    assert (message.send_state, message.cancel_state) == ("unknown", "too_late")
    view = describe(message)
    assert "unknown" in view.reason
    assert "on its way" not in str(view.hint)


def test_the_confirmation_page_does_not_say_a_send_in_doubt_was_handed_over(
    simulator: ClickatellSimulator, settings: Any, admin_client: Any
) -> None:
    """A One API send in doubt is rightly not offered for stopping, but the confirmation
    page gave the reason "Handed over: too late", which nobody knows."""
    import html

    from django_clickatell.models import SendState
    from tests.factories import scheduled_messages
    from tests.test_operator_view import post_action, text_of

    _two_accounts(simulator, settings)
    [message] = scheduled_messages(
        None, 1, account="platform", apimsgid=None, send_state=SendState.UNKNOWN, status=""
    )
    page = html.unescape(
        text_of(post_action(admin_client, "cancel_delivery", [message.pk], confirm=False))
    )
    assert "this account's API cannot stop a submitted message" in page
    assert "Handed over" not in page


def test_a_legacy_callback_pushed_as_json_is_applied(client: Any, settings: Any) -> None:
    import base64
    import json

    from tests.factories import scheduled_messages

    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "API_ID": "1234567",
        "CALLBACK_USERNAME": "clickatell",
        "CALLBACK_PASSWORD": "cb-default-Pa55-w2c",
    }
    [message] = scheduled_messages(None, 1)
    body = {
        "api_id": "1234567",
        "apiMsgId": message.apimsgid,
        "cliMsgId": message.climsgid,
        "to": message.recipient,
        "timestamp": 1700000000,
        "status": "003",
    }
    token = base64.b64encode(b"clickatell:cb-default-Pa55-w2c").decode()
    response = client.post(
        "/clickatell/callback/",
        json.dumps(body),
        "application/json",
        HTTP_AUTHORIZATION=f"Basic {token}",
    )
    assert response.status_code == 200, response.content
    message.refresh_from_db()
    assert message.status == "003"


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[1, 2]", "JSON body is not an object"),
        (b"{not json", "malformed JSON body"),
        (b'{"api_id": {"nested": 1}}', "malformed api_id"),
        (b'{"api_id": true}', "malformed api_id"),
        (b"\xff\xfe", "malformed JSON body"),
        (b"[" * 5000 + b"]" * 5000, "body too large"),
    ],
)
def test_a_malformed_json_callback_is_a_short_400(
    client: Any, settings: Any, body: bytes, reason: str
) -> None:
    settings.CLICKATELL = {
        **settings.CLICKATELL,
        "API_ID": "1234567",
        "CALLBACK_USERNAME": "clickatell",
        "CALLBACK_PASSWORD": "cb-default-Pa55-w2c",
    }
    response = client.post("/clickatell/callback/", body, "application/json")
    assert response.status_code == 400
    assert reason in response.content.decode()
