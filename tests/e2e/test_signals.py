"""Signals that tell the truth (#24): a wrong base_url, nothing watched, said at once."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.e2e.conftest import (
    SIM_KEY,
    assert_each_round_submitted_once,
    calls,
    make_worker,
    start_runs,
)
from worker.cli import main
from worker.simulator import Simulator
from worker.testing import capture_logs

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.e2e

NOT_FOUND = "is base_url right"


def config(tmp_path: Path, base_url: str, threads: list[str]) -> str:
    path = tmp_path / "w.toml"
    path.write_text(f'[api]\nbase_url = "{base_url}"\n[watch]\nthreads = {threads!r}\n'
                    '[tools]\nmodules = ["tests.handlers.sample"]\n'.replace("'", '"'))
    return str(path)


async def check_config(path: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    # main runs its own event loop: in a thread, next to the simulator's.
    code = await anyio.to_thread.run_sync(functools.partial(main, ["check-config", "-c", path]))
    return code, capsys.readouterr().out


async def test_check_config_says_when_no_watched_thread_is_found(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Threads the API answers 404 for, all of them: check-config asks whether base_url is
    right; with one that exists it says the API answers."""
    monkeypatch.setenv("OPENAI_API_KEY", SIM_KEY)
    code, out = await check_config(
        config(tmp_path, sim.base_url, ["thread_gone1", "thread_gone2"]), capsys)
    assert code == 0
    assert NOT_FOUND in out
    code, out = await check_config(
        config(tmp_path, sim.base_url, ["thread_gone1", sim.create_thread()]), capsys)
    assert "reached: the API answers\n" in out
    assert NOT_FOUND not in out


async def test_check_config_warns_when_nothing_is_watched(
    sim: Simulator, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No threads and no way in: check-config says the worker would idle."""
    monkeypatch.setenv("OPENAI_API_KEY", SIM_KEY)
    code, out = await check_config(config(tmp_path, sim.base_url, []), capsys)
    assert code == 0
    assert "0 thread(s); warning: nothing is watched" in out
    assert "reached: the API answers" in out


async def test_the_start_says_when_no_watched_thread_is_found(sim: Simulator) -> None:
    """A base_url whose server knows none of the threads: the start warns naming base_url."""
    worker = make_worker(sim.base_url, ["thread_gone1", "thread_gone2"])
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            worker.stop()
    assert any(NOT_FOUND in e["event"] for e in logs if e["log_level"] == "warning")


async def test_the_start_warns_when_nothing_is_watched(sim: Simulator) -> None:
    """An empty [watch] with no intake: one warning that the worker will idle."""
    worker = make_worker(sim.base_url, [])
    with capture_logs() as logs:
        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)
            worker.stop()
    assert [e["event"] for e in logs if e["event"].startswith("nothing is watched")]


async def test_a_round_replayed_by_the_submission_stream_is_not_counted_as_found() -> None:
    """A server whose submission stream replays the round just answered: every round is
    submitted once, each is found by a poll, and none is counted as found by the stream."""
    async with Simulator(api_key=SIM_KEY, seed=2, quirks=["stream_replays_round"]) as sim:
        threads, runs = start_runs(sim, [[calls(("add", {"a": r, "b": 1})) for r in range(3)]] * 2)
        worker = make_worker(sim.base_url, threads)
        with anyio.fail_after(20):
            await worker.run(until_idle=True)
        assert_each_round_submitted_once(sim, runs, [3, 3])
    found = functools.partial(worker.metrics.registry.get_sample_value,
                              "toolworker_rounds_found_total")
    assert found({"by": "stream"}) == 0
    assert found({"by": "poll"}) == 6


async def test_check_config_with_v1_where_the_server_serves_api_v1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The server of the issue (api_v1_path): base_url .../v1 meets 404 for every thread, and
    check-config asks whether base_url is right; .../api/v1 reads the thread."""
    monkeypatch.setenv("OPENAI_API_KEY", SIM_KEY)
    async with Simulator(api_key=SIM_KEY, quirks=["api_v1_path"]) as sim:
        thread_id = sim.create_thread()
        wrong = sim.base_url.replace("/api/v1", "/v1")
        _, out = await check_config(config(tmp_path, wrong, [thread_id]), capsys)
        assert NOT_FOUND in out
        _, out = await check_config(config(tmp_path, sim.base_url, [thread_id]), capsys)
        assert "reached: the API answers\n" in out
