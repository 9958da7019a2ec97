"""Membership: which replicas are alive, which of them polls each thread, and its budget share.

Replicas on one Redis keep a sorted set of members (score: the last heartbeat, by Redis's own
clock) and each thread belongs to one of them by rendezvous (highest random weight) hashing of
the thread id over the live members. Everyone computes the same owner from the same member
list, with no message between replicas; a member that joins or leaves moves only its own
share of the threads. A replica that stops heartbeating is pruned after ``lease_s`` minus one
heartbeat, so its threads are taken over within ``lease_s``.

The same heartbeat (one Lua script, one round trip) keeps the discovery lease: one replica at
a time lists the backend's threads. docs/scaling.md has the design and its failure cases.
"""

from __future__ import annotations

import enum
import hashlib
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker.errors import CoordinationError
from worker.service.claims import open_claim_store
from worker.service.redis_connection import connect_redis, replica_name

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence

    from worker.api.budget import RequestBudget
    from worker.config.settings import CoordinationSettings, Settings
    from worker.service.claims import ClaimStore

__all__ = ["Membership", "budget_share", "hrw_owner", "open_coordination", "open_membership"]

log = structlog.get_logger("worker.service.membership")

# Heartbeats at least this often, so a departure is seen within a second whatever lease_s is.
MAX_HEARTBEAT_S = 1.0


def _weight(member: str, key: str) -> int:
    # blake2b, not hash(): the same on every replica whatever PYTHONHASHSEED says.
    digest = hashlib.blake2b(f"{member}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def hrw_owner(key: str, members: Sequence[str]) -> str | None:
    """The member that owns ``key``: the highest weight of (member, key); None without members.

    A member that joins takes only the keys it now weighs highest on; one that leaves gives
    each of its keys to that key's runner-up, so the others keep what they had.
    """
    if not members:
        return None
    return max(members, key=lambda member: (_weight(member, key), member))


def budget_share(total_per_s: int, members: Sequence[str], me: str) -> int:
    """This member's part of a deployment budget of ``total_per_s`` (0: no limit).

    The parts add up to the total exactly: the remainder goes one each to the first members
    in name order. Every member gets at least one request a second, so a budget smaller than
    the number of replicas is exceeded rather than stopping some of them for ever.
    """
    if total_per_s <= 0:
        return 0
    ordered = sorted(set(members) | {me})
    base, extra = divmod(total_per_s, len(ordered))
    return max(1, base + (1 if ordered.index(me) < extra else 0))


class Mode(enum.Enum):
    """What a heartbeat says of this replica."""

    MEMBER = "member"  # polls its share of the threads, spends its share of the budget
    LEAVING = "leaving"  # draining: owns no thread, still spends its share of the budget
    GONE = "gone"  # stopped: neither


# KEYS: members, leaving, discovery lease. ARGV: name, mode, age_ms, lease_ms, wants lease.
# Redis's TIME, not ours: the replicas' clocks need not agree.
_HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local age = tonumber(ARGV[3])
if ARGV[2] == 'member' then
  redis.call('ZADD', KEYS[1], now, ARGV[1]); redis.call('ZREM', KEYS[2], ARGV[1])
elseif ARGV[2] == 'leaving' then
  redis.call('ZREM', KEYS[1], ARGV[1]); redis.call('ZADD', KEYS[2], now, ARGV[1])
else
  redis.call('ZREM', KEYS[1], ARGV[1]); redis.call('ZREM', KEYS[2], ARGV[1])
end
for i = 1, 2 do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now - age)
  redis.call('PEXPIRE', KEYS[i], age * 4)
end
local lease = 0
if ARGV[5] == '1' then
  if redis.call('SET', KEYS[3], ARGV[1], 'NX', 'PX', ARGV[4]) then
    lease = 1
  elseif redis.call('GET', KEYS[3]) == ARGV[1] then
    redis.call('PEXPIRE', KEYS[3], ARGV[4]); lease = 1
  end
elseif redis.call('GET', KEYS[3]) == ARGV[1] then
  redis.call('DEL', KEYS[3])
end
return {redis.call('ZRANGE', KEYS[1], 0, -1), redis.call('ZRANGE', KEYS[2], 0, -1), lease}
"""


class Membership:
    """This replica among the live ones: who owns a thread, this replica's budget share.

    Without Redis there is one member, this replica: it owns every thread and the whole
    budget, as before replicas shared anything.
    """

    def __init__(self, name: str, *, redis: Any = None, lease_s: float = 30.0,
                 prefix: str = "tool-worker", wants_lease: bool = False) -> None:
        self.name = name
        self.members: tuple[str, ...] = (name,)
        self.leaving: tuple[str, ...] = ()
        self.heartbeats = 0  # Redis round trips made, for the benchmark's per-poll figure
        self._redis = redis
        self._prefix = prefix
        self._lease_s = lease_s
        self.interval_s = min(lease_s / 4, MAX_HEARTBEAT_S)
        self._age_ms = int((lease_s - self.interval_s) * 1000)
        self._mode = Mode.MEMBER
        self._wants_lease = wants_lease
        self._lease_until = -1.0  # monotonic time until which this replica holds the lease
        self._listeners: list[Callable[[], None]] = []
        self._wake: anyio.Event | None = None  # set: heartbeat now (this replica drains)

    @classmethod
    def from_settings(cls, settings: CoordinationSettings, name: str, *,
                      wants_lease: bool) -> Membership:
        """Shared through Redis with ``[coordination] backend = "redis"``, alone otherwise."""
        if settings.backend != "redis":
            return cls(name)
        return cls(name, redis=connect_redis(settings.redis_url), lease_s=settings.lease_s,
                   prefix=settings.key_prefix, wants_lease=wants_lease)

    @property
    def shared(self) -> bool:
        """Replicas share the threads (Redis coordination)."""
        return self._redis is not None

    def owns(self, thread_id: str) -> bool:
        """This replica polls the thread: it is the thread's owner among the live members."""
        if self._mode is not Mode.MEMBER:
            return False
        return len(self.members) <= 1 or hrw_owner(thread_id, self.members) == self.name

    def budget_share(self, total_per_s: int) -> int:
        """This replica's part of the deployment's request budget."""
        return budget_share(total_per_s, (*self.members, *self.leaving), self.name)

    @property
    def holds_lease(self) -> bool:
        """This replica runs discovery: it holds the lease, or there is nobody to share it with."""
        if self._redis is None:
            return True
        return anyio.current_time() < self._lease_until

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call ``listener`` whenever the members (and so the owners) change."""
        self._listeners.append(listener)

    async def join(self) -> None:
        """Become a member, then wait one heartbeat so every other member has seen us.

        Until then the others spend the whole budget between them; starting at once would
        make the deployment exceed it for up to one heartbeat.
        """
        if self._redis is None:
            return
        await self.heartbeat()
        if len(self.members) > 1:
            await anyio.sleep(self.interval_s)
            await self.heartbeat()

    async def run(self) -> None:
        """Heartbeat every ``interval_s`` until cancelled; a failed one keeps the last view."""
        if self._redis is None:
            return
        while True:
            self._wake = anyio.Event()
            with anyio.move_on_after(self.interval_s):
                await self._wake.wait()
            try:
                await self.heartbeat()
            except CoordinationError as exc:
                log.warning("membership heartbeat failed; keeping the last view", error=str(exc))

    def stop_owning(self) -> None:
        """Draining: own no thread from now on, and say so at the next heartbeat, at once."""
        if self._redis is None or self._mode is not Mode.MEMBER:
            return
        self._mode = Mode.LEAVING
        self._wants_lease = False
        self._lease_until = -1.0
        if self._wake is not None:
            self._wake.set()


    async def heartbeat(self) -> None:
        """One round trip: say we live, prune the dead, learn the members and the lease.

        Raises:
            CoordinationError: Redis did not answer.
        """
        from redis.exceptions import RedisError

        keys = [f"{self._prefix}:{k}" for k in ("members", "leaving", "discover-lease")]
        sent = anyio.current_time()
        try:
            members, leaving, lease = await self._redis.eval(
                _HEARTBEAT, 3, *keys, self.name, self._mode.value, self._age_ms,
                int(self._lease_s * 1000), int(self._wants_lease))
        except (RedisError, OSError, TimeoutError) as exc:
            raise CoordinationError("heartbeat", f"{type(exc).__name__}: {exc}") from exc
        self.heartbeats += 1
        self._lease_until = sent + self._lease_s if lease else -1.0
        # Sorted by name, not by heartbeat: the list changes only when its members do.
        self._update(tuple(sorted(map(_text, members))), tuple(sorted(map(_text, leaving))))

    def _update(self, members: tuple[str, ...], leaving: tuple[str, ...]) -> None:
        if self._mode is Mode.MEMBER and self.name not in members:
            members = tuple(sorted((*members, self.name)))  # Redis lost us: we are alive
        if (members, leaving) == (self.members, self.leaving):
            return
        if members != self.members:
            log.info("replicas changed", members=len(members), joined=sorted(
                set(members) - set(self.members)), left=sorted(set(self.members) - set(members)))
        self.members, self.leaving = members, leaving
        for listener in self._listeners:
            listener()

    async def aclose(self) -> None:
        """Leave for good (the drain is over: no share of the budget either) and disconnect."""
        if self._redis is None:
            return
        self._mode, self._wants_lease = Mode.GONE, False
        try:
            await self.heartbeat()
        except CoordinationError as exc:
            log.warning("could not say this replica left; the others see it after lease_s",
                        error=str(exc))
        await self._redis.aclose()


@asynccontextmanager
async def open_membership(settings: CoordinationSettings, *, name: str, budget: RequestBudget,
                          wants_lease: bool) -> AsyncIterator[Membership]:
    """Join the replicas, keep this one's budget share and heartbeat until the block ends.

    Redis unreachable at start: the replica starts alone (the whole budget, every thread) and
    joins at the first heartbeat that gets through.
    """
    membership = Membership.from_settings(settings, name, wants_lease=wants_lease)
    total = budget.total_per_s
    membership.on_change(lambda: budget.share(membership.budget_share(total)))
    try:
        try:
            await membership.join()
        except CoordinationError as exc:
            log.warning("could not join the other replicas yet; starting alone", error=str(exc))
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(membership.run)
                yield membership
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The heartbeat never raises: what the group holds came from the body; let it out
            # as itself.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise
    finally:
        with anyio.CancelScope(shield=True):
            await membership.aclose()


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


@asynccontextmanager
async def open_coordination(settings: Settings, *, budget: RequestBudget,
                            ) -> AsyncIterator[tuple[ClaimStore, Membership]]:
    """What ``[coordination]`` shares between replicas: the claims on rounds and the members
    (who polls which thread, each one's part of the budget, who lists the threads)."""
    name = replica_name()
    async with (
        open_claim_store(settings.coordination, owner=name,
                         remember_calls=settings.api.backend == "agents") as claims,
        open_membership(settings.coordination, name=name, budget=budget,
                        wants_lease=settings.watch.discover) as members,
    ):
        yield claims, members
