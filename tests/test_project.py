"""Project-level guarantees: migrations in sync, README renders, layers stay apart."""

from __future__ import annotations

import ast
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "django_clickatell"


@pytest.mark.django_db
def test_migrations_are_complete() -> None:
    out = StringIO()
    call_command("makemigrations", "django_clickatell", "--check", "--dry-run", stdout=out)
    assert "No changes detected" in out.getvalue()


def test_readme_renders_cleanly() -> None:
    import docutils.core  # type: ignore[import-untyped,unused-ignore]

    docutils.core.publish_string(
        (ROOT / "README.rst").read_text(),
        writer="null",
        settings_overrides={"report_level": 2, "halt_level": 2},
    )


def test_readme_is_for_users_first_and_contributors_after() -> None:
    """Issue 21: the README opened with ``make demo`` / ``make test`` and ran to 1,081
    lines, with only legacy credentials in its installation section."""
    text = (ROOT / "README.rst").read_text()
    assert len(text.splitlines()) <= 310
    order = [
        "pip install",
        '"BACKEND": "one_api"',
        '"API_ID"',
        "django_clickatell.release_due_messages",
        "[now] = send_sms(",
        "Cancel scheduled delivery",
        "make demo",
        "make test",
    ]
    positions = [text.index(landmark) for landmark in order]
    assert positions == sorted(positions)
    assert text.index("Contributing\n====") > text.index("Quick start\n====")


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:
                base = path.relative_to(ROOT).with_suffix("").parts[: -node.level]
                module = ".".join([*base, module]) if module else ".".join(base)
            names.add(module)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        (
            "protocol",
            (
                "django_clickatell.gateway",
                "django_clickatell.models",
                "requests",
                "django.db",
                "celery",
                "django_clickatell.services",
            ),
        ),
        (
            "gateway",
            (
                "django_clickatell.models",
                "django_clickatell.services",
                "celery",
                "django_clickatell.admin",
                "django_clickatell.tasks",
            ),
        ),
        (
            "services",
            (
                "celery",
                "django_clickatell.admin",
                "django_clickatell.tasks",
                "django.contrib.admin",
            ),
        ),
    ],
)
def test_layers_only_look_down(layer: str, forbidden: tuple[str, ...]) -> None:
    for path in (PACKAGE / layer).rglob("*.py"):
        for name in imports_of(path):
            assert not name.startswith(forbidden), f"{path.name} imports {name}"
