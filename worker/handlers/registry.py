"""@tool turns a function into a Tool spec; Registry finds them in modules and entry points."""

from __future__ import annotations

import importlib.metadata
import inspect
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

from worker.errors import ConfigError, ToolNotFound
from worker.handlers.definition import DefinitionError
from worker.handlers.docstrings import parse_docstring
from worker.handlers.modules import import_handler_module
from worker.handlers.resources import resource_closure
from worker.handlers.schema import Signature, read_signature

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import ModuleType

    from worker.handlers.resources import Resource

__all__ = ["ENTRY_POINT_GROUP", "Registry", "Tool", "tool", "tool_spec"]

P = ParamSpec("P")
R = TypeVar("R")

ENTRY_POINT_GROUP = "tool_worker.tools"
MIN_OUTPUT_CHARS = 256  # the same floor as [tools] max_output_chars: room for the cut marker

_ATTRIBUTE = "__tool_worker_tool__"
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")  # what the API accepts as a function name


@dataclass(frozen=True, slots=True)
class Tool:
    """One registered handler, normalized once by ``@tool``."""

    name: str
    description: str
    fn: Callable[..., Any]
    is_async: bool
    signature: Signature
    timeout_s: float | None
    max_concurrency: int | None
    origin: str  # "module:qualname", to name both places of a duplicate
    max_output_chars: int | None = None
    expose_errors: bool = True
    process: bool = False

    def to_openai(self) -> dict[str, Any]:
        """The tool as the Assistants API's ``tools`` array takes it."""
        function: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "parameters": self.signature.parameters,
        }
        if self.signature.strict:
            function["strict"] = True
        return {"type": "function", "function": function}


@overload
def tool(fn: Callable[P, R], /) -> Callable[P, R]: ...


@overload
def tool(
    *,
    name: str | None = None,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    max_output_chars: int | None = None,
    expose_errors: bool = True,
    process: bool = False,
) -> Callable[[Callable[P, R]], Callable[P, R]]: ...


def tool(
    fn: Callable[P, R] | None = None,
    /,
    *,
    name: str | None = None,
    timeout: float | None = None,
    max_concurrency: int | None = None,
    max_output_chars: int | None = None,
    expose_errors: bool = True,
    process: bool = False,
) -> Callable[P, R] | Callable[[Callable[P, R]], Callable[P, R]]:
    """Register a function as a tool handler; it stays callable as it was.

    Args:
        name: the tool's name as the model calls it; the function's name by default.
        timeout: seconds a call may take; ``[tools] default_timeout_s`` otherwise.
        max_concurrency: how many calls of this tool may run at once.
        max_output_chars: longer outputs are cut; ``[tools] max_output_chars`` otherwise.
        expose_errors: whether the model sees an unexpected exception's type and message
            (``ToolError`` text is always sent); when False it reads only that the tool failed.
        process: run a CPU-bound sync handler in a process pool, where a timeout can stop it.
            The function must be defined at module level and cannot take a ``ToolContext``.

    Raises:
        DefinitionError (a TypeError): the function cannot be a tool (its parameters, or
            ``process`` with it).
        ValueError: an option is out of range.
    """

    options = _Options(name, timeout, max_concurrency, max_output_chars, expose_errors, process)

    def register(func: Callable[P, R]) -> Callable[P, R]:
        setattr(func, _ATTRIBUTE, _spec(func, options))
        return func

    return register if fn is None else register(fn)


@dataclass(frozen=True, slots=True)
class _Options:
    """What ``@tool(...)`` was given."""

    name: str | None
    timeout: float | None
    max_concurrency: int | None
    max_output_chars: int | None
    expose_errors: bool
    process: bool


def _spec(func: Callable[..., Any], options: _Options) -> Tool:
    """The Tool a decorated function becomes, every option checked."""
    tool_name = options.name or func.__name__
    _check_options(tool_name, options.timeout, options.max_concurrency, options.max_output_chars)
    signature = read_signature(func, tool_name)
    is_async = inspect.iscoroutinefunction(func)
    if options.process:
        _check_process(tool_name, func, signature, is_async)
    return Tool(
        name=tool_name,
        description=parse_docstring(func.__doc__).summary,
        fn=func,
        is_async=is_async,
        signature=signature,
        timeout_s=options.timeout,
        max_concurrency=options.max_concurrency,
        origin=f"{func.__module__}:{func.__qualname__}",
        max_output_chars=options.max_output_chars,
        expose_errors=options.expose_errors,
        process=options.process,
    )


def _check_options(
    name: str, timeout: float | None, max_concurrency: int | None, max_output_chars: int | None
) -> None:
    if not _NAME.match(name):
        raise ValueError(f"tool {name!r}: a name must be 1 to 64 letters, digits, '_' or '-'")
    if timeout is not None and timeout <= 0:
        raise ValueError(f"tool {name!r}: timeout must be positive, got {timeout}")
    if max_concurrency is not None and max_concurrency < 1:
        raise ValueError(f"tool {name!r}: max_concurrency must be at least 1")
    if max_output_chars is not None and max_output_chars < MIN_OUTPUT_CHARS:
        raise ValueError(f"tool {name!r}: max_output_chars must be at least {MIN_OUTPUT_CHARS}")


def _check_process(name: str, func: Callable[..., Any], signature: Signature, is_async: bool) -> None:
    if is_async:
        raise DefinitionError(f"tool {name!r}: process=True runs sync functions; an async "
                              "handler already runs on the event loop, so drop process=True")
    if signature.resources:
        raise DefinitionError(
            f"tool {name!r}: process=True cannot pass resources to another process; remove "
            f"the parameter {signature.resources[0][0]!r} or drop process=True to run in a thread"
        )
    if signature.context_param is not None:
        raise DefinitionError(
            f"tool {name!r}: process=True cannot pass a ToolContext to another process; remove "
            f"the parameter {signature.context_param!r} or drop process=True to run in a thread"
        )
    if "<locals>" in func.__qualname__:
        raise DefinitionError(f"tool {name!r}: process=True needs a function defined at module "
                              "level, so that the worker process can import it")


def tool_spec(fn: Callable[..., Any]) -> Tool | None:
    """The Tool behind a decorated function, or None."""
    spec = getattr(fn, _ATTRIBUTE, None)
    return spec if isinstance(spec, Tool) else None


class Registry:
    """The tools a worker answers, by name."""

    def __init__(self, tools: Iterable[Tool] = ()) -> None:
        self._tools: dict[str, Tool] = {}
        self._found_in: dict[str, str] = {}
        for spec in tools:
            self.add(spec)

    @classmethod
    def from_modules(cls, modules: Iterable[str]) -> Registry:
        """Import each module and register every ``@tool`` in it.

        Raises:
            ConfigError: a module cannot be imported, or two handlers share a name.
        """
        registry = cls()
        for module_name in modules:
            registry.add_module(import_handler_module(module_name, "", "tools.modules"))
        return registry

    @classmethod
    def discover(cls, modules: Iterable[str]) -> Registry:
        """The tools of the configured modules and of every ``tool_worker.tools`` entry point.

        Each entry point names a module (``mypkg = "mypkg.tools"``).

        Raises:
            ConfigError: a module cannot be imported, or two handlers share a name.
        """
        registry = cls.from_modules(modules)
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            where = _describe(entry_point)
            if entry_point.attr:
                raise ConfigError(f"{where} must name a module, like 'mypkg.tools', not "
                                  f"{entry_point.value!r}")
            module = import_handler_module(entry_point.module, f" named by {where}", None)
            registry.add_module(module, found_in=where)
        return registry

    def add_module(self, module: ModuleType, *, found_in: str = "") -> None:
        """Register every ``@tool`` of an imported module; ``found_in`` names how it was found."""
        for value in vars(module).values():
            spec = tool_spec(value) if callable(value) else None
            if spec is not None:
                self.add(spec, found_in=found_in)

    def add(self, spec: Tool, *, found_in: str = "") -> None:
        """Register one tool.

        Raises:
            ConfigError: another handler has the same name.
        """
        existing = self._tools.get(spec.name)
        if existing is not None and existing.fn is not spec.fn:
            first = self._place(existing, self._found_in[spec.name])
            raise ConfigError(
                f"two handlers are named {spec.name!r}: {first} and {self._place(spec, found_in)}; "
                "rename one with @tool(name=...)",
                key=None if found_in or self._found_in[spec.name] else "tools.modules",
            )
        self._tools[spec.name] = spec
        self._found_in.setdefault(spec.name, found_in)

    @staticmethod
    def _place(spec: Tool, found_in: str) -> str:
        return f"{spec.origin} (from {found_in})" if found_in else spec.origin

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise ToolNotFound(name, self._tools) from None

    def resource_types(self) -> set[type[Any]]:
        """The types of the resources the registered tools take."""
        return {kind for spec in self._tools.values() for _, kind in spec.signature.resources}

    def resources(self) -> list[Resource]:
        """The resources the registered tools take (and those they take), in start order."""
        return resource_closure(self.resource_types())

    def __iter__(self) -> Iterator[Tool]:
        return iter(sorted(self._tools.values(), key=lambda spec: spec.name))

    def __len__(self) -> int:
        return len(self._tools)


def _describe(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist
    owner = f" of distribution {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {entry_point.name!r} in group {ENTRY_POINT_GROUP!r}{owner}"
