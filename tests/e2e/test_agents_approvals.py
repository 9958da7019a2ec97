"""backend "agents": a turn's MCP approval requests answered by the [approvals] rules in one
events request; without a rule that decides them, the turn is left alone and counted."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tests.conftest import make_settings, wait_for
from worker.config.secret import Secret
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.simulator import Simulator

pytestmark = pytest.mark.e2e

MCP_TURN = [{"name": "search", "server_label": "docs", "arguments": {"q": "x"}},
            {"name": "fetch", "server_label": "docs", "arguments": {"url": "u"}}]


def approvals_worker(sim: Simulator, sessions: list[str], rules: list[dict[str, Any]]) -> Worker:
    settings = make_settings(
        api={"backend": "agents", "base_url": sim.base_url, "max_requests_per_s": 0},
        watch={"sessions": sessions, "idle_poll_interval_s": 5.0},
        tools={"modules": ["tests.handlers.sample"]},
        server={"enabled": False},
        approvals={"rules": rules},
    ).model_copy(update={"api_key": Secret(sim.api_key)})
    return Worker(settings, Registry.from_modules(settings.tools.modules))


async def test_mcp_requests_are_approved_or_denied_by_the_rules_in_one_request() -> None:
    """search approved, fetch denied: one applied request with both results, then idle."""
    async with Simulator() as sim:
        agent = sim.create_agent("mcp", [])
        session_id = sim.create_session(agent, [MCP_TURN])
        worker = approvals_worker(sim, [session_id], [
            {"server_label": "docs", "tool": "search", "decision": "approve"},
            {"tool": "*", "decision": "deny"}])
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await wait_for(lambda: bool(sim.applied_posts(session_id)),
                           what="the approvals posted")
            worker.stop()
        [post] = sim.applied_posts(session_id)
    decisions = sorted(e["response"]["decision"] for e in post.events)
    assert [e["type"] for e in post.events] == [
        "agent.session.input.mcp_approval_request_result"] * 2
    assert decisions == ["approve", "deny"]
    assert post.idempotency_key is not None


async def test_mcp_requests_no_rule_decides_are_left_and_counted_once() -> None:
    """A rule that leaves fetch to a person: nothing is posted, the turn counted once."""
    async with Simulator() as sim:
        agent = sim.create_agent("mcp", [])
        session_id = sim.create_session(agent, [MCP_TURN])
        worker = approvals_worker(sim, [session_id], [
            {"tool": "search", "decision": "approve"}])
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            await wait_for(
                lambda: worker.metrics.runs_skipped.labels("awaiting_approval")._value.get() == 1,
                what="the turn left for a person")
            worker.stop()
        assert sim.events_posts == []
