"""The aigate provider simulator (see ``aigate.simulator.server`` for routes and switches)."""

from aigate.simulator.server import SimulatorHandle, create_app, run, start_simulator
from aigate.simulator.switches import SwitchError, Switches
from aigate.simulator.text import count_tokens

__all__ = [
    "SimulatorHandle",
    "SwitchError",
    "Switches",
    "count_tokens",
    "create_app",
    "run",
    "start_simulator",
]
