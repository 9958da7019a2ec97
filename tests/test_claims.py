"""Claims: a round is dispatched once, in this process (local) or across replicas (Redis)."""

from __future__ import annotations

import anyio
import pytest

from worker.models import CallOutcome, Round, SubmitOutcome, ToolCall, ToolOutput
from worker.service.claims import LocalClaims


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


async def test_claims_of_runs_long_gone_are_dropped() -> None:
    """A claim is kept as long as a run can live, then its memory is freed."""
    claims = LocalClaims(ttl_s=0.0)
    await claims.try_claim(make_round("run_1", "call_1"))
    await claims.try_claim(make_round("run_1", "call_3"))
    assert len(claims) == 0
    assert await claims.try_claim(make_round("run_1", "call_1"))


def outputs(round_: Round, text: str = "ok") -> list[ToolOutput]:
    return [ToolOutput(call.id, text, call.name, CallOutcome.OK, 0.01) for call in round_.tool_calls]


async def test_holding_a_round_settles_it_by_outcome() -> None:
    """A delivered round stays claimed; an undelivered one is given back with its outputs kept."""
    claims = LocalClaims()
    async with claims.hold(make_round("run_1")) as held:
        assert held is not None
        assert held.saved is None
        await held.keep(outputs(make_round("run_1")))
        held.outcome = SubmitOutcome.FAILED
    async with claims.hold(make_round("run_1")) as again:
        assert again is not None, "a failed round is given back"
        assert again.saved == outputs(make_round("run_1")), "with the outputs kept"
        again.outcome = SubmitOutcome.OK
    async with claims.hold(make_round("run_1")) as stale:
        assert stale is None, "a delivered round is never held again"
    async with claims.hold(make_round("run_1", "call_2")) as part:
        assert part is None, "nor is a part of it"
    async with claims.hold(make_round("run_2", "call_8", "call_9")) as elsewhere:
        assert elsewhere is not None
        elsewhere.outcome = SubmitOutcome.ALREADY_SUBMITTED
    async with claims.hold(make_round("run_2", "call_9")) as pending:
        assert pending is not None, "another worker answered call_8 only: call_9 is a round"


async def test_leaving_a_hold_by_an_exception_gives_the_round_back() -> None:
    """A crash or a cancellation in the middle of a round does not lose it."""
    claims = LocalClaims()

    async def crash_while_holding() -> None:
        async with claims.hold(make_round()) as held:
            assert held is not None
            raise RuntimeError("handler crashed the worker")

    with pytest.raises(RuntimeError, match="crashed"):
        await crash_while_holding()
    async with claims.hold(make_round()) as again:
        assert again is not None


def in_thread(thread_id: str, run_id: str, *call_ids: str) -> Round:
    return Round(thread_id, run_id, "asst_1", None,
                 tuple(ToolCall(i, "add", "{}") for i in call_ids), detected_at=0.0)


async def test_threads_that_number_runs_alike_are_different_claims() -> None:
    """Servers that number turns and calls per session give two sessions the same ids."""
    claims = LocalClaims()
    assert await claims.try_claim(in_thread("sess_a", "turn_1", "call_1"))
    assert await claims.try_claim(in_thread("sess_b", "turn_1", "call_1"))


async def test_a_part_of_a_settled_round_is_not_a_round_again() -> None:
    """A server applying results one at a time shows some calls pending after taking them; a
    lagging read, or calls listed one by one, show one next to a newer call: answering that
    would answer it twice. The newer call alone is a round."""
    claims = LocalClaims()
    whole = in_thread("sess_a", "turn_1", "call_a", "call_b")
    assert await claims.try_claim(whole)
    await claims.done(whole, answered=True)
    assert not await claims.try_claim(in_thread("sess_a", "turn_1", "call_b"))
    assert await claims.try_claim(in_thread("sess_b", "turn_1", "call_b"))  # another session's
    assert not await claims.try_claim(in_thread("sess_a", "turn_1", "call_b", "call_c"))
    assert await claims.try_claim(in_thread("sess_a", "turn_1", "call_c"))


async def test_a_part_of_a_round_given_back_or_refused_is_a_round() -> None:
    """Undelivered, the calls still pending are answered (someone else took the others)."""
    claims = LocalClaims()
    whole = in_thread("sess_a", "turn_1", "call_a", "call_b")
    assert await claims.try_claim(whole)
    await claims.release(whole)
    assert await claims.try_claim(in_thread("sess_a", "turn_1", "call_b"))
    refused = in_thread("sess_b", "turn_1", "call_a", "call_b")
    assert await claims.try_claim(refused)
    await claims.done(refused)  # refused: call_a was answered by someone else
    assert await claims.try_claim(in_thread("sess_b", "turn_1", "call_b"))


async def test_a_call_id_used_again_in_the_next_turn_is_a_new_call() -> None:
    """Servers that number calls per turn reuse call_1 in every turn of a session."""
    claims = LocalClaims()
    first = in_thread("sess_a", "turn_1", "call_1")
    assert await claims.try_claim(first)
    await claims.done(first, answered=True)
    assert await claims.try_claim(in_thread("sess_a", "turn_2", "call_1"))


async def test_runs_rounds_reusing_call_ids_are_answered_when_calls_are_not_remembered() -> None:
    """Assistants runs come whole, and some servers number call ids per run: round 2's call_1
    is not round 1's, so the runs' claims remember rounds, not calls."""
    claims = LocalClaims()
    claims.remember_calls = False
    async with claims.hold(in_thread("thread_1", "run_1", "call_1")) as first:
        assert first is not None
        first.outcome = SubmitOutcome.OK
    async with claims.hold(in_thread("thread_1", "run_1", "call_1", "call_2")) as second:
        assert second is not None


def test_rounds_of_the_same_run_are_different_claims() -> None:
    """Each round has new tool call ids, so it is its own claim."""
    assert make_round("run_1", "a").key != make_round("run_1", "b").key
    assert anyio is not None
    assert pytest is not None
