"""A local Clickatell HTTP API simulator for development, demos and tests.

Standard library only.  See :class:`ClickatellSimulator` and
``python -m django_clickatell.simulator --help``.
"""

from .faults import Fault
from .server import ClickatellSimulator
from .state import SimulatedMessage

__all__ = ["ClickatellSimulator", "Fault", "SimulatedMessage"]
