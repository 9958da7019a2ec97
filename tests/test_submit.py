"""The submitter against the simulator: one request per round, and what each 400 meant."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.conftest import first_submit_fault, wait_for
from tests.e2e.conftest import calls
from worker.api.backends import build_profile
from worker.api.client import ApiClient
from worker.api.retry import RetryPolicy
from worker.config.secret import Secret
from worker.config.settings import ApiSettings
from worker.errors import RateLimited
from worker.models import CallOutcome, Round, Run, RunStatus, ToolCall, ToolOutput
from worker.observability.metrics import Metrics
from worker.rounds.submit import Submitter
from worker.simulator import FaultRule, Simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

KEY = "sk-sim"


@pytest.fixture
async def client_for() -> AsyncIterator[object]:
    clients: list[ApiClient] = []

    async def make(sim: Simulator, *, stream: bool = False) -> ApiClient:
        settings = ApiSettings(base_url=sim.base_url, max_retries=3, stream=stream)
        client = ApiClient(build_profile(settings, Secret(KEY)), settings, Metrics(),
                           retry=RetryPolicy(3, base_s=0.001))
        clients.append(await client.__aenter__())
        return client

    yield make
    for client in clients:
        await client.aclose()


async def ready_round(sim: Simulator, client: ApiClient) -> Round:
    assistant_id = sim.create_assistant(name="t", tools=[])
    thread_id = sim.create_thread()
    run_id = sim.create_run(thread_id, assistant_id,
                            rounds=[calls(("add", {"a": 1}), ("add", {"a": 2}))])
    run = await client.retrieve_run(thread_id, run_id)  # with no thinking time, the next read
    assert run.wants_tool_outputs  # shows the round
    return Round.from_run(run, detected_at=anyio.current_time())


def outputs_for(round_: Round) -> list[ToolOutput]:
    return [ToolOutput(call.id, "ok", call.name, CallOutcome.OK, 0.0) for call in round_.tool_calls]


def rounds_total(submitter: Submitter, outcome: str) -> float | None:
    return submitter._metrics.registry.get_sample_value(
        "toolworker_rounds_submitted_total", {"outcome": outcome})


async def test_a_round_is_one_request(client_for) -> None:
    """All outputs of the round go in a single accepted submission."""
    async with Simulator(api_key=KEY) as sim:
        client = await client_for(sim)
        round_ = await ready_round(sim, client)
        submitter = Submitter(client, Metrics())
        assert (await submitter.submit(round_, outputs_for(round_))).outcome == "ok"
    (submission,) = sim.submissions
    assert submission.status == 200
    assert {call_id for call_id, _ in submission.tool_outputs} == round_.call_ids


async def test_a_lost_answer_then_400_counts_as_done(client_for) -> None:
    """The connection drops after the API applied the outputs: the retry's 400 means success."""
    async with Simulator(api_key=KEY, faults=first_submit_fault(FaultRule(p_drop_after=0.5), "drop_after")) as sim:
        client = await client_for(sim)
        round_ = await ready_round(sim, client)
        submitter = Submitter(client, Metrics())
        assert (await submitter.submit(round_, outputs_for(round_))).outcome == "ok"
        assert rounds_total(submitter, "ok") == 1
    assert [s.status for s in sim.submissions] == [200, 400]
    assert sim.faults_injected["submit_tool_outputs:drop_after"] == 1


async def test_another_worker_submitting_first_is_not_an_error(client_for) -> None:
    """A round someone else already answered is counted once as already_submitted, not retried."""
    async with Simulator(api_key=KEY) as sim:
        client = await client_for(sim)
        round_ = await ready_round(sim, client)
        other = Submitter(client, Metrics())
        assert (await other.submit(round_, outputs_for(round_))).outcome == "ok"
        submitter = Submitter(client, Metrics())
        assert (await submitter.submit(round_, outputs_for(round_))).outcome == "already_submitted"
        assert rounds_total(submitter, "already_submitted") == 1
    assert [s.status for s in sim.submissions] == [200, 400]


async def test_a_cancelled_run_is_counted_as_cancelled(client_for) -> None:
    """A run cancelled while its tools ran refuses the outputs: one request, outcome cancelled."""
    async with Simulator(api_key=KEY) as sim:
        client = await client_for(sim)
        round_ = await ready_round(sim, client)
        await client.cancel_run(round_.thread_id, round_.run_id)
        submitter = Submitter(client, Metrics())
        assert (await submitter.submit(round_, outputs_for(round_))).outcome == "cancelled"
        assert rounds_total(submitter, "cancelled") == 1
        assert rounds_total(submitter, "rejected") == 0
    assert [s.status for s in sim.submissions] == [400]


async def test_nothing_is_sent_after_expiry(client_for) -> None:
    """A round whose run has expired is not submitted at all."""
    async with Simulator(api_key=KEY) as sim:
        client = await client_for(sim)
        round_ = await ready_round(sim, client)
        expired = Round(round_.thread_id, round_.run_id, round_.assistant_id,
                        expires_at=1, tool_calls=round_.tool_calls, detected_at=0.0,
                        expiry=anyio.current_time() - 1)
        submitter = Submitter(client, Metrics())
        assert (await submitter.submit(expired, outputs_for(round_))).outcome == "expired"
    assert sim.submissions == []


def test_run_parsing_ignores_non_function_calls() -> None:
    """Tool calls of other types are not answered as functions."""
    run = Run.from_json({"id": "run_1", "thread_id": "t", "status": "requires_action",
                         "required_action": {"type": "submit_tool_outputs",
                                             "submit_tool_outputs": {"tool_calls": [
                                                 {"id": "c1", "type": "code_interpreter"}]}}})
    assert run.tool_calls == ()
    assert not run.wants_tool_outputs


async def test_the_answer_carries_the_apis_poll_hint(client_for) -> None:
    """A thinking model's run answers the submission with a hint of when to look again."""
    async with Simulator(api_key=KEY, thinking_s=0.2) as sim:
        client = await client_for(sim)
        assistant_id = sim.create_assistant(name="t", tools=[])
        thread_id = sim.create_thread()
        run_id = sim.create_run(thread_id, assistant_id,
                                rounds=[calls(("add", {"a": 1})), calls(("add", {"a": 2}))])
        await sim_wait_for_round(sim, run_id)
        round_ = Round.from_run(await client.retrieve_run(thread_id, run_id), 0.0)
        result = await Submitter(client, Metrics()).submit(round_, outputs_for(round_))
    assert result.outcome == "ok"
    assert result.poll_after_s is not None
    assert 0 < result.poll_after_s <= 0.2


async def sim_wait_for_round(sim: Simulator, run_id: str) -> None:
    # The simulator's runs move on its clock as they are read: checking is waiting.
    await wait_for(lambda: sim.run(run_id)["status"] == "requires_action", timeout_s=5,
                   what=f"{run_id} to require action")


async def two_round_run(sim: Simulator, client: ApiClient) -> Round:
    """A run whose model thinks between its two rounds; returns its first round, waiting."""
    assistant_id = sim.create_assistant(name="t", tools=[])
    thread_id = sim.create_thread()
    run_id = sim.create_run(thread_id, assistant_id,
                            rounds=[calls(("add", {"a": 1})), calls(("add", {"a": 2}))])
    await sim_wait_for_round(sim, run_id)
    return Round.from_run(await client.retrieve_run(thread_id, run_id), 0.0)


async def submitted_after_cut(client_for, cut: str) -> tuple[Simulator, Submitter, object]:
    rule = FaultRule(**{f"p_{cut}": 0.5})
    async with Simulator(api_key=KEY, faults=first_submit_fault(rule, cut), thinking_s=0.05) as sim:
        client = await client_for(sim, stream=True)
        round_ = await two_round_run(sim, client)
        submitter = Submitter(client, Metrics(), retry=RetryPolicy(0, base_s=0.01))
        result = await submitter.submit(round_, outputs_for(round_))
    return sim, submitter, result


async def test_a_streamed_submission_brings_the_next_round(client_for) -> None:
    """The stream of a submission ends with the run's next round: nothing needs polling."""
    async with Simulator(api_key=KEY, thinking_s=0.05) as sim:
        client = await client_for(sim, stream=True)
        round_ = await two_round_run(sim, client)
        result = await Submitter(client, Metrics()).submit(round_, outputs_for(round_))
    assert result.outcome == "ok"
    assert result.next_run is not None
    assert result.next_run.wants_tool_outputs
    assert [c.name for c in result.next_run.tool_calls] == ["add"]
    assert result.next_run.call_ids.isdisjoint(round_.call_ids)


@pytest.mark.parametrize("cut", ["cut_after_apply", "cut_mid_stream"])
async def test_a_stream_cut_after_the_outputs_were_applied_is_not_resent(client_for, cut) -> None:
    """Applied, then cut: counted ok, never submitted twice, and the run is looked at now."""
    sim, _, result = await submitted_after_cut(client_for, cut)
    assert result.outcome == "ok"
    assert result.poll_after_s == 0.0
    assert [s.status for s in sim.submissions] == [200]
    assert sim.faults_injected[f"submit_tool_outputs:{cut}"] == 1


async def test_a_stream_cut_before_the_outputs_were_applied_is_sent_again(client_for) -> None:
    """Cut before applying: the run is read back, still waits, and the outputs go again."""
    sim, submitter, result = await submitted_after_cut(client_for, "cut_before_apply")
    assert result.outcome == "ok"
    assert [s.status for s in sim.submissions] == [200]
    assert sim.faults_injected["submit_tool_outputs:cut_before_apply"] == 1
    assert rounds_total(submitter, "ok") == 1


async def test_a_server_that_will_not_stream_is_submitted_to_plainly(client_for) -> None:
    """A 400 for "stream" on a run that still waits: the outputs go again without it, and
    later submissions do not stream."""
    from aiohttp import web

    from tests.conftest import ServedApp

    applied: list[dict[str, object]] = []
    run = {"id": "run_1", "thread_id": "thread_1", "status": "requires_action",
           "assistant_id": "asst_1", "expires_at": None,
           "required_action": {"type": "submit_tool_outputs", "submit_tool_outputs": {
               "tool_calls": [{"id": "call_1", "type": "function",
                               "function": {"name": "add", "arguments": "{}"}}]}}}

    async def submit(request: web.Request) -> web.Response:
        body = await request.json()
        if "stream" in body:
            return web.json_response({"error": {"message": "Unrecognized request argument "
                                                "supplied: stream"}}, status=400)
        applied.append(body)
        return web.json_response({**run, "status": "queued", "required_action": None})

    async def retrieve(request: web.Request) -> web.Response:
        return web.json_response(run if not applied else {**run, "status": "queued",
                                                          "required_action": None})

    app = web.Application()
    app.router.add_post("/v1/threads/{t}/runs/{r}/submit_tool_outputs", submit)
    app.router.add_get("/v1/threads/{t}/runs/{r}", retrieve)
    async with ServedApp(app) as server:
        settings = ApiSettings(base_url=f"{server.url}/v1", stream=True)
        async with ApiClient(build_profile(settings, Secret(KEY)), settings, Metrics()) as client:
            round_ = Round.from_run(Run.from_json(run), 0.0)
            submitter = Submitter(client, Metrics())
            assert (await submitter.submit(round_, outputs_for(round_))).outcome == "ok"
            assert submitter._stream_refused
    assert applied == [{"tool_outputs": [{"tool_call_id": "call_1", "output": "ok"}]}]


# A server that answers a late submission with 404 instead of 400 (#13.3).
LATE_404 = ("late_submit_404",)


@pytest.mark.parametrize(("quirks", "status"), [((), 400), (LATE_404, 404)])
async def test_a_late_submission_is_already_submitted_whatever_the_refusal(
    client_for: Any, quirks: tuple[str, ...], status: int
) -> None:
    """Someone else's outputs were taken first: a 400, or another server's 404, is counted
    already_submitted after reading the run back, never failed or rejected."""
    async with Simulator(api_key=KEY, quirks=quirks) as sim:
        client = await client_for(sim)
        round_ = await ready_round(sim, client)
        assert (await Submitter(client, Metrics()).submit(round_, outputs_for(round_))).outcome == "ok"
        submitter = Submitter(client, Metrics())
        assert (await submitter.submit(round_, outputs_for(round_))).outcome == "already_submitted"
        for outcome in ("failed", "rejected"):
            assert rounds_total(submitter, outcome) == 0
    assert [s.status for s in sim.submissions] == [200, status]


async def test_a_lost_answer_then_404_counts_as_ok(client_for: Any) -> None:
    """The connection drops after the server applied the outputs; its 404 to the retry means
    ours were taken: ok."""
    plan = first_submit_fault(FaultRule(p_drop_after=0.5), "drop_after")
    async with Simulator(api_key=KEY, faults=plan, quirks=LATE_404) as sim:
        client = await client_for(sim)
        round_ = await ready_round(sim, client)
        submitter = Submitter(client, Metrics())
        assert (await submitter.submit(round_, outputs_for(round_))).outcome == "ok"
        assert rounds_total(submitter, "failed") == 0
    assert [s.status for s in sim.submissions] == [200, 404]


async def test_a_cancelled_run_answering_404_is_counted_as_cancelled(client_for: Any) -> None:
    """A run cancelled before the outputs arrive, on a server that says 404: cancelled."""
    async with Simulator(api_key=KEY, quirks=LATE_404) as sim:
        client = await client_for(sim)
        round_ = await ready_round(sim, client)
        await client.cancel_run(round_.thread_id, round_.run_id)
        submitter = Submitter(client, Metrics())
        assert (await submitter.submit(round_, outputs_for(round_))).outcome == "cancelled"
        assert rounds_total(submitter, "rejected") == 0
    assert [s.status for s in sim.submissions] == [404]


class StaleOnce:
    """An API behind a lagging replica: the submission meets a 429, the first read back shows
    the run in progress (stale), every later read shows it still waiting."""

    can_stream = False

    def __init__(self, round_: Round) -> None:
        self.round, self.reads, self.submissions = round_, 0, 0

    async def retrieve_run(self, thread_id: str, run_id: str, **_: Any) -> Run:
        self.reads += 1
        return self.shown(self.round.tool_calls if self.reads != 1 else ())

    def shown(self, calls: tuple[ToolCall, ...]) -> Run:
        """The run waiting for ``calls``; in progress when there are none."""
        return Run(id=self.round.run_id, thread_id=self.round.thread_id, assistant_id="asst_1",
                   status=RunStatus.REQUIRES_ACTION if calls else RunStatus.IN_PROGRESS,
                   expires_at=None,
                   required_action_type="submit_tool_outputs" if calls else None,
                   tool_calls=calls)

    async def submit_tool_outputs(self, thread_id: str, run_id: str, outputs: Any,
                                  **_: Any) -> Run:
        self.submissions += 1
        if self.submissions == 1:
            raise RateLimited(429, "submit_tool_outputs", "slow down")
        return Run(id=run_id, thread_id=thread_id, assistant_id="asst_1",
                   status=RunStatus.QUEUED, expires_at=None, required_action_type=None,
                   tool_calls=())


async def submitted_after_a_429(api_kind: type[StaleOnce]) -> tuple[str, int]:
    """The round's outcome against ``api_kind``, and how many submissions it took."""
    round_ = Round("thread_1", "run_1", "asst_1", None,
                   (ToolCall("call_1", "add", "{}"),), detected_at=0.0)
    api = api_kind(round_)
    submitter = Submitter(api, Metrics(), retry=RetryPolicy(3, base_s=0.001))  # type: ignore[arg-type]
    return (await submitter.submit(round_, outputs_for(round_))).outcome, api.submissions


async def test_one_stale_read_after_a_failed_submission_does_not_give_the_round_up() -> None:
    assert await submitted_after_a_429(StaleOnce) == ("ok", 2)


class RevealsOneByOne(StaleOnce):
    """A server listing a turn's calls one by one: after a 429, the read shows the round's
    call beside a newer one; the round is still to be answered."""

    async def retrieve_run(self, thread_id: str, run_id: str, **_: Any) -> Run:
        self.reads += 1
        return self.shown((*self.round.tool_calls, ToolCall("call_2", "add", "{}")))


async def test_a_read_back_showing_newer_calls_beside_the_rounds_keeps_the_round() -> None:
    assert await submitted_after_a_429(RevealsOneByOne) == ("ok", 2)
