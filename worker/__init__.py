"""tool-worker: run the function tool calls of Assistants API runs and submit them in one batch."""

__version__ = "0.1.0"

from worker.errors import (
    ApiConnectionError,
    ApiError,
    ApiStatusError,
    ApiTimeout,
    AuthError,
    ConfigError,
    CoordinationError,
    NotFound,
    RateLimited,
    ResourceError,
    RunNotActionable,
    ToolArgumentsError,
    ToolError,
    ToolNotFound,
    WorkerError,
)
from worker.handlers.context import ToolContext
from worker.handlers.registry import tool
from worker.handlers.resources import resource

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "ApiStatusError",
    "ApiTimeout",
    "AuthError",
    "ConfigError",
    "CoordinationError",
    "NotFound",
    "RateLimited",
    "ResourceError",
    "RunNotActionable",
    "ToolArgumentsError",
    "ToolContext",
    "ToolError",
    "ToolNotFound",
    "WorkerError",
    "__version__",
    "resource",
    "tool",
]
