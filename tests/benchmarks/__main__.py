"""``python -m tests.benchmarks [--quick] [--scenario NAME]``: run the cases, print the table.

Every case starts a simulator process and one system process; see ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
import tomllib
from dataclasses import asdict
from pathlib import Path
from typing import Any

from tests.benchmarks.harness import ROOT, Settings, run_case
from tests.benchmarks.process import ChildFailed
from tests.benchmarks.report import Row, machine, render_results, row, write_doc
from tests.benchmarks.scenarios import PROFILES, SCENARIOS
from tests.benchmarks.systems import SYSTEMS
from worker.simulator import POLL_HINTS

DOC = ROOT / "docs" / "benchmarks.md"
DOC_TEMPLATE = """\
# Benchmarks

`make bench` (`.venv/bin/python -m tests.benchmarks`) runs tool-worker and three openai-SDK
baselines against the simulator, each in its own process. The section below is rewritten by
every full run.
"""
# Baseline (a) answers one run at a time; past this budget it takes no new run (see notes).
BUDGET_S = {False: 40.0, True: 4.0}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings(quick=args.quick, seed=args.seed,
                        budget_s=args.budget_s or BUDGET_S[args.quick],
                        timeout_s=args.timeout_s, profile_path=args.profile,
                        worker_overrides=_overrides(args.worker_set or []))
    systems = ["tool-worker"] if args.profile else args.system
    rows, failures = _run_all(_cases(args.scenario or list(SCENARIOS), args.api, systems),
                              settings, args.hints)
    command = shlex.join([".venv/bin/python", "-m", "tests.benchmarks", *sys.argv[1:]])
    results = render_results(rows, failures, command, machine())
    sys.stdout.write(results)
    output = args.output or (DOC if _is_full_run(args) else None)
    if output is not None:
        write_doc(output, results, DOC_TEMPLATE)
        sys.stderr.write(f"results written to {output}\n")
    if args.json is not None:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1), encoding="utf-8")
    return 1 if failures else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="every scenario ~10x smaller")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS),
                        help="run only this scenario (repeatable)")
    parser.add_argument("--api", action="append", choices=sorted(PROFILES),
                        help="only this API profile (repeatable; default: each scenario's own): "
                             "remote = 50 ms a request and 0.3 s thinking, no poll hint; "
                             "remote-coarse = the same with a 1000 ms hint; zero = neither")
    parser.add_argument("--system", action="append", choices=sorted(SYSTEMS),
                        help="only this system (repeatable)")
    parser.add_argument("--hints", choices=POLL_HINTS, default=None,
                        help="the simulator's openai-poll-after-ms under every profile (default: "
                             "each profile's own: off, coarse for remote-coarse); exact is an "
                             "oracle no server gives")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=None,
                        help="baseline-a's time budget (default 40 s, 4 s with --quick)")
    parser.add_argument("--timeout-s", type=float, default=300.0,
                        help="kill a system still running after this long")
    parser.add_argument("--output", type=Path, default=None,
                        help="markdown file to write the results into (default: "
                             "docs/benchmarks.md after a full, non-quick run)")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    parser.add_argument("--profile", type=Path, default=None,
                        help="run only tool-worker, under pyinstrument, writing FILE(.html)")
    parser.add_argument("--worker-set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override a key of tool-worker's benchmark config (repeatable), "
                             "e.g. api.max_requests_per_s=100")
    return parser


def _overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    """``watch.active_poll_interval_s=0.5`` -> ``{"watch": {"active_poll_interval_s": 0.5}}``."""
    overrides: dict[str, dict[str, Any]] = {}
    for item in items:
        name, sep, raw = item.partition("=")
        section, dot, key = name.partition(".")
        if not (sep and dot and section and key):
            raise SystemExit(f"--worker-set wants SECTION.KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]  # a TOML literal keeps its type
        except tomllib.TOMLDecodeError:
            value = raw
        overrides.setdefault(section, {})[key] = value
    return overrides


def _is_full_run(args: argparse.Namespace) -> bool:
    return not (args.quick or args.scenario or args.api or args.system or args.profile
                or args.worker_set or args.hints)


def _cases(scenarios: list[str], apis: list[str] | None,
           systems: list[str] | None) -> list[tuple[str, str, str]]:
    """(api, scenario, system) in run order; by default each scenario under its own profiles
    and by its own systems."""
    chosen = [
        (api, name, system)
        for name in scenarios
        for api in (apis or SCENARIOS[name].apis)
        for system in (systems or SCENARIOS[name].systems)
    ]
    order = list(PROFILES)
    return sorted(chosen, key=lambda case: order.index(case[0]))  # stable: by profile first


def _run_all(cases: list[tuple[str, str, str]], settings: Settings,
             hints: str | None) -> tuple[list[Row], list[str]]:
    rows: list[Row] = []
    failures: list[str] = []
    for number, (api, scenario_name, system_name) in enumerate(cases, 1):
        scenario = SCENARIOS[scenario_name].shrunk(settings.quick)
        profile = PROFILES[api].with_hints(hints)
        label = f"[{number}/{len(cases)}] {scenario_name} / {api} / {system_name}"
        sys.stderr.write(f"{label} ...\n")
        started = time.monotonic()
        try:
            result = run_case(scenario, profile, SYSTEMS[system_name], settings)
        except ChildFailed as exc:
            failures.append(f"{label}: {exc}")
            sys.stderr.write(f"{label} FAILED: {exc}\n")
            continue
        rows.append(row(result))
        sys.stderr.write(f"{label} done in {time.monotonic() - started:.1f} s\n")
    return rows, failures


if __name__ == "__main__":
    sys.exit(main())
