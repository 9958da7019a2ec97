"""The scenarios (what runs the simulator scripts) and the API profiles they run under."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

from tests.benchmarks.handlers import TOOL_TIMEOUT_S
from worker.simulator import ToolCallScript

__all__ = [
    "FAIL_P",
    "PROFILES",
    "SCENARIOS",
    "TIMEOUT_P",
    "Profile",
    "Scenario",
    "scripts",
]

# trivial1000_faulty: the share of calls whose handler raises, and of calls that time out.
FAIL_P = 0.05
TIMEOUT_P = 0.05
# A timing-out call asks for this long; the tool's timeout (handlers.TOOL_TIMEOUT_S) cuts it.
SLOW_MS = 5_000


@dataclass(frozen=True, slots=True)
class Profile:
    """How the simulated API behaves: per-request latency and the model's thinking time."""

    name: str
    latency_s: float
    thinking_s: float


PROFILES = {
    "remote": Profile("remote", latency_s=0.05, thinking_s=0.3),
    "zero": Profile("zero", latency_s=0.0, thinking_s=0.0),
}


@dataclass(frozen=True, slots=True)
class Scenario:
    """``runs`` runs (one thread each) of ``rounds`` rounds of ``calls`` tool calls of ``kind``."""

    name: str
    runs: int
    rounds: int
    calls: int
    kind: str  # "work:<ms>", "noop" or "faulty"
    summary: str

    def shrunk(self, quick: bool) -> Scenario:
        """The ``--quick`` size: about ten times fewer runs (at least one)."""
        if not quick:
            return self
        return Scenario(self.name, max(1, self.runs // 10), self.rounds, self.calls, self.kind,
                        self.summary)

    def floor_s(self, profile: Profile) -> float:
        """The least makespan any system can reach: every round's thinking, slowest call and
        submission, with the round detected the moment it appears."""
        return self.rounds * (profile.thinking_s + self.slowest_call_s + profile.latency_s)

    @property
    def slowest_call_s(self) -> float:
        if self.kind.startswith("work:"):
            return int(self.kind.removeprefix("work:")) / 1000
        return TOOL_TIMEOUT_S if self.kind == "faulty" else 0.0

    @property
    def total_rounds(self) -> int:
        return self.runs * self.rounds

    @property
    def total_calls(self) -> int:
        return self.total_rounds * self.calls


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("round16", 1, 1, 16, "work:200", "1 run, 1 round of 16 calls of 200 ms"),
        Scenario("runs200", 200, 3, 4, "work:50", "200 runs x 3 rounds x 4 calls of 50 ms"),
        Scenario("trivial1000", 1000, 1, 8, "noop", "1,000 runs x 1 round x 8 trivial calls"),
        Scenario("trivial1000_faulty", 1000, 1, 8, "faulty",
                 f"as trivial1000, {FAIL_P:.0%} of calls raise and {TIMEOUT_P:.0%} time out"),
    )
}


def scripts(scenario: Scenario, seed: int) -> list[list[list[ToolCallScript]]]:
    """The scripted rounds of every run, the same for every system given the seed."""
    rng = random.Random(seed)  # noqa: S311 - reproducible fault placement, not secrecy
    return [
        [[_call(scenario.kind, rng) for _ in range(scenario.calls)] for _ in range(scenario.rounds)]
        for _ in range(scenario.runs)
    ]


def _call(kind: str, rng: random.Random) -> ToolCallScript:
    if kind == "noop":
        return ToolCallScript("noop", "{}")
    if kind.startswith("work:"):
        return _work(int(kind.removeprefix("work:")))
    draw = rng.random()
    if draw < FAIL_P:
        return _work(0, fail=True)
    if draw < FAIL_P + TIMEOUT_P:
        return _work(SLOW_MS)
    return ToolCallScript("noop", "{}")


def _work(ms: int, *, fail: bool = False) -> ToolCallScript:
    arguments = {"ms": ms, "fail": True} if fail else {"ms": ms}
    return ToolCallScript("work", json.dumps(arguments))
