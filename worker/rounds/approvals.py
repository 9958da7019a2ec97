"""Approvals: the ``[approvals]`` rules that approve, deny or leave MCP tool calls.

Azure's agents service stops a run before it calls a tool of an MCP server that requires
approval: the run waits in ``requires_action`` with ``submit_tool_approval``; an Agents API
session waits with ``mcp_approval_request`` actions, read the same way. The policy
decides each call by the first rule whose glob patterns match its server label and tool
name; a call no rule matches is left for a person. A run is answered only when every call
is approved or denied, in one submission; otherwise the whole run is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import structlog

from worker.models import ApprovalDecision as Decision
from worker.models import ToolApproval

if TYPE_CHECKING:
    from collections.abc import Iterable

    from worker.config.settings import Settings
    from worker.models import McpCall, Round, Run
    from worker.observability.metrics import Metrics

__all__ = ["AWAITING_APPROVAL", "ApprovalPolicy", "Rule", "Verdict", "count_decisions"]

log = structlog.get_logger("worker.rounds.approvals")

# The runs_skipped reason of a run left for a person to approve its tool calls.
AWAITING_APPROVAL = "awaiting_approval"


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[approvals] rules`` item; ``index`` is its place in the list, for log lines."""

    index: int
    server_label: str
    tool: str
    decision: Decision

    def matches(self, call: McpCall) -> bool:
        """Whether both patterns match the call (case-sensitive globs: ``*``, ``?``, ``[ab]``)."""
        return fnmatchcase(call.server_label, self.server_label) and fnmatchcase(
            call.name, self.tool)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision on one call, and the rule that made it (None: no rule matched)."""

    call: McpCall
    decision: Decision
    rule: Rule | None

    def log_fields(self, *, log_arguments: bool) -> dict[str, Any]:
        """The call and the rule as log fields; the arguments only with ``log_arguments``."""
        fields: dict[str, Any] = {
            "decision": self.decision.value, "tool_call_id": self.call.id,
            "server_label": self.call.server_label, "tool": self.call.name,
            "rule": None if self.rule is None else self.rule.index,
            "rule_server_label": None if self.rule is None else self.rule.server_label,
            "rule_tool": None if self.rule is None else self.rule.tool,
        }
        if log_arguments:
            fields["arguments"] = self.call.arguments
        return fields


@dataclass(frozen=True, slots=True)
class ApprovalPolicy:
    """The rules, in order; the first that matches a call decides it."""

    rules: tuple[Rule, ...]
    log_arguments: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> ApprovalPolicy | None:
        """The configured policy; None for Assistants runs (they have no approvals): Azure's
        MCP approvals and the Agents API's ``mcp_approval_request`` actions have one."""
        if settings.api.backend == "openai":
            return None
        rules = tuple(Rule(index, rule.server_label, rule.tool, Decision(rule.decision))
                      for index, rule in enumerate(settings.approvals.rules))
        return cls(rules, log_arguments=settings.logging.log_arguments)

    def decide(self, call: McpCall) -> Verdict:
        """The first matching rule's decision on the call; leave it when none matches."""
        for rule in self.rules:
            if rule.matches(call):
                return Verdict(call, rule.decision, rule)
        return Verdict(call, Decision.LEAVE, None)

    def answers(self, run: Run) -> bool:
        """Whether the worker answers the run's approvals: each call approved or denied."""
        return (run.wants_approvals and not run.other_approval_calls
                and all(self.decide(c).decision is not Decision.LEAVE for c in run.approval_calls))

    def approvals(self, round_: Round) -> list[ToolApproval] | None:
        """The round's answers, each decision logged; None if any call is left for a person."""
        verdicts = [self.decide(call) for call in round_.approval_calls]
        if any(verdict.decision is Decision.LEAVE for verdict in verdicts):
            return None  # the rules changed under a round already sent: not ours after all
        for verdict in verdicts:
            log.info("tool approval decided", **verdict.log_fields(log_arguments=self.log_arguments))
        return [ToolApproval(v.call.id, v.decision is Decision.APPROVE) for v in verdicts]

    def record_left(self, run: Run, metrics: Metrics) -> None:
        """Log and count a run left for a person: call it once per run."""
        left = [v for v in map(self.decide, run.approval_calls) if v.decision is Decision.LEAVE]
        for verdict in left:
            log.info("tool approval left for a person", run_id=run.id,
                     **verdict.log_fields(log_arguments=self.log_arguments))
        if run.other_approval_calls:  # a call of a type this worker does not know: a person's
            log.info("tool approvals of calls other than MCP are left for a person",
                     run_id=run.id, calls=run.other_approval_calls)
        metrics.tool_approvals.labels(Decision.LEAVE.value).inc(
            len(left) + run.other_approval_calls)


def count_decisions(approvals: Iterable[ToolApproval], metrics: Metrics) -> None:
    """Count approvals the run took, by decision."""
    for approval in approvals:
        decision = Decision.APPROVE if approval.approve else Decision.DENY
        metrics.tool_approvals.labels(decision.value).inc()
