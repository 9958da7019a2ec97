"""The README's handler examples, checked by ``mypy --strict`` (not collected by pytest)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Literal

import anyio

from worker import ToolContext, ToolError, resource, tool
from worker.testing import RunResult, ToolWorker, call_tool, fake_context, run_tools

__all__ = [
    "Database",
    "Orders",
    "crunch",
    "database",
    "get_weather",
    "lookup",
    "orders",
    "private_lookup",
    "refund",
    "sync_whoami",
    "tested",
    "tested_with_resources",
    "uses_them",
]


@tool
async def get_weather(city: str, unit: Literal["c", "f"] = "c") -> dict[str, object]:
    """Current weather for a city.

    Args:
        city: A city name, like 'Paris'.
        unit: Degrees Celsius or Fahrenheit.
    """
    if not city:
        raise ToolError("pass a city name like 'Paris'")
    return {"city": city, "temperature": 21, "unit": unit}


@tool(name="lookup", timeout=5.0, max_concurrency=4)
def lookup(ctx: ToolContext, key: str) -> str:
    """Look a key up; sync handlers run in a worker thread."""
    ctx.log.info("looking up", key=key)
    return key.upper()


@tool(max_output_chars=4_000, expose_errors=False)
async def private_lookup(key: str) -> str:
    """Look a key up in a store whose errors must not reach the model."""
    return key


@tool(process=True, timeout=30.0)
def crunch(n: int) -> int:
    """Sum the squares below n, in a worker process (CPU-bound, holds the GIL)."""
    return sum(i * i for i in range(n))


async def uses_them(ctx: ToolContext) -> str:
    """Decorated handlers keep their signatures for type checkers."""
    weather: dict[str, object] = await get_weather("Oslo", unit="f")
    found: str = lookup(ctx, "k")
    secret: str = await private_lookup("k")
    total: int = crunch(10)
    return f"{weather['city']} {found} {secret} {total}"


async def tested(tool_worker: ToolWorker) -> list[list[str]]:
    """The testing helpers, as the README uses them."""
    output = await call_tool(get_weather, {"city": "Oslo"}, ctx=fake_context(timeout_s=5))
    assert output.outcome == "ok"
    result: RunResult = await run_tools([get_weather], [[("get_weather", {"city": "Oslo"})]])
    again = await tool_worker.run([[("lookup", '{"key": "k"}')]])
    return result.outputs + again.outputs


class Database:
    """Stands for a connection pool (asyncpg.Pool, say)."""

    async def owner_of(self, order_id: str) -> str:
        return "u1"

    async def aclose(self) -> None:
        return None


class Orders:
    """Something built on a resource: a resource that takes one."""

    def __init__(self, db: Database) -> None:
        self.db = db


@resource
async def database() -> AsyncIterator[Database]:
    """Opened once at start, closed after the drain."""
    db = Database()
    try:
        yield db
    finally:
        await db.aclose()


@asynccontextmanager
async def _orders(db: Database) -> AsyncIterator[Orders]:
    yield Orders(db)


@resource
def orders(db: Database) -> AbstractAsyncContextManager[Orders]:
    """The context-manager form; it takes the database."""
    return _orders(db)


@tool
async def refund(ctx: ToolContext, orders: Orders, order_id: str) -> str:
    """Refund an order of the user the run acts for."""
    user = ctx.metadata.get("user_id")
    tenant = (await ctx.thread_metadata()).get("tenant_id")
    if user is None or tenant is None:
        raise ToolError("this conversation is not signed in; ask the user to sign in")
    if await orders.db.owner_of(order_id) != user:
        raise ToolError(f"order {order_id} is not one of this user's orders")
    return f"refunded {order_id} for {user} of {tenant} (asked by {ctx.assistant_id})"


@tool
def sync_whoami(ctx: ToolContext) -> str:
    """A sync handler reads the thread's metadata through anyio.from_thread."""
    thread: Mapping[str, str] = anyio.from_thread.run(ctx.thread_metadata)
    return thread.get("tenant_id", "?")


async def tested_with_resources(tool_worker: ToolWorker) -> str:
    """Resources and metadata in worker.testing, as the README uses them."""
    ctx = fake_context(metadata={"user_id": "u1"}, thread_metadata={"tenant_id": "t1"})
    output = await call_tool(refund, {"order_id": "o1"}, ctx=ctx,
                             resources={Orders: Orders(Database())})
    result = await run_tools([refund], [[("refund", {"order_id": "o1"})]],
                             resources={Database: Database()},
                             metadata={"user_id": "u1"}, thread_metadata={"tenant_id": "t1"})
    again = await tool_worker.run([[("refund", {"order_id": "o1"})]],
                                  metadata={"user_id": "u1"})
    db: Database = await anext(database())
    return output.output + result.outputs[0][0] + again.outputs[0][0] + type(db).__name__
