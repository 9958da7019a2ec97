"""The daemon against each backend profile the simulator serves: OpenAI, Azure key, Azure Entra."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from tests.conftest import make_settings, wait_for
from tests.e2e.conftest import assert_each_round_submitted_once, calls, start_runs
from worker.api.backends import build_profile
from worker.config.secret import Secret
from worker.daemon import Worker
from worker.errors import ConfigError
from worker.handlers.registry import Registry
from worker.simulator import Simulator

pytestmark = pytest.mark.e2e

KEY = "backend-key-0123456789"


@dataclass
class AccessToken:
    token: str
    expires_on: int


class FakeCredential:
    """Stands in for azure-identity's DefaultAzureCredential: same get_token protocol."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str) -> AccessToken:
        self.scopes.append(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def settings_for(sim: Simulator, threads: list[str], backend: str, **api: Any) -> Any:
    """Settings for the simulator; the azure backend with a key unless ``api`` says otherwise."""
    auth = {"azure_auth": "api_key"} if backend == "azure" else {}
    return make_settings(
        api={"base_url": sim.base_url, "backend": backend, **auth, **api},
        watch={"threads": threads, "active_poll_interval_s": 0.02, "idle_poll_interval_s": 0.1},
        tools={"modules": ["tests.handlers.sample"]},
        server={"enabled": False},
    ).model_copy(update={"api_key": Secret(KEY)})


async def run_until_idle(worker: Worker) -> None:
    with anyio.fail_after(30):
        await worker.run(until_idle=True)


SCRIPT = [calls(("add", {"a": 1}), ("nap", {"seconds": 0.01})), calls(("add", {"a": 2}))]


@pytest.mark.parametrize(("profile", "backend"), [("openai", "openai"), ("azure", "azure")])
async def test_rounds_are_answered_on_each_backend(profile: str, backend: str) -> None:
    """The same runs are answered once each through the OpenAI and the Azure (api-key) profile."""
    async with Simulator(api_key=KEY, profile=profile) as sim:  # type: ignore[arg-type]
        threads, runs = start_runs(sim, [SCRIPT] * 3)
        settings = settings_for(sim, threads, backend)
        await run_until_idle(Worker(settings, Registry.from_modules(settings.tools.modules)))
        assert_each_round_submitted_once(sim, runs, [2, 2, 2])


async def test_azure_with_an_entra_token_fetches_it_once() -> None:
    """With azure_auth = "entra", a token from the credential is used and cached."""
    credential = FakeCredential(KEY)
    async with Simulator(api_key=KEY, profile="azure") as sim:
        threads, runs = start_runs(sim, [SCRIPT] * 2)
        settings = settings_for(sim, threads, "azure", azure_auth="entra")
        profile = build_profile(settings.api, None, credential=credential)
        worker = Worker(settings, Registry.from_modules(settings.tools.modules), profile=profile)
        await run_until_idle(worker)
        assert_each_round_submitted_once(sim, runs, [2, 2])
    assert credential.scopes == [("https://ai.azure.com/.default",)]


async def test_azure_discovers_threads_it_was_not_told_about() -> None:
    """[watch] discover = true follows every thread the project lists."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        _, runs = start_runs(sim, [SCRIPT] * 4)
        settings = settings_for(sim, [], "azure")
        settings = settings.model_copy(update={"watch": settings.watch.model_copy(
            update={"discover": True})})
        await run_until_idle(Worker(settings, Registry.from_modules(settings.tools.modules)))
        assert_each_round_submitted_once(sim, runs, [2, 2, 2, 2])


async def test_a_wrong_api_version_stops_the_worker_at_start() -> None:
    """An api-version the service does not have is a configuration error naming it."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        settings = settings_for(sim, [], "azure", api_version="2099-01-01")
        worker = Worker(settings, Registry.from_modules(settings.tools.modules))
        with pytest.raises(ConfigError, match="Unsupported api-version '2099-01-01'"):
            await run_until_idle(worker)


async def test_runs_waiting_for_another_action_are_left_alone() -> None:
    """A run asking for tool approvals is logged once and counted; other threads go on."""
    async with Simulator(api_key=KEY) as sim:
        assistant_id = sim.create_assistant(name="a")
        approval_thread = sim.create_thread()
        sim.create_run(approval_thread, assistant_id, rounds=[calls(("add", {"a": 1}))],
                       action_type="submit_tool_approval")
        threads, runs = start_runs(sim, [SCRIPT])
        settings = settings_for(sim, [approval_thread, *threads], "openai")
        worker = Worker(settings, Registry.from_modules(settings.tools.modules))
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await wait_for(lambda: sim.run(runs[0])["status"] == "completed", what="the run")
            await wait_for(lambda: worker.metrics.registry.get_sample_value(
                "toolworker_runs_skipped_total", {"reason": "unsupported_action"}) == 1,
                what="the skipped run to be counted")
            worker.stop()
        assert_each_round_submitted_once(sim, runs, [2])
        assert worker.metrics.registry.get_sample_value(
            "toolworker_runs_skipped_total", {"reason": "unsupported_action"}) == 1


@pytest.mark.parametrize(("profile", "stream"), [("openai", True), ("azure", True),
                                                  ("azure", False)])
async def test_each_profile_sends_its_own_tool_output_shape(profile: str, stream: bool) -> None:
    """Azure's outputs carry type "function_call_output"; OpenAI's stay two fields."""
    async with Simulator(api_key=KEY, profile=profile) as sim:  # type: ignore[arg-type]
        threads, runs = start_runs(sim, [SCRIPT])
        settings = settings_for(sim, threads, profile, stream=stream)
        await run_until_idle(Worker(settings, Registry.from_modules(settings.tools.modules)))
        assert_each_round_submitted_once(sim, runs, [2])
        bodies = [s.body for s in sim.accepted_submissions()]
    outputs = [item for body in bodies for item in body["tool_outputs"]]  # type: ignore[index]
    expected = ({"tool_call_id", "output", "type"} if profile == "azure"
                else {"tool_call_id", "output"})
    assert all(set(item) == expected for item in outputs)
    if profile == "azure":
        assert {item["type"] for item in outputs} == {"function_call_output"}


async def test_a_run_waiting_for_tool_approval_is_polled_at_the_idle_pace() -> None:
    """An approval run is read once per idle_poll_interval_s, not at the active pace."""
    idle_s = 0.3
    async with Simulator(api_key=KEY, profile="azure") as sim:
        assistant_id = sim.create_assistant(name="a")
        thread_id = sim.create_thread()
        sim.create_run(thread_id, assistant_id, rounds=[calls(("add", {"a": 1}))],
                       action_type="submit_tool_approval")
        settings = settings_for(sim, [thread_id], "azure")
        settings = settings.model_copy(update={"watch": settings.watch.model_copy(
            update={"active_poll_interval_s": 0.01, "idle_poll_interval_s": idle_s})})
        worker = Worker(settings, Registry.from_modules(settings.tools.modules))
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker.run)
            await wait_for(lambda: sim.request_counts["list_runs"] >= 1, what="the first poll")
            started = time.monotonic()
            await wait_for(lambda: sim.request_counts["retrieve_run"] >= 3, what="three polls")
            elapsed_s = time.monotonic() - started
            worker.stop()
    # At the active pace (0.01 s, backing off 1.25x) three reads take well under 0.1 s.
    assert elapsed_s >= 2 * idle_s
