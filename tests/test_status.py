"""The status page: what is in flight, the last rounds, per-tool latency; a token off loopback."""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

import aiohttp
import anyio
import pytest

from tests.conftest import ServedApp, make_settings, wait_for
from tests.e2e.conftest import calls, start_runs
from worker.api.budget import RequestBudget
from worker.config.secret import Secret
from worker.config.settings import ServerSettings
from worker.daemon import Worker
from worker.handlers.registry import Registry
from worker.models import CallOutcome, Round, ToolCall, ToolOutput
from worker.observability.metrics import Metrics
from worker.service.server import Server
from worker.service.status import MAX_TOOL_ROWS, StatusBoard, StatusSources, render_status
from worker.simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

TOKEN = "status-token-0123456789"
SECRET_ARGUMENTS = '{"card": "4111 1111 1111 1111"}'


def make_round(run_id: str = "run_1", *, expires_in_s: float | None = 300.0,
               started_s_ago: float = 2.0) -> Round:
    now = anyio.current_time()
    return Round(
        thread_id="thread_1", run_id=run_id, assistant_id="asst_1", expires_at=None,
        tool_calls=(ToolCall("call_1", "charge", SECRET_ARGUMENTS), ToolCall("call_2", "add", "{}")),
        detected_at=now - started_s_ago,
        expiry=None if expires_in_s is None else now + expires_in_s,
    )


def board(in_flight: set[Round], *, log_arguments: bool = False,
          ready: bool = True) -> StatusBoard:
    reasons: dict[str, Any] = ({"since_api_answer_s": 0.4} if ready
                               else {"reason": "the API has not answered recently"})
    return StatusBoard(StatusSources(
        in_flight=in_flight, readiness=lambda: (ready, reasons), watched=lambda: 12,
        budget=RequestBudget(100), streams_open=lambda: 3.0, max_streams=96,
        claims_backend="local"), log_arguments=log_arguments)


class TestNamesFromOutside:
    """Tool names come from the API: nothing the board keeps by name may grow with them."""

    async def test_names_the_registry_does_not_know_share_one_row(self) -> None:
        status = StatusBoard(board(set())._sources, tools={"add"})
        many = [ToolOutput(f"c{i}", "x", f"made_up_{i}", CallOutcome.ERROR, 0.0)
                for i in range(1000)]
        status.round_done(make_round(), [*many, ToolOutput("a", "3", "add", CallOutcome.OK, 0.1)],
                          "ok")
        rows = {row["tool"]: row["calls"] for row in status.snapshot()["tools"]}
        assert rows == {"(unknown)": 1000, "add": 1}

    async def test_without_a_registry_rows_are_capped(self) -> None:
        status = board(set())
        for r in range(5):
            status.round_done(make_round(), [
                ToolOutput(f"c{i}", "x", f"name_{r}_{i}", CallOutcome.OK, 0.0)
                for i in range(100)], "ok")
        tools = [row["tool"] for row in status.snapshot()["tools"]]
        assert len(tools) == MAX_TOOL_ROWS + 1
        assert "(other)" in tools

    async def test_a_round_lists_a_few_names_each_cut(self) -> None:
        round_ = make_round()
        long_round = Round(
            thread_id="thread_1", run_id="run_1", assistant_id="asst_1", expires_at=None,
            tool_calls=tuple(ToolCall(f"call_{i}", "n" * 10_000, "{}") for i in range(1000)),
            detected_at=round_.detected_at, expiry=round_.expiry)
        status = board({long_round})
        status.round_done(long_round, [], "ok")
        snapshot = status.snapshot()
        for listed in (snapshot["in_flight"][0]["tools"], snapshot["recent_rounds"][0]["tools"]):
            assert len(listed) == 11
            assert listed[-1] == "(+990 more)"
            assert max(len(name) for name in listed) <= 64
        assert len(render_status(snapshot)) < 20_000


class TestBoard:
    async def test_a_round_in_flight_shows_its_tools_elapsed_and_time_left(self) -> None:
        """Run, thread, tool names, seconds since found and seconds before expires_at."""
        snapshot = board({make_round()}).snapshot()
        (entry,) = snapshot["in_flight"]
        assert entry["run_id"] == "run_1"
        assert entry["tools"] == ["charge", "add"]
        assert 1.9 <= entry["elapsed_s"] <= 3
        assert 299 <= entry["expires_in_s"] <= 300
        assert "arguments" not in entry

    async def test_arguments_are_shown_only_with_log_arguments(self) -> None:
        """The model's arguments (user data) appear on the page only when logging them is on."""
        assert SECRET_ARGUMENTS not in render_status(board({make_round()}).snapshot())
        shown = board({make_round()}, log_arguments=True).snapshot()
        assert shown["in_flight"][0]["arguments"][0] == SECRET_ARGUMENTS

    async def test_finished_rounds_give_outcomes_counts_and_percentiles(self) -> None:
        """The last rounds newest first; per tool: calls, outcomes, p50 and p95."""
        status = board(set())
        for index in range(20):
            outputs = [ToolOutput("c", "x", "add", CallOutcome.OK, (index + 1) / 1000)]
            if index == 0:
                outputs.append(ToolOutput("d", "x", "add", CallOutcome.TIMEOUT, 1.0))
            status.round_done(make_round(f"run_{index}"), outputs, "ok")
        status.round_done(make_round("run_late"), (), "expired")
        status.claimed(True)
        status.claimed(False)
        snapshot = status.snapshot()
        assert [r["run_id"] for r in snapshot["recent_rounds"][:2]] == ["run_late", "run_19"]
        assert snapshot["recent_rounds"][0]["outcome"] == "expired"
        assert snapshot["rounds"] == {"ok": 20, "expired": 1}
        (add,) = snapshot["tools"]
        assert (add["calls"], add["outcomes"]) == (21, {"ok": 20, "timeout": 1})
        assert (add["p50_ms"], add["p95_ms"]) == (11.0, 20.0)
        assert snapshot["claims"] == {"backend": "local", "taken": 1, "lost": 1}
        assert snapshot["budget"] == {"used": 0, "per_s": 100}
        assert (snapshot["watched_threads"], snapshot["streams"]) == (12, {"open": 3, "max": 96})

    async def test_the_page_escapes_what_it_shows_and_names_why_not_ready(self) -> None:
        """Values are HTML-escaped; a worker that is not ready says why at the top."""
        status = board({make_round("run_<script>")}, ready=False)
        page = render_status(status.snapshot())
        assert "run_&lt;script&gt;" in page
        assert "<script>" not in page.split("<script>", 1)[0]  # only the page's own script
        assert "not ready</span> the API has not answered recently" in page


@pytest.fixture
def serve_status() -> Any:
    """serve_status(host, token) -> the app of a Server with a status board, on loopback."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(host: str, token: str | None) -> AsyncIterator[str]:
        settings = ServerSettings(host=host, port=0,
                                  watch_token=Secret(token) if token else None)
        server = Server(settings, Metrics(), lambda: (True, {}),
                        status=board({make_round()}).snapshot)
        # Served on 127.0.0.1 whatever ``host`` says: the policy follows the configured host.
        async with ServedApp(server.app()) as served:
            yield served.url

    return start


async def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, Any]:
    async with aiohttp.ClientSession() as session, session.get(url, headers=headers) as answer:
        return answer.status, await answer.text(), answer.headers


class TestServer:
    async def test_loopback_serves_the_page_and_the_json_without_a_token(
        self, serve_status: Any
    ) -> None:
        """GET /status is HTML that refreshes itself; /status.json holds the same data."""
        async with serve_status("127.0.0.1", None) as url:
            status, page, headers = await fetch(f"{url}/status")
            json_status, body, _ = await fetch(f"{url}/status.json")
        assert status == 200
        assert headers["Content-Type"].startswith("text/html")
        assert 'data-run="run_1"' in page
        assert "setInterval(refresh" in page
        assert json_status == 200
        assert '"run_id": "run_1"' in body

    async def test_beyond_loopback_without_a_token_the_page_is_off(
        self, serve_status: Any
    ) -> None:
        """A server listening on 0.0.0.0 with no watch token refuses, naming the setting."""
        async with serve_status("0.0.0.0", None) as url:  # noqa: S104 - the policy, not a bind
            status, body, _ = await fetch(f"{url}/status.json")
        assert status == 403
        assert "watch_token" in body

    @pytest.mark.parametrize(("header", "expected"), [
        (None, 401), (f"Bearer {TOKEN}x", 401), (f"Bearer {TOKEN}", 200),
        ("Basic " + base64.b64encode(f"anyone:{TOKEN}".encode()).decode(), 200),
        ("Basic !!!", 401),
    ])
    async def test_beyond_loopback_the_watch_token_opens_it(
        self, serve_status: Any, header: str | None, expected: int
    ) -> None:
        """Bearer for scripts, Basic's password for browsers (which then ask for it)."""
        async with serve_status("0.0.0.0", TOKEN) as url:  # noqa: S104 - the policy, not a bind
            status, _, headers = await fetch(f"{url}/status",
                                             {"Authorization": header} if header else None)
        assert status == expected
        if expected == 401:
            assert headers["WWW-Authenticate"].startswith("Basic")


async def test_a_running_worker_shows_its_round_in_flight_then_done() -> None:
    """Against the simulator: a slow call is listed in flight, then among the last rounds."""
    async with Simulator(api_key="sk-test", seed=5) as sim:
        threads, runs = start_runs(sim, [[calls(("nap", {"seconds": 1.0}), ("add", {"a": 1}))]])
        settings = make_settings(
            api={"base_url": sim.base_url, "max_requests_per_s": 0},
            watch={"threads": threads, "active_poll_interval_s": 0.02,
                   "idle_poll_interval_s": 0.2},
            tools={"modules": ["tests.handlers.sample"]},
            server={"host": "127.0.0.1", "port": 0},
        )
        worker = Worker(settings, Registry.from_modules(settings.tools.modules))
        seen: list[dict[str, Any]] = []

        async def snapshot() -> dict[str, Any]:
            assert worker.server is not None
            async with aiohttp.ClientSession() as session, session.get(
                    f"http://127.0.0.1:{worker.server.port}/status.json") as answer:
                seen.append(await answer.json())
                return seen[-1]

        async with anyio.create_task_group() as tg:
            await tg.start(worker.run)  # not until_idle: the page must outlive the round
            await wait_for(lambda: _has(snapshot(), "in_flight"), what="a round in flight")
            await wait_for(lambda: _has(snapshot(), "recent_rounds"), what="a finished round")
            worker.stop()
    in_flight = next(s["in_flight"][0] for s in seen if s["in_flight"])
    assert (in_flight["run_id"], in_flight["tools"]) == (runs[0], ["nap", "add"])
    done = seen[-1]["recent_rounds"][0]
    assert (done["run_id"], done["outcome"]) == (runs[0], "ok")
    assert done["latency_ms"] >= 1000
    assert {t["tool"] for t in seen[-1]["tools"]} == {"nap", "add"}


async def _has(snapshot: Any, key: str) -> bool:
    return bool((await snapshot)[key])


class TestWords:
    async def test_a_round_whose_tool_raised_is_not_a_green_ok(self) -> None:
        """Submitted, but a call failed: the row says which, and its badge is not green."""
        status = board(set())
        status.round_done(make_round("run_err"), [
            ToolOutput("c", "ok", "add", CallOutcome.OK, 0.01),
            ToolOutput("d", "boom", "charge", CallOutcome.ERROR, 0.02)], "ok")
        snapshot = status.snapshot()
        assert snapshot["recent_rounds"][0]["failed_calls"] == ["charge: error"]
        recent = render_status(snapshot).split('id="recent"', 1)[1]
        assert 'badge ok' not in recent
        assert '<span class="badge bad">ok, 1 failed</span> <small>charge: error</small>' in recent

    async def test_readiness_is_said_in_words(self) -> None:
        """The page's readiness section shows no raw keys such as since_api_answer_s."""
        page = render_status(board(set()).snapshot())
        readiness = page.split("<h2>Readiness</h2>", 1)[1]
        assert "since_api_answer_s" not in readiness
        assert "<dt>the API last answered</dt><dd>0 s ago</dd>" in readiness
