"""Admin: monitor messages and cancellations, stop scheduled deliveries, recover failed sends.

One module per page family: :mod:`.messages` (the message list and page),
:mod:`.actions` (what an operator can do to a selection, each a thin face
over a service, behind its permission and a confirmation), :mod:`.batches`
and :mod:`.callbacks` (read-only monitoring).
"""

from .batches import CancellationBatchAdmin
from .callbacks import UnmatchedCallbackAdmin
from .messages import GatewayExchangeInline, OutboundMessageAdmin

__all__ = [
    "CancellationBatchAdmin",
    "GatewayExchangeInline",
    "OutboundMessageAdmin",
    "UnmatchedCallbackAdmin",
]
