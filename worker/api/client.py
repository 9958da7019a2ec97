"""ApiClient: the Assistants API endpoints the worker uses, answers parsed into its own values."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Self

import aiohttp
import anyio
import structlog

from worker import ids
from worker.api.budget import Lane
from worker.api.responses import items, parse_assistant, parse_run
from worker.api.sse import RUN_ENDS, read_events
from worker.api.transport import Transport
from worker.errors import ApiError, BadAnswer
from worker.models import parse_metadata

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType

    from worker.api.backends import BackendProfile
    from worker.api.budget import RequestBudget
    from worker.api.clock import ApiClock
    from worker.api.retry import RetryPolicy
    from worker.config.settings import ApiSettings
    from worker.models import Run, ToolApproval, ToolOutput
    from worker.observability.health import Health
    from worker.observability.metrics import Metrics

log = structlog.get_logger("worker.api.client")

__all__ = ["ApiClient"]


class ApiClient:
    """The Assistants API endpoints the worker uses, over one ``Transport``.

    Use it as ``async with ApiClient(...) as client``. Every method raises only ``ApiError``.
    Each request pays for itself from ``budget``; answers report to ``health`` and their
    ``Date`` to ``clock`` when those are given.
    """

    def __init__(
        self,
        profile: BackendProfile,
        settings: ApiSettings,
        metrics: Metrics,
        *,
        retry: RetryPolicy | None = None,
        budget: RequestBudget | None = None,
        clock: ApiClock | None = None,
        health: Health | None = None,
    ) -> None:
        self._transport = Transport(profile, settings, metrics, retry=retry, budget=budget,
                                    clock=clock, health=health)
        self._settings = settings
        self._metrics = metrics
        self._health = health
        self._output_type = profile.tool_output_type
        self.budget = self._transport.budget
        self._streams_open = 0
        self._said_no_metadata = False  # warned once that thread objects lack metadata

    async def __aenter__(self) -> Self:
        await self._transport.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def retrieve_run(
        self, thread_id: str, run_id: str, *, lane: Lane = Lane.ACTIVE,
        retries: int | None = None, timeout_s: float | None = None,
    ) -> Run:
        """The run as it is now.

        ``lane`` is its place in the request budget; ``retries`` and ``timeout_s`` override
        the configured ones (a poll is retried by the poller's schedule, not here).
        """
        answer = await self._transport.request(
            "GET", "retrieve_run",
            ids.path("/threads/{thread_id}/runs/{run_id}", thread_id=thread_id, run_id=run_id),
            lane=lane, retries=retries, timeout_s=timeout_s,
        )
        with self._transport.counted():
            return parse_run("retrieve_run", answer.data, answer.poll_after_ms,
                             thread_id=thread_id, run_id=run_id)

    async def list_runs(
        self, thread_id: str, *, limit: int = 1, order: str = "desc", lane: Lane = Lane.ACTIVE,
        retries: int | None = None, timeout_s: float | None = None,
    ) -> list[Run]:
        """The thread's runs as the API lists them (newest first, by its own notion of it)."""
        answer = await self._transport.request(
            "GET", "list_runs", ids.path("/threads/{thread_id}/runs", thread_id=thread_id),
            params={"limit": limit, "order": order}, lane=lane, retries=retries,
            timeout_s=timeout_s,
        )
        with self._transport.counted():
            listed = self._transport.at_most("list_runs", items("list_runs", answer.data), limit)
            return [parse_run("list_runs", item, answer.poll_after_ms, thread_id=thread_id)
                    for item in listed]

    async def submit_tool_outputs(
        self,
        thread_id: str,
        run_id: str,
        outputs: Sequence[ToolOutput],
        *,
        deadline: float | None = None,
        approvals: Sequence[ToolApproval] = (),
    ) -> Run:
        """Submit every output of a round in one request; retries stop at ``deadline``.

        With ``approvals`` (Azure), the round's tool approvals are sent instead of outputs.

        Raises:
            RunNotActionable: the run does not take these outputs (any more).
        """
        body = self._body(outputs, approvals)
        answer = await self._transport.request(
            "POST",
            "submit_tool_outputs",
            ids.path("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
                     thread_id=thread_id, run_id=run_id),
            body=body,
            deadline=deadline,
        )
        with self._transport.counted():
            return parse_run("submit_tool_outputs", answer.data, answer.poll_after_ms,
                             thread_id=thread_id, run_id=run_id)

    def _body(
        self, outputs: Sequence[ToolOutput], approvals: Sequence[ToolApproval]
    ) -> dict[str, Any]:
        # Azure takes approvals on the same endpoint: {"tool_approvals": [ToolApproval]}.
        if approvals:
            return {"tool_approvals": [approval.to_json() for approval in approvals]}
        return {"tool_outputs": [output.to_json(self._output_type) for output in outputs]}

    @property
    def can_stream(self) -> bool:
        """Whether one more stream may be held open: below ``[api] max_streams``."""
        return self._settings.stream and self._streams_open < self._settings.max_streams

    async def submit_tool_outputs_streaming(
        self, thread_id: str, run_id: str, outputs: Sequence[ToolOutput],
        *, approvals: Sequence[ToolApproval] = (),
    ) -> Run | None:
        """Submit with ``"stream": true`` and follow the run to its next round or its end.

        Returns the run as the stream last showed it (waiting for the next round, or ended),
        or None when the stream ended or broke without saying (look at the run). A server
        that ignores ``stream`` answers the run as JSON, which is returned as it is. Sent
        once: a stream that breaks may have been applied, so it is never resent blindly.

        Raises:
            ApiError: the outputs were not accepted (as ``submit_tool_outputs``).
        """
        endpoint = "submit_tool_outputs"
        body = {**self._body(outputs, approvals), "stream": True}
        path = ids.path("/threads/{thread_id}/runs/{run_id}/submit_tool_outputs",
                        thread_id=thread_id, run_id=run_id)
        async with self._transport.open_stream(endpoint, path, body) as response:
            if response.status >= 400 or response.content_type != "text/event-stream":
                answer = await self._transport.answer(endpoint, response)
                with self._transport.counted():
                    return parse_run(endpoint, answer.data, answer.poll_after_ms,
                                     thread_id=thread_id, run_id=run_id)
            if self._health is not None:
                self._health.api_answered()
            return await self._follow(endpoint, response, thread_id, run_id)

    async def _follow(
        self, endpoint: str, response: aiohttp.ClientResponse, thread_id: str, run_id: str
    ) -> Run | None:
        """The last run a stream showed before its end; None if it broke or ended mid-way."""
        last: Run | None = None
        self._streams_open += 1
        self._metrics.streams_open.inc()
        try:
            # A stream that never ends must not hold the round's slot for ever: past
            # stream_max_s the outputs (accepted already) stay, and the run is polled.
            with anyio.move_on_after(self._settings.stream_max_s) as deadline:
                async for event in read_events(response.content.iter_any(), endpoint=endpoint,
                                               max_event_bytes=self._settings.max_response_bytes):
                    if event.name == "error":
                        raise BadAnswer(endpoint, f"the stream reported an error: "
                                                  f"{event.data[:200]}")
                    if event.name.startswith("thread.run.") and event.name.count(".") == 2:
                        last = parse_run(endpoint, json.loads(event.data), thread_id=thread_id,
                                         run_id=run_id)
                        if event.name in RUN_ENDS:
                            return last
                    elif event.name == "done":
                        break
            if deadline.cancelled_caught:
                raise TimeoutError(f"the stream lasted over [api] stream_max_s = "
                                   f"{self._settings.stream_max_s:g} s")
        except (aiohttp.ClientError, TimeoutError, ApiError, ValueError, RecursionError) as exc:
            self._metrics.streams_broken.inc()
            log.info("the stream broke after the outputs were accepted; looking at the run",
                     error=str(exc) or type(exc).__name__)
            return None
        finally:
            self._streams_open -= 1
            self._metrics.streams_open.dec()
        return None  # it ended without the next round or the run's end

    async def list_threads(
        self, *, limit: int = 100, after: str | None = None,
        known: Callable[[str], bool] | None = None,
    ) -> tuple[list[str], str | None]:
        """One page of thread ids, and the cursor of the next page (None on the last).

        A listed id that no API would issue is skipped, never watched. Threads are listed
        newest first, and the listing ends at the first page that holds a ``known`` one.
        """
        params: dict[str, Any] = {"limit": limit, "order": "desc"}
        if after is not None:
            params["after"] = after
        answer = await self._transport.request(
            "GET", "list_threads", "/threads", params=params, lane=Lane.IDLE
        )
        with self._transport.counted():
            listed = self._transport.at_most("list_threads", items("list_threads", answer.data),
                                             limit)
            found: list[object] = [item.get("id") if isinstance(item, dict) else None
                                   for item in listed]
            thread_ids = [t for t in found if isinstance(t, str) and ids.is_valid_id(t)]
            if len(thread_ids) < len(found):
                log.warning("the thread listing holds ids no API issues; skipping them",
                            skipped=len(found) - len(thread_ids))
            more = answer.data.get("has_more") is True
            if known is not None and any(known(t) for t in thread_ids):
                return thread_ids, None  # older ones were listed before
            if more and not thread_ids:
                raise BadAnswer("list_threads", "it says has_more, but lists no thread to read "
                                                "on from")
        return thread_ids, (thread_ids[-1] if more else None)

    async def retrieve_thread_metadata(self, thread_id: str) -> Mapping[str, str]:
        """The thread's ``metadata`` (string pairs; anything else in it is left out).

        Raises:
            NotFound: no such thread for this key.
        """
        answer = await self._transport.request(
            "GET", "retrieve_thread", ids.path("/threads/{thread_id}", thread_id=thread_id),
        )
        if "metadata" in answer.data:
            return parse_metadata(answer.data["metadata"])
        if "metadata_" in answer.data:  # the metadata_underscore quirk (an ORM's reserved name)
            return parse_metadata(answer.data["metadata_"])
        if not self._said_no_metadata:
            self._said_no_metadata = True
            log.warning("the API's thread objects have no metadata field; "
                        "ctx.thread_metadata() is empty", thread_id=thread_id)
        return {}

    async def list_assistants(self, *, limit: int = 20) -> list[dict[str, Any]]:
        """The key's assistants."""
        answer = await self._transport.request(
            "GET", "list_assistants", "/assistants", params={"limit": limit}
        )
        with self._transport.counted():
            listed = self._transport.at_most("list_assistants",
                                             items("list_assistants", answer.data), limit)
        return [item for item in listed if isinstance(item, dict)]

    async def retrieve_assistant(self, assistant_id: str) -> dict[str, Any]:
        """The assistant object as the API shows it (``tools`` among its fields).

        Raises:
            NotFound: no such assistant for this key.
        """
        answer = await self._transport.request(
            "GET", "retrieve_assistant",
            ids.path("/assistants/{assistant_id}", assistant_id=assistant_id),
        )
        with self._transport.counted():
            return parse_assistant("retrieve_assistant", answer.data)

    async def modify_assistant(self, assistant_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Change the fields of the assistant given in ``body``; returns the updated assistant."""
        answer = await self._transport.request(
            "POST", "modify_assistant",
            ids.path("/assistants/{assistant_id}", assistant_id=assistant_id),
            body=body,
        )
        with self._transport.counted():
            return parse_assistant("modify_assistant", answer.data)

    async def cancel_run(self, thread_id: str, run_id: str) -> Run:
        answer = await self._transport.request(
            "POST", "cancel_run",
            ids.path("/threads/{thread_id}/runs/{run_id}/cancel", thread_id=thread_id, run_id=run_id),
        )
        with self._transport.counted():
            return parse_run("cancel_run", answer.data, answer.poll_after_ms,
                             thread_id=thread_id, run_id=run_id)

