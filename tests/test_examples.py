"""Every example the README and the docs mark as runnable runs as written.

A code block is run only when an RST comment right above it says how, so a
settings fragment with ``# ...`` in it is never executed blindly::

    .. runnable: settings
    .. code-block:: python

The comment renders as nothing, on PyPI and in Sphinx alike.  The kinds:

``settings [allow=W007,...]``
    Module-level settings.  Each block defining ``CLICKATELL`` is checked by the
    package's system checks together with the page's ``CELERY_BEAT_SCHEDULE``
    (the configuration the page describes): no error, and no warning but those
    the marker allows.
``module``
    Code that must import and run (a ``urls.py`` fragment).
``python [backend=test|one_api|legacy_http]``
    Code a project runs: a page's blocks run in order, in one namespace, in a
    test with the database committed as in production, against the test
    backend or the bundled simulator speaking that API.  Nothing may raise, and
    the package may log no warning.
``test-settings``, ``conftest``, ``pytest``
    The testing guide: its test settings and ``conftest.py`` make a project in a
    temporary directory, and each ``pytest`` block is a test module run there by
    pytest with pytest-django -- once as written, once with each ``db`` fixture
    replaced by ``transactional_db``.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from django.core import checks
from django.test import override_settings

from django_clickatell.models import OutboundMessage
from django_clickatell.simulator import ClickatellSimulator
from django_clickatell.states import SendState

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = sorted([ROOT / "README.rst", *(ROOT / "docs").glob("*.rst")])
MARKER = re.compile(r"^(?P<indent> *)\.\. runnable: (?P<kind>[\w-]+)(?P<options>[^\n]*)$")
DIRECTIVE = re.compile(r"^(?P<indent> *)\.\. code-block:: python\s*$")
#: Where a message sent by an example may end: accepted, held for later, or stopped here.
SETTLED = (SendState.SENT, SendState.HELD, SendState.WITHDRAWN)
KINDS = {"settings", "module", "python", "test-settings", "conftest", "pytest"}


@dataclass(frozen=True)
class Example:
    document: str
    line: int
    kind: str
    options: dict[str, str] = field(default_factory=dict)
    code: str = ""

    def __str__(self) -> str:
        return f"{self.document}:{self.line}"


def examples_in(path: Path, root: Path = ROOT) -> list[Example]:
    """The marked blocks of *path*; a marker not followed by a Python code block fails."""
    lines = path.read_text().splitlines()
    found = []
    for number, line in enumerate(lines):
        marker = MARKER.match(line)
        if not marker:
            continue
        name = str(path.relative_to(root))
        directive = DIRECTIVE.match(lines[number + 1]) if number + 1 < len(lines) else None
        where = f"{name}:{number + 1}: a runnable marker must sit right above a python code-block"
        assert directive, where
        assert directive["indent"] == marker["indent"], where
        body = []
        for following in lines[number + 2 :]:
            if following.strip() and len(following) - len(following.lstrip()) <= len(
                marker["indent"]
            ):
                break
            body.append(following)
        options = dict(item.split("=", 1) for item in marker["options"].split())
        code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        found.append(Example(name, number + 1, marker["kind"], options, code))
    return found


EXAMPLES = [example for path in DOCUMENTS for example in examples_in(path)]


def of_kind(*kinds: str) -> list[Example]:
    return [example for example in EXAMPLES if example.kind in kinds]


def test_the_markers_are_well_formed_and_cover_the_first_hour() -> None:
    assert {example.kind for example in EXAMPLES} <= KINDS, "an unknown runnable kind"
    kinds_by_page: dict[str, set[str]] = {}
    for example in EXAMPLES:
        kinds_by_page.setdefault(example.document, set()).add(example.kind)
    # The README's settings, first send and stop, and the whole testing guide run.
    assert {"settings", "python", "module"} <= kinds_by_page["README.rst"]
    assert {"test-settings", "conftest", "pytest"} <= kinds_by_page["docs/testing.rst"]
    assert {"settings"} <= kinds_by_page["docs/installation.rst"]
    assert {"settings"} <= kinds_by_page["docs/configuration.rst"]


def test_no_stray_backquotes_in_prose() -> None:
    """``via=...)````, broke an example in the README: an inline literal closed twice."""
    for path in DOCUMENTS:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            assert "````" not in line, f"{path.relative_to(ROOT)}:{number}: {line.strip()}"


# -- settings --------------------------------------------------------------------------------


class _Environment(dict[str, str]):
    """``os.environ`` for the examples: any variable is set, API ids to digits."""

    def __missing__(self, key: str) -> str:
        return "1234567" if key.endswith("API_ID") else f"example-{key.lower().replace('_', '-')}"

    def get(self, key: str, default: Any = None) -> Any:
        return self[key]


def evaluate(example: Example) -> dict[str, Any]:
    fake_os = type("os", (), {"environ": _Environment(), "path": os.path})
    namespace: dict[str, Any] = {"os": fake_os}
    source = re.sub(r"^import os$", "", example.code, flags=re.M)
    exec(compile(source, str(example), "exec"), namespace)  # noqa: S102
    return {name: value for name, value in namespace.items() if name.isupper()}


def page_beat_schedule(document: str) -> dict[str, Any] | None:
    for example in of_kind("settings"):
        if example.document == document:
            schedule = evaluate(example).get("CELERY_BEAT_SCHEDULE")
            if schedule is not None:
                return dict(schedule)
    return None


def problems_of(example: Example) -> list[str]:
    """What the system checks say of a settings example, bar the warnings it allows."""
    values = evaluate(example)
    if "INSTALLED_APPS" in values and "django_clickatell" not in values["INSTALLED_APPS"]:
        return ["INSTALLED_APPS lacks django_clickatell"]
    if "CLICKATELL" not in values:
        return [] if values else ["defines no setting"]
    overrides: dict[str, Any] = {"CLICKATELL": values["CLICKATELL"]}
    schedule = values.get("CELERY_BEAT_SCHEDULE") or page_beat_schedule(example.document)
    overrides["CELERY_BEAT_SCHEDULE"] = schedule or {}
    allowed = set(filter(None, example.options.get("allow", "").split(",")))
    with override_settings(**overrides):
        found = [
            message
            for message in checks.run_checks(include_deployment_checks=False)
            if str(message.id or "").startswith("django_clickatell.")
        ]
    return [
        f"{message.id}: {message.msg}"
        for message in found
        if message.level >= checks.ERROR or str(message.id).split(".")[-1] not in allowed
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("example", of_kind("settings"), ids=str)
def test_settings_pass_the_checks(example: Example) -> None:
    assert problems_of(example) == [], str(example)


@pytest.mark.django_db
def test_a_broken_settings_example_is_reported() -> None:
    """The check above can fail: a key missing, a typo, an unscheduled release loop."""
    missing_key = Example("docs/x.rst", 1, "settings", {}, 'CLICKATELL = {"BACKEND": "one_api"}\n')
    assert any("E001" in problem for problem in problems_of(missing_key))
    code = 'CLICKATELL = {"BACKEND": "one_api", "API_KEY": "k", "TIMOUT": 3}\n'
    typo = Example("docs/x.rst", 1, "settings", {"allow": "W007"}, code)
    assert [problem[:22] for problem in problems_of(typo)] == ["django_clickatell.W002"]
    unscheduled = Example("docs/x.rst", 1, "settings", {}, code.replace(', "TIMOUT": 3', ""))
    assert [problem[:22] for problem in problems_of(unscheduled)] == ["django_clickatell.W007"]


def test_a_marker_without_its_code_block_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.rst"
    page.write_text("Text\n\n.. runnable: settings\n\nCLICKATELL = {}\n")
    with pytest.raises(AssertionError, match="right above a python code-block"):
        examples_in(page, root=tmp_path)


@pytest.mark.parametrize("example", of_kind("module"), ids=str)
def test_modules_run(example: Example) -> None:
    exec(compile(example.code, str(example), "exec"), {})  # noqa: S102


# -- code a project runs ---------------------------------------------------------------------


def python_pages() -> list[tuple[str, str]]:
    pages = {(e.document, e.options.get("backend", "test")) for e in of_kind("python")}
    return sorted(pages)


@pytest.fixture
def account_settings(request: pytest.FixtureRequest, settings: Any) -> Iterator[None]:
    """The page's account: the test backend, or the simulator speaking the API named."""
    backend = request.node.callspec.params["page"][1]
    if backend == "test":
        settings.CLICKATELL = {"BACKEND": "test", "USE_CELERY": False}
        yield
        return
    with ClickatellSimulator() as simulator:
        config = simulator.one_api_settings() if backend == "one_api" else simulator.settings()
        settings.CLICKATELL = {**config, "USE_CELERY": False}
        yield


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("page", python_pages(), ids="-".join)
def test_code_runs(
    page: tuple[str, str],
    account_settings: None,
    caplog: pytest.LogCaptureFixture,
    redis_cache: None,
) -> None:
    document = page[0]
    namespace: dict[str, Any] = {}
    with caplog.at_level(logging.WARNING, logger="django_clickatell"):
        for example in of_kind("python"):
            if (example.document, example.options.get("backend", "test")) != page:
                continue
            exec(compile(example.code, str(example), "exec"), namespace)  # noqa: S102
    warnings = [r.getMessage() for r in caplog.records if r.name.startswith("django_clickatell")]
    assert warnings == [], f"{document}: {warnings}"
    # The work was done, and done well: nothing refused, failed, in doubt or left waiting.
    unsettled = OutboundMessage.objects.exclude(send_state__in=SETTLED)
    assert list(unsettled.values_list("send_state", "send_error")) == [], document


# -- the testing guide, in a project of its own ----------------------------------------------

GUARD = '''
"""Fails a test in which django-clickatell logged a warning (its own "inside a transaction")."""
import logging

import pytest


@pytest.fixture(autouse=True)
def _no_package_warnings(caplog):
    with caplog.at_level(logging.WARNING, logger="django_clickatell"):
        yield
    records = [r.getMessage() for r in caplog.records if r.name.startswith("django_clickatell")]
    assert records == []
'''


def write_project(directory: Path, *, transactional: bool) -> list[str]:
    """The testing guide's settings, conftest and tests, as a project would hold them."""
    [test_settings] = of_kind("test-settings")
    [conftest] = of_kind("conftest")
    (directory / "example_settings.py").write_text(
        f"from tests.settings import *  # noqa: F403\n\n{test_settings.code}"
    )
    (directory / "conftest.py").write_text(conftest.code)
    (directory / "examples_guard.py").write_text(GUARD)
    (directory / "pytest.ini").write_text(
        "[pytest]\nDJANGO_SETTINGS_MODULE = example_settings\naddopts = -p examples_guard\n"
        "filterwarnings =\n    error\n    ignore::DeprecationWarning:kombu.*\n"
        "    ignore::DeprecationWarning:celery.*\n"
    )
    names = []
    for number, example in enumerate(of_kind("pytest"), 1):
        code = example.code
        if transactional:
            code = re.sub(r"(?m)^(def test_\w+\(.*)\bdb\b", r"\1transactional_db", code)
        name = f"test_example_{number}_line_{example.line}.py"
        (directory / name).write_text(code)
        names.append(name)
    return names


@pytest.mark.slow
@pytest.mark.parametrize("transactional", [False, True], ids=["db", "transactional_db"])
def test_the_testing_guide_runs_as_written(tmp_path: Path, transactional: bool) -> None:
    names = write_project(tmp_path, transactional=transactional)
    environment = {
        **os.environ,
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}",
        "CLICKATELL_TEST_DB": "sqlite",
        "CLICKATELL_TEST_DB_NAME": str(tmp_path / "examples.sqlite3"),
    }
    environment.pop("DJANGO_SETTINGS_MODULE", None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", *names],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert " passed" in result.stdout
