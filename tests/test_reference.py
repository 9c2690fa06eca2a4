"""The settings, check and backend references in the docs are the code's own words.

``docs/reference.py`` writes them from the options in ``conf/options.py`` and
``checks.PROBLEMS``; these tests fail when a committed file says something else
(a changed default, bound, paragraph, a new key or check id not regenerated).
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from django.test import override_settings

from django_clickatell import checks
from django_clickatell.conf import ClickatellSettings, Derived, app_settings
from django_clickatell.protocol.redaction import Secret

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = ["docs/configuration.rst"]


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_reference", ROOT / "docs" / "reference.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference: Any = load_generator()


@pytest.mark.parametrize("document", DOCUMENTS)
def test_committed_reference_is_what_the_code_says(document: str) -> None:
    text = (ROOT / document).read_text()
    expected = set(reference.FILES[ROOT / document])
    assert reference.marked_regions(text) == expected, "a marker was lost"
    assert reference.splice(text) == text, (
        f"{document} is stale: run `.venv/bin/python docs/reference.py` and commit the result"
    )


def test_committed_backend_table_is_what_the_backends_declare(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """docs/backends.rst's table is generated; a changed capability makes it stale."""
    text = (ROOT / "docs/backends.rst").read_text()
    assert "backend capabilities" in reference.marked_regions(text)
    assert reference.splice(text) == text, "docs/backends.rst is stale: run docs/reference.py"
    from django_clickatell.gateway.backends.one_api import OneApiBackend

    text = (ROOT / "docs/backends.rst").read_text()
    changed = dataclasses.replace(OneApiBackend.capabilities, remote_stop=True)
    monkeypatch.setattr(OneApiBackend, "capabilities", changed)
    assert reference.splice(text) != text


def test_each_reference_is_generated_once_into_the_docs() -> None:
    """The README links to the references; a second copy would be a second thing to keep."""
    readme = (ROOT / "README.rst").read_text()
    assert reference.marked_regions(readme) == set()
    assert ROOT / "README.rst" not in reference.FILES
    owners = [region for regions in reference.FILES.values() for region in regions]
    assert sorted(owners) == sorted(set(owners)) == sorted(reference.REGIONS)


@pytest.mark.parametrize("document", DOCUMENTS)
def test_a_changed_option_makes_the_document_stale(
    document: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check above can fail: a default, a paragraph or a new id not copied is seen."""
    text = (ROOT / document).read_text()
    option = ClickatellSettings.options()["SESSION_TTL"]
    monkeypatch.setattr(option, "default", 601)
    assert reference.splice(text) != text
    monkeypatch.undo()
    monkeypatch.setattr(option, "doc", option.doc + " Changed.")
    assert reference.splice(text) != text
    monkeypatch.undo()
    extra = checks.Problem("django_clickatell.W999", "a new problem")
    monkeypatch.setattr(reference, "PROBLEMS", (*checks.PROBLEMS, extra))
    assert reference.splice(text) != text


@pytest.mark.parametrize("document", DOCUMENTS)
def test_every_key_type_and_default_is_stated(document: str) -> None:
    """Independent of the generator: each key's heading gives the parser's type and the
    default the option really returns."""
    text = (ROOT / document).read_text()
    for key, option in ClickatellSettings.options().items():
        heading = re.search(rf"^``{key}`` \((?P<type>.+?); (?P<default>.+)\)$", text, re.M)
        assert heading, key
        assert heading["type"] == option.kind.type, key
        if option.required:
            assert heading["default"] == option.required_text, key
            assert heading["default"].startswith("required"), key
        elif isinstance(option.default, Derived):
            assert heading["default"].startswith("default "), key  # derived: stated in words
        else:
            stated = ast.literal_eval(heading["default"].removeprefix("default ").strip("`"))
            with override_settings(CLICKATELL={"USERNAME": "u", "PASSWORD": "p", "API_ID": "1"}):
                actual = getattr(app_settings, key.lower())
            plain = actual.reveal() if isinstance(actual, Secret) else actual
            assert stated == plain, key


@pytest.mark.parametrize("key", sorted(ClickatellSettings.options()))
def test_every_example_is_a_value_the_key_accepts(key: str) -> None:
    option = ClickatellSettings.options()[key]
    assert option.doc.endswith((".", ")")), key
    environ = {name: f"from-env-{name}" for name in re.findall(r'"([A-Z_]+)"', option.example)}
    value = eval(option.example, {"os": type("os", (), {"environ": environ})})  # noqa: S307
    option.kind(key, value)  # raises if the example is not a valid value


@pytest.mark.parametrize("document", DOCUMENTS)
def test_figures_for_the_defaults_are_computed(document: str) -> None:
    """The prose's worked example ("a request takes at most 20 s ...") matches the code."""
    text = " ".join((ROOT / document).read_text().split())
    found = re.search(
        r"a request takes at most ([\d.]+) s and a call ([\d.]+) s, so the claim needs "
        r"([\d.]+) s of its (\d+)",
        text,
    )
    assert found, document
    with override_settings(CLICKATELL={"USERNAME": "u", "PASSWORD": "p", "API_ID": "1"}):
        computed = (
            app_settings.request_deadline,
            app_settings.command_deadline,
            app_settings.minimum_claim_timeout,
            app_settings.claim_timeout,
        )
    assert tuple(float(figure) for figure in found.groups()) == pytest.approx(computed)
