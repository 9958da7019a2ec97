"""Who is asking: ctx.metadata (the run's), ctx.thread_metadata() (one cached read), assistant_id."""

from __future__ import annotations

import json

import pytest
from aiohttp import web

from tests.conftest import ServedApp
from tests.e2e.conftest import calls, run_worker
from tests.handlers.resourced import whoami, whoami_sync
from worker.api.backends import build_profile
from worker.api.client import ApiClient
from worker.config.secret import Secret
from worker.config.settings import ApiSettings
from worker.errors import NotFound
from worker.observability.metrics import Metrics
from worker.rounds.thread_metadata import ThreadMetadataCache
from worker.simulator import Simulator
from worker.testing import call_tool, capture_logs, fake_context, run_tools


@pytest.mark.e2e
async def test_handlers_read_the_runs_and_the_threads_metadata() -> None:
    """Async and sync handlers see the run's metadata and the thread's, as the app set them."""
    result = await run_tools([whoami, whoami_sync], [[("whoami", {}), ("whoami_sync", {})]],
                             metadata={"user_id": "u42"}, thread_metadata={"tenant_id": "t7"})
    assert json.loads(result.outputs[0][0]) == {"user": "u42", "tenant": "t7", "assistant": "asst_"}
    assert result.outputs[0][1] == "u42@t7"


@pytest.mark.e2e
async def test_the_thread_is_read_once_for_the_calls_of_its_runs() -> None:
    """Parallel calls and later rounds share one retrieve_thread request while it is fresh."""
    async with Simulator(api_key="sk-test") as sim:
        assistant_id = sim.create_assistant(name="a")
        thread_id = sim.create_thread(metadata={"tenant_id": "t1"})
        run_id = sim.create_run(thread_id, assistant_id, metadata={"user_id": "u1"}, rounds=[
            calls(("whoami", {}), ("whoami", {}), ("whoami", {})), calls(("whoami", {})),
        ])
        await run_worker(sim, [thread_id], modules=["tests.handlers.resourced"])
        outputs = [json.loads(o) for s in sim.accepted_submissions(run_id)
                   for _, o in s.tool_outputs]
        assert outputs == [{"user": "u1", "tenant": "t1", "assistant": "asst_"}] * 4
        assert sim.request_counts["retrieve_thread"] == 1


async def test_call_tool_takes_metadata_through_fake_context() -> None:
    """fake_context(metadata=..., thread_metadata=...) is what the handler reads."""
    ctx = fake_context(metadata={"user_id": "u1"}, thread_metadata={"tenant_id": "t1"},
                       assistant_id="asst_x")
    output = await call_tool(whoami, ctx=ctx)
    assert json.loads(output.output) == {"user": "u1", "tenant": "t1", "assistant": "asst_"}


async def test_without_metadata_a_handler_reads_empty_mappings() -> None:
    """A run without metadata gives empty mappings, not None."""
    output = await call_tool(whoami)
    assert json.loads(output.output) == {"user": None, "tenant": None, "assistant": "asst_"}


class TestThreadMetadataCache:
    async def test_a_fresh_entry_is_served_without_reading(self) -> None:
        """Within ttl_s the thread is read once; with ttl 0 every time."""
        reads: list[str] = []

        async def read(thread_id: str) -> dict[str, str]:
            reads.append(thread_id)
            return {"n": str(len(reads))}

        cache = ThreadMetadataCache(read, ttl_s=60)
        assert [await cache.get("t") for _ in range(3)] == [{"n": "1"}] * 3
        uncached = ThreadMetadataCache(read, ttl_s=0)
        assert [await uncached.get("t") for _ in range(2)] == [{"n": "2"}, {"n": "3"}]

    async def test_a_failed_read_is_not_kept(self) -> None:
        """An error reaches the caller, and the next call asks again."""
        answers: list[object] = [NotFound(404, "retrieve_thread", "gone"), {"a": "b"}]

        async def read(thread_id: str) -> dict[str, str]:
            answer = answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer  # type: ignore[return-value]

        cache = ThreadMetadataCache(read, ttl_s=60)
        with pytest.raises(NotFound):
            await cache.get("t")
        assert await cache.get("t") == {"a": "b"}


@pytest.mark.e2e
async def test_thread_metadata_served_as_metadata_underscore_is_read() -> None:
    """A server that names the field `metadata_` (the metadata_underscore quirk): the handler
    still sees the thread's metadata, not an empty mapping."""
    async with Simulator(api_key="sk-test", quirks=["metadata_underscore"]) as sim:
        assistant_id = sim.create_assistant(name="a")
        thread_id = sim.create_thread(metadata={"tenant_id": "t1"})
        run_id = sim.create_run(thread_id, assistant_id, metadata={"user_id": "u1"},
                                rounds=[calls(("whoami", {}))])
        await run_worker(sim, [thread_id], modules=["tests.handlers.resourced"])
        (submission,) = sim.accepted_submissions(run_id)
        assert json.loads(submission.tool_outputs[0][1])["tenant"] == "t1"


async def test_a_thread_object_without_metadata_is_said_once() -> None:
    """No `metadata` nor `metadata_`: an empty mapping, and one warning however many reads."""
    async def bare_thread(_request: web.Request) -> web.Response:
        return web.json_response({"id": "thread_1", "object": "thread"})

    app = web.Application()
    app.router.add_get("/v1/threads/{thread_id}", bare_thread)
    async with ServedApp(app) as served:
        settings = ApiSettings(base_url=f"{served.url}/v1")
        with capture_logs() as logs:
            async with ApiClient(build_profile(settings, Secret("sk-test")), settings,
                                 Metrics()) as client:
                for _ in range(3):
                    assert dict(await client.retrieve_thread_metadata("thread_1")) == {}
    assert [e["event"] for e in logs] == [
        "the API's thread objects have no metadata field; ctx.thread_metadata() is empty"]
