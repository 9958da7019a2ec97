"""Simulator: the fake Assistants API served on loopback, with what tests assert on."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Self

import anyio
from aiohttp import web

from worker.simulator.agents_facade import AgentsFacade, new_agents_state
from worker.simulator.faults import FaultInjector, FaultPlan
from worker.simulator.quirks import check_poll_hints, check_quirks
from worker.simulator.replies import AZURE_API_VERSIONS, Profile
from worker.simulator.routes import build_app
from worker.simulator.spec import RequestSchemas
from worker.simulator.state import ApiState, Submission

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from pathlib import Path
    from types import TracebackType

    from anyio.abc import TaskStatus

    from worker.simulator.quirks import PollHints, Quirk
    from worker.simulator.wire import ToolCallScript

__all__ = ["Simulator", "serve_forever"]

_log = logging.getLogger(__name__)

# In-flight requests (a latency fault, say) get this long to finish when the server stops.
_SHUTDOWN_TIMEOUT_S = 1.0


class Simulator(AgentsFacade):
    """A fake of the Assistants API (v2) on aiohttp.web that keeps the real API's rules.

    The openai profile also serves the Agents API (`/agents/sessions`, `OpenAI-Beta:
    agents=v1`) from the same scripted model: see `worker.simulator.agents_lifecycle`.

    Runs follow scripted rounds of tool calls; every submission is recorded, and faults are
    injected from a seeded plan. Use it as `async with Simulator() as sim:` (loopback, free port).

    Args:
        api_key: the only bearer token the server accepts.
        thinking_s: how long a run stays queued/in_progress before each round or its answer.
        latency_s: a delay added to every response, to model a remote API.
        expires_after_s: how long after creation runs expire.
        faults: latency, 429s, 5xx and dropped connections, per endpoint.
        seed: the seed of every id the simulator makes.
        require_beta_header: refuse requests without `OpenAI-Beta: assistants=v2`, as the API does.
        profile: "openai" serves `/v1` with bearer keys; "azure" serves an Agent Service project
            (`/api/projects/<project>`, `api-version` on every request, `api-key` or bearer).
        api_versions: the api-version values the azure profile accepts.
        project: the azure profile's project name.
        access_log: log each request on the `aiohttp.access` logger.
        clock: epoch seconds; inject a fake one to test time-based rules.
        quirks: names from `QUIRKS`, behaviours of other Assistants-compatible servers
            (documented in `worker.simulator.quirks`); none by default.
        poll_hints: the `openai-poll-after-ms` header: "exact" (when the run will change),
            "coarse" (1000 ms while the run thinks) or "off" (never sent).
        spec: an OpenAPI document (a path, or the parsed JSON) whose request schemas every
            request body is checked against, refused with the API's 400; needs `jsonschema`.
        user_pause_s: how long an Agents API session stays idle before its next scripted turn.
        agent_turns: the script of a session created without `metadata["sim_turns"]` (see
            `worker.simulator.agents_script`); None: one turn calling each function tool once.

    Attributes:
        state: the `ApiState` behind the server; its methods are the endpoints without HTTP.
        agents: the `AgentsState` behind the Agents API, likewise.
        request_counts: requests by endpoint name, faulted or refused ones included.
    """

    def __init__(
        self,
        api_key: str = "sk-sim",
        *,
        thinking_s: float = 0.0,
        latency_s: float = 0.0,
        expires_after_s: float = 600.0,
        faults: FaultPlan | None = None,
        seed: int = 0,
        require_beta_header: bool = True,
        access_log: bool = False,
        clock: Callable[[], float] = time.time,
        profile: Profile = "openai",
        api_versions: tuple[str, ...] = AZURE_API_VERSIONS,
        project: str = "sim-project",
        quirks: Iterable[Quirk | str] = (),
        poll_hints: PollHints = "exact",
        spec: str | Path | Mapping[str, Any] | None = None,
        user_pause_s: float = 0.0, agent_turns: Sequence[Any] | None = None,
    ) -> None:
        self.api_key = api_key
        self.profile = profile
        self.quirks = check_quirks(quirks)
        self._api_versions, self._project = api_versions, project
        self.state = ApiState(
            seed=seed, thinking_s=thinking_s, expires_after_s=expires_after_s, clock=clock,
            quirks=self.quirks, poll_hints=check_poll_hints(poll_hints), profile=profile,
        )
        self.agents = new_agents_state(seed, thinking_s, user_pause_s, clock, agent_turns)
        self._schemas = _request_schemas(spec)
        self.request_counts: Counter[str] = Counter()
        # When each request arrived (time.monotonic()), to check a client's request budget.
        self.request_times: list[float] = []
        self._faults = FaultInjector(faults)
        self._refused_threads: set[str] = set()
        self._latency_s, self._access_log = latency_s, access_log
        self._require_beta_header = require_beta_header
        self._runner: web.AppRunner | None = None
        self._host = "127.0.0.1"
        self._port: int | None = None

    # serving

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Listen on `host:port` (0 picks a free port)."""
        if self._runner is not None:
            raise RuntimeError("Simulator already started; call aclose() first")
        app = build_app(
            self.state,
            api_key=self.api_key,
            faults=self._faults,
            request_counts=self.request_counts,
            request_times=self.request_times,
            require_beta_header=self._require_beta_header,
            latency_s=self._latency_s,
            profile=self.profile,
            api_versions=self._api_versions,
            prefix=self.path_prefix,
            schemas=self._schemas,
            refused_threads=self._refused_threads,
            agents=self.agents,
        )
        runner = web.AppRunner(
            app,
            access_log=logging.getLogger("aiohttp.access") if self._access_log else None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._host = host
        self._port = int(runner.addresses[0][1])

    async def aclose(self) -> None:
        """Stop listening and close open connections; a no-op when not started."""
        runner, self._runner, self._port = self._runner, None, None
        self.agents.close_streams()  # or each open stream holds the shutdown for its timeout
        await self.close_webhooks()
        if runner is not None:
            await runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def serve(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        task_status: TaskStatus[int] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; for `port = await task_group.start(sim.serve)`."""
        await self.start(host=host, port=port)
        try:
            _log.info("Assistants API simulator listening on %s", self.base_url)
            task_status.started(self.port)
            await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self.aclose()

    @property
    def port(self) -> int:
        """The bound port."""
        if self._port is None:
            raise RuntimeError("Simulator not started: use `async with sim:` or `await sim.start()`")
        return self._port

    @property
    def base_url(self) -> str:
        """The API base URL, like `http://127.0.0.1:PORT/v1` (the project endpoint for azure)."""
        host = "127.0.0.1" if self._host in ("", "0.0.0.0", "::") else self._host  # noqa: S104
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}{self.path_prefix}"

    @property
    def path_prefix(self) -> str:
        """Where the API lives on the server: `/v1` (`/api/v1` with the `api_v1_path` quirk),
        or an Azure project's path."""
        if self.profile != "openai":
            return f"/api/projects/{self._project}"
        return "/api/v1" if "api_v1_path" in self.quirks else "/v1"

    # setting the scene (no HTTP)

    def refuse_key_for(self, *thread_ids: str) -> None:
        """Answer 403 to every request about these threads, as for a key scoped to others."""
        self._refused_threads.update(thread_ids)

    def create_assistant(
        self,
        name: str | None = None,
        tools: Sequence[Mapping[str, Any]] = (),
        *,
        model: str = "gpt-4o",
        instructions: str | None = None,
    ) -> str:
        """Create an assistant with these function tools; returns its id."""
        params = {"name": name, "tools": list(tools), "model": model, "instructions": instructions}
        return str(self.state.create_assistant(params)["id"])

    def create_thread(
        self,
        messages: Sequence[str | Mapping[str, Any]] = (),
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Create a thread, optionally with messages (a string is a user message); returns its id."""
        bodies = [{"role": "user", "content": m} if isinstance(m, str) else m for m in messages]
        return str(self.state.create_thread(bodies, metadata)["id"])

    def create_run(
        self,
        thread_id: str,
        assistant_id: str,
        rounds: Sequence[Sequence[ToolCallScript]] | None = None,
        expires_after_s: float | None = None,
        *,
        metadata: Mapping[str, str] | None = None,
        action_type: str = "submit_tool_outputs",
    ) -> str:
        """Start a run that goes through `rounds` of tool calls, then completes; returns its id.

        Without `rounds`, the script is `metadata["sim_rounds"]` if given, else no tool calls
        (a run created over HTTP without a script calls its tools: see `RUN_SCRIPT_HELP`).

        Raises:
            ValueError: unknown thread or assistant, or the thread already has an active run.
        """
        params = {"assistant_id": assistant_id, "metadata": dict(metadata or {})}
        if rounds is None and "sim_rounds" not in params["metadata"]:
            rounds = ()
        run = self.state.create_run(thread_id, params, rounds, expires_after_s, action_type)
        return str(run["id"])

    # what tests assert on

    def run(self, run_id: str) -> dict[str, Any]:
        """The run's current RunObject JSON."""
        return self.state.run(run_id)

    def all_runs_terminal(self) -> bool:
        """Whether every run has reached a terminal status."""
        return self.state.all_runs_terminal()

    @property
    def submissions(self) -> list[Submission]:
        """Every submit_tool_outputs request that reached the handler, accepted or not, in order."""
        return list(self.state.submissions)

    def accepted_submissions(self, run_id: str | None = None) -> list[Submission]:
        """The submissions answered 200, optionally of one run only."""
        return [
            s for s in self.state.submissions
            if s.status == 200 and (run_id is None or s.run_id == run_id)
        ]

    @property
    def rounds_visible(self) -> dict[tuple[str, int], float]:
        """`time.monotonic()` at which each (run_id, round_index) became requires_action."""
        self.state.advance_all()
        return dict(self.state.rounds_visible)

    @property
    def faults_injected(self) -> Counter[str]:
        """Faults injected so far, by `"endpoint:kind"`."""
        return self._faults.injected


def _request_schemas(spec: str | Path | Mapping[str, Any] | None) -> RequestSchemas | None:
    if spec is None:
        return None
    return RequestSchemas(spec) if isinstance(spec, Mapping) else RequestSchemas.from_path(spec)


async def serve_forever(host: str, port: int, **simulator_kwargs: Any) -> None:
    """Run a `Simulator(**simulator_kwargs)` on `host:port` until cancelled (`tool-worker simulate`)."""
    await Simulator(**simulator_kwargs).serve(host=host, port=port)
