"""An answer no one foresaw costs one poll or one stream, never the daemon.

The parsers turn every answer we could think of into a Run or a BadAnswer (fuzzed in
tests/test_session_wire.py); these tests stand for the one nobody thought of: the parser itself
raises something else, once, and the worker still answers the round.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

import worker.api.agents
import worker.api.client
from tests.conftest import make_settings, wait_for
from tests.e2e.conftest import calls, start_runs
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.simulator import Simulator

pytestmark = pytest.mark.e2e

TOOLS = [{"type": "function", "name": "add"}]


def failing_first(real: Any, endpoint: str, times: int) -> tuple[Any, list[str]]:
    """``real``, raising an exception nothing expects on its first ``times`` calls for
    ``endpoint`` (the start's access check, which reads once, is left alone)."""
    raised: list[str] = []
    count = 0

    def parse(name: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        if name == endpoint and count > 1 and len(raised) < times:
            raised.append(name)
            raise ZeroDivisionError("a parser bug")
        return real(name, *args, **kwargs)

    return parse, raised


async def test_a_poll_whose_answer_breaks_the_parser_is_retried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parse, raised = failing_first(worker.api.client.parse_run, "list_runs", 2)
    monkeypatch.setattr(worker.api.client, "parse_run", parse)
    async with Simulator() as sim:
        threads, runs = start_runs(sim, [[calls(("add", {"a": 1, "b": 2}))]])
        settings = make_settings(
            api={"base_url": sim.base_url, "max_requests_per_s": 0, "stream": False},
            watch={"threads": threads, "active_poll_interval_s": 0.05,
                   "idle_poll_interval_s": 0.1, "min_idle_poll_interval_s": 0.1},
            tools={"modules": ["tests.handlers.sample"]}, server={"enabled": False})
        settings = settings.model_copy(update={"api_key": type(settings.api_key)(sim.api_key)})
        daemon = Worker(settings, Registry.from_modules(settings.tools.modules))
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            await wait_for(lambda: sim.run(runs[0])["status"] == "completed",
                           what="the run answered")
            daemon.stop()
    assert raised == ["list_runs", "list_runs"]
    assert [s.status for s in sim.submissions] == [200]


async def test_a_stream_event_that_breaks_the_parser_costs_the_stream_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    parse, raised = failing_first(worker.api.agents.session_run, "session_events", 1)
    monkeypatch.setattr(worker.api.agents, "session_run", parse)
    async with Simulator() as sim:
        agent_id = sim.create_agent("backstop", TOOLS)
        session_id = sim.create_session(agent_id, [[{"name": "add",
                                                     "arguments": {"a": 1, "b": 2}}]])
        settings = make_settings(
            api={"backend": "agents", "base_url": sim.base_url, "max_requests_per_s": 0},
            watch={"sessions": [session_id], "active_poll_interval_s": 0.05,
                   "idle_poll_interval_s": 0.1, "min_idle_poll_interval_s": 0.1},
            tools={"modules": ["tests.handlers.sample"]}, server={"enabled": False})
        settings = settings.model_copy(update={"api_key": type(settings.api_key)(sim.api_key)})
        daemon = Worker(settings, Registry.from_modules(settings.tools.modules))
        async with anyio.create_task_group() as tg:
            await tg.start(daemon.run)
            await wait_for(sim.all_sessions_idle, what="the turn answered")
            daemon.stop()
    assert len(raised) == 1
    assert len(sim.applied_posts()) == 1
