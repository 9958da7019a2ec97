"""System child: the Agents API baseline, an ``AsyncOpenAI`` loop over sessions' event streams.

One asyncio task per session, all at once, as the SDK's guide would have it: open the session's
live event stream (``client.beta.agents.sessions.events.stream``), read the session once (the
stream carries only what happens from then on), and on each ``agent.session.requires_action``
run the turn's function calls with ``asyncio.gather`` (each under its tool's timeout) and post
every result in one ``sessions.events.create`` with an ``Idempotency-Key`` of the turn, so the
SDK's own retries are applied once. A turn is answered once (its id is remembered). The task
ends when the session is idle after ``--turns`` turns, or failed.

Careful, as baseline (c): a stream that ends early or breaks (the SDK does not retry a stream
cut after its 200), and a request that fails past the SDK's two retries, open the stream
again after a short pause and read the session, which says what is left to answer.

It shares the pooled connections, the handlers and their error texts of the other baselines.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
    from openai.resources.beta.agents import AsyncAgents
    from openai.types.beta import AgentSession

__all__ = ["main"]

MAX_CONNECTIONS = 64
_END = frozenset({"agent.session.idle", "agent.session.failed"})
_RECONNECT_PAUSE_S = 0.1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.baseline_agents")
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--sessions-file", type=Path, required=True)
    parser.add_argument("--turns", type=int, required=True)
    args = parser.parse_args(argv)
    sessions: list[str] = json.loads(args.sessions_file.read_text(encoding="utf-8"))
    with asyncio.Runner() as loop:
        pool = httpx2.Limits(max_connections=MAX_CONNECTIONS,
                             max_keepalive_connections=MAX_CONNECTIONS)
        client = AsyncOpenAI(api_key=os.environ["OPENAI_API_KEY"], base_url=args.base_url,
                             http_client=DefaultAsyncHttpxClient(limits=pool))
        wait_for_go()
        failures = loop.run(_answer_all(client, sessions, args.turns))
    return 1 if failures else 0


async def _answer_all(client: AsyncOpenAI, sessions: list[str], turns: int) -> int:
    async with client:
        results = await asyncio.gather(
            *(_answer_session(client.beta.agents, s, turns) for s in sessions),
            return_exceptions=True,
        )
    failures = [r for r in results if isinstance(r, BaseException)]
    for failure in failures[:5]:
        sys.stderr.write(f"baseline_agents: a session failed: {failure!r}\n")
    return len(failures)


async def _answer_session(agents: AsyncAgents, session_id: str, turns: int) -> None:
    """Follow the session until its turns are answered, opening the stream again if it breaks."""
    answered: set[str] = set()
    while True:
        try:
            if await _follow(agents, session_id, turns, answered):
                return
        except (APIConnectionError, httpx2.TransportError, BadRequestError):
            pass  # past the SDK's own retries, or a refused answer: the session's state says
        except APIStatusError as exc:
            if exc.status_code < 500 and exc.status_code != 429:
                raise
        await asyncio.sleep(_RECONNECT_PAUSE_S)


async def _follow(agents: AsyncAgents, session_id: str, turns: int, answered: set[str]) -> bool:
    """One stream: True once the session is done, False when the stream ended before."""
    stream = await agents.sessions.events.stream(session_id)
    try:
        session = await agents.sessions.retrieve(session_id)  # the stream has no replay
        await _answer_turn(agents, session, answered)
        if session.status == "failed" or (session.status == "idle" and len(answered) >= turns):
            return True
        async for event in stream:
            if event.type == "agent.session.requires_action":
                await _answer_turn(agents, event.session, answered)  # type: ignore[union-attr]
            elif event.type in _END and (len(answered) >= turns or
                                         event.type == "agent.session.failed"):
                return True
        return False
    finally:
        await stream.close()


async def _answer_turn(agents: AsyncAgents, session: AgentSession, answered: set[str]) -> None:
    """Run the calls the session waits for and post all their results in one request."""
    calls = [a for a in session.required_actions if a.type == "function_call"]
    if not calls or calls[0].turn_id in answered:  # type: ignore[union-attr]
        return
    turn_id = calls[0].turn_id  # type: ignore[union-attr]
    texts = await asyncio.gather(*(
        answer(c.name, c.arguments if isinstance(c.arguments, str)  # type: ignore[union-attr]
               else json.dumps(c.arguments))  # type: ignore[union-attr]
        for c in calls))
    events: list[Any] = [
        {"type": "agent.session.input.tool_result", "call_id": c.call_id,  # type: ignore[union-attr]
         "turn_id": turn_id, "success": not text.startswith("Error"),
         **({"error": text} if text.startswith("Error") else {"output": text})}
        for c, text in zip(calls, texts, strict=True)
    ]
    await agents.sessions.events.create(session.id, events=events,
                                        idempotency_key=f"{session.id}:{turn_id}")
    answered.add(turn_id)


if __name__ == "__main__":
    sys.exit(main())
