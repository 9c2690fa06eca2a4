"""The built wheel installs and works in a clean virtualenv, away from the source tree."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import textwrap
import zipfile
from pathlib import Path

import pytest

from django_clickatell import __version__
from django_clickatell.gateway.transport import USER_AGENT

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow

THROWAWAY_SETTINGS = textwrap.dedent(
    """
    INSTALLED_APPS += ["django_clickatell"]
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache",
                          "LOCATION": "redis://127.0.0.1:6379/11"}}
    CLICKATELL = {"USERNAME": "u", "PASSWORD": "p4ssword", "API_ID": "1234567"}
    CELERY_BEAT_SCHEDULE = {"release": {"task": "django_clickatell.release_due_messages",
                                        "schedule": 30.0}}
    """
)
IMPORT_ALL = textwrap.dedent(
    """
    import importlib, pkgutil, django
    django.setup()
    import django_clickatell
    # django_clickatell.testing included: only its fixtures need pytest, which this venv lacks.
    names = [m.name for m in pkgutil.walk_packages(django_clickatell.__path__, "django_clickatell.")
             if ".migrations." not in m.name and not m.name.endswith("__main__")]
    try:
        import celery  # noqa: F401
    except ImportError:  # without the [celery] extra, only the task definitions need it
        names.remove("django_clickatell.tasks")
    for name in names:
        importlib.import_module(name)
    print(django_clickatell.__file__)
    print(len(names))
    """
)


def run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    return result.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    run(sys.executable, "-m", "build", "--outdir", out, ROOT, cwd=ROOT)
    run(sys.executable, "-m", "twine", "check", "--strict", *sorted(out.iterdir()), cwd=ROOT)
    return out


def test_wheel_and_sdist_carry_everything(dist: Path) -> None:
    [wheel] = dist.glob("*.whl")
    [sdist] = dist.glob("*.tar.gz")
    assert wheel.name == f"django_clickatell-{__version__}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    for expected in (
        "django_clickatell/py.typed",
        "django_clickatell/migrations/0001_initial.py",
        "django_clickatell/templates/admin/django_clickatell/outboundmessage/"
        "cancel_delivery_confirmation.html",
        "django_clickatell/locale/de/LC_MESSAGES/django.mo",
        "django_clickatell/locale/de/LC_MESSAGES/django.po",
    ):
        assert expected in names
    assert not any(name.startswith(("tests/", "example_project/")) for name in names)
    with tarfile.open(sdist) as archive:
        members = {m.split("/", 1)[1] for m in archive.getnames() if "/" in m}
    for expected in (
        "tests/test_faults.py",
        "example_project/manage.py",
        "docs/index.rst",
        "CHANGELOG.rst",
        "LICENSE",
        "README.rst",
    ):
        assert expected in members, expected


def test_version_in_one_place_shown_in_user_agent() -> None:
    assert USER_AGENT.startswith(f"django-clickatell/{__version__} ")
    assert "version = attr: django_clickatell.__version__" in (ROOT / "setup.cfg").read_text()


def test_wheel_installs_and_works_in_a_clean_virtualenv(dist: Path, tmp_path: Path) -> None:
    [wheel] = dist.glob("*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    run(python, "-m", "pip", "install", "--quiet", f"{wheel}[redis]", cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "DJANGO_SETTINGS_MODULE")}
    run(venv / "bin" / "django-admin", "startproject", "throwaway", cwd=tmp_path, env=env)
    project = tmp_path / "throwaway"
    settings = project / "throwaway" / "settings.py"
    settings.write_text(settings.read_text() + THROWAWAY_SETTINGS)
    env["DJANGO_SETTINGS_MODULE"] = "throwaway.settings"
    run(python, "manage.py", "check", "--fail-level", "WARNING", cwd=project, env=env)
    out = run(python, "manage.py", "migrate", cwd=project, env=env)
    assert "Applying django_clickatell.0001_initial... OK" in out
    assert "Applying django_clickatell.0002_exactly_once_sending... OK" in out
    out = run(python, "-c", IMPORT_ALL, cwd=project, env={**env, "PYTHONPATH": str(project)})
    location, count = out.split()
    assert location.startswith(str(venv))  # the installed copy, not the source tree
    assert int(count) >= 25
    # Celery is an extra: everything above ran without it; with it, the tasks load too.
    run(python, "-m", "pip", "install", "--quiet", f"{wheel}[redis,celery]", cwd=tmp_path)
    run(python, "-c", IMPORT_ALL, cwd=project, env={**env, "PYTHONPATH": str(project)})
    run(
        python,
        "-c",
        "import django, sys; django.setup(); import django_clickatell.tasks",
        cwd=project,
        env={**env, "PYTHONPATH": str(project)},
    )
