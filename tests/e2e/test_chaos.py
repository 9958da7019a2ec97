"""Chaos: faults on every endpoint and a worker killed mid-flight; no round lost or doubled."""

from __future__ import annotations

import signal
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import SIM_KEY, calls, start_runs
from tests.e2e.process import Daemon, write_config
from worker.simulator import FaultPlan, FaultRule, Simulator, ToolCallScript

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

THREADS = 80
ROUNDS = 3
FAULTS = FaultRule(p_429=0.04, retry_after_s=0.05, p_5xx=0.05, p_drop_before=0.03,
                   p_drop_after=0.03, latency_s=0.002)


def script(index: int) -> list[list[ToolCallScript]]:
    return [calls(("nap", {"seconds": 0.05}), ("add", {"a": index, "b": r}),
                  ("describe", {}), ("echo", {"text": f"round {r}"}))
            for r in range(ROUNDS)]


async def test_every_round_once_under_faults_and_a_restart(tmp_path: Path) -> None:
    """Every round of every run is accepted exactly once, before expiry, despite it all."""
    plan = FaultPlan(default=FAULTS, seed=2026)
    async with Simulator(api_key=SIM_KEY, faults=plan, thinking_s=0.05, seed=7) as sim:
        threads, runs = start_runs(sim, [script(i) for i in range(THREADS)])
        config = write_config(tmp_path / "w.toml", sim, threads,
                              api={"max_retries": 6},
                              watch={"max_concurrent_polls": 32})
        total_rounds = THREADS * ROUNDS

        first = await Daemon.start(config)
        try:
            await wait_for(lambda: len(sim.accepted_submissions()) >= total_rounds // 3,
                           timeout_s=60, what="a third of the rounds")
            first.signal(signal.SIGKILL)
            await first.wait()
        finally:
            await first.aclose()
        len(sim.accepted_submissions())

        second = await Daemon.start(config, "--once")
        try:
            assert await second.wait(timeout_s=120) == 0
        finally:
            await second.aclose()

        accepted = Counter((s.run_id, s.round_index) for s in sim.accepted_submissions())
        expected = {(run_id, r) for run_id in runs for r in range(ROUNDS)}
        lost = expected - set(accepted)
        duplicates = sum(count - 1 for count in accepted.values())
        statuses = Counter(sim.run(run_id)["status"] for run_id in runs)
        sum(len(d.events("API request failed; retrying")) for d in (first, second))
        Counter(s.status for s in sim.submissions if s.status != 200)
        assert lost == set()
        assert duplicates == 0
        assert statuses == Counter({"completed": THREADS})
        assert sum(sim.faults_injected.values()) > 0
        assert set(accepted) == expected
        assert sim.all_runs_terminal()
