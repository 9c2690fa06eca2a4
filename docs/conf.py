"""Sphinx configuration for django-clickatell."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")

import django  # noqa: E402

django.setup()

from django_clickatell import __version__  # noqa: E402

project = "django-clickatell"
author = "the django-clickatell authors"
copyright = "2026, the django-clickatell authors"
release = version = __version__

extensions = ["sphinx.ext.autodoc", "sphinx.ext.viewcode"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
exclude_patterns = ["_build"]
html_theme = "alabaster"
html_static_path = ["_static"]
html_theme_options = {"description": "Stop scheduled SMS at Clickatell, keep the record straight."}

# The link check stays offline: external pages are not fetched, local targets are checked.
linkcheck_ignore = [r"https?://.*"]
