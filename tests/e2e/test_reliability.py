"""Shutdown, crashes and stuck handlers: the daemon process loses no round."""

from __future__ import annotations

import signal
from typing import TYPE_CHECKING

import pytest

from tests.e2e.conftest import assert_each_round_submitted_once, calls, start_runs
from tests.e2e.process import Daemon, write_config
from tests.redis_server import free_port
from worker.cli import EXIT_ABANDONED

if TYPE_CHECKING:
    from pathlib import Path

    from worker.simulator import Simulator

pytestmark = pytest.mark.e2e

DEBUG = {"TOOL_WORKER__LOGGING__LEVEL": "debug"}


async def test_sigterm_finishes_the_rounds_in_flight(sim: Simulator, tmp_path: Path) -> None:
    """SIGTERM during a round: the round is still submitted, then the daemon exits 0."""
    threads, runs = start_runs(sim, [[calls(("nap", {"seconds": 1.0}), ("add", {"a": 1}))]])
    daemon = await Daemon.start(write_config(tmp_path / "w.toml", sim, threads), **DEBUG)
    try:
        await daemon.wait_for_event("tool call answered")  # add is done; nap is still running
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0
    finally:
        await daemon.aclose()
    assert len(sim.accepted_submissions(runs[0])) == 1
    assert daemon.events("draining: finishing rounds in flight")[0]["rounds"] == 1
    assert daemon.events("worker stopped")


async def test_a_second_sigterm_stops_at_once_naming_what_was_left(
    sim: Simulator, tmp_path: Path
) -> None:
    """A second SIGTERM does not wait for the drain; the log names the run; the exit is 75."""
    threads, runs = start_runs(sim, [[calls(("nap", {"seconds": 60}), ("add", {"a": 1}))]])
    config = write_config(tmp_path / "w.toml", sim, threads, shutdown={"drain_timeout_s": 120})
    daemon = await Daemon.start(config, **DEBUG)
    try:
        await daemon.wait_for_event("tool call answered")
        daemon.signal(signal.SIGTERM)
        await daemon.wait_for_event("draining: finishing rounds in flight")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(timeout_s=15) == EXIT_ABANDONED
    finally:
        await daemon.aclose()
    (left,) = daemon.events("stopped before these rounds were submitted; a restarted worker takes them")
    assert left["runs"] == runs
    (exiting,) = daemon.events("exiting with status 75: the shutdown left rounds unsubmitted")
    assert exiting["runs"] == runs
    assert sim.accepted_submissions() == []


async def test_the_drain_timeout_ends_a_stuck_shutdown(sim: Simulator, tmp_path: Path) -> None:
    """A drain that outlasts drain_timeout_s ends on its own (exit 75), even with a blocked handler."""
    threads, runs = start_runs(sim, [[calls(("blocking_sleep", {"seconds": 8}), ("add", {"a": 1}))]])
    config = write_config(tmp_path / "w.toml", sim, threads, shutdown={"drain_timeout_s": 0.5})
    daemon = await Daemon.start(config, **DEBUG)
    try:
        await daemon.wait_for_event("tool call answered")
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(timeout_s=6) == EXIT_ABANDONED
    finally:
        await daemon.aclose()
    assert daemon.events("stopped before these rounds were submitted; a restarted worker takes them")
    # The stuck handler's thread is reported, and does not hold the exit.
    (stuck,) = daemon.events("exiting without waiting for handler threads still running")
    assert stuck["threads"] == 1
    assert sim.accepted_submissions(runs[0]) == []


async def test_sighup_drains_like_sigterm(sim: Simulator, tmp_path: Path) -> None:
    """SIGHUP (a closed terminal, a supervisor's reload) finishes the round in flight; exit 0."""
    threads, runs = start_runs(sim, [[calls(("nap", {"seconds": 1.0}), ("add", {"a": 1}))]])
    daemon = await Daemon.start(write_config(tmp_path / "w.toml", sim, threads), **DEBUG)
    try:
        await daemon.wait_for_event("tool call answered")
        daemon.signal(signal.SIGHUP)
        assert await daemon.wait() == 0
    finally:
        await daemon.aclose()
    assert len(sim.accepted_submissions(runs[0])) == 1
    assert daemon.events("draining: finishing rounds in flight")[0]["signal"] == "SIGHUP"
    assert not daemon.events("exiting with status 75: the shutdown left rounds unsubmitted")


async def test_reading_metrics_leaves_no_false_warning_about_handler_threads(
    sim: Simulator, tmp_path: Path
) -> None:
    """/metrics renders in a pool thread; after a scrape, shutdown does not call it a handler."""
    import aiohttp

    threads, _ = start_runs(sim, [[calls(("add", {"a": 1}))]])
    port = free_port()
    config = write_config(tmp_path / "w.toml", sim, threads,
                          server={"enabled": True, "host": "127.0.0.1", "port": port})
    daemon = await Daemon.start(config, **DEBUG)
    try:
        await daemon.wait_for_event("worker started")
        async with aiohttp.ClientSession() as session:
            for _ in range(3):
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    assert response.status == 200
                    await response.read()
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait() == 0
    finally:
        await daemon.aclose()
    assert daemon.events("worker stopped")
    assert not daemon.events("exiting without waiting for handler threads still running")


async def test_a_killed_worker_is_replaced_without_losing_the_round(
    sim: Simulator, tmp_path: Path
) -> None:
    """kill -9 in the middle of a round; a restarted worker finds the run and completes it."""
    script = [calls(("nap", {"seconds": 30}), ("add", {"a": 1})), calls(("add", {"a": 2}))]
    threads, runs = start_runs(sim, [script])
    config = write_config(tmp_path / "w.toml", sim, threads, tools={"default_timeout_s": 1.0})
    first = await Daemon.start(config, **DEBUG)
    try:
        await first.wait_for_event("tool call answered")
        first.signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    finally:
        await first.aclose()
    assert sim.accepted_submissions() == []
    second = await Daemon.start(config, "--once")
    try:
        assert await second.wait() == 0
    finally:
        await second.aclose()
    assert_each_round_submitted_once(sim, runs, [2])
    assert "timed out" in sim.accepted_submissions(runs[0])[0].tool_outputs[0][1]
