"""Resources: things handlers share, created once at start and closed after the drain.

A resource is an async generator (or a function returning an async context manager) decorated
with ``@resource``; what it yields is handed to every handler that has a parameter annotated
with that type, the way a ``ToolContext`` is::

    @resource
    async def http() -> AsyncIterator[aiohttp.ClientSession]:
        async with aiohttp.ClientSession() as session:
            yield session

    @tool
    async def fetch(session: aiohttp.ClientSession, url: str) -> str: ...

The type is the key, so a resource is declared (its module imported) before the tools that
take it; a resource may itself take resources declared before it.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import typing
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from worker.errors import ResourceError
from worker.handlers.definition import DefinitionError

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping

__all__ = ["Resource", "declared_resource", "open_resources", "resource", "resource_closure"]

# The function is returned as it is, so it keeps its exact type for callers and mypy.
F = TypeVar("F", bound="Callable[..., AsyncIterator[Any] | AbstractAsyncContextManager[Any]]")

_declared: dict[type[Any], Resource] = {}
_order = itertools.count()


@dataclass(frozen=True, slots=True)
class Resource:
    """One declared resource: the type it provides and the factory that makes it."""

    name: str
    provides: type[Any]
    factory: Callable[..., Any]
    needs: tuple[tuple[str, type[Any]], ...]  # (parameter, resource type) of the factory
    origin: str
    order: int  # declaration order: resources are entered in it and exited in reverse

    @property
    def type_name(self) -> str:
        return f"{self.provides.__module__}.{self.provides.__qualname__}"

    def open(self, kwargs: Mapping[str, Any]) -> AbstractAsyncContextManager[Any]:
        made = self.factory(**kwargs)
        if inspect.isasyncgen(made):
            return contextlib.asynccontextmanager(lambda: made)()
        if isinstance(made, AbstractAsyncContextManager):
            return made
        raise TypeError(f"resource {self.name!r} returned {type(made).__name__}, "
                        "not an async generator or an async context manager")


def resource(fn: F, /) -> F:
    """Declare a resource; the function stays as it was.

    Its return annotation names the type it provides: ``AsyncIterator[T]``,
    ``AsyncGenerator[T, None]`` or ``AbstractAsyncContextManager[T]``.

    Raises:
        TypeError: the annotation names no type, the type already has a resource, or a
            parameter is not a resource declared before it.
    """
    provides = _provided_type(fn)
    existing = _declared.get(provides)
    origin = f"{fn.__module__}:{fn.__qualname__}"
    if existing is not None and existing.origin != origin:
        raise DefinitionError(f"two resources provide {provides.__qualname__}: "
                              f"{existing.origin} and {origin}; wrap one type in a class of its own")
    hints = typing.get_type_hints(fn)
    needs = []
    for param in inspect.signature(fn).parameters.values():
        wanted = hints.get(param.name)
        if wanted not in _declared:
            raise DefinitionError(f"resource {fn.__name__!r}: parameter {param.name!r} must be "
                                  "annotated with the type of a resource declared before it")
        needs.append((param.name, wanted))
    order = existing.order if existing is not None else next(_order)
    _declared[provides] = Resource(fn.__name__, provides, fn, tuple(needs), origin, order)
    return fn


def _provided_type(fn: Callable[..., Any]) -> type[Any]:
    returned = typing.get_type_hints(fn).get("return")
    origin = typing.get_origin(returned)
    wrappers = (AsyncIterator, AsyncGenerator, AbstractAsyncContextManager)
    args = typing.get_args(returned)
    if origin in wrappers and args and isinstance(typing.get_origin(args[0]) or args[0], type):
        provided: type[Any] = args[0]
        return provided
    raise DefinitionError(f"resource {fn.__name__!r} must be annotated as returning "
                          "AsyncIterator[T] (an async generator) or AbstractAsyncContextManager[T]")


def declared_resource(annotation: object) -> Resource | None:
    """The resource declared for a parameter's annotation, or None."""
    return _declared.get(annotation) if isinstance(annotation, type) else None


def resource_closure(
    types: Iterable[type[Any]], provided: Collection[type[Any]] = ()
) -> list[Resource]:
    """The resources of ``types`` and those they take, in declaration order.

    Types in ``provided`` are left out, and so is what only they would take.
    """
    found: dict[type[Any], Resource] = {}
    pending = [kind for kind in types if kind not in provided]
    while pending:
        spec = _declared[pending.pop()]
        if spec.provides not in found and spec.provides not in provided:
            found[spec.provides] = spec
            pending.extend(wanted for _, wanted in spec.needs)
    return sorted(found.values(), key=lambda spec: spec.order)


@contextlib.asynccontextmanager
async def open_resources(
    types: Iterable[type[Any]], overrides: Mapping[type[Any], object] | None = None
) -> AsyncIterator[dict[type[Any], object]]:
    """Enter the resources of ``types`` in order and exit them in reverse.

    An override is used as it is: its resource, and what only that resource takes, never
    start.

    Raises:
        ResourceError: a resource failed to start; those already started are closed.
    """
    values: dict[type[Any], object] = dict(overrides or {})
    async with AsyncExitStack() as stack:
        for spec in resource_closure(types, provided=values.keys()):
            kwargs = {param: values[wanted] for param, wanted in spec.needs}
            try:
                values[spec.provides] = await stack.enter_async_context(spec.open(kwargs))
            except Exception as exc:
                raise ResourceError(spec.name, exc) from exc
        yield values
