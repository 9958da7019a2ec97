"""Claims: each round is dispatched once; LocalClaims in this process, RedisClaims across replicas."""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol

from .errors import CoordinationError
from .redis_connect import connect_redis

if TYPE_CHECKING:
    from collections.abc import Iterator

    from .models import Round

__all__ = ["ClaimStore", "LocalClaims", "RedisClaims"]


class ClaimStore(Protocol):
    """Who may dispatch a round (a run id plus the set of its tool call ids)."""

    @property
    def renews(self) -> bool:
        """Whether claims expire unless renewed while the round's handlers run."""
        ...

    async def try_claim(self, round_: Round) -> bool:
        """Take the round; False when it is (or was) someone's already."""
        ...

    async def renew(self, round_: Round) -> bool:
        """Extend the claim while handlers run; False when it was lost."""
        ...

    async def done(self, round_: Round) -> None:
        """The round was submitted: nobody may dispatch it again."""
        ...

    async def release(self, round_: Round) -> None:
        """Give the round back undelivered, so it is dispatched again."""
        ...

    async def forget_run(self, run_id: str) -> None:
        """The run ended; drop what is kept about it."""
        ...

    async def aclose(self) -> None: ...


class LocalClaims:
    """In-process claims: each round key is granted once while its run is followed."""

    renews = False

    def __init__(self) -> None:
        self._by_run: dict[str, set[frozenset[str]]] = {}

    async def try_claim(self, round_: Round) -> bool:
        keys = self._by_run.setdefault(round_.run_id, set())
        call_ids = round_.key[1]
        if call_ids in keys:
            return False
        keys.add(call_ids)
        return True

    async def renew(self, round_: Round) -> bool:
        return True

    async def done(self, round_: Round) -> None:
        return None  # the key stays until the run ends, so a stale read cannot re-dispatch

    async def release(self, round_: Round) -> None:
        self._by_run.get(round_.run_id, set()).discard(round_.key[1])

    async def forget_run(self, run_id: str) -> None:
        self._by_run.pop(run_id, None)

    async def aclose(self) -> None:
        return None

    def __len__(self) -> int:
        return sum(len(keys) for keys in self._by_run.values())


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
  return redis.call('set', KEYS[1], 'done', 'PX', ARGV[2])
end
return 0
"""


class RedisClaims:
    """Claims shared by replicas: a round is leased in Redis before it is dispatched.

    The lease is renewed while handlers run; a replica that dies stops renewing, and another
    takes the round once the lease has run out. A submitted round is marked done for as long
    as a run can live, so a stale read of it is never dispatched again.
    """

    # A run lives at most about 10 minutes; keep "done" marks a little longer.
    DONE_TTL_MS = 15 * 60 * 1000
    renews = True

    def __init__(self, redis: Any, *, owner: str, lease_s: float, prefix: str) -> None:
        self._redis = redis
        self._owner = owner
        self._lease_ms = int(lease_s * 1000)
        self._prefix = prefix

    @classmethod
    def from_url(cls, url: str, *, owner: str, lease_s: float, prefix: str) -> RedisClaims:
        return cls(connect_redis(url), owner=owner, lease_s=lease_s, prefix=prefix)

    def _key(self, round_: Round) -> str:
        # The round's identity is its run and its set of call ids; hash the set to bound the key.
        digest = hashlib.sha256("\n".join(sorted(round_.key[1])).encode()).hexdigest()[:24]
        return f"{self._prefix}:claim:{round_.run_id}:{digest}"

    async def try_claim(self, round_: Round) -> bool:
        with _translate("claim a round"):
            return bool(await self._redis.set(self._key(round_), self._owner, nx=True,
                                              px=self._lease_ms))

    async def renew(self, round_: Round) -> bool:
        with _translate("renew a claim"):
            return bool(await self._redis.eval(_RENEW, 1, self._key(round_), self._owner,
                                               self._lease_ms))

    async def done(self, round_: Round) -> None:
        with _translate("mark a round done"):
            await self._redis.eval(_DONE, 1, self._key(round_), self._owner, self.DONE_TTL_MS)

    async def release(self, round_: Round) -> None:
        with _translate("release a claim"):
            await self._redis.eval(_RELEASE, 1, self._key(round_), self._owner)

    async def forget_run(self, run_id: str) -> None:
        return None  # keys expire on their own

    async def aclose(self) -> None:
        await self._redis.aclose()


@contextmanager
def _translate(operation: str) -> Iterator[None]:
    """The one place Redis's exceptions become CoordinationError."""
    from redis.exceptions import RedisError

    try:
        yield
    except (RedisError, OSError, TimeoutError) as exc:
        raise CoordinationError(operation, f"{type(exc).__name__}: {exc}") from exc
