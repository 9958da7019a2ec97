"""System child: tool-worker, exactly as ``tool-worker run --config FILE --once`` runs it.

The body mirrors ``worker.cli._run`` (load the config, import the handler modules, configure
logging, build the Worker, ``run(until_idle=True)``) with the harness's ready/go handshake
between set-up and work. ``--profile FILE`` samples the work phase with pyinstrument.
"""

from __future__ import annotations

import argparse
import functools
import sys
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import anyio

from tests.benchmarks.protocol import wait_for_go
from worker.config.loading import load_config
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.observability.logs import configure_logging

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.tool_worker_main")
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--profile", type=Path, default=None,
                        help="write a pyinstrument profile of the work phase here "
                             "(text; .html and .pyisession beside it)")
    args = parser.parse_args(argv)
    settings = load_config(args.config)
    registry = Registry.from_modules(settings.tools.modules)
    fmt = settings.logging.format
    configure_logging(json=None if fmt == "auto" else fmt == "json", level=settings.logging.level)
    worker = Worker(settings, registry)
    wait_for_go()
    with _profiled(args.profile):
        anyio.run(functools.partial(worker.run, until_idle=True))
    return 0


def _profiled(path: Path | None) -> AbstractContextManager[object]:
    if path is None:
        return nullcontext()
    return _Profiling(path)


class _Profiling(AbstractContextManager[object]):
    """pyinstrument over the whole event loop (every task), not one coroutine."""

    def __init__(self, path: Path) -> None:
        from pyinstrument import Profiler  # a dev tool: only needed with --profile

        self._path = path
        self._profiler = Profiler(interval=0.0005, async_mode="disabled")

    def __enter__(self) -> object:
        self._profiler.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._profiler.stop()
        self._path.write_text(
            self._profiler.output_text(unicode=True, color=False, show_all=False),
            encoding="utf-8",
        )
        self._path.with_suffix(".html").write_text(self._profiler.output_html(), encoding="utf-8")
        if self._profiler.last_session is not None:  # re-render: pyinstrument --load FILE
            self._profiler.last_session.save(str(self._path.with_suffix(".pyisession")))


if __name__ == "__main__":
    sys.exit(main())
