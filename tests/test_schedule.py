"""The schedule: which thread is looked at next, and how soon again."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from tests.conftest import make_settings
from worker.api.budget import Lane
from worker.models import RunStatus
from worker.rounds.schedule import WARM_S, Pace, ThreadState, Timeline


def watch_settings(**overrides: object):
    return make_settings(watch={"active_poll_interval_s": 0.2, "idle_poll_interval_s": 5.0,
                                "min_idle_poll_interval_s": 1.0, **overrides}).watch


class TestPace:
    async def test_an_unchanged_run_is_looked_at_less_and_less_often(self) -> None:
        """0.2 s after a change, then 1.25x longer each time it is the same, up to idle."""
        pace, state = Pace(watch_settings(), 200), ThreadState("t")
        delays = [pace.active(state, RunStatus.IN_PROGRESS) for _ in range(30)]
        assert delays[0] == pytest.approx(0.2)
        assert delays[1] == pytest.approx(0.25)
        assert delays == sorted(delays)
        assert delays[-1] == 5.0

    async def test_a_change_of_status_starts_the_pace_again(self) -> None:
        """A run that moved on is looked at soon again."""
        pace, state = Pace(watch_settings(), 200), ThreadState("t")
        for _ in range(10):
            pace.active(state, RunStatus.QUEUED)
        assert pace.active(state, RunStatus.IN_PROGRESS) == pytest.approx(0.2)

    async def test_a_warm_thread_is_looked_at_sooner_than_a_cold_one(self) -> None:
        """Runs follow one another: a thread that had one lately waits the floor, not more."""
        pace = Pace(watch_settings(), 200)
        warm, cold = ThreadState("warm"), ThreadState("cold")
        pace.saw_run(warm)
        assert warm.warm_until == pytest.approx(anyio.current_time() + WARM_S, abs=0.1)
        assert pace.idle(warm, watched=10_000) == 1.0
        assert pace.idle(cold, watched=10_000) == 5.0  # 10,000 / 100 spare per s, capped

    @pytest.mark.parametrize(("watched", "per_s", "expected"),
                             [(10, 200, 1.0), (300, 200, 3.0), (100_000, 200, 5.0),
                              (10, 0, 1.0)])
    async def test_cold_threads_share_half_the_budget(self, watched, per_s, expected) -> None:
        """Between the floor and idle_poll_interval_s, as the budget left over allows."""
        assert Pace(watch_settings(), per_s).idle(ThreadState("t"), watched) == expected

    async def test_failures_back_off_exponentially_with_a_cap(self) -> None:
        """Jittered between half and all of base * 2^failures, never past a minute."""
        pace, state = Pace(watch_settings(), 200), ThreadState("t")
        state.failures = 1
        assert 0.2 <= pace.after_failure(state) <= 0.4
        state.failures = 40
        assert 6.4 <= pace.after_failure(state) <= 12.8  # min(60, 0.2 * 64) = 12.8


class TestTimeline:
    async def test_active_runs_come_first_then_announced_and_idle_threads(self) -> None:
        """Due at once, an active run goes before an announced thread and an idle one."""
        timeline = Timeline()
        states = {"idle": ThreadState("idle"), "announced": ThreadState("announced", announced=True),
                  "active": ThreadState("active", run_id="run_1")}
        for state in states.values():
            timeline.schedule(state, 0.0)
        lanes = {Lane.ACTIVE, Lane.ANNOUNCED, Lane.IDLE}
        first = timeline.next_due(lanes, states.get)
        assert first is not None
        assert first[0].thread_id == "active"

    async def test_a_rescheduled_thread_leaves_no_stale_look(self) -> None:
        """Its earlier entry is skipped: one look per schedule."""
        timeline, state = Timeline(), ThreadState("t")
        timeline.schedule(state, 0.0)
        timeline.schedule(state, 0.0)
        lanes = {Lane.IDLE}
        assert timeline.next_due(lanes, {"t": state}.get) is not None
        assert timeline.next_due(lanes, {"t": state}.get) is None

    async def test_a_lane_without_a_free_slot_does_not_wake_the_loop(self) -> None:
        """A due thread in a full lane must not make the loop spin: it sleeps until woken."""
        timeline = Timeline()
        timeline.schedule(ThreadState("active", run_id="run_1"), 0.0)  # due now, lane full
        woke = anyio.Event()

        async def sleep() -> None:
            await timeline.sleep_until_due({Lane.IDLE})
            woke.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleep)
            for _ in range(20):  # plenty of turns of the loop for a sleep of 0 s to end
                await anyio.lowlevel.checkpoint()
            assert not woke.is_set()
            timeline.wake()
            with anyio.fail_after(5):
                await woke.wait()


async def test_an_announced_thread_goes_ahead_of_threads_already_late() -> None:
    """A backlog of late polls does not delay an announcement: it is looked at first."""
    timeline = Timeline()
    states = {name: ThreadState(name, run_id="run_1") for name in ("late1", "late2", "new")}
    timeline.schedule(states["late1"], -2.0)
    timeline.schedule(states["late2"], -1.0)
    timeline.schedule(states["new"], 0.0, first=True)
    picked = [timeline.next_due({Lane.ACTIVE}, states.get) for _ in range(3)]
    assert [(p[0].thread_id, p[1] if p[0].thread_id == "new" else None) for p in picked if p] \
        == [("new", 0.0), ("late1", None), ("late2", None)]
