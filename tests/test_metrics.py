"""The metrics registry: names, bounded labels, and the process metrics of the daemon."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from worker.observability.metrics import Metrics


def families(metrics: Metrics) -> set[str]:
    text = metrics.exposition().decode()
    return {family.name for family in text_string_to_metric_families(text)}


def test_every_worker_metric_is_prefixed() -> None:
    """Apart from process_*, every family is named toolworker_*."""
    names = families(Metrics(process_metrics=True))
    assert {name for name in names if not name.startswith(("toolworker_", "process_"))} == set()


def test_the_daemon_exports_process_metrics() -> None:
    """tool-worker run's registry shows memory, CPU and start time; test registries do not."""
    assert {"process_resident_memory_bytes", "process_start_time_seconds"} <= families(
        Metrics(process_metrics=True))
    assert not any(name.startswith("process_") for name in families(Metrics()))


def test_registries_are_independent() -> None:
    """Each Metrics has its own registry, so tests read exact values."""
    first, second = Metrics(), Metrics()
    first.tool_calls.labels("add", "ok").inc()
    assert first.registry.get_sample_value(
        "toolworker_tool_calls_total", {"tool": "add", "outcome": "ok"}) == 1
    assert second.registry.get_sample_value(
        "toolworker_tool_calls_total", {"tool": "add", "outcome": "ok"}) is None


def test_no_created_series_are_exported() -> None:
    """Counters and histograms carry no `_created` timestamp series: nothing reads them."""
    metrics = Metrics()
    metrics.tool_calls.labels("add", "ok").inc()
    text = metrics.exposition().decode()
    assert "toolworker_tool_calls_total" in text
    assert "_created" not in text
