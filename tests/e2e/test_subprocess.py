"""The installed command, as a user runs it: `tool-worker run --config FILE` in its own process."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.e2e.conftest import SIM_KEY, assert_each_round_submitted_once, calls, start_runs
from tests.e2e.process import Daemon
from tests.e2e.process import write_config as write_daemon_config

if TYPE_CHECKING:
    from worker.simulator import Simulator

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def write_config(tmp_path: Path, sim: Simulator, threads: list[str], **server: object) -> Path:
    server_toml = "\n".join(f"{k} = {json.dumps(v)}" for k, v in server.items())
    path = tmp_path / "worker.toml"
    path.write_text(f"""
[api]
base_url = "{sim.base_url}"
[watch]
threads = {json.dumps(threads)}
active_poll_interval_s = 0.05
idle_poll_interval_s = 0.2
[tools]
modules = ["tests.handlers.sample", "tool_worker_tools.builtin"]
[server]
{server_toml or "enabled = false"}
[logging]
format = "json"
""")
    return path


def environment(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TOOL_WORKER__")}
    env.update({"OPENAI_API_KEY": SIM_KEY, "PYTHONPATH": str(ROOT), **extra})
    return env


async def test_the_daemon_process_answers_every_round(sim: Simulator, tmp_path: Path) -> None:
    """`python -m worker run --once` answers three runs of two rounds and exits 0."""
    script = [calls(("add", {"a": 1}), ("calculate", {"expression": "6 * 7"})),
              calls(("nap", {"seconds": 0.05}), ("echo", {"text": "hi"}))]
    threads, runs = start_runs(sim, [script] * 3)
    config = write_config(tmp_path, sim, threads)
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [sys.executable, "-m", "worker", "run", "--config", str(config), "--once"],
            env=environment(), cwd=ROOT, check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    assert_each_round_submitted_once(sim, runs, [2, 2, 2])
    outputs = dict(sim.accepted_submissions(runs[0])[0].tool_outputs)
    assert sorted(outputs.values()) == ["2", "42"]
    lines = [json.loads(line) for line in result.stderr.decode().splitlines() if line.strip()]
    submitted = [line for line in lines if line["event"] == "round submitted"]
    assert len(submitted) == 6
    assert all(line["thread_id"] in threads and line["run_id"] in runs for line in submitted)
    assert SIM_KEY not in result.stderr.decode()


async def test_sigterm_stops_the_daemon_cleanly(sim: Simulator, tmp_path: Path) -> None:
    """SIGTERM ends a running daemon with exit code 0 and a closing log line."""
    threads, _ = start_runs(sim, [[calls(("add", {"a": 1}))]])
    config = write_config(tmp_path, sim, threads, host="127.0.0.1", port=0)
    async with await anyio.open_process(
        [sys.executable, "-m", "worker", "run", "--config", str(config)],
        env=environment(), cwd=ROOT,
    ) as process:
        assert process.stderr is not None
        seen = b""
        with anyio.fail_after(30):
            async for chunk in process.stderr:
                seen += chunk
                if b'"worker started"' in seen:
                    break
            process.send_signal(signal.SIGTERM)
            async for chunk in process.stderr:
                seen += chunk
            code = await process.wait()
    assert code == 0, seen.decode()
    assert b'"worker stopped"' in seen


async def test_a_refused_key_stops_the_daemon_with_a_clear_message(
    sim: Simulator, tmp_path: Path
) -> None:
    """A wrong key exits non-zero at start with one line that names the problem, not the key."""
    threads, _ = start_runs(sim, [[calls(("add", {"a": 1}))]])
    config = write_config(tmp_path, sim, threads)
    with anyio.fail_after(60):
        result = await anyio.run_process(
            [sys.executable, "-m", "worker", "run", "--config", str(config)],
            env=environment(OPENAI_API_KEY="sk-wrong-key-123456"), cwd=ROOT, check=False,
        )
    stderr = result.stderr.decode()
    assert result.returncode == 3, stderr
    assert "the API refused the key" in stderr
    assert "Traceback" not in stderr
    assert "sk-wrong-key-123456" not in stderr


async def test_a_key_refused_by_azure_points_at_entra_id(tmp_path: Path) -> None:
    """backend azure with azure_auth = "api_key" and a refused key: exit 3, the hint names Entra ID."""
    from worker.simulator import Simulator

    async with Simulator(api_key=SIM_KEY, profile="azure") as azure:
        config = tmp_path / "azure.toml"
        config.write_text(f'[api]\nbackend = "azure"\nazure_auth = "api_key"\n'
                          f'base_url = "{azure.base_url}"\n[server]\nenabled = false\n')
        with anyio.fail_after(60):
            result = await anyio.run_process(
                [sys.executable, "-m", "worker", "run", "--config", str(config)],
                env=environment(AZURE_AI_API_KEY="0123456789abcdef0123456789abcdef"),
                cwd=ROOT, check=False,
            )
    stderr = result.stderr.decode()
    assert result.returncode == 3, stderr
    assert "the API refused the key" in stderr
    assert "usually wants Microsoft Entra ID" in stderr
    assert "0123456789abcdef0123456789abcdef" not in stderr
    assert len(stderr.strip().splitlines()) == 1


async def test_a_bad_config_exits_2_naming_the_key(tmp_path: Path) -> None:
    """A bad config value exits 2 with the file and key in one line."""
    config = tmp_path / "bad.toml"
    config.write_text("[watch]\nactive_poll_interval_s = 'fast'\n")
    result = await anyio.run_process(
        [sys.executable, "-m", "worker", "check-config", "--config", str(config)],
        env=environment(), cwd=ROOT, check=False,
    )
    stderr = result.stderr.decode()
    assert result.returncode == 2
    assert f"{config}: watch.active_poll_interval_s" in stderr
    assert "Traceback" not in stderr


@pytest.mark.parametrize(("profile", "path", "headers"), [
    ("openai", "/v1/assistants", {"Authorization": "Bearer sk-sim", "OpenAI-Beta": "assistants=v2"}),
    ("azure", "/api/projects/p1/assistants?api-version=v1", {"api-key": "sk-sim"}),
])
async def test_simulate_serves_each_profile(profile: str, path: str, headers: dict[str, str]) -> None:
    """`tool-worker simulate --profile ...` serves the API the way that backend does."""
    import aiohttp

    from tests.redis_server import free_port

    port = free_port()
    command = [sys.executable, "-m", "worker", "simulate", "--port", str(port),
               "--profile", profile, "--project", "p1"]
    async with await anyio.open_process(command, env=environment(OPENAI_API_KEY="sk-sim"),
                                        cwd=ROOT) as process:
        assert process.stderr is not None
        with anyio.fail_after(20):
            seen = b""
            async for chunk in process.stderr:
                seen += chunk
                if b"Assistants runs: script a run" in seen:
                    break
            async with aiohttp.ClientSession() as session, session.get(
                f"http://127.0.0.1:{port}{path}", headers=headers
            ) as response:
                status, body = response.status, await response.json()
        process.terminate()
    assert (status, body["object"]) == (200, "list")
    assert b"listening on" in seen
    assert b'"sim_rounds"' in seen  # the start line says how to script the model's rounds


async def test_sigterm_while_the_worker_starts_ends_it_cleanly(
    sim: Simulator, tmp_path: Path
) -> None:
    """A pod stopped while its resources load exits 0 with a word, not killed by the signal."""
    config = write_daemon_config(tmp_path / "slow.toml", sim, [sim.create_thread()],
                                 tools={"modules": ["tests.handlers.slow_start"]})
    daemon = await Daemon.start(config)
    try:
        await daemon.wait_for_event("model loading", timeout_s=30)
        daemon.signal(signal.SIGTERM)
        assert await daemon.wait(timeout_s=30) == 0
    finally:
        await daemon.aclose()
    assert daemon.events("worker stopped")
    assert not daemon.events("worker started")
