"""The [approvals] policy: rules, their matching, the parsed approval action, and the config."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import make_settings
from worker.config.loading import load_config
from worker.errors import ConfigError, InvalidId
from worker.models import ApprovalDecision, Malformed, McpCall, Round, Run, ToolApproval
from worker.observability.metrics import Metrics
from worker.rounds.approvals import ApprovalPolicy, Rule
from worker.testing import capture_logs

KEY = {"OPENAI_API_KEY": "sk-test", "AZURE_AI_API_KEY": "az-test",
       "TOOL_WORKER__API__BASE_URL": "https://r.services.ai.azure.com/api/projects/p"}


def policy(*rules: dict[str, str], **logging: Any) -> ApprovalPolicy:
    settings = make_settings(api={"backend": "azure"}, approvals={"rules": list(rules)},
                             logging=logging)
    built = ApprovalPolicy.from_settings(settings)
    assert built is not None
    return built


def mcp(name: str, label: str = "github", call_id: str = "call_1") -> McpCall:
    return McpCall(call_id, name, label, '{"secret": "s3"}')


def run_json(calls: list[Any], action: str = "submit_tool_approval") -> dict[str, Any]:
    return {"id": "run_1", "thread_id": "thread_1", "status": "requires_action",
            "required_action": {"type": action, action: {"tool_calls": calls}}}


def mcp_json(call_id: str = "call_1", **fields: Any) -> dict[str, Any]:
    return {"id": call_id, "type": "mcp", "name": "search_code", "arguments": "{}",
            "server_label": "github", **fields}


class TestRules:
    def test_the_first_matching_rule_decides(self) -> None:
        """Rules are tried in order; a later, broader rule does not override an earlier one."""
        rules = policy({"server_label": "github", "tool": "search_*", "decision": "approve"},
                       {"server_label": "*", "tool": "*", "decision": "deny"})
        assert rules.decide(mcp("search_code")).decision is ApprovalDecision.APPROVE
        verdict = rules.decide(mcp("delete_repo"))
        assert verdict.decision is ApprovalDecision.DENY
        assert verdict.rule == Rule(1, "*", "*", ApprovalDecision.DENY)

    def test_a_call_no_rule_matches_is_left(self) -> None:
        """The default is to leave the call for a person."""
        verdict = policy({"server_label": "jira", "decision": "approve"}).decide(mcp("search"))
        assert (verdict.decision, verdict.rule) == (ApprovalDecision.LEAVE, None)

    @pytest.mark.parametrize(("pattern", "name", "matches"), [
        ("search_*", "search_code", True),
        ("search_*", "Search_code", False),  # case-sensitive, like tool names
        ("get_?", "get_a", True),
        ("[gs]et_x", "set_x", True),
        ("*", "", True),
    ])
    def test_patterns_are_globs(self, pattern: str, name: str, matches: bool) -> None:
        """Tool and server label patterns are fnmatch globs, matched case-sensitively."""
        rule = Rule(0, "*", pattern, ApprovalDecision.APPROVE)
        assert rule.matches(mcp(name)) is matches

    def test_a_run_is_answered_only_when_every_call_is_decided(self) -> None:
        """One call left for a person leaves the whole run."""
        rules = policy({"tool": "search_*", "decision": "approve"})
        both = Run.from_json(run_json([mcp_json("call_1"), mcp_json("call_2", name="search_x")]))
        mixed = Run.from_json(run_json([mcp_json("call_1"), mcp_json("call_2", name="delete")]))
        assert rules.answers(both)
        assert not rules.answers(mixed)

    def test_a_call_of_another_type_leaves_the_run(self) -> None:
        """A call the worker cannot read as MCP cannot be decided: the run is a person's."""
        rules = policy({"decision": "approve"})
        run = Run.from_json(run_json([mcp_json(), {"id": "call_2", "type": "computer_use"}]))
        assert run.other_approval_calls == 1
        assert not rules.answers(run)

    def test_approvals_log_the_rule_but_not_the_arguments(self) -> None:
        """Each decision's line names the rule, server label and tool; arguments stay out."""
        rules = policy({"server_label": "git*", "tool": "*", "decision": "deny"})
        round_ = Round.from_run(Run.from_json(run_json([mcp_json()])), 0.0)
        with capture_logs() as logs:
            assert rules.approvals(round_) == [ToolApproval("call_1", approve=False)]
        (line,) = [e for e in logs if e["event"] == "tool approval decided"]
        assert (line["rule"], line["rule_server_label"], line["rule_tool"]) == (0, "git*", "*")
        assert (line["server_label"], line["tool"], line["decision"]) == (
            "github", "search_code", "deny")
        assert "arguments" not in line

    def test_log_arguments_adds_them(self) -> None:
        """With [logging] log_arguments the call's arguments are logged too."""
        rules = policy({"decision": "leave"}, log_arguments=True)
        with capture_logs() as logs:
            rules.record_left(Run.from_json(run_json([mcp_json(arguments='{"q": 1}')])), Metrics())
        assert [e["arguments"] for e in logs if "arguments" in e] == ['{"q": 1}']

    def test_the_openai_backend_has_no_policy(self) -> None:
        """OpenAI runs never wait for approvals: no policy, today's behaviour."""
        assert ApprovalPolicy.from_settings(make_settings()) is None


class TestParsing:
    def test_the_approval_action_is_parsed_into_mcp_calls(self) -> None:
        """required_action.submit_tool_approval.tool_calls become McpCall values."""
        run = Run.from_json(run_json([mcp_json()]))
        assert run.wants_approvals
        assert not run.wants_tool_outputs
        assert run.approval_calls == (McpCall("call_1", "search_code", "github", "{}"),)
        assert run.call_ids == {"call_1"}
        assert Round.from_run(run, 0.0).call_ids == {"call_1"}

    def test_an_outputs_run_has_no_approval_calls(self) -> None:
        """A submit_tool_outputs run is not an approval run."""
        call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        run = Run.from_json(run_json([call], action="submit_tool_outputs"))
        assert not run.wants_approvals
        assert run.approval_calls == ()

    @pytest.mark.parametrize(("calls", "fragment"), [
        ("nope", "not a list"),
        (["nope"], "not an object"),
        ([mcp_json(server_label=None)], "server_label"),
        ([mcp_json(name=3)], "name"),
        ([mcp_json(arguments={"a": 1})], "arguments"),
    ])
    def test_malformed_approval_actions_are_refused(self, calls: Any, fragment: str) -> None:
        """A shape no API would send is Malformed (the client's BadAnswer), naming the field."""
        with pytest.raises(Malformed, match=fragment):
            Run.from_json(run_json(calls))

    def test_an_id_no_api_issues_is_refused(self) -> None:
        """An MCP call's id is checked like a function call's."""
        with pytest.raises(InvalidId, match="tool_call_id"):
            Run.from_json(run_json([mcp_json(call_id="")]))

    def test_an_approval_action_that_is_not_an_object_is_refused(self) -> None:
        """submit_tool_approval must be an object."""
        data = run_json([])
        data["required_action"]["submit_tool_approval"] = "calls"
        with pytest.raises(Malformed, match="submit_tool_approval"):
            Run.from_json(data)


class TestConfig:
    def test_rules_are_read_from_the_file(self, tmp_path: Any) -> None:
        """Rules keep their order; server_label and tool default to "*"."""
        path = tmp_path / "c.toml"
        path.write_text('[api]\nbackend = "azure"\nazure_auth = "api_key"\n[approvals]\n'
                        'rules = [{tool = "search_*", decision = "approve"}, '
                        '{decision = "leave"}]\n')
        rules = load_config(path, environ=KEY).approvals.rules
        assert [(r.server_label, r.tool, r.decision) for r in rules] == [
            ("*", "search_*", "approve"), ("*", "*", "leave")]

    @pytest.mark.parametrize(("rule", "key"), [
        ('{decision = "maybe"}', "approvals.rules.0.decision"),
        ('{tool = "x"}', "approvals.rules.0.decision"),
        ('{tool = "", decision = "deny"}', "approvals.rules.0.tool"),
        ('{tools = "x", decision = "deny"}', "approvals.rules.0.tools"),
    ])
    def test_bad_rules_name_their_key(self, tmp_path: Any, rule: str, key: str) -> None:
        """A rule with an unknown decision, a missing or empty field, or a typo is refused."""
        path = tmp_path / "c.toml"
        path.write_text(f'[api]\nbackend = "azure"\nazure_auth = "api_key"\n'
                        f'[approvals]\nrules = [{rule}]\n')
        with pytest.raises(ConfigError) as caught:
            load_config(path, environ=KEY)
        assert caught.value.key == key

    def test_rules_on_the_openai_backend_are_refused(self, tmp_path: Any) -> None:
        """Only Azure asks for approvals: rules on OpenAI are a mistake, named at start."""
        path = tmp_path / "c.toml"
        path.write_text('[approvals]\nrules = [{decision = "approve"}]\n')
        with pytest.raises(ConfigError, match="backend = \"azure\"") as caught:
            load_config(path, environ=KEY)
        assert caught.value.key == "approvals.rules"
