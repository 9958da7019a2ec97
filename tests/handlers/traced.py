"""A handler with its own OpenTelemetry span, as an instrumented HTTP or database client makes."""

from __future__ import annotations

from opentelemetry import trace

from worker import ToolContext, tool

__all__ = ["lookup_order"]


@tool
async def lookup_order(ctx: ToolContext, order_id: str) -> dict[str, str]:
    """Look an order up, in a span of the handler's own (like a database query would)."""
    ctx.log.info("looking the order up", order_id=order_id)
    with trace.get_tracer("tests.handlers.traced").start_as_current_span("SELECT orders") as span:
        span.set_attribute("db.system", "sqlite")
        return {"order_id": order_id, "status": "shipped"}
