"""Membership: rendezvous owners of threads, budget shares, and heartbeats on a real Redis."""

from __future__ import annotations

import contextlib
from collections import Counter
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.conftest import wait_for
from tests.redis_server import RedisServer
from worker.api.budget import RequestBudget
from worker.config.settings import CoordinationSettings
from worker.errors import CoordinationError
from worker.service.membership import Membership, budget_share, hrw_owner, open_membership
from worker.service.redis_connection import connect_redis

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

THREADS = [f"thread_{i:05d}" for i in range(3000)]


class TestOwners:
    def test_every_thread_has_one_owner_and_each_member_about_a_third(self) -> None:
        members = ["a", "b", "c"]
        owners = Counter(hrw_owner(t, members) for t in THREADS)
        assert set(owners) == set(members)
        assert all(abs(count - 1000) < 100 for count in owners.values()), owners

    def test_the_owner_does_not_depend_on_the_order_members_are_listed_in(self) -> None:
        assert all(hrw_owner(t, ["a", "b", "c"]) == hrw_owner(t, ["c", "a", "b"])
                   for t in THREADS[:200])

    def test_a_member_that_joins_takes_only_threads_it_now_owns(self) -> None:
        """Nothing moves between the members that were there: only to the newcomer."""
        before = {t: hrw_owner(t, ["a", "b", "c"]) for t in THREADS}
        after = {t: hrw_owner(t, ["a", "b", "c", "d"]) for t in THREADS}
        moved = [t for t in THREADS if before[t] != after[t]]
        assert all(after[t] == "d" for t in moved)
        assert abs(len(moved) - 750) < 100

    def test_a_member_that_leaves_gives_its_threads_to_the_others_and_only_those(self) -> None:
        before = {t: hrw_owner(t, ["a", "b", "c"]) for t in THREADS}
        after = {t: hrw_owner(t, ["a", "b"]) for t in THREADS}
        assert all(before[t] == "c" for t in THREADS if before[t] != after[t])
        assert Counter(after[t] for t in THREADS if before[t] == "c").keys() == {"a", "b"}

    def test_no_members_no_owner(self) -> None:
        assert hrw_owner("thread_1", []) is None


class TestBudgetShare:
    @pytest.mark.parametrize(("total", "replicas"), [(400, 3), (30, 3), (7, 2), (400, 1), (5, 5)])
    def test_the_shares_add_up_to_the_budget(self, total: int, replicas: int) -> None:
        members = [f"r{i}" for i in range(replicas)]
        shares = [budget_share(total, members, me) for me in members]
        assert sum(shares) == total
        assert max(shares) - min(shares) <= 1

    def test_no_limit_stays_no_limit(self) -> None:
        assert budget_share(0, ["a", "b"], "a") == 0

    def test_a_budget_smaller_than_the_replicas_gives_each_one_request(self) -> None:
        """Exceeded, rather than some replicas never sending anything."""
        assert [budget_share(2, ["a", "b", "c"], m) for m in "abc"] == [1, 1, 1]

    def test_alone_a_replica_owns_every_thread_and_the_whole_budget(self) -> None:
        alone = Membership("solo")
        assert not alone.shared
        assert all(alone.owns(t) for t in THREADS[:50])
        assert alone.budget_share(400) == 400
        assert alone.holds_lease


@pytest.fixture
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def replica(redis: RedisServer, name: str, *, lease_s: float = 1.0,
            wants_lease: bool = False) -> Membership:
    return Membership(name, redis=connect_redis(redis.url), lease_s=lease_s, prefix="test",
                      wants_lease=wants_lease)


@pytest.fixture
async def three(redis_server: RedisServer) -> AsyncIterator[list[Membership]]:
    replicas = [replica(redis_server, f"r{i}", wants_lease=True) for i in range(3)]
    for member in replicas:
        await member.heartbeat()
    for member in replicas:
        await member.heartbeat()
    try:
        yield replicas
    finally:
        for member in replicas:
            await member.aclose()


class TestOnRedis:
    async def test_replicas_see_each_other_and_agree_on_every_owner(
            self, three: list[Membership]) -> None:
        assert [m.members for m in three] == [("r0", "r1", "r2")] * 3
        for thread_id in THREADS[:300]:
            assert sum(m.owns(thread_id) for m in three) == 1
        assert sorted(m.budget_share(400) for m in three) == [133, 133, 134]

    async def test_one_replica_holds_the_discovery_lease(self, three: list[Membership]) -> None:
        assert [m.holds_lease for m in three] == [True, False, False]

    async def test_a_replica_that_stops_heartbeating_is_pruned_and_its_lease_taken(
            self, three: list[Membership]) -> None:
        """Killed: no goodbye. The others see it gone within lease_s and one takes the lease."""
        dead, *alive = three
        changes: list[tuple[str, ...]] = []
        alive[0].on_change(lambda: changes.append(alive[0].members))
        started = anyio.current_time()

        async def heartbeats() -> bool:
            for member in alive:
                await member.heartbeat()
            return alive[0].members == ("r1", "r2") and any(m.holds_lease for m in alive)

        await wait_for(heartbeats, timeout_s=5, what="the dead replica to be pruned")
        assert anyio.current_time() - started <= dead.interval_s + 1.0 + 0.5
        assert changes == [("r1", "r2")]
        assert sorted(m.budget_share(400) for m in alive) == [200, 200]

    async def test_a_draining_replica_owns_nothing_but_keeps_its_budget_share(
            self, three: list[Membership]) -> None:
        leaving, *staying = three
        leaving.stop_owning()
        await leaving.heartbeat()
        for member in staying:
            await member.heartbeat()
        assert not any(leaving.owns(t) for t in THREADS[:100])
        assert all(sum(m.owns(t) for m in staying) == 1 for t in THREADS[:100])
        assert sum(m.budget_share(400) for m in three) == 400
        await leaving.aclose()
        for member in staying:
            await member.heartbeat()
        assert sorted(m.budget_share(400) for m in staying) == [200, 200]

    async def test_a_replica_forgotten_by_redis_counts_itself_in(
            self, three: list[Membership], redis_server: RedisServer) -> None:
        """Redis restarted empty: each replica puts itself back at its next heartbeat."""
        redis_server.restart()

        async def heartbeats() -> bool:
            for member in three:
                with contextlib.suppress(CoordinationError):  # a connection from before
                    await member.heartbeat()
            return [m.members for m in three] == [("r0", "r1", "r2")] * 3

        await wait_for(heartbeats, timeout_s=5, what="every replica back in Redis")


async def test_open_membership_sets_the_budget_share(redis_server: RedisServer) -> None:
    """Two replicas joined: each spends half of the deployment's budget; alone, all of it."""
    settings = CoordinationSettings(backend="redis", redis_url=redis_server.url, lease_s=1.0,
                                    key_prefix="open")
    budgets = [RequestBudget(30), RequestBudget(30)]
    async with (open_membership(settings, name="a", budget=budgets[0], wants_lease=False),
                open_membership(settings, name="b", budget=budgets[1], wants_lease=False)):
        await wait_for(lambda: [b.per_s for b in budgets] == [15, 15], timeout_s=5,
                       what="both replicas to see each other")
        assert [b.total_per_s for b in budgets] == [30, 30]
