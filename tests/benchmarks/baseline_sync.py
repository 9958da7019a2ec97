"""System child: baseline (a), the loop the openai SDK documentation teaches.

One run at a time, with the sync ``OpenAI`` client: ``runs.poll`` until the run needs
something, each tool call run after the previous one, then ``submit_tool_outputs_and_poll``,
until the run is terminal; then the next thread. Runs are found with ``runs.list(limit=1)``.
``--budget-s`` stops taking new runs after that long (the rest stay unanswered), so the
benchmark's wall time stays bounded: its throughput is steady, its makespan is extrapolated.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from openai import OpenAI

from tests.benchmarks.direct_call import answer
from tests.benchmarks.protocol import wait_for_go

if TYPE_CHECKING:
    from openai.types.beta.threads.run_submit_tool_outputs_params import ToolOutput

__all__ = ["main"]

# The SDK marks the whole Assistants API deprecated; the warning is not the benchmark's business.
warnings.filterwarnings("ignore", category=DeprecationWarning)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.baseline_sync")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--threads-file", type=Path, required=True)
    parser.add_argument("--budget-s", type=float, default=float("inf"))
    args = parser.parse_args(argv)
    threads: list[str] = json.loads(args.threads_file.read_text(encoding="utf-8"))
    client = OpenAI(api_key=os.environ["OPENAI_API_KEY"], base_url=args.base_url)
    # The handlers are coroutines: one loop runs them, one call after the other.
    with client, asyncio.Runner() as loop:
        wait_for_go()
        stop_at = time.monotonic() + args.budget_s
        for thread_id in threads:
            if time.monotonic() >= stop_at:
                break
            _answer_thread(client, loop, thread_id)
    return 0


def _answer_thread(client: OpenAI, loop: asyncio.Runner, thread_id: str) -> None:
    runs = client.beta.threads.runs
    page = runs.list(thread_id=thread_id, limit=1)
    if not page.data:
        return
    run = runs.poll(run_id=page.data[0].id, thread_id=thread_id)
    while run.status == "requires_action" and run.required_action is not None:
        outputs: list[ToolOutput] = [
            {"tool_call_id": call.id,
             "output": loop.run(answer(call.function.name, call.function.arguments))}
            for call in run.required_action.submit_tool_outputs.tool_calls
        ]
        run = runs.submit_tool_outputs_and_poll(
            tool_outputs=outputs, run_id=run.id, thread_id=thread_id
        )


if __name__ == "__main__":
    sys.exit(main())
