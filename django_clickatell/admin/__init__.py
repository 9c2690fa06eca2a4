"""Admin: monitor messages and cancellations, stop scheduled deliveries, recover failed sends.

One module per page or job: :mod:`.messages` (the message list and page),
:mod:`.story` and :mod:`.explanations` (each message's state, reason and next
step), :mod:`.filters`; the actions an operator can take on a selection, each
a thin face over a service behind its permission and a confirmation page
(:mod:`.confirmation`): :mod:`.cancel_actions`, :mod:`.send_actions`,
:mod:`.refresh_action`; :mod:`.batches` and :mod:`.callbacks` (monitoring);
:mod:`.pauses` (pausing and resuming an account); :mod:`.opt_outs` (the opt-out list).
"""

from .batches import CancellationBatchAdmin
from .callbacks import UnmatchedCallbackAdmin
from .messages import GatewayExchangeInline, OutboundMessageAdmin
from .opt_outs import OptOutAdmin
from .pauses import AccountPauseAdmin

__all__ = [
    "AccountPauseAdmin",
    "CancellationBatchAdmin",
    "GatewayExchangeInline",
    "OptOutAdmin",
    "OutboundMessageAdmin",
    "UnmatchedCallbackAdmin",
]
