"""System child: baseline (c), a careful ``AsyncOpenAI`` worker that streams its submissions.

One asyncio task per thread, all at once. A run's first round is found by polling (the thread's
newest run from ``runs.list(limit=1)``, then ``runs.poll`` with the SDK's pacing:
``openai-poll-after-ms``, else 1 s); each round's calls run with ``asyncio.gather`` (each under
its tool's timeout) and their outputs go back with ``runs.submit_tool_outputs_stream``, whose
``thread.run.requires_action`` event brings the next round (or a terminal ``thread.run.*``
event the end), with no poll.

Careful means, beyond the SDK's defaults:

- the same 64 pooled keep-alive connections as baseline (b) and tool-worker;
- a stream that breaks is not resent: the SDK raises ``APIConnectionError`` when the request
  fails before the answer, but a stream cut after its 200 surfaces as the transport's own
  ``httpx2.RemoteProtocolError`` (or another ``httpx2.TransportError``) while iterating. Either
  way the outputs may have been applied, so the run is polled; if it still waits for the same
  calls, the kept outputs are submitted again (the handlers do not run twice);
- a ``400`` to a submission means the run no longer waits for these outputs (an SDK retry of
  a submission whose answer was lost, say): the run is polled too;
- a poll that fails after the SDK's own retries (two) is tried again after a short pause.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import httpx2
from openai import (
    APIConnectionError,
    APIStatusError,
    AsyncOpenAI,
    BadRequestError,
    DefaultAsyncHttpxClient,
)

from tests.benchmarks.direct_call import answer
from tests.benchmarks.protocol import wait_for_go

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from openai.resources.beta.threads.runs import AsyncRuns
    from openai.types.beta.threads import Run
    from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput

__all__ = ["main"]

warnings.filterwarnings("ignore", category=DeprecationWarning)

MAX_CONNECTIONS = 64
# Events that end a submission's stream: the next round, or the run's end.
_ROUND_OR_END = frozenset({
    "thread.run.requires_action", "thread.run.completed", "thread.run.failed",
    "thread.run.cancelled", "thread.run.expired", "thread.run.incomplete",
})
_T = TypeVar("_T")
_POLL_RETRY_PAUSE_S = 0.5
_POLL_TRIES = 5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.baseline_stream")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--threads-file", type=Path, required=True)
    args = parser.parse_args(argv)
    threads: list[str] = json.loads(args.threads_file.read_text(encoding="utf-8"))
    with asyncio.Runner() as loop:
        pool = httpx2.Limits(max_connections=MAX_CONNECTIONS,
                             max_keepalive_connections=MAX_CONNECTIONS)
        client = AsyncOpenAI(api_key=os.environ["OPENAI_API_KEY"], base_url=args.base_url,
                             http_client=DefaultAsyncHttpxClient(limits=pool))
        wait_for_go()
        failures = loop.run(_answer_all(client, threads))
    return 1 if failures else 0


async def _answer_all(client: AsyncOpenAI, threads: list[str]) -> int:
    async with client:
        results = await asyncio.gather(
            *(_answer_thread(client.beta.threads.runs, thread_id) for thread_id in threads),
            return_exceptions=True,
        )
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures[:5]:
        sys.stderr.write(f"baseline_stream: a thread failed: {failure!r}\n")
    return len(failures)


async def _answer_thread(runs: AsyncRuns, thread_id: str) -> None:
    page = await _retrying(lambda: runs.list(thread_id=thread_id, limit=1))
    if not page.data:
        return
    run_id = page.data[0].id
    run = await _poll(runs, thread_id, run_id)
    while run.status == "requires_action" and run.required_action is not None:
        calls = run.required_action.submit_tool_outputs.tool_calls
        texts = await asyncio.gather(
            *(answer(call.function.name, call.function.arguments) for call in calls)
        )
        outputs: list[ToolOutput] = [
            {"tool_call_id": c.id, "output": t} for c, t in zip(calls, texts, strict=True)
        ]
        run = await _submit(runs, thread_id, run_id, outputs)


async def _submit(runs: AsyncRuns, thread_id: str, run_id: str,
                  outputs: list[ToolOutput]) -> Run:
    """Stream the outputs in; the run as the stream last showed it, else as a poll shows it."""
    call_ids = {o["tool_call_id"] for o in outputs}
    while True:
        try:
            async with runs.submit_tool_outputs_stream(
                thread_id=thread_id, run_id=run_id, tool_outputs=outputs,
            ) as stream:
                async for event in stream:
                    if event.event in _ROUND_OR_END:
                        return event.data  # type: ignore[return-value] - a Run, by the event
        except (APIConnectionError, httpx2.TransportError, BadRequestError):
            pass  # the outputs may have been applied: the run says
        except APIStatusError as exc:
            if exc.status_code < 500 and exc.status_code != 429:
                raise
        run = await _poll(runs, thread_id, run_id)
        waiting = run.required_action
        if (run.status != "requires_action" or waiting is None
                or {c.id for c in waiting.submit_tool_outputs.tool_calls} != call_ids):
            return run  # taken: this is the next round, or the end


async def _poll(runs: AsyncRuns, thread_id: str, run_id: str) -> Run:
    return await _retrying(lambda: runs.poll(run_id=run_id, thread_id=thread_id))


async def _retrying(request: Callable[[], Awaitable[_T]]) -> _T:
    """The request again after a pause when it fails past the SDK's own retries."""
    for _ in range(_POLL_TRIES - 1):
        try:
            return await request()
        except (APIConnectionError, httpx2.TransportError):
            pass
        except APIStatusError as exc:
            if exc.status_code < 500 and exc.status_code != 429:
                raise
        await asyncio.sleep(_POLL_RETRY_PAUSE_S)
    return await request()


if __name__ == "__main__":
    sys.exit(main())
