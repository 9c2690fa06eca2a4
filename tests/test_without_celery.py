"""Celery is optional: without it the API, the admin and the commands do the work in-process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.db import connection

from django_clickatell.simulator import ClickatellSimulator

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["celery"] = None  # as if Celery were not installed: importing it fails
    import django
    django.setup()
    from django.core.management import call_command
    import django_clickatell.admin, django_clickatell.api, django_clickatell.dispatch  # noqa
    from django_clickatell.api import cancel_sms, send_sms
    from django_clickatell.dispatch import celery_in_use
    from django_clickatell.models import OutboundMessage
    assert not celery_in_use()
    first, second = send_sms(["27999000001", "27999000002"], "hi", deliver_in_minutes=60)
    print("sent", first.send_state, second.send_state)
    result = cancel_sms(OutboundMessage.objects.filter(pk=first.pk))
    first.refresh_from_db()
    print("cancelled", first.cancel_state, first.status)
    import io
    call_command("clickatell_cancel", "--climsgid", second.climsgid, stdout=io.StringIO())
    second.refresh_from_db()
    print("command", second.cancel_state, second.status)
    try:
        import django_clickatell.tasks  # noqa
    except ImportError:
        print("tasks need celery")
    """
)


def test_api_admin_and_commands_work_without_celery(simulator: ClickatellSimulator) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": str(ROOT),
        "CLICKATELL_TEST_DB_NAME": connection.settings_dict["NAME"],
        "CLICKATELL_TEST_BASE_URL": simulator.base_url,
    }
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.splitlines() == [
        "sent sent sent",
        "cancelled cancelled 006",
        "command cancelled 006",
        "tasks need celery",
    ]
    assert simulator.counts["sendmsg"] == 2
    assert simulator.counts["delmsg"] == 2
