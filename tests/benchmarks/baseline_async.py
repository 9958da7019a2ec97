"""System child: baseline (b), a careful hand-written ``AsyncOpenAI`` worker.

One asyncio task per thread, all at once: find the run (``runs.list(limit=1)``), ``runs.poll``
it (the SDK's default pacing: ``openai-poll-after-ms``, else 1 s), run each round's calls with
``asyncio.gather`` (each under its tool's timeout), ``submit_tool_outputs``, poll again, until
the run is terminal.

Careful means one thing beyond the SDK's defaults: the connection pool. The SDK allows 1,000
connections but keeps only 100 alive, so 1,000 concurrent runs open and close a connection for
most requests; that costs this process 2-4x the CPU and 2-5x the makespan. It gets the same
64 pooled connections as tool-worker's ``[api] max_connections``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import warnings
from pathlib import Path

import httpx2
from openai import AsyncOpenAI, DefaultAsyncHttpxClient

from tests.benchmarks.direct_call import answer
from tests.benchmarks.protocol import wait_for_go

__all__ = ["main"]

warnings.filterwarnings("ignore", category=DeprecationWarning)

MAX_CONNECTIONS = 64


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.baseline_async")
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
            *(_answer_thread(client, thread_id) for thread_id in threads), return_exceptions=True
        )
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures[:5]:
        sys.stderr.write(f"baseline_async: a thread failed: {failure!r}\n")
    return len(failures)


async def _answer_thread(client: AsyncOpenAI, thread_id: str) -> None:
    runs = client.beta.threads.runs
    page = await runs.list(thread_id=thread_id, limit=1)
    if not page.data:
        return
    run = await runs.poll(run_id=page.data[0].id, thread_id=thread_id)
    while run.status == "requires_action" and run.required_action is not None:
        calls = run.required_action.submit_tool_outputs.tool_calls
        texts = await asyncio.gather(
            *(answer(call.function.name, call.function.arguments) for call in calls)
        )
        await runs.submit_tool_outputs(
            run_id=run.id, thread_id=thread_id,
            tool_outputs=[{"tool_call_id": c.id, "output": t}
                          for c, t in zip(calls, texts, strict=True)],
        )
        run = await runs.poll(run_id=run.id, thread_id=thread_id)


if __name__ == "__main__":
    sys.exit(main())
