"""RoundsApi: what finding, answering and submitting rounds needs of a provider's protocol.

The rest of the worker speaks of threads, runs and rounds. Each protocol maps its own words
onto them in its adapter, and the poller, the pipeline, the submitter and the service talk
to this interface only:

* threads/runs (Assistants, Azure's agents service): ``api.client.ApiClient``, one to one.
* sessions/turns (OpenAI's Agents API): ``api.agents.SessionsClient``; a session is the
  "thread", the turn waiting for function results is the "run", and its ``function_call``
  actions are the round's calls.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

from worker.api.agents import SessionsClient
from worker.api.budget import Lane
from worker.api.client import ApiClient

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Mapping, Sequence
    from contextlib import AbstractAsyncContextManager

    from worker.api.backends import BackendProfile
    from worker.api.budget import RequestBudget
    from worker.api.clock import ApiClock
    from worker.config.settings import Settings
    from worker.models import Run, ToolApproval, ToolOutput
    from worker.observability.health import Health
    from worker.observability.metrics import Metrics

__all__ = ["LiveEvents", "RoundsApi", "open_client"]


def open_client(
    profile: BackendProfile, settings: Settings, metrics: Metrics, *, clock: ApiClock,
    health: Health,
) -> ApiClient | SessionsClient:
    """The client of the protocol ``[api] backend`` speaks; use it as ``async with``."""
    if settings.api.backend == "agents":
        return SessionsClient(profile, settings.api, metrics, agents=settings.watch.agents,
                              clock=clock, health=health)
    return ApiClient(profile, settings.api, metrics, clock=clock, health=health)


class RoundsApi(Protocol):
    """The endpoints the worker's stages use, in the words of threads, runs and rounds."""

    budget: RequestBudget

    @property
    def can_stream(self) -> bool:
        """Whether a submission may be streamed now (below ``[api] max_streams``)."""

    async def retrieve_run(
        self, thread_id: str, run_id: str, *, lane: Lane = Lane.ACTIVE,
        retries: int | None = None, timeout_s: float | None = None,
    ) -> Run: ...

    async def list_runs(
        self, thread_id: str, *, limit: int = 1, order: str = "desc", lane: Lane = Lane.ACTIVE,
        retries: int | None = None, timeout_s: float | None = None,
    ) -> list[Run]: ...

    async def submit_tool_outputs(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput], *,
        deadline: float | None = None, approvals: Sequence[ToolApproval] = (),
    ) -> Run: ...

    async def submit_tool_outputs_streaming(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput], *,
        approvals: Sequence[ToolApproval] = (),
    ) -> Run | None: ...

    async def list_threads(
        self, *, limit: int = 100, after: str | None = None,
        known: Callable[[str], bool] | None = None,
    ) -> tuple[list[str], str | None]:
        """One page of ids to watch and the next page's cursor (None: the listing is done).

        ``known`` says which ids are watched already; a protocol that lists newest first
        stops at them.
        """

    async def retrieve_thread_metadata(self, thread_id: str) -> Mapping[str, str]: ...


@runtime_checkable
class LiveEvents(Protocol):
    """A protocol that pushes a thread's changes down a held-open stream (sessions' events)."""

    @property
    def max_streams(self) -> int:
        """How many streams may be held open at once."""

    def live_events(self, thread_id: str) -> AbstractAsyncContextManager[AsyncIterator[Run]]:
        """Open the thread's live stream; iterate it for the run each status change shows.

        Entering returns once the stream is open (the caller then reads the thread once, since
        nothing is replayed); the iteration ends when the stream does.
        """
