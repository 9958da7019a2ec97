"""Numbers from the measurements, the targets, and the markdown they are reported in."""

from __future__ import annotations

import math
import os
import platform
import shutil
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.benchmarks.scenarios import SCENARIOS

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence
    from pathlib import Path

    from tests.benchmarks.harness import CaseResult

__all__ = ["Row", "Target", "machine", "render_results", "row", "targets", "write_doc"]

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
# Finishing the last run takes one thinking time and a poll or two; longer is worth a note.
_SLOW_EXIT_S = 3.0


@dataclass(frozen=True, slots=True)
class Row:
    """One system on one scenario under one API profile."""

    scenario: str
    api: str
    hints: str  # the simulator's openai-poll-after-ms mode
    system: str
    rounds: int  # answered (accepted submissions)
    total_rounds: int
    duplicates: int  # accepted submissions beyond the first of a round (the API refuses them)
    faults: int  # faults the simulator injected
    calls: int
    error_outputs: int
    refused: int
    makespan_s: float  # runs created -> last accepted submission
    exit_s: float  # runs created -> the system's process exited
    cpu_s: float  # the system's CPU after start-up
    peak_rss_mb: float
    requests: int
    request_counts: dict[str, int]
    floor_s: float  # the API-bound least makespan (Scenario.floor_s)
    limit_s: float  # the floor plus the first round's detection (Scenario.limit_s)
    latency_ms: tuple[float, ...]  # each answered round: visible -> accepted, sorted

    @property
    def rounds_per_s(self) -> float:
        return self.rounds / self.makespan_s if self.makespan_s > 0 else 0.0

    @property
    def calls_per_s(self) -> float:
        return self.calls / self.makespan_s if self.makespan_s > 0 else 0.0

    @property
    def cpu_s_per_1k_calls(self) -> float:
        return self.cpu_s / self.calls * 1000 if self.calls else math.nan

    @property
    def requests_per_round(self) -> float:
        return self.requests / self.rounds if self.rounds else math.nan

    def latency_p(self, percent: float) -> float:
        """Nearest-rank percentile of the visible -> accepted latency, in ms."""
        if not self.latency_ms:
            return math.nan
        rank = max(math.ceil(percent / 100 * len(self.latency_ms)), 1)
        return self.latency_ms[rank - 1]

    @property
    def partial(self) -> bool:
        return self.rounds < self.total_rounds

    @property
    def lost(self) -> int:
        """Scripted rounds never accepted (for a system that answers every run)."""
        return self.total_rounds - (self.rounds - self.duplicates)


def row(result: CaseResult) -> Row:
    sim = result.sim
    visible = {(run_id, index): at for run_id, index, at in sim["rounds_visible"]}
    accepted = sim["accepted"]
    latencies = sorted(
        (at - visible[(run_id, index)]) * 1000 for run_id, index, at, _, _ in accepted
    )
    last = max((at for _, _, at, _, _ in accepted), default=sim["started_at"])
    unique = {(run_id, index) for run_id, index, *_ in accepted}
    return Row(
        scenario=result.scenario.name,
        api=result.profile.name,
        hints=result.profile.hints,
        system=result.system.name,
        rounds=len(accepted),
        total_rounds=sim["total_rounds"],
        duplicates=len(accepted) - len(unique),
        faults=sum(sim.get("faults_injected", {}).values()),
        calls=sum(n for *_, n, _ in accepted),
        error_outputs=sum(errors for *_, errors in accepted),
        refused=sim["refused"],
        makespan_s=last - sim["started_at"],
        exit_s=result.usage.exited_at - sim["started_at"],
        cpu_s=result.usage.cpu_s - result.ready_cpu_s,
        peak_rss_mb=result.usage.max_rss_mb,
        requests=sum(sim["request_counts"].values()),
        request_counts=dict(sim["request_counts"]),
        floor_s=result.scenario.floor_s(result.profile),
        limit_s=result.scenario.limit_s(result.profile),
        latency_ms=tuple(latencies),
    )


# targets


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    where: str
    measured: str
    threshold: str
    passed: bool | None  # None: not applicable as stated (see the note)
    note: str = ""


def targets(rows: Sequence[Row]) -> list[Target]:
    index = {(r.scenario, r.api, r.system): r for r in rows}
    found: list[Target] = []
    found += _issue15_targets(index)
    found += _latency_targets(index)
    found += _cpu_targets(index)
    found += _ratio_targets(index)
    found += _request_targets(index)
    found += _agents_targets(index)
    return found


_Index = dict[tuple[str, str, str], Row]
_TW, _A, _B, _C = "tool-worker", "baseline-a", "baseline-b", "baseline-c"
_TW_UNBUDGETED = "tool-worker-unbudgeted"
# Issue #15: tool-worker's CPU per trivial call at zero latency before streamed submissions.
CPU_MS_BEFORE = 0.17


def _issue15_targets(index: _Index) -> Iterable[Target]:
    """The issue's targets on its table's scenario, for every profile it ran under."""
    for (scenario, api, system), tw in index.items():
        if system != _TW or not scenario.startswith("table40"):
            continue
        where = f"{scenario} / {api} (hints {tw.hints})"
        c = index.get((scenario, api, _C))
        if scenario == "table40":
            ratio = tw.makespan_s / tw.limit_s
            yield Target("makespan within 1.1x the limit", where,
                         f"{tw.makespan_s:.2f} s = {ratio:.2f}x {tw.limit_s:.2f} s",
                         "<= 1.1x", ratio <= 1.1)
        if c is not None:
            factor = 1.3 if scenario == "table40" else 1.5
            speedup = c.makespan_s / tw.makespan_s if tw.makespan_s else math.nan
            yield Target("faster than baseline-c (makespan c / tool-worker)", where,
                         f"{speedup:.2f}x ({c.makespan_s:.2f} s / {tw.makespan_s:.2f} s)",
                         f">= {factor}x", speedup >= factor)
            yield Target("API requests vs baseline-c", where, f"{tw.requests} vs {c.requests}",
                         "<= baseline-c", tw.requests <= c.requests)
        if scenario == "table40_faulty":
            for r in (index.get((scenario, api, s)) for s in (_TW, _B, _C)):
                if r is not None:
                    yield Target(f"nothing lost: {r.system}", where,
                                 f"{r.rounds - r.duplicates}/{r.total_rounds} rounds once, "
                                 f"{r.duplicates} twice, {r.faults} faults",
                                 "every round accepted once", r.lost == 0 and not r.duplicates)
    for system in (_TW, _TW_UNBUDGETED):
        tw = index.get(("trivial1000", "zero", system))
        if tw is not None:
            yield Target(f"CPU per trivial call, no worse than before: {system}",
                         "trivial1000 / zero", f"{tw.cpu_s_per_1k_calls:.3f} ms",
                         f"<= {CPU_MS_BEFORE} ms", tw.cpu_s_per_1k_calls <= CPU_MS_BEFORE)


def _latency_targets(index: _Index) -> Iterable[Target]:
    for api, limit, note in (
        ("zero", 230.0, ""),
        ("remote", 280.0, "230 ms + the 50 ms the submission itself takes: 230 is out of reach"),
    ):
        tw = index.get(("round16", api, _TW))
        if tw is not None:
            p99 = tw.latency_p(99)
            yield Target("16 x 200 ms round submitted <= 1.15 x 200 ms after visible",
                         f"round16 / {api}", f"{p99:.0f} ms", f"<= {limit:.0f} ms",
                         p99 <= limit, note)


def _cpu_targets(index: _Index) -> Iterable[Target]:
    for api in ("remote", "zero"):
        tw = index.get(("trivial1000", api, _TW))
        if tw is not None:
            per_call = tw.cpu_s_per_1k_calls  # s per 1,000 calls == ms per call
            yield Target("worker CPU per trivial call", f"trivial1000 / {api}",
                         f"{per_call:.3f} ms", "< 0.3 ms", per_call < 0.3)


def _ratio_targets(index: _Index) -> Iterable[Target]:
    for scenario in ("round16", "runs200", "trivial1000", "trivial1000_faulty"):
        tw = index.get((scenario, "remote", _TW))
        for other, factor in ((_A, 5.0), (_B, 1.5)):
            base = index.get((scenario, "remote", other))
            if tw is None or base is None or base.calls_per_s == 0:
                continue
            ratio = tw.calls_per_s / base.calls_per_s
            yield Target(f"tool calls/s vs {other}", f"{scenario} / remote", f"{ratio:.2f}x",
                         f">= {factor}x", ratio >= factor, _reach(base, factor))


def _reach(base: Row, factor: float) -> str:
    """Say so when the API alone makes the ratio impossible: base is within factor x floor."""
    best = base.makespan_s / base.floor_s if base.floor_s and not base.partial else math.inf
    if best >= factor:
        return ""
    return (f"out of reach: {base.system} took {base.makespan_s:.2f} s and the API-bound floor "
            f"is {base.floor_s:.2f} s, so at most {best:.2f}x")


def _request_targets(index: _Index) -> Iterable[Target]:
    for api in ("remote", "zero"):
        for scenario in ("round16", "runs200", "trivial1000", "trivial1000_faulty"):
            tw = index.get((scenario, api, _TW))
            base = index.get((scenario, api, _B))
            if tw is None or base is None:
                continue
            yield Target("API requests per round vs baseline-b", f"{scenario} / {api}",
                         f"{tw.requests_per_round:.2f} vs {base.requests_per_round:.2f}",
                         "<= baseline-b", tw.requests_per_round <= base.requests_per_round)


_AGENTS_SDK = "agents-sdk"


def _agents_targets(index: _Index) -> Iterable[Target]:
    """The Agents API (#21): the request budget, nothing lost, and how the SDK loop compares."""
    for (scenario, api, system), r in index.items():
        if not scenario.startswith("agents"):
            continue
        where = f"{scenario} / {api}"
        turns = SCENARIOS[scenario].rounds
        budget = r.total_rounds // turns * (turns + 3)
        if not SCENARIOS[scenario].api_faults:  # the issue's budget is without faults
            yield Target(f"API requests <= sessions x (turns + 3): {system}", where,
                         str(r.requests), f"<= {budget}", r.requests <= budget)
        yield Target(f"every turn answered once: {system}", where,
                     f"{r.rounds - r.duplicates}/{r.total_rounds} once, {r.duplicates} twice",
                     "all, once", r.lost == 0 and not r.duplicates)
        sdk = index.get((scenario, api, _AGENTS_SDK))
        if system != _TW or sdk is None:
            continue
        yield Target("makespan vs agents-sdk (agents-sdk / tool-worker)", where,
                     f"{sdk.makespan_s / r.makespan_s:.2f}x ({sdk.makespan_s:.2f} s / "
                     f"{r.makespan_s:.2f} s)", ">= 1x", sdk.makespan_s >= r.makespan_s)
        yield Target("CPU per call vs agents-sdk", where,
                     f"{r.cpu_s_per_1k_calls:.3f} ms vs {sdk.cpu_s_per_1k_calls:.3f} ms",
                     "<= agents-sdk", r.cpu_s_per_1k_calls <= sdk.cpu_s_per_1k_calls)


# markdown


def render_results(rows: Sequence[Row], failures: Sequence[str], command: str,
                   machine_lines: Sequence[str]) -> str:
    parts = [
        f"Command: `{command}`",
        "",
        *[f"- {line}" for line in machine_lines],
        "",
        _results_table(rows),
        "",
        _targets_table(targets(rows)),
        "",
        _requests_table(rows),
    ]
    if failures:
        parts += ["", "Failed cases:", "", *[f"- {f}" for f in failures]]
    return "\n".join(parts) + "\n"


def _results_table(rows: Sequence[Row]) -> str:
    head = ("| scenario | API | hints | system | rounds | makespan s | limit s | rounds/s "
            "| calls/s | CPU s / 1k calls | peak RSS MB | API requests | req/round | p50 ms "
            "| p99 ms | notes |")
    lines = [head, "|" + "---|" * 16]
    lines += [_result_line(r) for r in rows]
    return "\n".join(lines)


def _result_line(r: Row) -> str:
    cells = [
        r.scenario, r.api, r.hints, r.system, f"{r.rounds}/{r.total_rounds}",
        f"{r.makespan_s:.2f}", f"{r.limit_s:.2f}", f"{r.rounds_per_s:.1f}", f"{r.calls_per_s:.0f}", f"{r.cpu_s_per_1k_calls:.3f}",
        f"{r.peak_rss_mb:.0f}", str(r.requests), f"{r.requests_per_round:.2f}",
        f"{r.latency_p(50):.0f}", f"{r.latency_p(99):.0f}", _notes(r),
    ]
    return "| " + " | ".join(cells) + " |"


def _notes(r: Row) -> str:
    notes = []
    if r.partial:
        estimate = r.total_rounds / r.rounds_per_s if r.rounds_per_s else math.inf
        notes.append(f"time budget: all rounds would take ~{estimate:.0f} s")
    if r.exit_s - r.makespan_s > _SLOW_EXIT_S:
        notes.append(f"exited {r.exit_s - r.makespan_s:.0f} s after its last submission")
    if r.error_outputs:
        notes.append(f"{r.error_outputs} error outputs")
    if r.refused:
        notes.append(f"{r.refused} submissions refused")
    if r.faults:
        notes.append(f"{r.faults} faults injected")
    if not r.partial and r.lost:
        notes.append(f"{r.lost} rounds LOST")
    if r.duplicates:
        notes.append(f"{r.duplicates} rounds accepted twice")
    return "; ".join(notes)


_ENDPOINTS = ("list_assistants", "list_runs", "retrieve_run", "submit_tool_outputs")
# An Agents API row's: a turn is a round, an events request a submission.
_AGENTS_ENDPOINTS = ("stream_session_events", "retrieve_session", "list_sessions",
                     "create_session_events")


def _requests_table(rows: Sequence[Row]) -> str:
    assistants = [r for r in rows if not r.scenario.startswith("agents")]
    agents = [r for r in rows if r.scenario.startswith("agents")]
    tables = [_endpoint_table(chosen, endpoints)
              for chosen, endpoints in ((assistants, _ENDPOINTS), (agents, _AGENTS_ENDPOINTS))
              if chosen]
    return "API requests by endpoint (per answered round in brackets):\n\n" + "\n\n".join(tables)


def _endpoint_table(rows: Sequence[Row], endpoints: Sequence[str]) -> str:
    lines = ["| scenario | API | system | " + " | ".join(endpoints) + " | other |",
             "|" + "---|" * (4 + len(endpoints))]
    for r in rows:
        counts = [r.request_counts.get(e, 0) for e in endpoints]
        other = r.requests - sum(counts)
        cells = [f"{n} ({n / r.rounds:.2f})" if r.rounds else str(n) for n in (*counts, other)]
        lines.append(f"| {r.scenario} | {r.api} | {r.system} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _targets_table(found: Sequence[Target]) -> str:
    lines = ["| target | where | measured | threshold | result |", "|---|---|---|---|---|"]
    for t in found:
        result = {True: "PASS", False: "FAIL", None: "n/a"}[t.passed]
        if t.note:
            result += f" ({t.note})"
        lines.append(f"| {t.name} | {t.where} | {t.measured} | {t.threshold} | {result} |")
    return "\n".join(lines)


def machine() -> list[str]:
    """``uname -a``, ``nproc``, the CPU model and the Python version."""
    uname = shutil.which("uname")
    uname_a = (
        subprocess.run([uname, "-a"], capture_output=True, text=True, check=False).stdout.strip()  # noqa: S603
        if uname else " ".join(os.uname())
    )
    return [
        f"`uname -a`: {uname_a}",
        f"`nproc`: {os.cpu_count()} ({_cpu_model()})",
        f"Python {platform.python_version()} ({platform.python_implementation()})",
    ]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def write_doc(path: Path, results: str, template: str) -> None:
    """Replace the results between the markers of ``path``; create it from ``template`` if new."""
    text = path.read_text(encoding="utf-8") if path.exists() else template
    if BEGIN not in text or END not in text:
        text = text.rstrip("\n") + f"\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{head}{BEGIN}\n{results}{END}{tail}", encoding="utf-8")
