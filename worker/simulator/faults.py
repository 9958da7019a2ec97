"""Seeded fault plan: latency, 429 with Retry-After, 5xx, dropped connections and cut streams."""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ENDPOINTS",
    "NO_FAULT",
    "STREAM_FAULTS",
    "Fault",
    "FaultInjector",
    "FaultKind",
    "FaultPlan",
    "FaultRule",
]

ENDPOINTS = (
    "create_assistant",
    "list_assistants",
    "retrieve_assistant",
    "modify_assistant",
    "create_thread",
    "retrieve_thread",
    "create_message",
    "list_messages",
    "create_run",
    "list_runs",
    "retrieve_run",
    "cancel_run",
    "submit_tool_outputs",
    "create_thread_and_run",
    "list_threads",
    "modify_thread",
    "delete_thread",
    "modify_run",
    "delete_assistant",
    # the Agents API
    "create_session",
    "list_sessions",
    "retrieve_session",
    "update_session",
    "delete_session",
    "create_session_events",
    "stream_session_events",
    "list_turns",
    "retrieve_turn",
    "create_agent",
    "list_agents",
    "retrieve_agent",
    "delete_agent",
)

FaultKind = Literal[
    "429", "5xx", "drop_before", "drop_after", "cut_before_apply", "cut_after_apply",
    "cut_mid_stream",
]
# Faults that strike only a streaming request (`"stream": true`); any other request that draws
# one is served normally, and the fault is not counted.
STREAM_FAULTS: frozenset[FaultKind] = frozenset(
    {"cut_before_apply", "cut_after_apply", "cut_mid_stream"}
)

_SERVER_ERROR_STATUSES = (500, 502, 503)


@dataclass(frozen=True, slots=True)
class FaultRule:
    """Latency and the probability of each fault for one endpoint (at most one fault a request).

    The `p_cut_*` faults strike only streaming requests (run creation and submit_tool_outputs
    with `"stream": true`, an Agents API session's event stream): `cut_before_apply` closes the connection before the request is
    applied, `cut_after_apply` once it was applied and the 200 headers were sent but before any
    event, and `cut_mid_stream` after the first event.
    """

    latency_s: float = 0.0
    p_429: float = 0.0
    retry_after_s: float = 1.0
    p_5xx: float = 0.0
    p_drop_before: float = 0.0
    p_drop_after: float = 0.0
    p_cut_before_apply: float = 0.0
    p_cut_after_apply: float = 0.0
    p_cut_mid_stream: float = 0.0

    def __post_init__(self) -> None:
        if self.latency_s < 0 or self.retry_after_s < 0:
            raise ValueError("FaultRule: latency_s and retry_after_s must be >= 0")
        chances = self._chances()
        if any(not 0.0 <= p <= 1.0 for _, p in chances):
            raise ValueError(f"FaultRule: each probability must be within [0, 1], got {chances}")
        if sum(p for _, p in chances) > 1.0:
            raise ValueError("FaultRule: the probabilities are exclusive, so they must sum to <= 1")

    def _chances(self) -> tuple[tuple[FaultKind, float], ...]:
        return (
            ("429", self.p_429),
            ("5xx", self.p_5xx),
            ("drop_before", self.p_drop_before),
            ("drop_after", self.p_drop_after),
            ("cut_before_apply", self.p_cut_before_apply),
            ("cut_after_apply", self.p_cut_after_apply),
            ("cut_mid_stream", self.p_cut_mid_stream),
        )

    def pick(self, draw: float) -> FaultKind | None:
        """The fault that a uniform draw in [0, 1) lands on, or None."""
        ceiling = 0.0
        for kind, p in self._chances():
            ceiling += p
            if draw < ceiling:
                return kind
        return None


@dataclass(frozen=True)
class FaultPlan:
    """Which faults each endpoint suffers; endpoints without a rule use `default`."""

    rules: Mapping[str, FaultRule] = field(default_factory=dict)
    default: FaultRule = field(default_factory=FaultRule)
    seed: int = 0

    def __post_init__(self) -> None:
        unknown = sorted(set(self.rules) - set(ENDPOINTS))
        if unknown:
            raise ValueError(
                f"FaultPlan: unknown endpoint(s) {unknown}; known endpoints: {', '.join(ENDPOINTS)}"
            )
        object.__setattr__(self, "rules", MappingProxyType(dict(self.rules)))

    def rule_for(self, endpoint: str) -> FaultRule:
        """The rule that applies to `endpoint`."""
        return self.rules.get(endpoint, self.default)


@dataclass(frozen=True, slots=True)
class Fault:
    """What happens to one request: extra latency and at most one fault."""

    kind: FaultKind | None = None
    latency_s: float = 0.0
    status: int | None = None
    retry_after_s: float = 0.0


NO_FAULT = Fault()


class FaultInjector:
    """Decides the fault of each request from a plan, deterministically for a given seed.

    Each endpoint draws from its own generator, so the n-th submit gets the same fault however
    many polls happened in between: a test that polls more or less often stays reproducible.
    """

    def __init__(self, plan: FaultPlan | None = None) -> None:
        self.plan = plan if plan is not None else FaultPlan()
        self.injected: Counter[str] = Counter()
        self._rngs: dict[str, random.Random] = {}

    def decide(self, endpoint: str) -> Fault:
        """Draw the fault for the next request to `endpoint` and count it."""
        rule = self.plan.rule_for(endpoint)
        rng = self._rngs.get(endpoint)
        if rng is None:
            # Seeded for reproducibility, not secrecy.
            rng = self._rngs[endpoint] = random.Random(f"{self.plan.seed}:{endpoint}")  # noqa: S311
        # Always draw twice, so the sequence does not depend on which faults fired.
        kind = rule.pick(rng.random())
        status_draw = rng.random()
        if kind is None:
            return Fault(latency_s=rule.latency_s) if rule.latency_s else NO_FAULT
        if kind not in STREAM_FAULTS:
            self.record(endpoint, kind)
        status = None
        if kind == "429":
            status = 429
        elif kind == "5xx":
            status = _SERVER_ERROR_STATUSES[int(status_draw * len(_SERVER_ERROR_STATUSES))]
        return Fault(kind, rule.latency_s, status, rule.retry_after_s)

    def record(self, endpoint: str, kind: str) -> None:
        """Count a fault that struck (stream cuts are counted when a stream takes them)."""
        self.injected[f"{endpoint}:{kind}"] += 1
