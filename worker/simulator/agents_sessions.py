"""A new session of the simulated Agents API, from a create body (`SessionCreateParams`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.simulator.agents_inputs import (
    SESSION_FIELDS,
    check_agent,
    check_environment,
    check_vault_ids,
    input_text,
    spend_limit,
)
from worker.simulator.agents_records import AgentRecord, SessionRecord
from worker.simulator.agents_script import default_script, parse_turns
from worker.simulator.wire import check_fields, check_metadata, invalid_type, refuse

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from worker.simulator.agents_state import AgentsState

__all__ = ["new_session"]


def new_session(state: AgentsState, params: Mapping[str, Any],
                turns: Sequence[Any] | None) -> tuple[SessionRecord, str | None]:
    """The session a create body describes (not yet stored), and its input's text if any."""
    fields = check_fields(dict(params), SESSION_FIELDS, ["environment"])
    environment = _environment(state, check_environment(fields["environment"]))
    agent = _agent(state, fields)
    metadata = check_metadata(fields.get("metadata"))
    text = None
    if fields.get("input") is not None:
        text = input_text(fields["input"], "input")
    elif environment["type"] == "none" or fields.get("stream") is True:
        raise refuse("Missing required parameter: 'input' (required when environment.type is "
                     "'none' or stream is true).", param="input",
                     code="missing_required_parameter")
    script = _script(state, turns, metadata, agent)
    now = state.clock()
    extra = {name: fields.get(name) for name in ("prompt_cache_options", "review")}
    extra["vault_ids"] = check_vault_ids(fields.get("vault_ids"))
    session = SessionRecord(state.new_id("sess_"), agent.snapshot(), environment, dict(metadata),
                            now, script, last_active_at=now, extra=extra,
                            spend_limit=spend_limit(fields.get("spend_control")))
    return session, text


def _agent(state: AgentsState, fields: Mapping[str, Any]) -> AgentRecord:
    agent_id, inline = fields.get("agent_id"), fields.get("agent")
    if agent_id is not None and inline is not None:
        raise refuse("Give either 'agent_id' or 'agent', not both.", param="agent")
    if agent_id is not None:
        if not isinstance(agent_id, str):
            raise invalid_type("agent_id", "a string", agent_id)
        return state.agent(agent_id)
    if inline is None:
        raise refuse("Missing required parameter: 'agent_id' (or an inline 'agent').",
                     param="agent_id", code="missing_required_parameter")
    settings = check_agent(inline, "agent.")
    # An inline agent is the session's own: shown with an id, but not listed under /agents.
    return AgentRecord.from_params(state.new_id("agent_"), state.clock(), settings)


def _environment(state: AgentsState, param: dict[str, Any]) -> dict[str, Any]:
    """The environment as the session shows it."""
    kind = param["type"]
    if kind == "none":
        return {"type": "none"}
    env_id = state.new_id("env_")
    if kind == "self_hosted":
        return {"type": "self_hosted", "id": env_id, "capability_directories": [],
                "remote_url": f"wss://environments.invalid/{env_id}",
                "workspace_directory": param.get("workspace_directory") or "/workspace"}
    return {"type": "openai_hosted", "id": env_id, "capability_directories": [], "files": [],
            "network": {"access": "disabled", "allowed_domains": []},
            "packages": {"npm": [], "python": [], "system": []}, "plugins": [], "skills": []}


def _script(state: AgentsState, turns: Sequence[Any] | None, metadata: Mapping[str, str],
            agent: AgentRecord) -> tuple[Any, ...]:
    if turns is not None:
        return parse_turns(list(turns), "turns")
    if "sim_turns" in metadata:
        return parse_turns(metadata["sim_turns"])
    if state.default_turns is not None:
        return state.default_turns
    return default_script(agent.tools)
