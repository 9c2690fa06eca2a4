"""The layers docs/design.rst shows are the layers the import contracts enforce."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def contract_layers() -> list[set[str]]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = config["importlinter:contract:layers"]["layers"].strip().splitlines()
    return [set(re.split(r"\s*[|:]\s*", line.strip())) for line in lines]


def documented_layers() -> list[set[str]]:
    text = (ROOT / "docs" / "design.rst").read_text()
    block = text.split("against them, top to bottom:\n\n.. code-block:: text\n\n", 1)[1]
    layers = []
    for line in block.splitlines():
        if not line.startswith("    "):
            break
        names = re.findall(r"([a-z_]+)(?:/|\.py)", line)
        layers.append(set(names))
    return layers


def test_the_design_page_shows_the_contracted_layers_in_order() -> None:
    assert documented_layers() == contract_layers()


def test_every_top_level_module_has_a_layer() -> None:
    modules = {
        path.stem if path.is_file() else path.name
        for path in (ROOT / "django_clickatell").iterdir()
        if (path.suffix == ".py" and path.stem != "__init__")
        or (path.is_dir() and (path / "__init__.py").exists())
    }
    modules -= {"migrations", "locale", "templates"}
    layered = set().union(*contract_layers())
    assert modules == layered
