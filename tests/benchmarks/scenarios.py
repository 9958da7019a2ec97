"""The scenarios (what runs the simulator scripts) and the API profiles they run under."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace

from tests.benchmarks.handlers import TOOL_TIMEOUT_S
from worker.simulator import FaultPlan, FaultRule, ToolCallScript

__all__ = [
    "ALL_SYSTEMS",
    "API_FAULT_P",
    "FAIL_P",
    "PROFILES",
    "RETRY_AFTER_S",
    "SCENARIOS",
    "TIMEOUT_P",
    "Profile",
    "Scenario",
    "fault_plan",
    "scripts",
]

# trivial1000_faulty: the share of calls whose handler raises, and of calls that time out.
FAIL_P = 0.05
TIMEOUT_P = 0.05
# A timing-out call asks for this long; the tool's timeout (handlers.TOOL_TIMEOUT_S) cuts it.
SLOW_MS = 5_000
# A scenario with `api_faults`: the share of requests to every endpoint that fail (429, 5xx,
# dropped before or after the handler, a quarter each), and on top the share of streamed
# submissions cut (before the request is applied, after it, after the first event, a third each).
API_FAULT_P = 0.05
# A 429's Retry-After (the simulator sends it as retry-after-ms too).
RETRY_AFTER_S = 0.2
# Who runs a scenario by default (systems.SYSTEMS has them all). tool-worker-unbudgeted is
# tool-worker with `[api] max_requests_per_s = 0`: only where the budget, not the worker, would
# set the numbers (1,000 runs need 3,000 requests: 30 s at the default 100/s).
ALL_SYSTEMS = ("tool-worker", "baseline-a", "baseline-b", "baseline-c")
_TRIVIAL_SYSTEMS = (*ALL_SYSTEMS, "tool-worker-unbudgeted")
# The table leaves out baseline (a), 40 s of its budget a case for nothing new.
_TABLE_SYSTEMS = ("tool-worker", "baseline-b", "baseline-c")
# The Agents API scenarios: tool-worker (backend = "agents") and the AsyncOpenAI sessions loop.
_AGENTS_SYSTEMS = ("tool-worker", "agents-sdk")


@dataclass(frozen=True, slots=True)
class Profile:
    """How the simulated API behaves: per-request latency, the model's thinking time, and the
    ``openai-poll-after-ms`` hint ("off": none, as the open-source compatible servers; "coarse":
    1000 ms while a run thinks; "exact": the moment the run changes, an oracle no server gives)."""

    name: str
    latency_s: float
    thinking_s: float
    hints: str = "off"

    def with_hints(self, hints: str | None) -> Profile:
        """The same profile under another hint mode (``--hints``)."""
        if hints is None or hints == self.hints:
            return self
        return Profile(self.name, self.latency_s, self.thinking_s, hints)


PROFILES = {
    "remote": Profile("remote", latency_s=0.05, thinking_s=0.3),
    "remote-coarse": Profile("remote-coarse", latency_s=0.05, thinking_s=0.3, hints="coarse"),
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
    apis: tuple[str, ...] = ("remote", "zero")  # the profiles it runs under by default
    systems: tuple[str, ...] = ALL_SYSTEMS  # the systems that run it by default
    api_faults: bool = False  # requests fail and streams are cut (fault_plan)
    full_size: bool = False  # --quick does not shrink it
    # "agents": the runs are Agents API sessions and the rounds their turns (#21).
    protocol: str = "assistants"

    def shrunk(self, quick: bool) -> Scenario:
        """The ``--quick`` size: about ten times fewer runs (at least one)."""
        if not quick or self.full_size:
            return self
        return replace(self, runs=max(1, self.runs // 10))

    def floor_s(self, profile: Profile) -> float:
        """The least makespan any system can reach: every round's thinking, slowest call and
        submission, with the round detected the moment it appears.

        A session's model also thinks after a turn's results before it answers and the next
        turn starts: one more thinking time for every turn but the last.
        """
        per_round = profile.thinking_s + self.slowest_call_s + profile.latency_s
        if self.protocol == "agents":
            return self.rounds * (per_round + profile.thinking_s) - profile.thinking_s
        return self.rounds * per_round

    def limit_s(self, profile: Profile) -> float:
        """The issue's limit: ``floor_s`` plus the first round's detection, one request.

        Every round costs thinking + slowest call + the submission's latency (the next round
        comes on the submission's stream the moment it appears); the first round must be found
        by a poll, and a poll sent the moment it appears answers one latency later.
        """
        return self.floor_s(profile) + profile.latency_s

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
        Scenario("trivial1000", 1000, 1, 8, "noop", "1,000 runs x 1 round x 8 trivial calls",
                 systems=_TRIVIAL_SYSTEMS),
        Scenario("trivial1000_faulty", 1000, 1, 8, "faulty",
                 f"as trivial1000, {FAIL_P:.0%} of calls raise and {TIMEOUT_P:.0%} time out",
                 systems=_TRIVIAL_SYSTEMS),
        # The table (#15): 40 runs x 3 rounds x 4 calls of 50 ms.
        Scenario("table40", 40, 3, 4, "work:50", "the issue's table: 40 runs x 3 rounds x "
                 "4 calls of 50 ms", apis=("remote", "remote-coarse"), systems=_TABLE_SYSTEMS,
                 full_size=True),
        Scenario("table40_faulty", 40, 3, 4, "work:50", f"table40 with {API_FAULT_P:.0%} of "
                 f"requests failing and {API_FAULT_P:.0%} of streams cut", apis=("remote",),
                 systems=_TABLE_SYSTEMS, api_faults=True, full_size=True),
        # The issue's Agents API sessions (#21), table40's shape: 40 sessions x 3 turns x 4 calls.
        Scenario("agents40", 40, 3, 4, "work:50", "Agents API: 40 sessions x 3 turns x 4 calls "
                 "of 50 ms", systems=_AGENTS_SYSTEMS, full_size=True, protocol="agents"),
        Scenario("agents40_faulty", 40, 3, 4, "work:50", f"agents40 with {API_FAULT_P:.0%} of "
                 f"requests failing and {API_FAULT_P:.0%} of streams cut", apis=("remote",),
                 systems=_AGENTS_SYSTEMS, api_faults=True, full_size=True, protocol="agents"),
    )
}


def fault_plan(scenario: Scenario, seed: int) -> FaultPlan | None:
    """The simulator's faults for ``scenario``: none unless it has ``api_faults``."""
    if not scenario.api_faults:
        return None
    each = API_FAULT_P / 4
    fail = {"p_429": each, "p_5xx": each, "p_drop_before": each, "p_drop_after": each,
            "retry_after_s": RETRY_AFTER_S}
    cut = API_FAULT_P / 3
    # Cuts strike only streamed requests: a plain submission that draws one is served normally.
    submit = FaultRule(**fail, p_cut_before_apply=cut, p_cut_after_apply=cut,
                       p_cut_mid_stream=cut)
    # An Agents API session's live event stream is cut the same way.
    stream = FaultRule(**fail, p_cut_before_apply=cut, p_cut_after_apply=cut,
                       p_cut_mid_stream=cut)
    return FaultPlan(rules={"submit_tool_outputs": submit, "stream_session_events": stream},
                     default=FaultRule(**fail), seed=seed)


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
