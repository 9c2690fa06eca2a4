"""Write the settings, system-check and backend references into the docs, once.

The code is the source: every key, type, bound, default, paragraph and example
comes from the options in ``django_clickatell/conf/options.py``, every check id
from ``PROBLEMS`` in ``django_clickatell/checks.py``, every backend's abilities
from its declared capabilities.  Each region is generated into one page of the
docs (``docs/configuration.rst``, ``docs/backends.rst``) between ``.. BEGIN
<name>`` and ``.. END <name>`` comments; the rest is written by hand.  The README
links to them instead of carrying a copy.  After changing an option or a check, run::

    .venv/bin/python docs/reference.py

``tests/test_reference.py`` fails while a committed file differs from what this
writes (``--check`` says the same without writing).
"""

from __future__ import annotations

import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from django_clickatell.checks import PROBLEMS  # noqa: E402
from django_clickatell.conf import ACCOUNT, PROCESS, ClickatellSettings, Option  # noqa: E402
from django_clickatell.gateway.backends import BACKENDS, backend_class  # noqa: E402

#: How the reference says where a key is read (see Accounts in docs/configuration.rst).
SCOPES = {
    ACCOUNT: "Scope: per account (each account's own dict; never inherited).",
    PROCESS: "Scope: process-wide (top level only, for every account).",
}

#: Each file and the generated regions it carries: each region in one place only.
FILES: dict[Path, tuple[str, ...]] = {
    ROOT / "docs" / "configuration.rst": ("settings reference", "system checks"),
    ROOT / "docs" / "backends.rst": ("backend capabilities",),
}
WIDTH = 88
NO_BREAK = "\0"


def entry(option: Option[object]) -> str:
    """One key as a definition-list item: the term, the paragraph, bounds and example."""
    default = option.required_text if option.required else f"default {option.default_text}"
    facts = [_wrap(f"Accepts: {option.kind.bounds}.")] if option.kind.bounds else []
    facts.append(f"    {SCOPES[option.scope]}")
    facts.append(f"    Example: ``{option.example}``.")
    term = f"``{option.key}`` ({option.kind.type}; {default})"
    return "\n".join([term, _wrap(option.doc), "", *facts])


def settings_reference() -> str:
    return "\n\n".join(entry(option) for option in ClickatellSettings.options().values())


def checks_reference() -> str:
    """The check ids as a simple table: id, the ``security`` tag where it applies, problem."""
    rows = [("Id", "Tag", "Problem")]
    rows += [(f"``{p.id}``", "security" if p.security else "", p.summary) for p in PROBLEMS]
    return _table(rows)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def backends_reference() -> str:
    """What each backend can do, read from its declared capabilities (aliases listed once)."""
    rows = [
        (
            "``BACKEND``",
            "Remote stop",
            "Native scheduling",
            "Session",
            "Callbacks",
            "Batch",
            "Verify by ``climsgid``",
        )
    ]
    seen: set[str] = set()
    for name, path in BACKENDS.items():
        if path in seen:
            continue
        seen.add(path)
        aliases = [other for other, target in BACKENDS.items() if target == path]
        can = backend_class(name).capabilities
        horizon = can.scheduling_horizon
        scheduling = (
            f"yes, {horizon.days} days ahead"
            if can.native_scheduling and horizon
            else _yes(can.native_scheduling)
        )
        rows.append(
            (
                " / ".join(f"``{alias}``" for alias in aliases),
                _yes(can.remote_stop),
                scheduling,
                _yes(can.sessions),
                {"form": "form fields", "json": "JSON", "": "none"}.get(
                    can.callbacks, can.callbacks
                ),
                str(can.batch_size),
                _yes(can.query_by_client_id),
            )
        )
    return _table(rows)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    rule = "  ".join("=" * width for width in widths)
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    return "\n".join([rule, lines[0], rule, *lines[1:], rule])


REGIONS: dict[str, Callable[[], str]] = {
    "settings reference": settings_reference,
    "system checks": checks_reference,
    "backend capabilities": backends_reference,
}


def splice(text: str, regions: dict[str, Callable[[], str]] = REGIONS) -> str:
    """*text* with every generated region it marks rewritten from the code."""
    for name, render in regions.items():
        if name in marked_regions(text):
            text = _splice_one(text, name, render())
    return text


def _splice_one(text: str, name: str, body: str) -> str:
    marker = re.escape(name)
    pattern = re.compile(
        rf"(^\.\. BEGIN {marker}\b[^\n]*\n).*?(^\.\. END {marker}$)", re.DOTALL | re.MULTILINE
    )
    return pattern.sub(lambda match: f"{match[1]}\n{body}\n\n{match[2]}", text)


def marked_regions(text: str) -> set[str]:
    """The regions *text* has both markers of (a file that lost one would never be updated)."""
    return {
        name
        for name in REGIONS
        if re.search(
            rf"^\.\. BEGIN {re.escape(name)}\b(?s:.*?)^\.\. END {re.escape(name)}$", text, re.M
        )
    }


def _wrap(text: str) -> str:
    """*text* indented and filled, never breaking inside an ``inline literal``."""
    glued = re.sub(r"``.*?``", lambda match: match[0].replace(" ", NO_BREAK), text)
    filled = textwrap.fill(
        glued,
        WIDTH,
        initial_indent="    ",
        subsequent_indent="    ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    return filled.replace(NO_BREAK, " ")


def main(argv: list[str]) -> int:
    stale = []
    for path, regions in FILES.items():
        text = path.read_text()
        missing = set(regions) - marked_regions(text)
        if missing:
            print(f"{path.relative_to(ROOT)}: lost the markers of {', '.join(sorted(missing))}")
            return 1
        current = splice(text)
        if current != text:
            stale.append(path.relative_to(ROOT))
            if "--check" not in argv:
                path.write_text(current)
    verb = "stale" if "--check" in argv else "rewritten"
    for path in stale:
        print(f"{path}: {verb}")
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
