"""The Simulator's Agents API side without HTTP: setting the scene, and what tests assert on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from worker.simulator.agents_script import parse_turns
from worker.simulator.agents_state import AgentsState
from worker.simulator.agents_webhooks import WebhookDelivery, WebhookSender
from worker.simulator.wire import refuse

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence

    from worker.simulator.agents_state import EventsPost

__all__ = ["AgentsFacade", "new_agents_state"]


def new_agents_state(seed: int, thinking_s: float, user_pause_s: float,
                     clock: Callable[[], float], turns: Sequence[Any] | None) -> AgentsState:
    """The Agents API side of a `Simulator`, its default script parsed from `turns`."""
    return AgentsState(seed=seed, thinking_s=thinking_s, user_pause_s=user_pause_s, clock=clock,
                       default_turns=None if turns is None else parse_turns(list(turns), "turns"))


class AgentsFacade:
    """Methods of `Simulator` for the Agents API; `agents` is its `AgentsState`."""

    agents: AgentsState

    def create_agent(self, name: str | None = None, tools: Sequence[Mapping[str, Any]] = (),
                     *, model: str = "gpt-5", instructions: str | None = None) -> str:
        """A saved agent with these tools (`{"type": "function", "name", ...}`); returns its id."""
        params = {"name": name, "tools": [dict(tool) for tool in tools], "model": model,
                  "instructions": instructions}
        return self.agents.create_agent(params).id

    def create_session(
        self,
        agent_id: str,
        turns: Sequence[Any] | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        input: str | None = "Hello",
    ) -> str:
        """A session of the agent that runs `turns` (see `worker.simulator.agents_script`).

        Without `turns`, the script is `metadata["sim_turns"]`, else the simulator's default.
        With `input` (the default), the first turn starts at once; with None the session is
        idle until a user message arrives.

        Raises:
            RequestRefused: (a ValueError) unknown agent, or a script that does not parse.
        """
        params: dict[str, Any] = {"agent_id": agent_id, "environment": {"type": "self_hosted"},
                                  "metadata": dict(metadata or {})}
        if input is not None:
            params["input"] = input
        return self.agents.create_session(params, turns=turns).id

    def start_turn(self, session_id: str, text: str = "Next, please.") -> None:
        """A user message to an idle session: its next scripted turn starts now (not recorded
        among `events_posts`).

        Raises:
            RequestRefused: (a ValueError) unknown session, or one not idle.
        """
        session = self.agents.session(session_id)
        if session.status != "idle":
            raise refuse(f"Session '{session_id}' is {session.status}, not idle.")
        self.agents.start_turn(session, self.agents.clock(), text)

    def session(self, session_id: str) -> dict[str, Any]:
        """The session's current AgentSession JSON."""
        return self.agents.session(session_id).render()

    def all_sessions_idle(self) -> bool:
        """Whether every session is idle or failed, with no scripted turn left to start."""
        return self.agents.all_sessions_idle()

    @property
    def events_posts(self) -> list[EventsPost]:
        """Every POST of input events that reached the handler, accepted or not, in order."""
        return list(self.agents.posts)

    def applied_posts(self, session_id: str | None = None) -> list[EventsPost]:
        """The POSTs that changed a session (accepted, not idempotent replays)."""
        return [p for p in self.agents.posts
                if p.applied and (session_id is None or p.session_id == session_id)]

    def tool_results(self, session_id: str | None = None) -> list[dict[str, Any]]:
        """Every tool_result event applied, in order (to check that no call was answered twice)."""
        return [event for post in self.applied_posts(session_id) for event in post.events
                if event.get("type") == "agent.session.input.tool_result"]

    @property
    def turns_visible(self) -> dict[tuple[str, int], float]:
        """`time.monotonic()` at which each (session_id, turn index) reached requires_action."""
        self.agents.sessions()
        return dict(self.agents.turns_visible)

    # webhooks

    def send_webhooks(self, url: str, secret: str, *, retries: int = 2,
                      retry_s: float = 0.2) -> WebhookSender:
        """POST a signed `agent.session.action_required` to `url` whenever a session needs
        action (see `worker.simulator.agents_webhooks`)."""
        sender = WebhookSender(url, secret, self.agents.new_id, retries=retries, retry_s=retry_s,
                               clock=self.agents.clock)
        self.agents.on_requires_action.append(sender)
        return sender

    @property
    def webhook_deliveries(self) -> list[WebhookDelivery]:
        """Every webhook delivery attempt, in order."""
        return [d for sender in self._senders() for d in sender.deliveries]

    async def close_webhooks(self) -> None:
        """Stop the deliveries still in flight."""
        for sender in self._senders():
            await sender.aclose()

    def _senders(self) -> list[WebhookSender]:
        return [h for h in self.agents.on_requires_action if isinstance(h, WebhookSender)]
