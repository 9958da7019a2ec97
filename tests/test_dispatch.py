"""The dispatcher: all calls at once, and every failure turned into an output for the model."""

from __future__ import annotations

import os

import anyio
import pytest
import structlog

from tests.handlers import options, sample
from worker import ToolContext, tool
from worker.config.settings import ToolsSettings
from worker.handlers.registry import Registry, tool_spec
from worker.models import CallOutcome, Round, ToolCall
from worker.observability.metrics import Metrics
from worker.rounds.dispatch import Dispatcher
from worker.testing import call_tool, capture_logs, fake_context


def make_round(*calls: tuple[str, str]) -> Round:
    return Round(
        thread_id="thread_1", run_id="run_1", assistant_id="asst_1", expires_at=None,
        tool_calls=tuple(ToolCall(f"call_{i}", name, args) for i, (name, args) in enumerate(calls)),
        detected_at=anyio.current_time(),
    )


@pytest.fixture
def dispatcher() -> Dispatcher:
    registry = Registry.from_modules(["tests.handlers.sample"])
    return Dispatcher(registry, ToolsSettings(max_output_chars=1000), Metrics())


async def test_calls_of_a_round_overlap(dispatcher: Dispatcher) -> None:
    """Async and sync handlers of one round run at the same time."""
    sample.CALLS.clear()
    round_ = make_round(*[("nap", '{"seconds": 0.3}')] * 3,
                        *[("blocking_sleep", '{"seconds": 0.3}')] * 3)
    outputs = await dispatcher.run(round_)
    assert [o.outcome for o in outputs] == ["ok"] * 6
    assert [o.tool_call_id for o in outputs] == [f"call_{i}" for i in range(6)]
    latest_start = max(start for _, _, start, _ in sample.CALLS)
    earliest_end = min(end for _, _, _, end in sample.CALLS)
    assert latest_start < earliest_end, "every call started before any call finished"


async def test_outputs_keep_the_order_of_the_calls(dispatcher: Dispatcher) -> None:
    """Outputs come back in the order of the round's calls, whatever order they finished in."""
    round_ = make_round(("nap", '{"seconds": 0.2}'), ("add", '{"a": 1, "b": 2}'))
    outputs = await dispatcher.run(round_)
    assert [(o.tool_call_id, o.output) for o in outputs] == [
        ("call_0", "napped 0.2"), ("call_1", "3")]


@pytest.mark.parametrize(
    ("call", "outcome", "text"),
    [
        (("add", "{not json"), "invalid_arguments", "invalid arguments for tool 'add': not valid JSON"),
        (("add", "[1, 2]"), "invalid_arguments", "expected a JSON object"),
        (("add", '{"b": 2}'), "invalid_arguments", "a: Field required"),
        (("add", '{"a": "many"}'), "invalid_arguments", "a: Input should be a valid integer"),
        (("add", '{"a": 1, "c": 3}'), "invalid_arguments", "c: unexpected argument"),
        (("weather", '{"city": "Oslo", "unit": "k"}'), "invalid_arguments", "unit: Input should be 'c' or 'f'"),
        (("get_stock", "{}"), "unknown_tool", "unknown tool 'get_stock'; available tools: add,"),
        (("boom", "{}"), "error", "the tool 'boom' failed: RuntimeError: the database is on fire"),
        (("hang", "{}"), "timeout", "the tool 'hang' timed out after 0.2 s"),
        (("not_json", "{}"), "error", "cannot be encoded as JSON"),
    ],
)
async def test_bad_input_becomes_a_clear_output(
    dispatcher: Dispatcher, call: tuple[str, str], outcome: str, text: str
) -> None:
    """Every kind of failure is an output string; the other calls of the round are unharmed."""
    outputs = await dispatcher.run(make_round(call, ("add", '{"a": 41}')))
    assert outputs[0].outcome == outcome
    assert text in outputs[0].output
    assert (outputs[1].outcome, outputs[1].output) == ("ok", "42")


async def test_tool_error_text_is_sent_verbatim(dispatcher: Dispatcher) -> None:
    """ToolError's message is the output, without any prefix or traceback."""
    (output,) = await dispatcher.run(make_round(("fail_politely", '{"city": "Atlantis"}')))
    assert output.output == "city 'Atlantis' not found; pass a city name like 'Paris'"
    assert output.outcome == "error"


async def test_huge_output_is_truncated_with_a_marker(dispatcher: Dispatcher) -> None:
    """An output over max_output_chars is cut to the limit and says so."""
    (output,) = await dispatcher.run(make_round(("repeat", '{"text": "x", "times": 1000}')))
    assert output.output == "x" * 1000
    (output,) = await dispatcher.run(make_round(("repeat", '{"text": "x", "times": 5000}')))
    assert len(output.output) == 1000
    assert output.output.startswith("xxx")
    assert output.output.endswith("of 5000 characters removed]")


async def test_round_deadline_bounds_every_call(dispatcher: Dispatcher) -> None:
    """No call runs past the round's deadline, whatever its own timeout."""
    deadline = anyio.current_time() + 0.2
    (output,) = await dispatcher.run(make_round(("nap", '{"seconds": 30}')), deadline=deadline)
    assert output.outcome == "timeout"


async def test_context_reaches_sync_handlers(dispatcher: Dispatcher) -> None:
    """A sync handler in a worker thread receives the call's ToolContext."""
    (output,) = await dispatcher.run(make_round(("describe", "{}")))
    assert output.output == '{"thread_id":"thread_1","run_id":"run_1","tool_call_id":"call_0"}'


async def test_logs_carry_the_call_ids(dispatcher: Dispatcher) -> None:
    """Log lines about a call carry tool_call_id and tool."""
    with capture_logs() as logs:
        await dispatcher.run(make_round(("boom", "{}")))
    (line,) = [entry for entry in logs if entry["event"] == "tool handler raised"]
    assert line["tool_call_id"] == "call_0"
    assert line["tool"] == "boom"


async def test_metrics_count_each_outcome() -> None:
    """Each answered call moves the counter of its tool and outcome by one."""
    metrics = Metrics()
    registry = Registry.from_modules(["tests.handlers.sample"])
    await Dispatcher(registry, ToolsSettings(), metrics).run(
        make_round(("add", '{"a": 1}'), ("add", "nope"), ("missing", "{}")))
    value = metrics.registry.get_sample_value
    assert value("toolworker_tool_calls_total", {"tool": "add", "outcome": "ok"}) == 1
    assert value("toolworker_tool_calls_total", {"tool": "add", "outcome": "invalid_arguments"}) == 1
    assert value("toolworker_tool_calls_total", {"tool": "(unknown)", "outcome": "unknown_tool"}) == 1
    assert value("toolworker_tool_calls_in_flight", {}) == 0


async def test_call_tool_uses_the_real_path() -> None:
    """worker.testing.call_tool validates and converts errors exactly as the worker does."""
    output = await call_tool(sample.add, {"a": 2})
    assert (output.outcome, output.output) == ("ok", "3")
    output = await call_tool(sample.add, '{"a": "x"}')
    assert output.outcome == "invalid_arguments"


async def test_too_many_calls_are_refused_but_answered() -> None:
    """Calls past max_calls_per_round get an error output; the round keeps every id."""
    registry = Registry.from_modules(["tests.handlers.sample"])
    dispatcher = Dispatcher(registry, ToolsSettings(max_calls_per_round=2), Metrics())
    outputs = await dispatcher.run(make_round(*[("add", '{"a": 1}')] * 4))
    assert [o.tool_call_id for o in outputs] == ["call_0", "call_1", "call_2", "call_3"]
    assert [o.outcome for o in outputs] == ["ok", "ok", "error", "error"]
    assert "asked for 4 tool calls; only the first 2 were run" in outputs[3].output


async def test_huge_arguments_are_refused_unread() -> None:
    """Arguments over max_arguments_chars are invalid without being parsed."""
    registry = Registry.from_modules(["tests.handlers.sample"])
    dispatcher = Dispatcher(registry, ToolsSettings(max_arguments_chars=100), Metrics())
    (output,) = await dispatcher.run(make_round(("add", '{"a": 1, "pad": "' + "x" * 200 + '"}')))
    assert output.outcome == "invalid_arguments"
    assert "more than the limit of 100" in output.output


async def test_a_sync_handler_that_overruns_is_abandoned_and_counted() -> None:
    """A blocking handler past its timeout cannot be stopped: the round goes on, and it is counted."""
    metrics = Metrics()
    registry = Registry.from_modules(["tests.handlers.sample"])
    dispatcher = Dispatcher(registry, ToolsSettings(), metrics)
    deadline = anyio.current_time() + 0.2
    (output,) = await dispatcher.run(make_round(("blocking_sleep", '{"seconds": 1.5}')),
                                     deadline=deadline)
    assert output.outcome == "timeout"
    assert metrics.registry.get_sample_value(
        "toolworker_abandoned_threads_total", {"tool": "blocking_sleep"}) == 1


async def test_arguments_and_outputs_are_logged_only_when_asked() -> None:
    """log_arguments puts arguments and outputs in the log; by default they stay out."""
    registry = Registry.from_modules(["tests.handlers.sample"])
    for enabled in (False, True):
        dispatcher = Dispatcher(registry, ToolsSettings(), Metrics(), log_arguments=enabled)
        with capture_logs() as logs:
            await dispatcher.run(make_round(("add", '{"a": 7}')))
        logged = [entry for entry in logs if "arguments" in entry or "output" in entry]
        assert bool(logged) is enabled


async def test_nan_and_infinity_are_not_json(dispatcher: Dispatcher) -> None:
    """Arguments with NaN or Infinity are invalid, as JSON says."""
    (output,) = await dispatcher.run(make_round(("nap", '{"seconds": NaN}')))
    assert output.outcome == "invalid_arguments"
    assert "NaN is not a JSON value" in output.output


async def test_context_tells_the_time_left(dispatcher: Dispatcher) -> None:
    """ToolContext.seconds_left() counts down to the round's deadline, from any thread."""
    ctx = fake_context(timeout_s=30)
    assert 29 < ctx.seconds_left() <= 30
    assert abs(ctx.seconds_left() - (ctx.deadline - anyio.current_time())) < 0.5


async def test_call_tool_hands_the_callers_context_to_the_handler() -> None:
    """call_tool passes the caller's ToolContext fields, its log included, to the handler."""
    seen: list[ToolContext] = []

    @tool
    def remember(ctx: ToolContext) -> str:
        """Keep the context."""
        seen.append(ctx)
        return "ok"

    log = structlog.get_logger("mine").bind(request="r-1")
    ctx = fake_context(thread_id="thread_x", tool_call_id="call_x", log=log)
    assert (await call_tool(remember, ctx=ctx)).output == "ok"
    assert seen[0].log is log
    assert (seen[0].thread_id, seen[0].tool_call_id) == ("thread_x", "call_x")


async def test_hidden_errors_reach_only_the_log() -> None:
    """With expose_errors=False the model reads a generic line; the log has the exception."""
    with capture_logs() as logs:
        output = await call_tool(options.secretive)
    assert output.outcome == "error"
    assert output.output == "Error: the tool 'secretive' failed; the error was logged."
    (line,) = [entry for entry in logs if entry["event"] == "tool handler raised"]
    assert "hunter2" in str(line["exc_info"])


async def test_exposed_errors_name_the_exception() -> None:
    """By default the model reads the exception's type and message."""
    output = await call_tool(options.leaky)
    assert output.output == "Error: the tool 'leaky' failed: RuntimeError: db01.internal is down"


async def test_a_tool_output_limit_overrides_the_configured_one() -> None:
    """max_output_chars on @tool cuts that tool's outputs, whatever [tools] says."""
    settings = ToolsSettings(max_output_chars=100_000)
    output = await call_tool(options.chatty, {"times": 1000}, settings=settings)
    assert len(output.output) == 300
    assert output.output.endswith("of 5000 characters removed]")


async def test_a_process_tool_runs_in_another_process() -> None:
    """process=True runs the handler in a worker process and returns its result."""
    output = await call_tool(options.cpu_pid)
    assert output.outcome == "ok"
    assert int(output.output) != os.getpid()


async def test_a_tool_error_from_a_process_is_sent_verbatim() -> None:
    """A ToolError raised in the worker process reaches the model as its text."""
    output = await call_tool(options.cpu_refuses, {"city": "Atlantis"})
    assert (output.outcome, output.output) == (
        "error", "no weather for 'Atlantis'; pass a city name like 'Paris'")


async def test_a_process_tool_that_overruns_times_out() -> None:
    """A CPU-bound handler holding the GIL in a process is stopped by its timeout."""
    metrics = Metrics()
    dispatcher = Dispatcher(Registry.from_modules(["tests.handlers.options"]), ToolsSettings(),
                            metrics)
    (output,) = await dispatcher.run(make_round(("cpu_spin", "{}")))
    assert (output.outcome, output.output) == (
        "timeout", "Error: the tool 'cpu_spin' timed out after 0.5 s.")
    # The process is killed, not abandoned like a thread.
    assert metrics.registry.get_sample_value(
        "toolworker_abandoned_threads_total", {"tool": "cpu_spin"}) is None


@tool(name="x", timeout=60)
async def x_long() -> str:
    """Wants a minute."""
    return "ran"


@tool(name="x", timeout=1)
async def x_short() -> str:
    """Wants a second."""
    return "ran"


def registry_of(fn: object) -> Registry:
    spec = tool_spec(fn)  # type: ignore[arg-type]
    assert spec is not None
    return Registry([spec])


def expiring_round(expires_in_s: float) -> Round:
    now = anyio.current_time()
    return Round("thread_1", "run_1", "asst_1", None, (ToolCall("call_0", "x", "{}"),),
                 detected_at=now, expiry=now + expires_in_s)


async def test_a_short_handler_runs_in_the_margin_before_expiry() -> None:
    """With the run expiring in 3 s and a 5 s margin, a tool whose 1 s timeout still fits
    before expiry (less the submit reserve) runs and answers."""
    dispatcher = Dispatcher(registry_of(x_short), ToolsSettings(deadline_margin_s=5),
                            Metrics())
    (output,) = await dispatcher.run(expiring_round(3.0))
    assert (output.outcome, output.output) == ("ok", "ran")


async def test_a_long_handler_is_not_run_when_the_run_expires_first() -> None:
    """With the run expiring in 3 s, a tool that wants 60 s is not run, and says why."""
    metrics = Metrics()
    dispatcher = Dispatcher(registry_of(x_long), ToolsSettings(deadline_margin_s=5),
                            metrics)
    (output,) = await dispatcher.run(expiring_round(3.0))
    assert output.outcome == CallOutcome.NOT_RUN
    assert output.output == "Error: the run expires in 3 s; the tool 'x' was not run."
    assert metrics.registry.get_sample_value(
        "toolworker_tool_calls_total", {"tool": "x", "outcome": "not_run"}) == 1


async def test_a_repeated_call_id_is_answered_once_by_its_first_call(
    dispatcher: Dispatcher,
) -> None:
    """Issue #25: duplicate ids in one round all ran, each with the same ctx.tool_call_id,
    which handlers use as an idempotency key. Each id now runs once (its first call) and gets
    one output, and the round logs it once."""
    sample.CALLS.clear()
    calls = (ToolCall("call_a", "nap", '{"seconds": 0}'), ToolCall("call_b", "add", '{"a": 1}'),
             ToolCall("call_a", "nap", '{"seconds": 0}'), ToolCall("call_a", "add", '{"a": 9}'))
    round_ = Round(thread_id="thread_1", run_id="run_1", assistant_id="asst_1", expires_at=None,
                   tool_calls=calls, detected_at=anyio.current_time())
    with capture_logs() as logs:
        outputs = await dispatcher.run(round_)
    assert [(o.tool_call_id, o.tool) for o in outputs] == [("call_a", "nap"), ("call_b", "add")]
    assert [call_id for _, call_id, _, _ in sample.CALLS] == ["call_a"]
    (line,) = [e for e in logs if e["event"].startswith("round repeats tool call ids")]
    assert (line["tool_calls"], line["distinct_ids"]) == (4, 2)
