"""A round's outputs are computed once (#13.2), its outcome is named right (#13.3), and a
cancelled run stops its handlers (#13.4): through a misbehaving gateway, a dead replica and
the simulator's own cancel."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio
import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import (
    SIM_KEY,
    assert_each_round_submitted_once,
    calls,
    make_worker,
    run_worker,
    start_runs,
)
from tests.e2e.proxy import Act, Proxy, endpoint_of
from tests.handlers import counted
from worker.models import CallOutcome, Round, Run, ToolOutput
from worker.service.claims import RedisClaims
from worker.simulator import QUIRKS, Simulator
from worker.testing import capture_logs

if TYPE_CHECKING:
    from aiohttp import web

    from tests.redis_server import RedisServer
    from worker.daemon import Worker

pytestmark = pytest.mark.e2e

MODULES = ("tests.handlers.sample", "tests.handlers.counted")
# How long the gateway refuses every submission: the scenario's outage, not a wait.
OUTAGE_S = 3.0
# The old submitter sent a refused round again at once, about 43 times a second; backing off
# (0.5 s doubling, full jitter) sends a handful in OUTAGE_S, plus the client's own retries
# of a 502.
MAX_SUBMITS_IN_OUTAGE = 15


def rounds(worker: Worker, outcome: str) -> float | None:
    return worker.metrics.registry.get_sample_value("toolworker_rounds_submitted_total",
                                                    {"outcome": outcome})


def counted_round(key: str) -> list[Any]:
    return calls(("counted", {"key": key}), ("add", {"a": 1}))


REFUSALS = [
    pytest.param(Act("answer", 413, b'{"error": {"message": "Request Entity Too Large"}}'),
                 id="413"),
    pytest.param(Act("answer", 502, b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                     "text/html"), id="html-502"),
]


@pytest.mark.parametrize("refusal", REFUSALS)
async def test_a_gateway_refusing_submissions_for_a_while_gets_backed_off_kept_outputs(
    refusal: Act,
) -> None:
    """Every submission refused for OUTAGE_S, then served: the handler ran once, the refused
    submissions were backed off (a bounded count), and the round was submitted once."""
    counted.reset()
    failing = True
    async with Simulator(api_key=SIM_KEY) as sim, Proxy(sim) as proxy:

        def rule(request: web.Request) -> Act | None:
            return refusal if failing and endpoint_of(request) == "submit" else None

        proxy.rule = rule
        threads, runs = start_runs(sim, [[counted_round("a")]])
        worker = make_worker(proxy.url, threads, modules=MODULES)
        with anyio.fail_after(25):
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                await wait_for(lambda: proxy.acted["submit"] >= 1, what="a refused submission")
                await anyio.sleep(OUTAGE_S)
                failing = False
                refused = proxy.acted["submit"]
                await wait_for(lambda: sim.run(runs[0])["status"] == "completed", what="the run")
                worker.stop()
        assert_each_round_submitted_once(sim, runs, [1])
    assert counted.COUNTS == {"a": 1}
    assert 2 <= refused <= MAX_SUBMITS_IN_OUTAGE
    assert rounds(worker, "ok") == 1
    assert rounds(worker, "failed") == 0


async def test_a_server_down_mid_submission_loses_nothing_and_computes_nothing_twice() -> None:
    """The connection of the first submission drops and the server refuses connections for a
    few seconds: once it is back, the kept outputs are submitted; the handler ran once."""
    counted.reset()
    back = False
    async with Simulator(api_key=SIM_KEY) as sim, Proxy(sim) as proxy:
        dropped = anyio.Event()

        def rule(request: web.Request) -> Act | None:
            if back:
                return None
            if endpoint_of(request) == "submit":
                dropped.set()
            return Act("drop") if dropped.is_set() else None

        proxy.rule = rule
        threads, runs = start_runs(sim, [[counted_round("a")], [counted_round("b")]])
        worker = make_worker(proxy.url, threads, modules=MODULES)
        with anyio.fail_after(25):
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                await dropped.wait()
                await proxy.down()
                await anyio.sleep(OUTAGE_S)  # the outage
                back = True
                await proxy.up()
                await wait_for(sim.all_runs_terminal, timeout_s=20, what="both runs")
                worker.stop()
        assert_each_round_submitted_once(sim, runs, [1, 1])
    assert counted.COUNTS == {"a": 1, "b": 1}
    assert rounds(worker, "ok") == 2
    assert rounds(worker, "failed") == 0


async def test_a_garbled_answer_to_a_submission_is_read_back_and_counted_ok() -> None:
    """The gateway applies each submission but garbles the 200: the run is read back, the round
    is counted ok (not failed), and nothing is computed or submitted twice."""
    counted.reset()
    async with Simulator(api_key=SIM_KEY) as sim, Proxy(sim) as proxy:
        proxy.rule = lambda request: Act("garble") if endpoint_of(request) == "submit" else None
        threads, runs = start_runs(sim, [[counted_round("a"), counted_round("b")]])
        worker = await run_worker(sim, threads, modules=MODULES, api={"base_url": proxy.url})
        assert_each_round_submitted_once(sim, runs, [2])
    assert proxy.acted["submit"] == 2
    assert counted.COUNTS == {"a": 1, "b": 1}
    assert rounds(worker, "ok") == 2
    assert rounds(worker, "failed") == 0


async def test_a_dead_replicas_kept_outputs_are_submitted_by_the_next_one(
    redis_server: RedisServer,
) -> None:
    """Replica A claims the round, keeps its outputs and dies unsettled; replica B takes the
    round once A's lease runs out and submits A's outputs without running a handler."""
    counted.reset()
    async with Simulator(api_key=SIM_KEY) as sim:
        threads, runs = start_runs(sim, [[counted_round("a")]])
        round_ = Round.from_run(Run.from_json(sim.run(runs[0])), 0.0)
        assert round_.tool_calls, "with no thinking time the round shows at once"
        a = RedisClaims.from_url(redis_server.url, owner="replica-a", lease_s=1.0,
                                 prefix="tool-worker")
        assert await a.try_claim(round_)
        await a.save_outputs(round_, [ToolOutput(call.id, f"A's {call.name}", call.name,
                                                 CallOutcome.OK, 0.1) for call in round_.tool_calls])
        await a.aclose()  # A dies: no renewal, no release, no done mark
        with capture_logs() as logs:
            worker = await run_worker(sim, threads, modules=MODULES, coordination={
                "backend": "redis", "redis_url": redis_server.url, "lease_s": 1.0})
        assert_each_round_submitted_once(sim, runs, [1])
        (submission,) = sim.accepted_submissions(runs[0])
    assert [text for _, text in submission.tool_outputs] == ["A's counted", "A's add"]
    assert counted.COUNTS == {}
    assert [e for e in logs if e["event"].startswith("submitting outputs kept")]
    assert rounds(worker, "ok") == 1


CANCEL_CHECK_S = 0.1


@pytest.mark.parametrize("quirks", [pytest.param((), id="openai"),
                                    pytest.param(QUIRKS, id="all-quirks")])
async def test_a_run_cancelled_while_its_handler_runs_stops_it_and_counts_cancelled(
    quirks: tuple[str, ...],
) -> None:
    """A 30 s handler's run is cancelled once it started: the handler is cancelled within
    about cancel_check_interval_s, the round counts cancelled (not rejected), nothing is sent."""
    counted.reset()
    async with Simulator(api_key=SIM_KEY, quirks=quirks) as sim:
        threads, runs = start_runs(sim, [[calls(("slow", {"seconds": 30}), ("add", {"a": 1}))]])
        worker = make_worker(sim.base_url, threads, modules=MODULES,
                             watch={"cancel_check_interval_s": CANCEL_CHECK_S})
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await tg.start(worker.run)
                await wait_for(lambda: runs[0] in counted.STARTED, what="the handler to start")
                sim.state.cancel_run(threads[0], runs[0])
                cancelled_at = time.monotonic()
                await wait_for(lambda: runs[0] in counted.CANCELLED, timeout_s=5,
                               what="the handler to be cancelled")
                await wait_for(lambda: rounds(worker, "cancelled") == 1, what="the count")
                worker.stop()
        assert sim.submissions == []
        assert sim.run(runs[0])["status"] == "cancelled"
    assert counted.CANCELLED[runs[0]] - cancelled_at < CANCEL_CHECK_S + 1.0
    assert rounds(worker, "rejected") == 0
    assert rounds(worker, "ok") == 0
