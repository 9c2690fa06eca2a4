"""Every user-facing string is translatable, and the German catalogue is complete and compiled."""

from __future__ import annotations

import ast
import gettext
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import translation

from django_clickatell.models import CancelState
from django_clickatell.protocol.codes import describe_status

LOCALE = Path(__file__).resolve().parent.parent / "django_clickatell" / "locale"


def catalogue(path: Path, plurals: dict[str, str] | None = None) -> dict[str, str]:
    """msgid -> msgstr (plural entries keyed by the singular, value the first form).

    *plurals*, if given, receives msgid -> msgid_plural for the plural entries.
    """
    entries: dict[str, str] = {}
    msgid = msgstr = None
    target = ""
    for line in [*path.read_text().splitlines(), ""]:
        line = line.strip()
        if line.startswith("msgid "):
            if msgid is not None:
                entries[msgid] = msgstr or ""
            msgid, msgstr, target = ast.literal_eval(line[6:]), None, "id"
        elif line.startswith("msgid_plural "):
            target = "plural"
            if plurals is not None and msgid is not None:
                plurals[msgid] = ast.literal_eval(line[13:])
        elif line.startswith(("msgstr ", "msgstr[0] ")):
            msgstr, target = ast.literal_eval(line.split(" ", 1)[1]), "str"
        elif line.startswith("msgstr["):
            target = "other"
        elif line.startswith('"') and msgid is not None:
            if target == "id":
                msgid += ast.literal_eval(line)
            elif target == "plural" and plurals is not None and msgid in plurals:
                plurals[msgid] += ast.literal_eval(line)
            elif target == "str":
                msgstr = (msgstr or "") + ast.literal_eval(line)
    if msgid is not None:
        entries[msgid] = msgstr or ""
    entries.pop("", None)  # the header
    return entries


def test_german_catalogue_is_complete() -> None:
    template = catalogue(LOCALE / "django.pot")
    german = catalogue(LOCALE / "de" / "LC_MESSAGES" / "django.po")
    assert len(template) > 100
    assert set(template) <= set(german)
    assert [msgid for msgid in template if not german[msgid]] == []


def test_compiled_catalogue_matches_the_po_file() -> None:
    plurals: dict[str, str] = {}
    german = catalogue(LOCALE / "de" / "LC_MESSAGES" / "django.po", plurals)
    with (LOCALE / "de" / "LC_MESSAGES" / "django.mo").open("rb") as mo:
        compiled = gettext.GNUTranslations(mo)

    def translated(msgid: str) -> str:
        if msgid in plurals:
            return compiled.ngettext(msgid, plurals[msgid], 1)
        return compiled.gettext(msgid)

    assert len(plurals) >= 5
    stale = [msgid for msgid, text in german.items() if translated(msgid) != text]
    assert stale == [], "run `make messages` to recompile"


def test_labels_translate() -> None:
    with translation.override("de"):
        assert str(CancelState.CANCELLED.label) == "Storniert"
        assert str(describe_status("006").label) == "Zustellung vom Benutzer storniert"


@pytest.mark.django_db
def test_admin_renders_in_german(admin_client: Client, settings: object) -> None:
    from tests.factories import scheduled_messages

    scheduled_messages(None, 1)
    with translation.override("de"):
        url = reverse("admin:django_clickatell_outboundmessage_changelist")
        content = admin_client.get(url, HTTP_ACCEPT_LANGUAGE="de").content.decode()
    assert "Geplante Zustellung stornieren" in content
    assert "Nachricht für spätere Zustellung eingeplant" in content
