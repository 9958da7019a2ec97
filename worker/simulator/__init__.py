"""A fake of the Assistants API (v2) and of the Agents API (beta) on aiohttp.web, independent
of the rest of `worker`.

It may import nothing of worker but itself: it is the second implementation the tests trust.
"""

from worker.simulator.agents_script import SCRIPT_HELP, CallScript, TurnScript
from worker.simulator.agents_state import EventsPost
from worker.simulator.faults import FaultPlan, FaultRule
from worker.simulator.quirks import POLL_HINTS, QUIRKS
from worker.simulator.run_script import RUN_SCRIPT_HELP
from worker.simulator.server import Simulator, serve_forever
from worker.simulator.state import Submission
from worker.simulator.wire import ToolCallScript

__all__ = [
    "POLL_HINTS",
    "QUIRKS",
    "RUN_SCRIPT_HELP",
    "SCRIPT_HELP",
    "CallScript",
    "EventsPost",
    "FaultPlan",
    "FaultRule",
    "Simulator",
    "Submission",
    "ToolCallScript",
    "TurnScript",
    "serve_forever",
]
