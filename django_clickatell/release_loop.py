"""Is the release loop scheduled?  What the system check ``W007`` asks before it warns.

An account that cannot schedule a message natively -- the One API, or any
message beyond the API's horizon -- holds it in Django, and only the release
loop (the beat task :data:`RELEASE_TASK`, or ``manage.py clickatell_release``
run by cron or a systemd timer) hands it to Clickatell when it is due.  Without
the loop the message looks normal ("Held here until due") and never leaves, so
start-up says so.

The schedule can live in three places; each is read here without starting
anything:

* Celery's configuration of the running app (``app.conf.beat_schedule``: from
  ``CELERY_BEAT_SCHEDULE`` in settings with the usual ``namespace="CELERY"``,
  or set in the project's ``celery.py``);
* the Django settings themselves (``CELERY_BEAT_SCHEDULE``, or the old
  ``CELERYBEAT_SCHEDULE``), for a process that has not imported its Celery app;
* django-celery-beat's ``PeriodicTask`` rows, read only when the checks are
  given a database (``check --database default``, ``migrate``), as Django
  wants of checks that query.

A cron job or a timer running ``clickatell_release`` cannot be seen from
here: such a project silences the check (``SILENCED_SYSTEM_CHECKS``), as its
hint says.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import DatabaseError

#: The beat task that hands held messages over when due (``tasks.release_due_messages``).
RELEASE_TASK = "django_clickatell.release_due_messages"
#: The settings a beat schedule is read from, newest name first.
SCHEDULE_SETTINGS = ("CELERY_BEAT_SCHEDULE", "CELERYBEAT_SCHEDULE")
#: django-celery-beat, whose schedule is in the database.
DATABASE_SCHEDULER_APP = "django_celery_beat"


def scheduled_in(schedule: object) -> set[str]:
    """The task names a beat schedule (``{name: {"task": ..., ...}}``) runs; tolerant of junk."""
    if not isinstance(schedule, Mapping):
        return set()
    names = set()
    for entry in schedule.values():
        task = entry.get("task") if isinstance(entry, Mapping) else getattr(entry, "task", None)
        if isinstance(task, str):
            names.add(task)
    return names


def celery_schedule() -> set[str]:
    """What the Celery app of this process would run; empty without Celery."""
    try:
        from .tasks import beat_schedule
    except ImportError:  # Celery is an optional extra
        return set()
    return scheduled_in(beat_schedule())


def settings_schedule() -> set[str]:
    names: set[str] = set()
    for name in SCHEDULE_SETTINGS:
        names |= scheduled_in(getattr(settings, name, None))
    return names


def uses_database_scheduler() -> bool:
    return apps.is_installed(DATABASE_SCHEDULER_APP)


def database_schedule(databases: Iterable[str]) -> set[str] | None:
    """Enabled django-celery-beat tasks in *databases*; None where it cannot be read."""
    try:
        periodic_task = apps.get_model(DATABASE_SCHEDULER_APP, "PeriodicTask")
    except LookupError:
        return None
    names: set[str] = set()
    for alias in databases:
        try:
            rows: Any = periodic_task.objects.using(alias).filter(enabled=True)
            names.update(rows.values_list("task", flat=True))
        except DatabaseError:  # not migrated yet (this runs before ``migrate`` too)
            return None
    return names


def release_loop_scheduled(databases: Iterable[str] | None) -> bool | None:
    """True if the release task is scheduled, False if it is not, None if it cannot be told.

    None only for django-celery-beat without a database to read: ``check`` then stays
    quiet rather than guess, and ``check --database`` (or ``migrate``) decides.
    """
    if RELEASE_TASK in celery_schedule() | settings_schedule():
        return True
    if not uses_database_scheduler():
        return False
    if not databases:
        return None
    found = database_schedule(databases)
    return None if found is None else RELEASE_TASK in found
