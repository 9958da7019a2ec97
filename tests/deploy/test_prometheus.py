"""A real Prometheus scrapes a real worker with deploy/prometheus's config and alert rules.

Debian's `prometheus` server runs on loopback with prometheus.yml, its scrape targets pointed at
the worker (a `tool-worker run` subprocess against the simulator), and alerts.yaml. Through its
HTTP API the test checks that the target is up, that every rule evaluates without error, that
the series the rules and the Grafana dashboard query exist, and that ToolWorkerApiAuthFailing
fires when the simulator starts refusing the worker's key and resolves once it accepts it again.

Time is compressed so that this takes a minute, not an hour: Prometheus scrapes and evaluates
every second, and the rules are loaded from a copy of alerts.yaml in which every duration (each
`for:`, range selector and offset) is divided by TIME_COMPRESSION. Nothing else in the rules
changes: the same expressions, thresholds, labels and annotations.

`make prometheus-test` runs it (CI too); it skips without a `prometheus` binary unless
REQUIRE_PROMETHEUS is set. `make test` runs only the check of the time compression.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import anyio
import pytest
import yaml

from tests.deploy.live import LOOPBACK, free_port, get, wait_for
from tests.e2e.process import SIM_KEY, command, environment, write_config
from tests.test_dashboards import (
    ALERTS,
    PROMETHEUS_CONFIG,
    alert_rules,
    dashboard_expressions,
    selectors,
)
from worker.simulator import FaultPlan, FaultRule, Simulator, ToolCallScript

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from anyio.abc import Process

PROMETHEUS = shutil.which("prometheus")

TIME_COMPRESSION = 30
SCRAPE_INTERVAL = "1s"
# Grafana's $__rate_interval is at least four scrape intervals; the range of the test window.
RATE_INTERVAL = "10s"
RANGE = "5m"
JOB = "tool-worker"
AUTH_ALERT = "ToolWorkerApiAuthFailing"
REVOKED_KEY = "sk-revoked"
# Label values a short healthy run cannot produce: the worker answers a round before its run
# expires (deadline_margin_s), and a labelled counter has no series before its first increment.
# Queries on them need only their metric to have series; tests/test_dashboards.py checks the
# values against the worker's enums.
RARE = ('outcome="expired"', 'outcome="failed"', 'outcome=~"expired|failed"')

_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_EXPR_DURATION = re.compile(r"(\[|offset\s+|:)((?:\d+(?:ms|s|m|h|d|w|y))+)")


# the rules and the config, derived from the shipped files


def compress(duration: str) -> str:
    """A Prometheus duration divided by TIME_COMPRESSION, in whole milliseconds."""
    parts = _DURATION.findall(duration)
    assert "".join(n + u for n, u in parts) == duration, f"not a duration: {duration!r}"
    seconds = sum(int(n) * _SECONDS[u] for n, u in parts)
    return f"{round(seconds * 1000 / TIME_COMPRESSION)}ms" if seconds else "0s"


def compressed_rules() -> dict[str, Any]:
    """alerts.yaml with every `for:`, range, subquery step and offset divided by the factor."""
    rules: dict[str, Any] = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        if "interval" in group:
            group["interval"] = compress(group["interval"])
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = compress(rule["for"])
            rule["expr"] = _EXPR_DURATION.sub(lambda m: m[1] + compress(m[2]), rule["expr"])
    return rules


def scrape_config(worker_port: int, prometheus_port: int, rules: Path) -> dict[str, Any]:
    """prometheus.yml with its targets on loopback, 1 s intervals and the compressed rules."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text(encoding="utf-8"))
    config["global"].update(scrape_interval=SCRAPE_INTERVAL, evaluation_interval=SCRAPE_INTERVAL)
    config["rule_files"] = [str(rules)]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = {JOB: f"{LOOPBACK}:{worker_port}", "prometheus": f"{LOOPBACK}:{prometheus_port}"}
    assert set(jobs) == set(targets), "prometheus.yml gained a job: give it a loopback target"
    for name, target in targets.items():
        (static,) = jobs[name]["static_configs"]
        static["targets"] = [target]
    return config


def test_compress_divides_every_duration_and_nothing_else() -> None:
    """Durations shrink by the factor; metric names, numbers and thresholds stay as they are."""
    assert compress("5m") == "10000ms"
    assert compress("1h30m") == "180000ms"
    assert compress("0m") == "0s"
    expr = 'rate(x_total{a="5m"}[5m]) > 0.1 and x offset 10m and max_over_time(y[30m:1m]) > 2'
    assert _EXPR_DURATION.sub(lambda m: m[1] + compress(m[2]), expr) == (
        'rate(x_total{a="5m"}[10000ms]) > 0.1 and x offset 20000ms and '
        "max_over_time(y[60000ms:2000ms]) > 2"
    )


# the running parts


def calls(*pairs: tuple[str, object]) -> list[ToolCallScript]:
    return [ToolCallScript(name, a if isinstance(a, str) else json.dumps(a)) for name, a in pairs]


class Stack:
    """The simulator in this process, the worker and Prometheus as subprocesses, on loopback."""

    def __init__(self, sim: Simulator, tmp_path: Path) -> None:
        self.sim = sim
        self.tmp_path = tmp_path
        self.worker_port = free_port()
        self.prometheus_port = free_port()
        self.worker_url = f"http://{LOOPBACK}:{self.worker_port}"
        self.api = f"http://{LOOPBACK}:{self.prometheus_port}/api/v1"
        self.processes: dict[str, Process] = {}

    async def start(self, threads: list[str]) -> None:
        config = write_config(
            self.tmp_path / "worker.toml", self.sim, threads,
            server={"enabled": True, "host": LOOPBACK, "port": self.worker_port},
            watch={"active_poll_interval_s": 0.1, "idle_poll_interval_s": 0.5},
        )
        await self._spawn("worker", command(config), environment())
        rules = self.tmp_path / "alerts.compressed.yaml"
        rules.write_text(yaml.safe_dump(compressed_rules()), encoding="utf-8")
        prometheus_yml = self.tmp_path / "prometheus.yml"
        prometheus_yml.write_text(
            yaml.safe_dump(scrape_config(self.worker_port, self.prometheus_port, rules)),
            encoding="utf-8",
        )
        assert PROMETHEUS is not None, "REQUIRE_PROMETHEUS is set but prometheus is not on PATH"
        await self._spawn("prometheus", [
            PROMETHEUS, f"--config.file={prometheus_yml}",
            f"--storage.tsdb.path={self.tmp_path / 'tsdb'}",
            f"--web.listen-address={LOOPBACK}:{self.prometheus_port}",
        ], dict(os.environ))

    async def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = (self.tmp_path / f"{name}.log").open("wb")
        self.processes[name] = await anyio.open_process(
            argv, env=env, stdin=None, stdout=log, stderr=log, cwd=self.tmp_path
        )
        log.close()

    def logs(self) -> str:
        return "\n".join(
            f"---- {name}.log (last 3000 characters)\n"
            + (self.tmp_path / f"{name}.log").read_text(errors="replace")[-3000:]
            for name in self.processes
        )

    async def aclose(self) -> None:
        for process in self.processes.values():
            if process.returncode is None:
                process.terminate()
        with anyio.move_on_after(10, shield=True):
            for process in self.processes.values():
                await process.wait()
        for process in self.processes.values():
            if process.returncode is None:
                process.kill()
            await process.aclose()

    async def query(self, expr: str) -> list[dict[str, Any]]:
        status, body = await get(f"{self.api}/query?{urlencode({'query': expr})}")
        assert status == 200, f"{expr}: {body}"
        return list(body["data"]["result"])

    async def api_get(self, path: str) -> Any:
        status, body = await get(f"{self.api}/{path}")
        assert status == 200, f"{path}: {body}"
        return body["data"]

    async def alert_state(self, name: str) -> str:
        """`firing`, `pending` or `inactive` (absent from /api/v1/alerts) for an alert name."""
        alerts = (await self.api_get("alerts"))["alerts"]
        states = {a["state"] for a in alerts if a["labels"]["alertname"] == name}
        return "firing" if "firing" in states else states.pop() if states else "inactive"

    async def restart_simulator(self, api_key: str) -> None:
        """The same API (threads, runs) back on the same port, accepting only ``api_key``."""
        port = self.sim.port
        await self.sim.aclose()
        self.sim.api_key = api_key
        await self.sim.start(LOOPBACK, port)


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    # A few 5xx, so that the retry panels and the error ratio have something to show.
    polls = FaultRule(p_5xx=0.2)
    faults = FaultPlan(rules={"list_runs": polls, "retrieve_run": polls}, seed=5)
    async with Simulator(api_key=SIM_KEY, seed=5, faults=faults) as sim:
        running = Stack(sim, tmp_path)
        try:
            yield running
        except BaseException:
            print(running.logs())  # noqa: T201 - the servers' own words, for a red CI
            raise
        finally:
            await running.aclose()


@pytest.mark.live
@pytest.mark.no_blockbuster
@pytest.mark.timeout(300)
@pytest.mark.skipif(
    PROMETHEUS is None and os.environ.get("REQUIRE_PROMETHEUS", "") in ("", "0"),
    reason="prometheus is not on PATH (Debian: apt-get install prometheus)",
)
async def test_prometheus_scrapes_evaluates_and_alerts_on_a_refused_key(stack: Stack) -> None:
    """Target up, rules healthy, every queried series present; the auth alert fires and resolves."""
    sim = stack.sim
    assistant_id = sim.create_assistant(name="prometheus-test")
    busy, expiring = sim.create_thread(), sim.create_thread()
    busy_run = sim.create_run(busy, assistant_id, rounds=[
        calls(("add", {"a": 1, "b": 2}), ("boom", {}), ("no_such_tool", {}), ("add", "{not json"),
              ("weather", {"city": "Oslo"})),
        calls(("nap", {"seconds": 0.2}), ("hang", {})),
    ])
    await stack.start([busy, expiring])
    await wait_for(lambda: _target_health(stack), "Prometheus to scrape both targets", timeout_s=60)
    # A sync handler still running at the round's deadline (expiry minus the 5 s margin of
    # [tools] deadline_margin_s): answered with a timeout, its thread abandoned.
    short_run = sim.create_run(expiring, assistant_id, expires_after_s=7,
                               rounds=[calls(("blocking_sleep", {"seconds": 4}))])

    async def finished() -> bool | None:
        statuses = {sim.run(busy_run)["status"], sim.run(short_run)["status"]}
        return True if statuses == {"completed"} else None

    await wait_for(finished, "the worker to answer both runs", timeout_s=30)
    await _check_rules_evaluate(stack)
    await _check_auth_alert(stack)
    # Last, so that the auth errors of the step before have their series too.
    await _check_series(stack)


async def _target_health(stack: Stack) -> bool | None:
    status, body = await get(f"{stack.api}/targets")  # refused until Prometheus listens
    if status != 200:
        return None
    targets = body["data"]["activeTargets"]
    health = {t["labels"]["job"]: t["health"] for t in targets}
    return True if health == {JOB: "up", "prometheus": "up"} else None


async def _check_rules_evaluate(stack: Stack) -> None:
    """Prometheus loaded every alert of alerts.yaml and evaluates each without an error."""
    async def evaluated() -> list[dict[str, Any]] | None:
        groups = (await stack.api_get("rules"))["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return rules if rules and all(r.get("lastEvaluation", "").find("0001") != 0
                                      for r in rules) else None

    rules = await wait_for(evaluated, "every rule to be evaluated once", timeout_s=30)
    assert sorted(r["name"] for r in rules) == sorted(r["alert"] for r in alert_rules())
    unhealthy = {r["name"]: r.get("lastError") for r in rules if r["health"] != "ok"}
    assert not unhealthy, unhealthy


async def _check_series(stack: Stack) -> None:
    """Each dashboard query returns series, and so does each selector the alert rules use."""
    queries = {
        where: expr.replace("$__rate_interval", RATE_INTERVAL).replace("$__range", RANGE)
        .replace("$__interval", SCRAPE_INTERVAL).replace("$job", JOB).replace("$instance", ".*")
        for where, expr in dashboard_expressions()
    }
    for rule in alert_rules():
        for index, sel in enumerate(selectors(rule["expr"])[0]):
            matchers = ", ".join(f'{label}{op}"{value}"' for label, op, value in sel.matchers)
            queries[f"alert {rule['alert']} selector {index}"] = f"{sel.name}{{{matchers}}}"

    empty: list[str] = []

    async def all_present() -> bool | None:
        empty[:] = [where for where, expr in queries.items()
                    if not await _has_series(stack, expr)]
        return None if empty else True

    try:
        await wait_for(all_present, "every queried series to exist", timeout_s=45)
    except AssertionError:
        raise AssertionError("no series for:\n" + "\n".join(
            f"  {where}: {queries[where]}" for where in empty)) from None


async def _has_series(stack: Stack, expr: str) -> bool:
    """Whether ``expr`` returns series; for RARE outcomes, whether its metrics have any."""
    if await stack.query(expr):
        return True
    if not any(fragment in expr for fragment in RARE):
        return False
    names = {sel.name for sel in selectors(expr)[0]}
    return all([await stack.query(f'{name}{{job="{JOB}"}}') for name in names])


async def _check_auth_alert(stack: Stack) -> None:
    """A revoked key: /readyz 503 and the alert fires; the key back: ready, and it resolves."""
    assert await stack.alert_state(AUTH_ALERT) == "inactive"
    started = time.monotonic()
    await stack.restart_simulator(REVOKED_KEY)

    async def readyz(expected: int) -> bool | None:
        status, _ = await get(f"{stack.worker_url}/readyz")
        return True if status == expected else None

    await wait_for(lambda: readyz(503), "/readyz to answer 503 with the key refused", timeout_s=30)

    async def state(expected: str) -> bool | None:
        return True if await stack.alert_state(AUTH_ALERT) == expected else None

    await wait_for(lambda: state("firing"), f"{AUTH_ALERT} to fire", timeout_s=60)
    fired_s = time.monotonic() - started
    (alert,) = [a for a in (await stack.api_get("alerts"))["alerts"]
                if a["labels"]["alertname"] == AUTH_ALERT]
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["instance"] == f"{LOOPBACK}:{stack.worker_port}"
    assert "refuses the key" in alert["annotations"]["summary"]

    await stack.restart_simulator(SIM_KEY)
    await wait_for(lambda: readyz(200), "/readyz to answer 200 again", timeout_s=30)
    await wait_for(lambda: state("inactive"), f"{AUTH_ALERT} to resolve", timeout_s=60)
    print(f"{AUTH_ALERT}: fired after {fired_s:.1f} s, "  # noqa: T201 - the figure for the README
          f"resolved {time.monotonic() - started - fired_s:.1f} s later")
