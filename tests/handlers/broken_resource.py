"""A tool whose resource cannot start."""

from __future__ import annotations

from collections.abc import AsyncIterator

from worker import resource, tool

__all__ = ["Model", "model", "predict"]


class Model:
    """Stands for a model loaded in memory."""


@resource
async def model() -> AsyncIterator[Model]:
    """Fails to load."""
    raise OSError("no weights at /models/m.bin")
    yield Model()  # an async generator all the same


@tool
def predict(model: Model, text: str) -> str:
    """Never runs: the worker does not start."""
    return text
