"""Schemathesis fuzzes every operation of the spec: no 5xx, and no invalid request accepted.

Reproduce: `TOOL_WORKER_SPEC=path/to/assistants-runs.openapi.json .venv/bin/pytest
tests/simulator/test_schemathesis.py -v` (examples per operation and mode: EXAMPLES below; the
seed is fixed by hypothesis' `derandomize`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest
import schemathesis
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import negative_data_rejection

from worker.simulator import Simulator, ToolCallScript

from .helpers import SPEC, SimHttp, _spec_path

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anyio.from_thread import BlockingPortal
    from schemathesis import Case

EXAMPLES = 12
CHECKS = [not_a_server_error, negative_data_rejection]
ECHO = ToolCallScript("echo", "{}")

pytestmark = pytest.mark.no_blockbuster  # requests is blocking on purpose; the server has its thread


class Served:
    """A simulator on its own event-loop thread, with fresh objects for each generated case."""

    def __init__(self, portal: BlockingPortal, sim: Simulator) -> None:
        self.portal, self.sim = portal, sim

    def real_ids(self) -> dict[str, str]:
        """A new assistant, thread and run waiting for outputs, so cases reach past the 404s."""
        def make() -> dict[str, str]:
            assistant_id = self.sim.create_assistant("fuzz")
            thread_id = self.sim.create_thread(["hi"])
            run_id = self.sim.create_run(thread_id, assistant_id, [[ECHO]])
            return {"assistant_id": assistant_id, "thread_id": thread_id, "run_id": run_id}

        return self.portal.call(make)


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    with start_blocking_portal() as portal:
        sim = Simulator(spec=_spec_path())
        portal.call(sim.start)
        try:
            yield Served(portal, sim)
        finally:
            portal.call(sim.aclose)


SCHEMA = schemathesis.openapi.from_dict(SPEC.document)
OPERATIONS = [result.ok() for result in SCHEMA.get_all_operations()]


def _authorize(case: Case, key: str, mode: GenerationMode) -> None:
    """The real key, unless this negative case is about the headers (a missing key, say)."""
    data = case.meta.phase.data if case.meta is not None else None
    about_headers = getattr(data, "parameter_location", None) == ParameterLocation.HEADER
    headers = dict(case.headers or {})
    if not (mode is GenerationMode.NEGATIVE and about_headers):
        headers["Authorization"] = f"Bearer {key}"
    headers["OpenAI-Beta"] = "assistants=v2"
    case.headers = headers  # type: ignore[assignment]


def _aim(case: Case, ids: dict[str, str]) -> None:
    """Point a valid case at objects that exist; an invalid one keeps what was generated."""
    for name in case.path_parameters or {}:
        case.path_parameters[name] = ids[name]  # type: ignore[index]
    if isinstance(case.body, dict) and isinstance(case.body.get("assistant_id"), str):
        case.body["assistant_id"] = ids["assistant_id"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", OPERATIONS, ids=lambda op: op.label)
def test_no_server_errors_and_no_invalid_request_accepted(
    served: Served, operation: Any, mode: GenerationMode
) -> None:
    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Case) -> None:
        _authorize(case, served.sim.api_key, mode)
        if mode is GenerationMode.POSITIVE:
            _aim(case, served.real_ids())
        case.call_and_validate(base_url=served.sim.base_url, checks=CHECKS)

    check()


def test_the_fuzzing_covers_every_operation() -> None:
    """Every operation of the spec is fuzzed, none skipped."""
    assert len(OPERATIONS) == 18


@pytest.mark.parametrize(("path", "body", "param"), [
    ("/threads", {"messages": [{"role": "user", "content": [True]}]}, "messages[0].content[0]"),
    ("/assistants", {"model": 5, "tools": 7}, "model"),
])
async def test_wrong_types_are_400_even_without_the_spec(path: str, body: Any, param: str) -> None:
    """The cases fuzzing found (a 500 and a 200) are refused by the simulator's own checks."""
    async with Simulator() as sim, SimHttp(sim.base_url) as api:
        reply = await api.post(path, body)
    assert reply.status == 400
    assert reply.body["error"]["param"] == param
