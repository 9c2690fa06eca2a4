"""Phone numbers (issue 19, item 8): one rule, E.164 everywhere, national ones only with a region.

Before, ``send_sms("0831234567", ...)`` was accepted and sent as ``0831234567``:
the rule was digits and a ``+``, nothing about countries.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ImproperlyConfigured
from django.test import Client
from django.urls import reverse

from django_clickatell import testing
from django_clickatell.api import InvalidMessage, send_sms
from django_clickatell.conf import app_settings
from django_clickatell.models import OutboundMessage
from django_clickatell.protocol.msisdn import (
    Destination,
    destination,
    e164,
    is_region,
    parse_recipient,
)
from django_clickatell.simulator import ClickatellSimulator
from tests.every_backend import BACKENDS, backend_settings

# -- the rule ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "written",
    [
        "+27831234567",
        "+27 83 123 4567",
        "0027831234567",
        "00 27 83 123 4567",
        "27831234567",
        "+27-83-123-4567",
        "+27.83.123.4567",
        "+27 (83) 123 4567",
        "+27 (0)83 123 4567",  # the trunk 0 some write inside an international number
        "  +27 83 123 4567  ",
    ],
)
def test_international_numbers_however_written_become_one_e164_number(written: str) -> None:
    assert parse_recipient(written) == "27831234567"


def test_national_numbers_are_refused_without_a_default_region() -> None:
    with pytest.raises(InvalidMessage, match="national number") as caught:
        parse_recipient("0831234567")
    assert "'0831234567'" in str(caught.value)
    assert "DEFAULT_REGION" in str(caught.value)


@pytest.mark.parametrize(
    ("written", "stored"),
    [
        ("0831234567", "27831234567"),
        ("083 123 4567", "27831234567"),
        ("831234567", "27831234567"),
        ("27831234567", "27831234567"),  # the region's own country code still reads right
        ("+44 7911 123456", "447911123456"),  # other countries: with + ...
        ("0044 7911 123456", "447911123456"),  # ... or 00
    ],
)
def test_a_default_region_reads_national_numbers(written: str, stored: str) -> None:
    assert parse_recipient(written, "ZA") == stored


def test_with_a_region_other_countries_need_their_prefix() -> None:
    with pytest.raises(InvalidMessage, match=r"too long for \+27 \(read as a number of ZA"):
        parse_recipient("447911123456", "ZA")


@pytest.mark.parametrize(
    ("written", "problem"),
    [
        ("+27 83", "too short"),
        ("27831", "too short"),
        ("+27 83 123 4567 8901", "too long"),
        ("+999 123 4567", "no such country code"),
        ("+0831234567", "no such country code"),
        ("12ab", "Not a phone number"),
        ("+27 83 123 4567 ext. 5", "Not a phone number"),
        ("1-800-FLOWERS", "Not a phone number"),
        ("", "Not a phone number"),
        ("+", "Not a phone number"),
        ("++27831234567", "Not a phone number"),
        ("+27 83 123 4567\n+27 83 123 4568", "Not a phone number"),
        ("٠٨٣١٢٣٤٥٦٧", "Not a phone number"),  # digits of another script
        ("2" * 41, "Not a phone number"),
    ],
)
def test_what_is_no_possible_number_is_refused_saying_why(written: str, problem: str) -> None:
    with pytest.raises(InvalidMessage, match=problem):
        parse_recipient(written)


def test_a_number_that_is_not_a_string_is_refused() -> None:
    with pytest.raises(InvalidMessage, match="must be a string, not int"):
        parse_recipient(27831234567)


def test_a_huge_input_is_refused_at_once() -> None:
    started = time.perf_counter()
    with pytest.raises(InvalidMessage):
        parse_recipient("+" + "2" * 1_000_000)
    assert time.perf_counter() - started < 0.5


def test_destination_names_calling_code_and_region() -> None:
    assert destination("27831234567") == Destination(27, "ZA")
    assert destination("+447911123456").calling_code == 44
    assert destination("14155552671") == Destination(1, "US")
    assert destination("80012345678") == Destination(800, None)  # non-geographic
    assert e164("27831234567") == "+27831234567"


def test_regions() -> None:
    assert is_region("ZA")
    assert is_region("GB")
    assert not is_region("za")
    assert not is_region("XX")
    assert not is_region("001")  # libphonenumber's non-geographic entity is no region


# -- DEFAULT_REGION ------------------------------------------------------------------------


def test_default_region_is_read_in_any_case(settings: Any) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "DEFAULT_REGION": "za"}
    assert app_settings.default_region == "ZA"
    settings.CLICKATELL = {**settings.CLICKATELL, "DEFAULT_REGION": ""}
    assert app_settings.default_region == ""


@pytest.mark.parametrize("value", ["XX", "South Africa", "ZAF", 27])
def test_a_bad_default_region_names_the_key(settings: Any, value: object) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "DEFAULT_REGION": value}
    with pytest.raises(ImproperlyConfigured, match=r"settings\.CLICKATELL\['DEFAULT_REGION'\]"):
        app_settings.default_region  # noqa: B018
    ids = {message.id for message in run_checks()}
    assert ids & {"django_clickatell.E002", "django_clickatell.E008"}


# -- sending -------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_national_number_is_refused_and_nothing_is_recorded_or_sent(
    simulator: ClickatellSimulator,
) -> None:
    with pytest.raises(InvalidMessage, match="national number"):
        send_sms("0831234567", "Hello", wait=True)
    assert not OutboundMessage.objects.exists()
    assert simulator.counts["total"] == 0


@pytest.mark.django_db
def test_with_a_default_region_a_national_number_is_sent_in_international_form(
    simulator: ClickatellSimulator, settings: Any
) -> None:
    settings.CLICKATELL = {**settings.CLICKATELL, "DEFAULT_REGION": "ZA"}
    [message] = send_sms("083 123 4567", "Hello", wait=True)
    assert message.recipient == "27831234567"
    assert simulator.messages[str(message.apimsgid)].to == "27831234567"


@pytest.mark.django_db
def test_every_way_of_writing_a_number_stores_the_same_number(
    simulator: ClickatellSimulator,
) -> None:
    for written in ("+27 83 123 4567", "0027831234567", "27831234567"):
        send_sms(written, f"to {written}", wait=True)
    assert set(OutboundMessage.objects.values_list("recipient", flat=True)) == {"27831234567"}
    assert {m.to for m in simulator.messages.values()} == {"27831234567"}


@pytest.mark.django_db
def test_the_same_number_written_twice_in_one_call_is_refused(
    simulator: ClickatellSimulator,
) -> None:
    with pytest.raises(InvalidMessage, match=r"listed twice: \+27831234567"):
        send_sms(["+27 83 123 4567", "0027831234567"], "Hello", wait=True)
    assert not OutboundMessage.objects.exists()


@pytest.mark.django_db
def test_a_bulk_send_with_one_bad_number_is_refused_whole(
    simulator: ClickatellSimulator,
) -> None:
    numbers = ["27831234567", "+44 7911 123456", "0831234568", "27831234569"]
    with pytest.raises(InvalidMessage, match="'0831234568' is a national number"):
        send_sms(numbers, "Hello", wait=True)
    assert not OutboundMessage.objects.exists()
    assert simulator.counts["total"] == 0


@pytest.mark.django_db
@pytest.mark.parametrize("backend", BACKENDS)
def test_each_api_gets_the_number_in_the_form_it_documents(
    simulator: ClickatellSimulator, settings: Any, backend: str
) -> None:
    """Every API's ``to`` is international digits without ``+`` (the legacy ``to``, the
    REST ``to`` list and the One API ``to`` alike)."""
    settings.CLICKATELL = {**backend_settings(simulator, backend), "DEFAULT_REGION": "ZA"}
    [message] = send_sms("+27 (0)83 123-4567", "Hello", wait=True)
    assert message.recipient == "27831234567"
    assert simulator.messages[str(message.apimsgid)].to == "27831234567"


@pytest.mark.django_db
def test_the_test_backend_records_the_normalised_number(settings: Any) -> None:
    settings.CLICKATELL = {"BACKEND": "test", "DEFAULT_REGION": "GB"}
    testing.reset_outbox()
    send_sms("07911 123456", "Hello", wait=True)
    assert [sms.to for sms in testing.outbox] == ["447911123456"]


# -- the admin -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_finds_a_number_however_it_is_written(admin_client: Client) -> None:
    mine = OutboundMessage.objects.create(recipient="27831234567", climsgid="mine")
    other = OutboundMessage.objects.create(recipient="27831234568", climsgid="other")
    url = reverse("admin:django_clickatell_outboundmessage_changelist")
    for written in ("+27 83 123 4567", "0027831234567", "27831234567"):
        found = admin_client.get(url, {"q": written}).context["cl"].result_list
        assert list(found) == [mine], written
    # a part of a number, or an id, is searched as before
    assert admin_client.get(url, {"q": "2783123456"}).context["cl"].result_count == 2
    assert list(admin_client.get(url, {"q": "other"}).context["cl"].result_list) == [other]
