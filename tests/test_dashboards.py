"""The deploy files agree with the worker: alert rules, their unit tests, scrape config, dashboard.

Metric names and label values are checked against the worker's real exposition, parsed by
prometheus_client's parser; the PromQL, the rules and the config are checked by promtool.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from worker.observability.metrics import API_ERROR_KINDS, CALL_OUTCOMES, SUBMIT_OUTCOMES, Metrics

ROOT = Path(__file__).resolve().parent.parent
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
ALERTS = PROMETHEUS_DIR / "alerts.yaml"
ALERTS_TEST = PROMETHEUS_DIR / "alerts_test.yaml"
PROMETHEUS_CONFIG = PROMETHEUS_DIR / "prometheus.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "tool-worker.json"

PROMTOOL = shutil.which("promtool")
# CI sets REQUIRE_PROMTOOL=1 so that a missing promtool fails there instead of skipping.
REQUIRE_PROMTOOL = os.environ.get("REQUIRE_PROMTOOL", "") not in ("", "0")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not REQUIRE_PROMTOOL,
    reason="promtool is not on PATH (Debian/Ubuntu: apt-get install prometheus); CI installs it",
)

# The status classes client.py puts on toolworker_api_requests_total.
STATUS_CLASSES = ("2xx", "4xx", "5xx", "error")
# Labels Prometheus attaches to every scraped series, and the series it adds per target.
TARGET_LABELS = frozenset({"job", "instance"})
SCRAPE_SERIES = frozenset({"up"})
SEVERITIES = frozenset({"critical", "warning"})

_SELECTOR = re.compile(r"([a-zA-Z_:][\w:]*)?\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_RANGE = re.compile(r"\[[^\]]*\]")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_IDENTIFIER = re.compile(r"(?<![\w:.$])[a-zA-Z_:][\w:]*")
_KEYWORDS = frozenset({
    "by", "without", "on", "ignoring", "group_left", "group_right",
    "and", "or", "unless", "offset", "bool", "inf", "nan",
})
_GRAFANA_DURATIONS = re.compile(r"\$(?:__rate_interval|__interval|__range)\b")
_GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")


@dataclass(frozen=True)
class Exposition:
    """What a scrape of the worker shows: sample names, their label names and label values."""

    text: str
    labels: dict[str, set[str]] = field(default_factory=dict)
    values: dict[tuple[str, str], set[str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Selector:
    """One metric reference in a PromQL expression, with its label matchers."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]


@cache
def client_endpoints() -> tuple[str, ...]:
    """The endpoint label values client.py passes to ``Transport.request``, from its source."""
    tree = ast.parse((ROOT / "worker" / "api" / "client.py").read_text(encoding="utf-8"))
    endpoints = {
        node.args[1].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "request"
        and len(node.args) > 1
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    }
    assert endpoints, "no ._transport.request(method, endpoint, ...) call in worker/api/client.py"
    return tuple(sorted(endpoints))


def touched_metrics() -> Metrics:
    """A fresh Metrics whose labelled metrics were each used with every closed label value."""
    metrics = Metrics(process_metrics=True)  # as `tool-worker run` serves them
    for outcome in CALL_OUTCOMES:
        metrics.tool_calls.labels("get_weather", outcome).inc()
    metrics.tool_call_duration.labels("get_weather").observe(0.2)
    metrics.abandoned_threads.labels("get_weather").inc()
    metrics.runs_skipped.labels("unsupported_action").inc()
    metrics.ready.set(1)
    for outcome in SUBMIT_OUTCOMES:
        metrics.rounds.labels(outcome).inc()
    for endpoint in client_endpoints():
        for status in STATUS_CLASSES:
            metrics.api_requests.labels(endpoint, status).inc()
        metrics.api_request_duration.labels(endpoint).observe(0.1)
        metrics.api_retries.labels(endpoint).inc()
        for kind in API_ERROR_KINDS:
            metrics.api_errors.labels(endpoint, kind).inc()
    return metrics


@cache
def exposition() -> Exposition:
    """The parsed text exposition of ``touched_metrics()``."""
    text = touched_metrics().exposition().decode()
    result = Exposition(text)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            result.labels.setdefault(sample.name, set()).update(sample.labels)
            for label, value in sample.labels.items():
                result.values.setdefault((sample.name, label), set()).add(value)
    return result


def closed_values(name: str, label: str) -> set[str] | None:
    """The only values ``label`` of sample ``name`` can take, or None when the set is open."""
    if label in ("outcome", "status", "endpoint", "le", "kind"):
        return exposition().values.get((name, label), set())
    return None


def selectors(expr: str) -> tuple[list[Selector], set[str]]:
    """The metric references and the grouping label names of a PromQL expression."""
    found: list[Selector] = []

    def keep_name(match: re.Match[str]) -> str:
        matchers = tuple(_MATCHER.findall(match.group(2)))
        if match.group(1):
            found.append(Selector(match.group(1), matchers))
            return match.group(1)
        names = [value for label, op, value in matchers if label == "__name__" and op == "="]
        assert names, f"selector without a metric name in {expr!r}"
        found.append(Selector(names[0], matchers))
        return " "

    rest = _SELECTOR.sub(keep_name, expr)
    grouping = {
        label.strip() for clause in _GROUPING.findall(rest) for label in clause.split(",")
    } - {""}
    rest = _STRING.sub(" ", _RANGE.sub(" ", _GROUPING.sub(" ", rest)))
    with_matchers = {s.name for s in found}
    for match in _IDENTIFIER.finditer(rest):
        word = match.group(0)
        is_call = rest[match.end():].lstrip().startswith("(")
        if is_call or word in _KEYWORDS or word in with_matchers:
            continue
        found.append(Selector(word, ()))
    return found, grouping


def unmatched(op: str, value: str, allowed: set[str]) -> list[str]:
    """The parts of a matcher's value that match none of the label's possible values."""
    if op in ("=", "!="):
        return [] if value in allowed else [value]
    # A regex: each top-level alternative must match a value (PromQL anchors regexes).
    alternatives = [value] if "(" in value else value.split("|")
    bad = []
    for alternative in alternatives:
        try:
            pattern = re.compile(alternative)
        except re.error:
            continue  # RE2 syntax Python lacks: promtool judges it
        if not any(pattern.fullmatch(v) for v in allowed):
            bad.append(alternative)
    return bad


def problems_in(expr: str, where: str, extra_series: frozenset[str] = frozenset()) -> list[str]:
    """Every metric name, label name or closed label value in ``expr`` the worker does not expose."""
    expo = exposition()
    found, grouping = selectors(expr)
    problems = []
    known_labels = set(TARGET_LABELS) | {"le"}
    for sel in found:
        if sel.name in extra_series:
            continue
        if sel.name not in expo.labels:
            problems.append(f"{where}: {sel.name} is not in the worker's exposition")
            continue
        known_labels |= expo.labels[sel.name]
        for label, op, value in sel.matchers:
            if label not in expo.labels[sel.name] | TARGET_LABELS:
                problems.append(f"{where}: {sel.name} has no label {label!r}")
                continue
            allowed = closed_values(sel.name, label)
            if allowed is None or "$" in value:
                continue
            problems.extend(
                f"{where}: {sel.name}{{{label}{op}{v!r}}} matches nothing (known: {sorted(allowed)})"
                for v in unmatched(op, value, allowed)
            )
    problems.extend(
        f"{where}: grouping by {label!r}, a label none of its metrics has"
        for label in sorted(grouping - known_labels)
    )
    return problems


def load_yaml(path: Path) -> Any:
    """The parsed YAML document at ``path``."""
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of alerts.yaml."""
    return [rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    """The parsed Grafana dashboard."""
    result: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return result


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel of the dashboard, those inside collapsed rows included."""
    panels = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))
    return panels


def dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of the dashboard."""
    exprs = [
        (f"panel {panel['title']!r} target {target.get('refId')}", target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
    ]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]
        text = query["query"] if isinstance(query, dict) else query
        match = re.fullmatch(r"label_values\((.+),\s*(\w+)\)", text.strip())
        assert match, f"variable {variable['name']}: expected label_values(selector, label)"
        exprs.append((f"variable {variable['name']}", f"max by ({match.group(2)}) ({match.group(1)})"))
    return exprs


def run_promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run promtool with ``args`` in the repository root."""
    assert PROMTOOL is not None, "REQUIRE_PROMTOOL is set but promtool is not on PATH"
    return subprocess.run(  # noqa: S603 - promtool from PATH, fixed arguments
        [PROMTOOL, *args], input=stdin, capture_output=True, cwd=ROOT, timeout=30, check=False
    )


def assert_ok(result: subprocess.CompletedProcess[bytes]) -> None:
    """Fail with promtool's own words when it did not exit 0."""
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output


@needs_promtool
def test_promtool_checks_the_alert_rules() -> None:
    """`promtool check rules` accepts alerts.yaml."""
    assert_ok(run_promtool("check", "rules", str(ALERTS)))


@needs_promtool
def test_promtool_runs_the_alert_unit_tests() -> None:
    """`promtool test rules` passes every case of alerts_test.yaml."""
    assert_ok(run_promtool("test", "rules", str(ALERTS_TEST)))


@needs_promtool
def test_promtool_checks_the_scrape_config() -> None:
    """`promtool check config` accepts prometheus.yml and the rule files it loads."""
    assert_ok(run_promtool("check", "config", str(PROMETHEUS_CONFIG)))


@needs_promtool
def test_promtool_lints_the_worker_exposition() -> None:
    """`promtool check metrics` finds nothing to say about the worker's real exposition."""
    result = run_promtool("check", "metrics", stdin=exposition().text.encode())
    assert_ok(result)
    assert not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_expression(tmp_path: Path) -> None:
    """Every dashboard query, with Grafana's variables filled in, is valid PromQL."""
    rules = [
        {
            "record": f"dashboard:expression_{index}",
            "expr": _GRAFANA_VARIABLE.sub(".*", _GRAFANA_DURATIONS.sub("5m", expr)),
        }
        for index, (_, expr) in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard-rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert_ok(run_promtool("check", "rules", str(path)))


def test_every_metric_family_has_series_once_touched() -> None:
    """touched_metrics() gives every metric of worker/observability/metrics.py samples to check names against."""
    families = list(touched_metrics().registry.collect())
    untouched = [family.name for family in families if not family.samples]
    assert not untouched, f"use these once in touched_metrics(): {untouched}"
    samples = {sample.name for family in families for sample in family.samples}
    assert samples <= exposition().labels.keys()


def test_alerts_use_exposed_metrics_and_labels() -> None:
    """Each alert expression names only series, labels and label values the worker exposes."""
    problems = [
        problem
        for rule in alert_rules()
        for problem in problems_in(rule["expr"], f"alert {rule['alert']}", SCRAPE_SERIES)
    ]
    assert not problems, "\n".join(problems)


def test_alert_unit_tests_feed_exposed_series() -> None:
    """The input series of alerts_test.yaml carry the worker's real names, labels and values."""
    problems = []
    for case in load_yaml(ALERTS_TEST)["tests"]:
        for series in case["input_series"]:
            problems.extend(problems_in(series["series"], f"test {case['name']!r}", SCRAPE_SERIES))
    assert not problems, "\n".join(problems)


def test_every_alert_tells_the_operator_what_to_do() -> None:
    """Each alert has a known severity and summary, description and runbook annotations."""
    rules = alert_rules()
    assert rules
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        for key in ("summary", "description", "runbook"):
            assert rule["annotations"].get(key, "").strip(), f"{rule['alert']}: no {key}"


def test_every_alert_has_firing_and_quiet_unit_tests() -> None:
    """alerts_test.yaml checks each alert at least once firing and once not firing."""
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in load_yaml(ALERTS_TEST)["tests"]:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "never tested firing"
    assert names - quiet == set(), "never tested not firing"


def test_prometheus_config_scrapes_the_worker_and_loads_the_alerts() -> None:
    """prometheus.yml scrapes job tool-worker at worker:9464 and loads alerts.yaml beside it."""
    config = load_yaml(PROMETHEUS_CONFIG)
    assert config["rule_files"] == ["alerts.yaml"]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    targets = [t for static in jobs["tool-worker"]["static_configs"] for t in static["targets"]]
    assert targets == ["worker:9464"]
    assert jobs["tool-worker"].get("metrics_path", "/metrics") == "/metrics"


def test_dashboard_panels_have_title_datasource_and_targets() -> None:
    """The dashboard is valid JSON and each panel has a title, a datasource and a query."""
    board = dashboard()
    assert board["schemaVersion"] >= 39
    panels = dashboard_panels()
    assert panels
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel.get("title"), panel.get("id")
        assert panel.get("datasource", {}).get("uid") == "${DS_PROMETHEUS}", panel["title"]
        assert panel.get("targets"), panel["title"]
        for target in panel["targets"]:
            assert target.get("expr", "").strip(), panel["title"]
    assert len({panel["id"] for panel in panels}) == len(panels), "panel ids repeat"


def test_dashboard_has_datasource_job_and_instance_variables() -> None:
    """The dashboard's variables pick a Prometheus datasource, a job and instances."""
    variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
    assert variables["DS_PROMETHEUS"]["type"] == "datasource"
    assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
    for name in ("job", "instance"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"]["uid"] == "${DS_PROMETHEUS}"
    for where, expr in dashboard_expressions():
        if not where.startswith("panel"):
            continue
        for sel in selectors(expr)[0]:
            assert ("job", "=~", "$job") in sel.matchers, f"{where}: {sel.name} ignores $job"
            assert ("instance", "=~", "$instance") in sel.matchers, f"{where}: {sel.name}"


def test_dashboard_uses_exposed_metrics_and_labels() -> None:
    """Each dashboard query names only series, labels and label values the worker exposes."""
    problems = [problem for where, expr in dashboard_expressions() for problem in problems_in(expr, where)]
    assert not problems, "\n".join(problems)
