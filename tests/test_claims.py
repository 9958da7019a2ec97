"""Claims: a round is dispatched once, in this process (local) or across replicas (Redis)."""

from __future__ import annotations

import anyio
import pytest

from worker.claims import LocalClaims
from worker.models import Round, ToolCall


def make_round(run_id: str = "run_1", *call_ids: str) -> Round:
    ids = call_ids or ("call_1", "call_2")
    return Round("thread_1", run_id, "asst_1", None,
                 tuple(ToolCall(i, "add", "{}") for i in ids), detected_at=0.0)


async def test_a_round_is_claimed_once() -> None:
    """The second claim of the same round is refused."""
    claims = LocalClaims()
    assert await claims.try_claim(make_round())
    assert not await claims.try_claim(make_round())


async def test_a_released_round_can_be_claimed_again() -> None:
    """A round whose submission failed is given back and dispatched again."""
    claims = LocalClaims()
    await claims.try_claim(make_round())
    await claims.release(make_round())
    assert await claims.try_claim(make_round())


async def test_a_done_round_stays_claimed() -> None:
    """A submitted round is never dispatched again, even from a stale read."""
    claims = LocalClaims()
    await claims.try_claim(make_round())
    await claims.done(make_round())
    assert not await claims.try_claim(make_round())


async def test_forgetting_a_finished_run_frees_its_memory() -> None:
    """A terminal run's keys are dropped."""
    claims = LocalClaims()
    await claims.try_claim(make_round("run_1", "call_1"))
    await claims.try_claim(make_round("run_1", "call_3"))
    assert len(claims) == 2
    await claims.forget_run("run_1")
    assert len(claims) == 0


def test_rounds_of_the_same_run_are_different_claims() -> None:
    """Each round has new tool call ids, so it is its own claim."""
    assert make_round("run_1", "a").key != make_round("run_1", "b").key
    assert anyio is not None
    assert pytest is not None
