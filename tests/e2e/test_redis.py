"""Claims and intake on a real Redis: leases, done marks, consumer groups, takeovers."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from tests.conftest import make_settings, wait_for
from tests.e2e.conftest import SIM_KEY, assert_each_round_submitted_once, calls, start_runs
from worker.config.settings import IntakeSettings
from worker.daemon import Worker
from worker.errors import CoordinationError, WatchLimitReached, WatchStoreError
from worker.handlers.registry import Registry
from worker.models import Round, ToolCall
from worker.observability.metrics import Metrics
from worker.service.claims import RedisClaims
from worker.service.intake import RedisIntake, enqueue
from worker.service.redis_connection import connect_redis
from worker.simulator import Simulator
from worker.testing import capture_logs

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e


def make_round(run_id: str = "run_1") -> Round:
    return Round("thread_1", run_id, "asst_1", None,
                 (ToolCall("call_1", "add", "{}"), ToolCall("call_2", "add", "{}")), 0.0)


def claims(server: RedisServer, owner: str, lease_s: float = 5.0) -> RedisClaims:
    return RedisClaims.from_url(server.url, owner=owner, lease_s=lease_s, prefix="test")


async def test_only_one_replica_gets_a_round(redis_server: RedisServer) -> None:
    """Two replicas race for the same round; exactly one wins."""
    a, b = claims(redis_server, "a"), claims(redis_server, "b")
    try:
        results = [await a.try_claim(make_round()), await b.try_claim(make_round())]
        assert results == [True, False]
        assert await b.try_claim(make_round("run_2"))
    finally:
        await a.aclose()
        await b.aclose()


def in_thread(thread_id: str, *call_ids: str) -> Round:
    return Round(thread_id, "turn_1", "asst_1", None,
                 tuple(ToolCall(i, "add", "{}") for i in call_ids), 0.0)


async def test_rounds_of_two_threads_with_the_same_ids_and_parts_of_settled_rounds(
    redis_server: RedisServer,
) -> None:
    """Per-session turn and call numbers do not collide; a settled round's remaining calls,
    shown by a server that applies results one at a time (or next to newer calls), are not
    claimed again by anyone."""
    a, b = claims(redis_server, "a"), claims(redis_server, "b")
    try:
        assert await a.try_claim(in_thread("sess_a", "call_a", "call_b"))
        assert await b.try_claim(in_thread("sess_b", "call_a", "call_b"))
        await a.done(in_thread("sess_a", "call_a", "call_b"), answered=True)
        assert not await b.try_claim(in_thread("sess_a", "call_b"))
        assert not await b.try_claim(in_thread("sess_a", "call_b", "call_c"))
        assert await b.try_claim(in_thread("sess_a", "call_c"))
        await b.done(in_thread("sess_b", "call_a", "call_b"))  # refused: not taken from us
        assert await a.try_claim(in_thread("sess_b", "call_b"))
        next_turn = Round("sess_a", "turn_2", "asst_1", None, (ToolCall("call_a", "add", "{}"),),
                          0.0)
        assert await a.try_claim(next_turn), "call ids numbered per turn come again"
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_dead_replicas_lease_runs_out(redis_server: RedisServer) -> None:
    """A claim that is not renewed expires, and another replica takes the round."""
    a, b = claims(redis_server, "a", lease_s=0.3), claims(redis_server, "b", lease_s=0.3)
    try:
        assert await a.try_claim(make_round())
        # The lease runs out inside Redis: asking again is the only way to see it.
        await wait_for(lambda: b.try_claim(make_round()), timeout_s=5, what="b's claim")
        assert not await a.renew(make_round()), "a lost its lease to b"
    finally:
        await a.aclose()
        await b.aclose()


async def test_renewal_keeps_and_done_closes_a_round(redis_server: RedisServer) -> None:
    """Renewing keeps the round; done keeps it closed; only the owner can release it."""
    a, b = claims(redis_server, "a", lease_s=0.3), claims(redis_server, "b", lease_s=0.3)
    try:
        assert await a.try_claim(make_round())
        for _ in range(4):
            await anyio.sleep(0.1)
            assert await a.renew(make_round())
        await b.release(make_round())  # not b's to release
        assert not await b.try_claim(make_round())
        await a.done(make_round())
        await anyio.sleep(0.4)  # past the lease: a done mark outlives it
        assert not await b.try_claim(make_round())
    finally:
        await a.aclose()
        await b.aclose()


async def test_a_released_round_can_be_taken(redis_server: RedisServer) -> None:
    """A round given back after a failed submission can be claimed again at once."""
    a, b = claims(redis_server, "a"), claims(redis_server, "b")
    try:
        await a.try_claim(make_round())
        await a.release(make_round())
        assert await b.try_claim(make_round())
    finally:
        await a.aclose()
        await b.aclose()


async def test_redis_down_is_a_coordination_error(redis_server: RedisServer) -> None:
    """With Redis gone, claiming raises CoordinationError, never a redis exception."""
    a = claims(redis_server, "a")
    redis_server.stop()
    try:
        with pytest.raises(CoordinationError, match="claim a round"):
            await a.try_claim(make_round())
    finally:
        await a.aclose()


async def intake_for(server: RedisServer, seen: list[tuple[str, str | None]], consumer: str,
                     claim_idle_s: float = 30.0) -> RedisIntake:
    settings = IntakeSettings(redis_stream=True, redis_url=server.url, stream="s", group="g",
                              claim_idle_s=claim_idle_s)
    client = connect_redis(server.url)

    async def remember(thread_id: str, run_id: str | None) -> None:
        seen.append((thread_id, run_id))

    return RedisIntake(client, settings, remember, consumer)


async def test_each_entry_reaches_one_replica(redis_server: RedisServer) -> None:
    """Two consumers of the group share the entries: each is watched exactly once."""
    seen: list[tuple[str, str | None]] = []
    first = await intake_for(redis_server, seen, "one")
    second = await intake_for(redis_server, seen, "two")
    async with anyio.create_task_group() as tg:
        tg.start_soon(first.run)
        tg.start_soon(second.run)
        for i in range(20):
            await enqueue(redis_server.url, f"thread_{i}", f"run_{i}" if i % 2 else None,
                          stream="s")
        await wait_for(lambda: len(seen) >= 20, what="20 entries")
        tg.cancel_scope.cancel()
    assert sorted(seen) == sorted((f"thread_{i}", f"run_{i}" if i % 2 else None)
                                  for i in range(20))


async def test_a_session_id_entry_is_watched_and_a_thread_and_session_entry_refused(
    redis_server: RedisServer,
) -> None:
    """backend "agents": an entry with a session_id is watched as a thread; one naming both a
    thread and a session is refused as a bad request."""
    seen: list[tuple[str, str | None]] = []
    intake = await intake_for(redis_server, seen, "one")
    client = connect_redis(redis_server.url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(intake.run)
        await client.xadd("s", {"thread_id": "thread_1", "session_id": "sess_1"})
        await enqueue(client, session_id="sess_2", stream="s")
        await wait_for(lambda: intake.handled == 1, what="the session entry")
        tg.cancel_scope.cancel()
    await client.aclose()
    assert seen == [("sess_2", None)]
    assert intake.refusals.total == {"bad_request": 1}


async def test_a_dead_consumers_entries_are_taken_over(redis_server: RedisServer) -> None:
    """Entries read but never acknowledged by a dead replica are claimed by another."""
    client = connect_redis(redis_server.url)
    await client.xgroup_create("s", "g", id="0", mkstream=True)
    await enqueue(client, "thread_orphan", stream="s")
    await client.xreadgroup("g", "dead", {"s": ">"}, count=10)  # read, never acked
    seen: list[tuple[str, str | None]] = []
    survivor = await intake_for(redis_server, seen, "alive", claim_idle_s=0.2)
    async with anyio.create_task_group() as tg:
        tg.start_soon(survivor.run)
        await wait_for(lambda: seen == [("thread_orphan", None)], what="the takeover")
        tg.cancel_scope.cancel()
    pending = await client.xpending("s", "g")
    await client.aclose()
    assert pending["pending"] == 0


async def test_entries_with_ids_no_api_issues_are_dropped_counted_and_acked(
    redis_server: RedisServer,
) -> None:
    """Hostile ids never reach watch: each is counted as bad_id, logged and acknowledged."""
    seen: list[tuple[str, str | None]] = []
    intake = await intake_for(redis_server, seen, "one")
    client = connect_redis(redis_server.url)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            for bad in ("../../../assistants", "a?b", "a&b"):
                await enqueue(client, bad, stream="s")
            await enqueue(client, "thread_ok", "a&b", stream="s")
            await client.xadd("s", {"run_id": "run_1"})  # no thread_id at all
            await enqueue(client, "thread_good", "run_good", stream="s")
            await wait_for(lambda: intake.handled == 1, what="the good entry")
            tg.cancel_scope.cancel()
    pending = await client.xpending("s", "g")
    await client.aclose()
    assert seen == [("thread_good", "run_good")]
    assert intake.refusals.total == {"bad_id": 4, "bad_request": 1}
    assert pending["pending"] == 0
    lines = [e for e in logs if e["event"] == "watch requests refused"]
    assert lines[0]["refused"] == {"bad_id": 1}
    assert lines[0]["thread_id"] == "'../../../assistants'"
    assert sum(sum(line["refused"].values()) for line in lines) == 5


async def test_an_entry_refused_by_a_full_worker_stays_pending(redis_server: RedisServer) -> None:
    """WatchLimitReached leaves the entry unacknowledged, for a replica with room, and counts it."""
    async def full(_thread_id: str, _run_id: str | None) -> None:
        raise WatchLimitReached(limit=1)

    settings = IntakeSettings(redis_stream=True, redis_url=redis_server.url, stream="s", group="g")
    metrics = Metrics()
    intake = RedisIntake(connect_redis(redis_server.url), settings, full, "one", metrics=metrics)
    client = connect_redis(redis_server.url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(intake.run)
        await enqueue(client, "thread_more", stream="s")
        await wait_for(lambda: intake.refusals.total["full"] == 1, what="the refusal")
        tg.cancel_scope.cancel()
    pending = await client.xpending("s", "g")
    await client.aclose()
    assert pending["pending"] == 1
    assert 'toolworker_intake_refused_total{reason="full"} 1.0' in metrics.exposition().decode()


async def test_an_entry_the_store_cannot_keep_stays_pending(redis_server: RedisServer) -> None:
    """An entry is acknowledged only once stored: a failing watch store leaves it pending."""
    async def unavailable(_thread_id: str, _run_id: str | None) -> None:
        raise WatchStoreError("redis://store", "ConnectionError: refused")

    settings = IntakeSettings(redis_stream=True, redis_url=redis_server.url, stream="s", group="g")
    intake = RedisIntake(connect_redis(redis_server.url), settings, unavailable, "one")
    client = connect_redis(redis_server.url)
    async with anyio.create_task_group() as tg:
        tg.start_soon(intake.run)
        await enqueue(client, "thread_kept", stream="s")
        await wait_for(lambda: intake.refusals.total["unavailable"] == 1, what="the refusal")
        tg.cancel_scope.cancel()
    pending = await client.xpending("s", "g")
    await client.aclose()
    assert pending["pending"] == 1


async def test_the_worker_answers_a_run_enqueued_on_the_stream(redis_server: RedisServer) -> None:
    """A run announced with enqueue() reaches a running worker, which answers it."""
    async with Simulator(api_key=SIM_KEY) as sim:
        threads, runs = start_runs(sim, [[calls(("add", {"a": 1}))]])
        settings = make_settings(
            api={"base_url": sim.base_url, "max_requests_per_s": 0},
            watch={"active_poll_interval_s": 0.02, "idle_poll_interval_s": 0.2},
            tools={"modules": ["tests.handlers.sample"]},
            server={"enabled": False},
            intake={"redis_stream": True, "redis_url": redis_server.url},
        )
        worker = Worker(settings, Registry.from_modules(settings.tools.modules))
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await enqueue(redis_server.url, threads[0], runs[0])
            await wait_for(lambda: sim.run(runs[0])["status"] == "completed", what="the run")
            worker.stop()
        assert_each_round_submitted_once(sim, runs, [1])


async def test_an_entry_whose_watch_raises_is_dropped_and_the_reader_goes_on(
    redis_server: RedisServer,
) -> None:
    """Whatever one entry raises is counted as error, acknowledged and logged once; the next
    entry is watched."""
    seen: list[tuple[str, str | None]] = []

    async def brittle(thread_id: str, run_id: str | None) -> None:
        if thread_id == "thread_boom":
            raise RuntimeError("something nobody foresaw")
        seen.append((thread_id, run_id))

    settings = IntakeSettings(redis_stream=True, redis_url=redis_server.url, stream="s", group="g")
    intake = RedisIntake(connect_redis(redis_server.url), settings, brittle, "one")
    client = connect_redis(redis_server.url)
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            tg.start_soon(intake.run)
            for _ in range(3):
                await enqueue(client, "thread_boom", stream="s")
            await client.xadd("s", {b"thread_id": b"thread_\xff"})
            await enqueue(client, "thread_good", stream="s")
            await wait_for(lambda: seen == [("thread_good", None)], what="the good entry")
            tg.cancel_scope.cancel()
    pending = await client.xpending("s", "g")
    await client.aclose()
    assert intake.refusals.total == {"error": 3, "undecodable": 1}
    assert pending["pending"] == 0
    assert len([e for e in logs if e["event"].startswith("an intake entry raised")]) == 1
