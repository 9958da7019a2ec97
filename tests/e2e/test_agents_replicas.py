"""backend "agents" with replicas: two workers on one Redis watch the same sessions and hear
the same live events; the claims let one of them answer each turn, once."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from tests.conftest import make_settings, wait_for
from worker.config.secret import Secret
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.simulator import Simulator

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

TURN = [{"name": "nap", "arguments": {"seconds": 0.05}}, {"name": "add", "arguments": {"a": 1}}]


def replica(sim: Simulator, sessions: list[str], redis: RedisServer) -> Worker:
    settings = make_settings(
        api={"backend": "agents", "base_url": sim.base_url, "max_requests_per_s": 0},
        watch={"sessions": sessions, "active_poll_interval_s": 0.05,
               "idle_poll_interval_s": 5.0},
        tools={"modules": ["tests.handlers.sample"]},
        server={"enabled": False},
        coordination={"backend": "redis", "redis_url": redis.url, "key_prefix": "agents"},
    ).model_copy(update={"api_key": Secret(sim.api_key)})
    return Worker(settings, Registry.from_modules(settings.tools.modules))


async def test_two_replicas_answer_each_turn_once(redis_server: RedisServer) -> None:
    """Both replicas stream every session; each turn gets one applied request, no call twice."""
    async with Simulator() as sim:
        agent = sim.create_agent("replicated", [])
        sessions = [sim.create_session(agent, [TURN, TURN]) for _ in range(6)]
        workers = [replica(sim, sessions, redis_server) for _ in range(2)]
        async with anyio.create_task_group() as tg:
            for worker in workers:
                await tg.start(worker.run)
            await wait_for(lambda: sim.all_sessions_idle()
                           and len(sim.applied_posts()) == 2 * len(sessions),
                           timeout_s=30, what="every turn answered")
            for worker in workers:
                worker.stop()
        results = sim.tool_results()
    assert len({r["call_id"] for r in results}) == len(results) == 2 * 2 * len(sessions)
    assert all(len(post.turn_ids) == 1 for post in sim.applied_posts())
    assert [p.status for p in sim.events_posts] == [202] * 2 * len(sessions)  # none refused
