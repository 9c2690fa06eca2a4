"""Asking Clickatell for the status of messages (``querymsg``) and recording the answers.

Every answer goes through the one lifecycle rule (:func:`.status.apply_status`),
so a refresh never moves a status backwards, and every request is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..exceptions import ClickatellError
from ..gateway.backends import Backend
from ..models import OutboundMessage
from . import recording, waiting
from .account import BackendPool
from .reports import Report
from .status import apply_status

logger = logging.getLogger("django_clickatell.status")


@dataclass
class RefreshReport(Report):
    changed: list[int] = field(default_factory=list)
    unchanged: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    retry: list[int] = field(default_factory=list)
    transient_error: str = ""
    #: Not asked: their account is not in the settings (asked again by a later refresh).
    waiting: list[int] = field(default_factory=list)


def refreshable_messages() -> list[int]:
    """Messages whose status may still change and that Clickatell can be asked about."""
    return list(OutboundMessage.objects.refreshable().order_by("pk").values_list("pk", flat=True))


def refresh_statuses(
    message_pks: Iterable[int],
    *,
    via: str,
    actor: Any = None,
    backend: Backend | None = None,
) -> RefreshReport:
    """Ask Clickatell (``querymsg``) for the status of each message and record it.

    Each message is asked about through its account's backend (*backend*, if given, for all).
    """
    report = RefreshReport()
    messages = list(
        OutboundMessage.objects.filter(pk__in=list(message_pks)).refreshable().order_by("pk")
    )
    backends = BackendPool(backend)
    actor_id = getattr(actor, "pk", None)
    # A transient failure stops the asking for its account only: the periodic refresh
    # holds every account's messages, and one account's outage or refused key must not
    # keep the others' statuses from arriving.
    stopped: set[str] = set()
    for message in messages:
        if message.account in stopped:
            report.retry.append(message.pk)
            continue
        exchange = recording.new_exchange(message.pk, "querymsg", via=via, actor_id=actor_id)
        gateway = backends(message)
        if waiting.request_waits_for(gateway):
            report.waiting.append(message.pk)
            continue
        try:
            if message.apimsgid:
                reply = gateway.query(apimsgid=message.apimsgid)
            else:
                reply = gateway.query(climsgid=message.climsgid)
        except ValueError as exc:
            logger.warning("Message %s has an invalid id: %s", message.pk, exc)
            report.failed.append(message.pk)
            continue
        except ClickatellError as exc:
            recording.log_refused_attempts(gateway, exchange)
            recording.save(recording.failed(exchange, exc))
            if exc.retryable:
                report.retry.append(message.pk)
                report.transient_error = recording.describe(exc)
                stopped.add(message.account)
                continue
            report.failed.append(message.pk)
            continue
        recording.log_refused_attempts(gateway, exchange)
        recording.save(recording.answered(exchange, reply.status))
        extra = {} if message.apimsgid else {"apimsgid": reply.apimsgid}
        # Ordered by when the status happened where the reply says (the One API), else
        # by when the reply arrived.
        if apply_status(message, reply.status, reported_at=reply.reported_at, via=via, extra=extra):
            report.changed.append(message.pk)
        else:
            report.unchanged.append(message.pk)
    return report
