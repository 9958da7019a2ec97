"""A tool whose resource takes for ever to start (a model loading, a database not yet up)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import structlog

from worker import resource, tool

__all__ = ["Model", "model", "predict"]


class Model:
    """Stands for a model still loading."""


@resource
async def model() -> AsyncIterator[Model]:
    """Says it is loading, then waits until it is cancelled."""
    structlog.get_logger("tests.slow_start").info("model loading")
    await anyio.sleep_forever()
    yield Model()  # an async generator all the same


@tool
def predict(model: Model, text: str) -> str:
    """Never runs: the worker is stopped while it starts."""
    return text
