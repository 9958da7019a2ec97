"""Fixtures for the simulator's own tests: a fresh simulator and a spec-checking client."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from tests.simulator.helpers import SimHttp
from worker.simulator import Simulator

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


@pytest.fixture
async def sim() -> AsyncIterator[Simulator]:
    async with Simulator() as simulator:
        yield simulator


@pytest.fixture
async def api(sim: Simulator) -> AsyncIterator[SimHttp]:
    async with SimHttp(sim.base_url) as client:
        yield client
