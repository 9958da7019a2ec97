"""Claims: each round is dispatched once; LocalClaims in this process, RedisClaims across replicas.

A round's whole life under a claim is ``ClaimStore.hold(round_)``: take the claim (or learn
that someone has it), renew it while handlers run, keep the outputs once computed, and settle
it by the outcome: done when the run took or refused them, given back (outputs kept, so the
next holder resubmits instead of recomputing) when they were not delivered.

The calls of a round the run took from us are remembered one by one too: a server that applies
a turn's results one at a time may show some of them still pending right after it took them
all, and that subset is not a round to answer again; nor is a read that shows one of them next
to newer calls (a lagging read, a server listing a turn's calls one by one): answering it would
answer that call twice, and the newer calls come back on their own. (Calls of a round refused
or answered elsewhere are not remembered: those still pending are a round of their own.)
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyio
import structlog

from worker.errors import CoordinationError
from worker.models import SubmitOutcome, ToolOutput
from worker.service.redis_connection import connect_redis

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator, Sequence

    from worker.config.settings import CoordinationSettings
    from worker.models import Round

__all__ = ["ClaimStore", "Held", "LocalClaims", "RedisClaims", "open_claim_store"]

log = structlog.get_logger("worker.service.claims")

# A run lives at most about 10 minutes; keep "done" marks and kept outputs a little longer.
DONE_TTL_S = 15 * 60


@dataclass(slots=True)
class Held:
    """A round in hand: the outputs kept from an earlier holder, and what came of it."""

    saved: list[ToolOutput] | None = None
    outcome: SubmitOutcome | None = None
    _keep: Any = field(default=None, repr=False)

    async def keep(self, outputs: Sequence[ToolOutput]) -> None:
        """Keep the outputs until the run takes them, for whoever holds the round next."""
        await self._keep(outputs)


class ClaimStore:
    """Who may dispatch a round (a thread, a run id and the set of its tool call ids).

    Subclasses provide the primitives; ``hold`` is the one lifecycle both share.
    """

    lease_s: float | None = None  # claims expire unless renewed (None: they never do)
    # Remember the calls of a round the run took (a protocol whose turns are shown split, the
    # Agents API). Not for runs: their rounds come whole, and some servers number call ids per
    # run, so a later round's call_1 is not the earlier one's.
    remember_calls: bool = True

    @asynccontextmanager
    async def hold(self, round_: Round) -> AsyncIterator[Held | None]:
        """Hold the round while its handlers run and it is submitted; None: not ours.

        Set ``Held.outcome`` before leaving. Leaving by an exception gives the round back.

        Raises:
            CoordinationError: the store could not be reached to claim the round.
        """
        if not await self.try_claim(round_):
            yield None
            return
        held = Held(await self._load_outputs(round_), _keep=lambda o: self._save(round_, o))
        try:
            async with self._renewing(round_):
                yield held
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._settle(round_, None)
            raise
        await self._settle(round_, held.outcome)

    @asynccontextmanager
    async def _renewing(self, round_: Round) -> AsyncIterator[None]:
        if self.lease_s is None:
            yield
            return
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._renew_forever, round_, self.lease_s)
                yield
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            # The renewal never raises: what the group holds came from the body; let it out
            # as itself.
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise

    async def _renew_forever(self, round_: Round, lease_s: float) -> None:
        while True:
            await anyio.sleep(lease_s / 3)
            try:
                if not await self.renew(round_):
                    log.warning("lost the claim on this round; another replica may take it")
            except CoordinationError as exc:
                log.warning("could not renew the claim", error=str(exc))

    async def _settle(self, round_: Round, outcome: SubmitOutcome | None) -> None:
        try:
            if outcome is not None and outcome.settled:
                await self.done(round_, answered=self.remember_calls
                                and outcome is SubmitOutcome.OK)
            else:  # not delivered, and the run may still wait: the next poll takes it again
                await self.release(round_)
        except CoordinationError as exc:
            log.warning("could not settle the claim; its lease will run out", error=str(exc))

    async def _save(self, round_: Round, outputs: Sequence[ToolOutput]) -> None:
        try:
            await self.save_outputs(round_, outputs)
        except CoordinationError as exc:
            log.warning("could not keep the outputs; a crash now would recompute them",
                        error=str(exc))

    async def _load_outputs(self, round_: Round) -> list[ToolOutput] | None:
        try:
            return await self.load_outputs(round_)
        except CoordinationError as exc:
            log.warning("could not read kept outputs; the handlers run", error=str(exc))
            return None

    async def try_claim(self, round_: Round) -> bool:
        """Take the round; False when it is (or was) someone's already, or when any of its
        calls belongs to a round the run took from us."""
        raise NotImplementedError

    async def renew(self, round_: Round) -> bool:
        """Extend the claim while handlers run; False when it was lost."""
        raise NotImplementedError

    async def done(self, round_: Round, *, answered: bool = False) -> None:
        """The round is settled: nobody may dispatch it again. ``answered``: the run took our
        outputs, so no part of the round is to be answered again either."""
        raise NotImplementedError

    async def release(self, round_: Round) -> None:
        """Give the round back undelivered, so it is dispatched (or resubmitted) again."""
        raise NotImplementedError

    async def save_outputs(self, round_: Round, outputs: Sequence[ToolOutput]) -> None:
        raise NotImplementedError

    async def load_outputs(self, round_: Round) -> list[ToolOutput] | None:
        raise NotImplementedError

    async def ping(self) -> None:
        """Raise ``CoordinationError`` unless the store answers."""
        return

    async def aclose(self) -> None:
        return None


class LocalClaims(ClaimStore):
    """In-process claims: each round is granted once for as long as its run can live."""

    def __init__(self, *, ttl_s: float = DONE_TTL_S) -> None:
        self._ttl_s = ttl_s
        self._until: OrderedDict[tuple[str, str, frozenset[str]], float] = OrderedDict()
        self._outputs: dict[tuple[str, str, frozenset[str]], list[ToolOutput]] = {}
        # (thread, run, call): a call id is answered within its run (turn); servers that
        # number calls per turn reuse "call_1" in every turn of a session.
        self._answered: OrderedDict[tuple[str, str, str], float] = OrderedDict()

    def _prune(self) -> None:
        # Oldest first, so pruning stops at the first live one: O(1) per claim on average.
        now = time.monotonic()
        while self._until and next(iter(self._until.values())) <= now:
            key, _ = self._until.popitem(last=False)
            self._outputs.pop(key, None)
        while self._answered and next(iter(self._answered.values())) <= now:
            self._answered.popitem(last=False)

    async def try_claim(self, round_: Round) -> bool:
        self._prune()
        if round_.key in self._until or _any_answered(round_, self._answered):
            return False
        self._until[round_.key] = time.monotonic() + self._ttl_s
        return True

    async def renew(self, round_: Round) -> bool:
        return True

    async def done(self, round_: Round, *, answered: bool = False) -> None:
        self._outputs.pop(round_.key, None)  # the claim stays, so a stale read cannot re-dispatch
        if not answered:  # refused or answered elsewhere: calls still pending are a new round
            return
        until = time.monotonic() + self._ttl_s
        for call_id in sorted(round_.call_ids):
            key = (round_.thread_id, round_.run_id, call_id)
            self._answered.pop(key, None)  # kept in expiry order
            self._answered[key] = until

    async def release(self, round_: Round) -> None:
        self._until.pop(round_.key, None)

    async def save_outputs(self, round_: Round, outputs: Sequence[ToolOutput]) -> None:
        self._outputs[round_.key] = list(outputs)

    async def load_outputs(self, round_: Round) -> list[ToolOutput] | None:
        return self._outputs.get(round_.key)

    def __len__(self) -> int:
        self._prune()
        return len(self._until)


def _digest(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:32]


def _any_answered(round_: Round, answered: OrderedDict[tuple[str, str, str], float]) -> bool:
    return any((round_.thread_id, round_.run_id, call_id) in answered
               for call_id in round_.call_ids)


# A round is refused when claimed, or when any of its calls (KEYS[2..]) was answered by us.
_CLAIM = """
if #KEYS > 1 and redis.call('exists', unpack(KEYS, 2)) > 0 then
  return 0
end
if redis.call('set', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
return 0
"""
# Release and renew only what this replica holds: compare the owner, then act, atomically.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""
_DONE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  redis.call('del', KEYS[2])
  for i = 3, #KEYS do
    redis.call('set', KEYS[i], '1', 'PX', ARGV[2])
  end
  return redis.call('set', KEYS[1], 'done', 'PX', ARGV[2])
end
return 0
"""


class RedisClaims(ClaimStore):
    """Claims shared by replicas: a round is leased in Redis before it is dispatched.

    The lease is renewed while handlers run; a replica that dies stops renewing, and another
    takes the round once the lease has run out, with the outputs the dead one kept, if any.
    A settled round is marked done for as long as a run can live, so a stale read of it is
    never dispatched again.
    """

    def __init__(self, redis: Any, *, owner: str, lease_s: float, prefix: str) -> None:
        self._redis = redis
        self._owner = owner
        self.lease_s = lease_s
        self._lease_ms = int(lease_s * 1000)
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, owner: str, lease_s: float, prefix: str) -> RedisClaims:
        return cls(connect_redis(url), owner=owner, lease_s=lease_s, prefix=prefix)

    def _key(self, round_: Round, kind: str = "claim") -> str:
        # The round's identity is its thread, its run and its set of call ids, hashed: ids may
        # hold ':', and the key stays bounded.
        digest = _digest(round_.thread_id, round_.run_id, *sorted(round_.call_ids))
        return f"{self._prefix}:{kind}:{digest}"

    def _answered(self, round_: Round) -> list[str]:
        return [f"{self._prefix}:answered:{_digest(round_.thread_id, round_.run_id, call_id)}"
                for call_id in sorted(round_.call_ids)]

    async def try_claim(self, round_: Round) -> bool:
        with _translate("claim a round"):
            return bool(await self._redis.eval(
                _CLAIM, 1 + len(round_.call_ids), self._key(round_), *self._answered(round_),
                self._owner, self._lease_ms))

    async def renew(self, round_: Round) -> bool:
        with _translate("renew a claim"):
            return bool(await self._redis.eval(_RENEW, 1, self._key(round_), self._owner,
                                               self._lease_ms))

    async def done(self, round_: Round, *, answered: bool = False) -> None:
        calls = self._answered(round_) if answered else []
        with _translate("mark a round done"):
            await self._redis.eval(_DONE, 2 + len(calls), self._key(round_),
                                   self._key(round_, "outputs"), *calls,
                                   self._owner, DONE_TTL_S * 1000)

    async def release(self, round_: Round) -> None:
        with _translate("release a claim"):
            await self._redis.eval(_RELEASE, 1, self._key(round_), self._owner)

    async def save_outputs(self, round_: Round, outputs: Sequence[ToolOutput]) -> None:
        record = json.dumps([output.to_record() for output in outputs])
        with _translate("keep a round's outputs"):
            await self._redis.set(self._key(round_, "outputs"), record, ex=DONE_TTL_S)

    async def load_outputs(self, round_: Round) -> list[ToolOutput] | None:
        with _translate("read a round's kept outputs"):
            record = await self._redis.get(self._key(round_, "outputs"))
        if record is None:
            return None
        try:
            return [ToolOutput.from_record(item) for item in json.loads(record)]
        except (ValueError, KeyError, TypeError):
            log.warning("kept outputs do not parse; the handlers run again")
            return None

    async def ping(self) -> None:
        with _translate("ping"):
            await self._redis.ping()

    async def aclose(self) -> None:
        await self._redis.aclose()


@asynccontextmanager
async def open_claim_store(
    settings: CoordinationSettings, *, owner: str, remember_calls: bool = True,
) -> AsyncIterator[ClaimStore]:
    """The store ``[coordination]`` asks for, closed on the way out."""
    store: ClaimStore = LocalClaims()
    if settings.backend == "redis":
        store = RedisClaims.from_url(settings.redis_url, owner=owner, lease_s=settings.lease_s,
                                     prefix=settings.key_prefix)
    store.remember_calls = remember_calls
    try:
        yield store
    finally:
        with anyio.CancelScope(shield=True):
            await store.aclose()


@contextmanager
def _translate(operation: str) -> Iterator[None]:
    """The one place Redis's exceptions become CoordinationError."""
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise CoordinationError(operation, f"{type(exc).__name__}: {exc}") from exc
