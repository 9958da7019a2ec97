"""The container image, for real: podman runs it locked down against the simulator on the host.

`make image-test` (deploy/ci/image-test) builds the image and sets TOOL_WORKER_IMAGE; without
it these tests skip. The container has its own network namespace (slirp4netns, rootless-style
user-mode networking): the host's loopback is 10.0.2.2 inside it, where the simulator listens,
and the worker's port 9464 is published on the host's loopback only, as deploy/README.md does.
Every byte stays on loopback.
"""

from __future__ import annotations

import json
import os
import pathlib
import time
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.deploy.live import LOOPBACK, free_port, get, wait_for
from tests.redis_server import RedisServer
from worker.config.settings import ServerSettings, ShutdownSettings
from worker.simulator import Simulator, ToolCallScript

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator
    from pathlib import Path

pytestmark = [pytest.mark.live, pytest.mark.no_blockbuster, pytest.mark.timeout(240)]

IMAGE = os.environ.get("TOOL_WORKER_IMAGE", "")
PODMAN = os.environ.get("PODMAN", "podman")
SIM_KEY = "sk-image-test"
CONTAINER_UID = 10001
PORT = ServerSettings().port
# slirp4netns maps this address to the host's 127.0.0.1 when allow_host_loopback is on.
HOST_LOOPBACK_FROM_CONTAINER = "10.0.2.2"
KEY_PATH = "/run/secrets/openai-api-key"
DRAIN_S = ShutdownSettings().drain_timeout_s
CONFIG_PATH = "/etc/tool-worker/worker.toml"
ROOT = pathlib.Path(__file__).resolve().parents[2]
AZURE_CONFIG = ROOT / "deploy" / "docker" / "azure.toml"

if not IMAGE:
    pytest.skip("TOOL_WORKER_IMAGE is not set: run `make image-test`", allow_module_level=True)


def calls(*pairs: tuple[str, dict[str, object]]) -> list[ToolCallScript]:
    return [ToolCallScript(name, json.dumps(arguments)) for name, arguments in pairs]


async def podman(*args: str, check: bool = True) -> str:
    result = await anyio.run_process([PODMAN, *args], check=False)
    output = (result.stdout + result.stderr).decode(errors="replace")
    if check:
        assert result.returncode == 0, f"podman {' '.join(args)}: {output}"
    return result.stdout.decode().strip()


class Container:
    """The worker image running with the flags deploy/README.md recommends."""

    def __init__(self, sim: Simulator, threads: list[str], key_file: Path,
                 **env: str) -> None:
        self.port = free_port()
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.name = f"tool-worker-image-test-{os.getpid()}-{self.port}"
        self._env = {
            "TOOL_WORKER__API__BASE_URL": sim.base_url.replace(
                LOOPBACK, HOST_LOOPBACK_FROM_CONTAINER
            ),
            "TOOL_WORKER__API__API_KEY_FILE": KEY_PATH,
            "TOOL_WORKER__WATCH__THREADS": json.dumps(threads),
            "TOOL_WORKER__WATCH__ACTIVE_POLL_INTERVAL_S": "0.1",
            "TOOL_WORKER__WATCH__IDLE_POLL_INTERVAL_S": "0.5",
            **env,
        }
        self._key_file = key_file

    async def start(self) -> None:
        env = [arg for name, value in self._env.items() for arg in ("-e", f"{name}={value}")]
        await podman(
            "run", "-d", "--name", self.name,
            "--network", "slirp4netns:allow_host_loopback=true",
            "-p", f"{LOOPBACK}:{self.port}:{PORT}",
            "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",  # noqa: S108 - its own /tmp
            "--security-opt", "no-new-privileges",
            # podman runs HEALTHCHECKs from systemd timers, which this machine lacks; the test
            # runs the image's health check itself with `podman healthcheck run`.
            "--health-interval", "disable",
            "-v", f"{self._key_file}:{KEY_PATH}:ro",
            *env, IMAGE,
        )

    async def logs(self) -> str:
        return await podman("logs", self.name, check=False)

    async def aclose(self) -> None:
        await podman("rm", "--force", "--time", "0", self.name, check=False)


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator(api_key=SIM_KEY, seed=3) as simulator:
        yield simulator


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    """The key as a secret file readable by the image's user only (like a Secret volume)."""
    path = tmp_path / "openai-api-key"
    path.write_text(SIM_KEY + "\n", encoding="utf-8")
    os.chown(path, CONTAINER_UID, CONTAINER_UID)
    path.chmod(0o400)
    return path


async def test_the_image_answers_rounds_locked_down_and_drains_on_stop(
    sim: Simulator, key_file: Path
) -> None:
    """Read-only, no capabilities, non-root: ready, answers a round, and SIGTERM drains to exit 0."""
    assistant_id = sim.create_assistant(name="image-test")
    first_thread, drain_thread = sim.create_thread(), sim.create_thread()
    first_run = sim.create_run(first_thread, assistant_id, rounds=[
        calls(("echo", {"text": "hi"}), ("word_count", {"text": "one two three"})),
        calls(("calculate", {"expression": "6 * 7"})),
    ])
    container = Container(sim, [first_thread, drain_thread], key_file)
    await container.start()
    try:
        await _check_ready_and_answering(sim, container, first_run)
        await _check_user_and_healthcheck(container)
        await _check_drain_on_stop(sim, container, assistant_id, drain_thread)
    except BaseException:
        print(await container.logs())  # noqa: T201 - the worker's log, for whoever reads a red CI
        raise
    finally:
        await container.aclose()


async def _check_ready_and_answering(sim: Simulator, container: Container, run_id: str) -> None:
    async def ready() -> dict[str, object] | None:
        status, body = await get(f"{container.url}/readyz")
        return body if status == 200 else None

    await wait_for(ready, "/readyz to answer 200", timeout_s=60)

    async def completed() -> bool | None:
        return True if sim.run(run_id)["status"] == "completed" else None

    await wait_for(completed, "the scripted run to complete", timeout_s=30)
    first, second = (dict(s.tool_outputs) for s in sim.accepted_submissions(run_id))
    echo, word_count = first.values()
    assert echo == "hi"
    assert json.loads(word_count)["words"] == 3
    assert list(second.values()) == ["42"]


async def _check_user_and_healthcheck(container: Container) -> None:
    # The worker process as the host's kernel sees it: real, effective, saved and fs uids.
    pid = await podman("inspect", "--format", "{{.State.Pid}}", container.name)
    status = (await anyio.Path(f"/proc/{pid}/status").read_text()).splitlines()
    (uids,) = [line.split()[1:] for line in status if line.startswith("Uid:")]
    assert uids == [str(CONTAINER_UID)] * 4, uids
    (capabilities,) = [line.split()[1] for line in status if line.startswith("CapEff:")]
    assert int(capabilities, 16) == 0, capabilities
    user = await podman("inspect", "--format", "{{.Config.User}}", container.name)
    assert user.split(":")[0] == str(CONTAINER_UID)
    # The image's own HEALTHCHECK command, run inside the read-only container: /healthz, 200.
    await podman("healthcheck", "run", container.name)


async def _check_drain_on_stop(sim: Simulator, container: Container, assistant_id: str,
                               thread_id: str) -> None:
    """A round in flight when SIGTERM arrives is finished and submitted; the exit code is 0."""
    run_id = sim.create_run(thread_id, assistant_id, rounds=[
        calls(("sleep", {"seconds": 3}), ("echo", {"text": "drained"})),
    ])

    async def in_flight() -> bool | None:
        _, text = await get(f"{container.url}/metrics")
        return True if "toolworker_tool_calls_in_flight 1.0" in str(text) else None

    await wait_for(in_flight, "the sleep call to be in flight", timeout_s=30)
    started = time.monotonic()
    await podman("stop", "--time", "45", container.name)
    stop_s = time.monotonic() - started
    exit_code = await podman("inspect", "--format", "{{.State.ExitCode}}", container.name)
    assert exit_code == "0", await container.logs()
    assert stop_s < DRAIN_S, f"stop took {stop_s:.1f} s, the drain timeout is {DRAIN_S} s"
    (submission,) = sim.accepted_submissions(run_id)
    slept, echoed = (output for _, output in submission.tool_outputs)
    assert json.loads(slept) == {"slept_s": 3}
    assert echoed == "drained"


@pytest.fixture
def redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


async def test_replicas_of_the_image_share_rounds_through_redis(
    sim: Simulator, key_file: Path, redis: RedisServer
) -> None:
    """Two containers on the same thread with [coordination] backend = "redis": each round once."""
    assistant_id = sim.create_assistant(name="image-test-replicas")
    thread_id = sim.create_thread()
    rounds = [calls(("echo", {"text": f"round {i}"}), ("sleep", {"seconds": 0.3}))
              for i in range(4)]
    run_id = sim.create_run(thread_id, assistant_id, rounds=rounds)
    redis_url = redis.url.replace(LOOPBACK, HOST_LOOPBACK_FROM_CONTAINER)
    replicas = [
        Container(sim, [thread_id], key_file, TOOL_WORKER__COORDINATION__BACKEND="redis",
                  TOOL_WORKER__COORDINATION__REDIS_URL=redis_url)
        for _ in range(2)
    ]
    try:
        for replica in replicas:
            await replica.start()

        async def completed() -> bool | None:
            return True if sim.run(run_id)["status"] == "completed" else None

        await wait_for(completed, "the four rounds to be answered", timeout_s=60)
        accepted = sim.accepted_submissions(run_id)
        assert [dict(s.tool_outputs) and next(iter(dict(s.tool_outputs).values()))
                for s in accepted] == [f"round {i}" for i in range(4)]
        # The replica that lost a claim never ran the handlers, so it never submitted.
        assert len([s for s in sim.state.submissions if s.run_id == run_id]) == len(rounds)
    except BaseException:
        for replica in replicas:
            print(await replica.logs())  # noqa: T201 - the workers' logs, for a red CI
        raise
    finally:
        for replica in replicas:
            await replica.aclose()


async def check_config_in_the_image(config: Path, *env: str) -> tuple[int, str]:
    """`tool-worker check-config` in a locked-down container with ``config`` as its worker.toml."""
    result = await anyio.run_process([
        PODMAN, "run", "--rm", "--network", "none", "--read-only", "--cap-drop", "ALL",
        "--security-opt", "no-new-privileges", "--health-interval", "disable",
        "-v", f"{config}:{CONFIG_PATH}:ro",
        *(arg for name in env for arg in ("-e", name)), IMAGE, "check-config", "--no-api", "--config", CONFIG_PATH,
    ], check=False)
    return result.returncode, (result.stdout + result.stderr).decode(errors="replace")


async def test_an_azure_config_passes_check_config_in_the_image() -> None:
    """The image ships [azure]: deploy/docker/azure.toml (Entra ID, no key) passes check-config."""
    code, output = await check_config_in_the_image(AZURE_CONFIG)
    assert code == 0, output
    assert "configuration OK" in output
    assert "credentials from Microsoft Entra ID" in output


async def test_the_image_config_without_a_service_names_the_choices() -> None:
    """The baked-in config names no retired service: check-config exits 2 with the choices."""
    code, output = await check_config_in_the_image(
        ROOT / "deploy" / "docker" / "worker.toml", f"OPENAI_API_KEY={SIM_KEY}")
    assert code == 2, output
    assert "no base_url" in output
    assert 'backend = "azure"' in output
