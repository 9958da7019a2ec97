"""Handlers that take @resource values, and the resources, which record when they open and close."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import anyio

from worker import ToolContext, resource, tool

__all__ = ["EVENTS", "Ledger", "Pool", "balance", "ledger", "pool", "pool_name", "whoami",
           "whoami_sync"]

# What the resources did, in order, across every worker of the test.
EVENTS: list[str] = []


class Pool:
    """Stands for a database pool."""

    def __init__(self, name: str) -> None:
        self.name = name


class Ledger:
    """Stands for something built on the pool: a resource that takes a resource."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool


@resource
async def pool() -> AsyncIterator[Pool]:
    """The async generator form."""
    EVENTS.append("pool opened")
    try:
        yield Pool("real")
    finally:
        EVENTS.append("pool closed")


@asynccontextmanager
async def _ledger(of: Pool) -> AsyncIterator[Ledger]:
    EVENTS.append(f"ledger opened on {of.name}")
    try:
        yield Ledger(of)
    finally:
        EVENTS.append("ledger closed")


@resource
def ledger(pool: Pool) -> AbstractAsyncContextManager[Ledger]:
    """The context manager form, taking the pool."""
    return _ledger(pool)


@tool
async def balance(ledger: Ledger, account: str) -> str:
    """The account's balance, from the ledger."""
    return f"{account} on {ledger.pool.name}"


@tool
def pool_name(ctx: ToolContext, pool: Pool) -> str:
    """A sync handler takes a resource too."""
    return f"{pool.name} for {ctx.tool_call_id[:5]}"


@tool
async def whoami(ctx: ToolContext) -> dict[str, str | None]:
    """Who the run acts for: the run's and the thread's metadata."""
    thread = await ctx.thread_metadata()
    return {"user": ctx.metadata.get("user_id"), "tenant": thread.get("tenant_id"),
            "assistant": ctx.assistant_id[:5]}


@tool
def whoami_sync(ctx: ToolContext) -> str:
    """A sync handler reads the thread's metadata through anyio.from_thread."""
    thread = anyio.from_thread.run(ctx.thread_metadata)
    return f"{ctx.metadata.get('user_id')}@{thread.get('tenant_id')}"
