"""The azure profile: a project path, api-version on every request, api-key or bearer auth."""

from __future__ import annotations

import aiohttp

from worker.simulator import Simulator

KEY = "azure-key-123"


async def get(url: str, **headers: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as response:
        return response.status, await response.json()


async def test_azure_serves_a_project_path_with_api_version_and_api_key() -> None:
    """With an api-key header and a supported api-version, the project's threads list."""
    async with Simulator(api_key=KEY, profile="azure", project="proj1") as sim:
        thread_id = sim.create_thread()
        assert sim.base_url.endswith("/api/projects/proj1")
        status, body = await get(f"{sim.base_url}/threads?api-version=v1", **{"api-key": KEY})
    assert status == 200
    assert [thread["id"] for thread in body["data"]] == [thread_id]


async def test_azure_takes_an_entra_bearer_token() -> None:
    """An Authorization: Bearer token is accepted in place of the key."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        status, _ = await get(f"{sim.base_url}/assistants?api-version=v1",
                              Authorization=f"Bearer {KEY}")
    assert status == 200


async def test_azure_refuses_a_missing_or_unknown_api_version() -> None:
    """No api-version, or one the service does not have, is a 400 naming the problem."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        missing = await get(f"{sim.base_url}/assistants", **{"api-key": KEY})
        wrong = await get(f"{sim.base_url}/assistants?api-version=2099-01-01", **{"api-key": KEY})
    assert missing[0] == 400
    assert missing[1]["error"]["code"] == "MissingApiVersionParameter"
    assert wrong[0] == 400
    assert "Unsupported api-version '2099-01-01'" in wrong[1]["error"]["message"]


async def test_azure_refuses_a_wrong_key_without_echoing_it() -> None:
    """A wrong key is a 401 and the answer does not contain it."""
    async with Simulator(api_key=KEY, profile="azure") as sim:
        status, body = await get(f"{sim.base_url}/assistants?api-version=v1",
                                 **{"api-key": "nope-nope-nope"})
    assert status == 401
    assert "nope-nope-nope" not in str(body)


async def test_openai_profile_has_no_thread_listing() -> None:
    """The OpenAI API cannot list threads, and neither can the simulator in that profile."""
    async with Simulator(api_key=KEY) as sim:
        status, _ = await get(f"{sim.base_url}/threads", Authorization=f"Bearer {KEY}",
                              **{"OpenAI-Beta": "assistants=v2"})
    assert status in (404, 405)


async def test_runs_can_wait_for_another_kind_of_action() -> None:
    """A run can ask for an action other than tool outputs, as Azure's tool approvals do."""
    async with Simulator(api_key=KEY) as sim:
        assistant_id = sim.create_assistant(name="a")
        thread_id = sim.create_thread()
        from worker.simulator import ToolCallScript

        run_id = sim.create_run(thread_id, assistant_id, rounds=[[ToolCallScript("x", "{}")]],
                                action_type="submit_tool_approval")
        run = sim.run(run_id)
    assert run["status"] == "requires_action"
    assert run["required_action"]["type"] == "submit_tool_approval"
    assert "submit_tool_approval" in run["required_action"]
