from __future__ import annotations

import uuid
from datetime import timedelta

from django.utils import timezone

from django_clickatell.models import OutboundMessage
from django_clickatell.simulator import ClickatellSimulator


def scheduled_messages(
    simulator: ClickatellSimulator | None, count: int, **fields: object
) -> list[OutboundMessage]:
    """Messages scheduled an hour ahead, known both to the simulator and the database."""
    when = timezone.now() + timedelta(hours=1)
    rows = []
    offset = OutboundMessage.objects.count()  # climsgids are unique: c0, c1, ... then onwards
    for n in range(count):
        apimsgid = simulator.add_message() if simulator is not None else uuid.uuid4().hex
        values: dict[str, object] = {
            "apimsgid": apimsgid,
            "climsgid": f"c{offset + n}",
            "recipient": f"2799900{n:05d}",
            "scheduled_for": when,
            "status": "011",
            **fields,
        }
        rows.append(OutboundMessage(**values))
    return OutboundMessage.objects.bulk_create(rows)
