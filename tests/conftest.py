"""Shared fixtures: asyncio backend, a clean environment, no blocking calls on the loop."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Self

import pytest
import structlog

# Imported here, not inside tests: a first import reads files, which blockbuster would flag.
from worker.config.secret import Secret
from worker.config.settings import Settings

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterator
    from pathlib import Path

collect_ignore = ["typing"]

# The fixtures handler authors get (tool_worker), and pytester to test the plugin itself.
pytest_plugins = ["worker.pytest_plugin", "pytester"]


@pytest.fixture
def anyio_backend() -> str:
    # aiohttp runs only on asyncio.
    return "asyncio"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No key or override from the developer's shell leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("TOOL_WORKER__") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name)


@pytest.fixture(autouse=True)
def _private_state_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The watch store's default file goes to the test's own directory, never the checkout's."""
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))


@pytest.fixture(autouse=True)
def _forget_secrets() -> Iterator[None]:
    """Every Secret is redacted process-wide: one test's secrets must not redact the next's."""
    yield
    from worker.config.secret import forget_known_secrets
    from worker.observability.redaction import remember_secrets

    forget_known_secrets()
    remember_secrets(())


@pytest.fixture(autouse=True)
def _uncached_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that runs the CLI in process configures real logging; cached there, a module's
    logger would keep writing to that test's captured (then closed) stream in later tests."""
    configure = structlog.configure

    def uncached(**options: Any) -> None:
        configure(**{**options, "cache_logger_on_first_use": False})

    monkeypatch.setattr(structlog, "configure", uncached)


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    """Tests see log events through capture_logs; nothing is written to the terminal."""
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.testing.LogCapture()],
        wrapper_class=structlog.make_filtering_bound_logger(0),
        cache_logger_on_first_use=False,
    )
    yield
    structlog.reset_defaults()


@pytest.fixture(autouse=True)
def _no_blocking_calls(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test whose code blocks the event loop (a sync handler run inline, time.sleep)."""
    if "no_blockbuster" in request.keywords:
        yield
        return
    from blockbuster import blockbuster_ctx

    with blockbuster_ctx(["worker", "tools"]) as bb:
        # Importing handler modules at start reads files on purpose, before the loop serves.
        for name in ("os.stat", "io.BufferedReader.read", "os.path.isfile"):
            if name in bb.functions:
                bb.functions[name].deactivate()
        yield


def make_settings(**sections: Any) -> Settings:
    """Settings from plain dicts, as a TOML file would give them, with a test key."""
    return Settings.model_validate(sections).model_copy(update={"api_key": Secret("sk-test")})


class ServedApp:
    """A tiny aiohttp.web app on loopback: the aiohttp version of httpx's MockTransport."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.url = ""
        self._runner: Any = None

    async def __aenter__(self) -> Self:
        from aiohttp import web

        self._runner = web.AppRunner(self.app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._runner.cleanup()


async def wait_for(
    predicate: Callable[[], object | Awaitable[object]],
    *,
    timeout_s: float = 10.0,
    what: str = "condition",
) -> None:
    """Wait until ``predicate()`` (sync or async) is true, checking every 10 ms.

    The one polling helper of the suite, for state with no event to wait on: a server's, the
    simulator's, Redis's, another process's.

    Raises:
        AssertionError: ``predicate()`` was still false after ``timeout_s``.
    """
    import inspect

    import anyio

    with anyio.move_on_after(timeout_s):
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await anyio.sleep(0.01)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def first_submit_fault(rule: Any, kind: str) -> Any:
    """A seeded FaultPlan whose first submit suffers ``kind`` (under ``rule``) and the next none."""
    from worker.simulator import FaultPlan
    from worker.simulator.faults import FaultInjector

    for seed in range(200):
        plan = FaultPlan(rules={"submit_tool_outputs": rule}, seed=seed)
        injector = FaultInjector(plan)
        if [injector.decide("submit_tool_outputs").kind for _ in range(2)] == [kind, None]:
            return plan
    raise AssertionError(f"no seed gives {kind} then no fault")
