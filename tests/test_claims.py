"""Claims: a round is dispatched once per process, unless it is given back."""

from __future__ import annotations

from worker.claims import LocalClaims

KEY = ("run_1", frozenset({"call_1", "call_2"}))


def test_a_round_is_claimed_once() -> None:
    """The second claim of the same round is refused."""
    claims = LocalClaims()
    assert claims.try_claim("run_1", KEY)
    assert not claims.try_claim("run_1", KEY)


def test_a_released_round_can_be_claimed_again() -> None:
    """A round whose submission failed is given back and dispatched again."""
    claims = LocalClaims()
    claims.try_claim("run_1", KEY)
    claims.release("run_1", KEY)
    assert claims.try_claim("run_1", KEY)


def test_forgetting_a_finished_run_frees_its_memory() -> None:
    """A terminal run's keys are dropped."""
    claims = LocalClaims()
    claims.try_claim("run_1", KEY)
    claims.try_claim("run_1", ("run_1", frozenset({"call_3"})))
    assert len(claims) == 2
    claims.forget_run("run_1")
    assert len(claims) == 0
