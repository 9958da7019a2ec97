"""The status page: what the worker is doing now, as GET /status (HTML) and /status.json.

``StatusBoard`` keeps what only the round path knows (the last rounds, per-tool latencies,
claims) and reads the rest live from the stages when a page is asked for. Ids are shown;
arguments (user data) only with ``[logging] log_arguments = true``.
"""

from __future__ import annotations

import html
import math
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Sequence

    from worker.api.budget import RequestBudget
    from worker.config.settings import Settings
    from worker.models import Round, ToolOutput
    from worker.observability.health import Health
    from worker.observability.metrics import Metrics

__all__ = ["StatusBoard", "StatusSources", "read_gauge", "render_status"]

RECENT_ROUNDS = 20
RECENT_SHOWN = 10  # on the page; /status.json has all RECENT_ROUNDS
IN_FLIGHT_SHOWN = 50
# Durations kept per tool for its percentiles: recent behaviour, in bounded memory.
SAMPLES_PER_TOOL = 500
# Tool names come from the API, so nothing keyed by them may grow without bound: names the
# registry does not know share one row, at most MAX_TOOL_ROWS rows exist (later names share
# "(other)"), and a round lists at most NAMES_SHOWN names, each cut to NAME_CHARS.
UNKNOWN_ROW = "(unknown)"
OTHER_ROW = "(other)"
MAX_TOOL_ROWS = 200
NAMES_SHOWN = 10
NAME_CHARS = 64
REFRESH_MS = 1000


@dataclass(frozen=True, slots=True)
class StatusSources:
    """Where the page reads live values: the worker's stages, passed down as callables."""

    in_flight: Collection[Round]
    readiness: Callable[[], tuple[bool, dict[str, Any]]]
    watched: Callable[[], int]
    budget: RequestBudget
    streams_open: Callable[[], float]
    max_streams: int
    claims_backend: str


@dataclass(frozen=True, slots=True)
class _Finished:
    run_id: str
    thread_id: str
    tools: tuple[str, ...]
    outcome: str
    latency_s: float
    finished_at: float  # epoch seconds
    # "tool: outcome" of each call that did not end ok: a submitted round can hold errors.
    failed_calls: tuple[str, ...] = ()
    failed_count: int = 0  # all of them; failed_calls shows the first few


class _ToolStats:
    __slots__ = ("durations", "outcomes")

    def __init__(self) -> None:
        self.outcomes: Counter[str] = Counter()
        self.durations: deque[float] = deque(maxlen=SAMPLES_PER_TOOL)


class StatusBoard:
    """What the status page shows; the round path reports to it, the server reads it."""

    @classmethod
    def for_worker(cls, settings: Settings, metrics: Metrics, health: Health,
                   in_flight: Collection[Round], watched: Callable[[], int],
                   budget: RequestBudget, tools: Collection[str]) -> StatusBoard:
        """The board of a running worker, read live from its stages."""
        api = settings.api
        sources = StatusSources(
            in_flight=in_flight, readiness=health.readiness,
            watched=watched, budget=budget,
            streams_open=lambda: read_gauge(metrics.streams_open),
            max_streams=api.max_streams if api.stream else 0,
            claims_backend=settings.coordination.backend,
        )
        return cls(sources, log_arguments=settings.logging.log_arguments, tools=tools)

    def __init__(self, sources: StatusSources, *, log_arguments: bool = False,
                 tools: Collection[str] | None = None) -> None:
        """``tools``: the registry's names; others share one row (None: every name its own,
        up to ``MAX_TOOL_ROWS``)."""
        self._known = None if tools is None else frozenset(tools)
        self._sources = sources
        self._log_arguments = log_arguments
        self._started = time.time()
        self._recent: deque[_Finished] = deque(maxlen=RECENT_ROUNDS)
        self._tools: dict[str, _ToolStats] = {}
        self._rounds: Counter[str] = Counter()
        self._claims: Counter[str] = Counter()

    def claimed(self, held: bool) -> None:
        """A round's claim was decided: taken, or held by another replica."""
        self._claims["taken" if held else "lost"] += 1

    def round_done(self, round_: Round, outputs: Sequence[ToolOutput], outcome: str) -> None:
        """A round left the worker: submitted, or given up (``outputs`` empty when none ran)."""
        self._rounds[outcome] += 1
        failed = tuple(f"{o.tool}: {o.outcome.value}" for o in outputs if o.outcome.value != "ok")
        self._recent.appendleft(_Finished(
            round_.run_id, round_.thread_id, _names(call.name for call in round_.tool_calls),
            outcome, anyio.current_time() - round_.detected_at, time.time(), _names(failed),
            len(failed)))
        for output in outputs:
            stats = self._stats(output)
            stats.outcomes[output.outcome.value] += 1
            stats.durations.append(output.duration_s)

    def _stats(self, output: ToolOutput) -> _ToolStats:
        """The row an output counts in: its tool's, or a shared one for names from outside."""
        name = output.tool
        if output.outcome.value == "unknown_tool" or (
                self._known is not None and name not in self._known):
            name = UNKNOWN_ROW
        stats = self._tools.get(name)
        if stats is None:
            if len(self._tools) >= MAX_TOOL_ROWS:
                name = OTHER_ROW
            stats = self._tools.get(name) or self._tools.setdefault(name, _ToolStats())
        return stats

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as JSON-ready values (``/status.json``)."""
        sources = self._sources
        ready, reasons = sources.readiness()
        return {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "uptime_s": round(time.time() - self._started, 1),
            "ready": ready,
            "readiness": reasons,
            "in_flight": self._in_flight(),
            "recent_rounds": [self._finished(f) for f in self._recent],
            "rounds": dict(self._rounds),
            "tools": self._tool_table(),
            "watched_threads": sources.watched(),
            "budget": {"used": sources.budget.used(), "per_s": sources.budget.per_s},
            "claims": {"backend": sources.claims_backend, **self._claims},
            "streams": {"open": int(sources.streams_open()), "max": sources.max_streams},
        }

    def _in_flight(self) -> list[dict[str, Any]]:
        now = anyio.current_time()
        rounds = sorted(self._sources.in_flight, key=lambda r: r.detected_at)[:IN_FLIGHT_SHOWN]
        shown = []
        for round_ in rounds:
            entry: dict[str, Any] = {
                "thread_id": round_.thread_id,
                "run_id": round_.run_id,
                "tools": list(_names(call.name for call in round_.tool_calls)),
                "elapsed_s": round(now - round_.detected_at, 1),
                "expires_in_s": None if round_.expiry is None else round(round_.expiry - now, 1),
            }
            if self._log_arguments:
                entry["arguments"] = [c.arguments[:200] for c in round_.tool_calls[:NAMES_SHOWN]]
            shown.append(entry)
        return shown

    @staticmethod
    def _finished(done: _Finished) -> dict[str, Any]:
        return {
            "run_id": done.run_id,
            "thread_id": done.thread_id,
            "tools": list(done.tools),
            "outcome": done.outcome,
            "failed_calls": list(done.failed_calls),
            "failed_count": done.failed_count,
            "latency_ms": round(done.latency_s * 1000),
            "finished_at": datetime.fromtimestamp(done.finished_at, UTC).isoformat(
                timespec="seconds"),
        }

    def _tool_table(self) -> list[dict[str, Any]]:
        table = []
        for name in sorted(self._tools):
            stats = self._tools[name]
            ordered = sorted(stats.durations)
            table.append({
                "tool": name,
                "calls": sum(stats.outcomes.values()),
                "outcomes": dict(stats.outcomes),
                "p50_ms": _percentile_ms(ordered, 0.50),
                "p95_ms": _percentile_ms(ordered, 0.95),
            })
        return table


def _names(names: Iterable[str]) -> tuple[str, ...]:
    """At most ``NAMES_SHOWN`` names, each cut to ``NAME_CHARS``, and how many more there were."""
    every = list(names)
    shown = tuple(name[:NAME_CHARS] for name in every[:NAMES_SHOWN])
    more = len(every) - len(shown)
    return (*shown, f"(+{more} more)") if more else shown


def read_gauge(gauge: Any) -> float:
    """A Prometheus gauge's current value (prometheus_client has no public getter)."""
    return float(gauge.collect()[0].samples[0].value)


def _percentile_ms(ordered: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile of sorted durations, in milliseconds."""
    if not ordered:
        return None
    index = max(math.ceil(fraction * len(ordered)) - 1, 0)
    return round(ordered[index] * 1000, 1)


_STYLE = """
:root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--mute:#6e7781}
body{font:15px/1.4 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:12px}
h1{font-size:1.3em;margin:0 .5em 0 0;display:inline}h2{font-size:1.05em;margin:1.2em 0 .4em}
.badge{padding:2px 8px;border-radius:10px;color:#fff;font-weight:600}
.ok{background:var(--ok)}.bad{background:var(--bad)}small,.mute{color:var(--mute)}
.cards{display:grid;grid-template-columns:repeat(auto-fit,minmax(130px,1fr));gap:8px;margin-top:10px}
.card{border:1px solid #8884;border-radius:8px;padding:6px 10px}
.card b{display:block;font-size:1.35em}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:3px 8px;border-bottom:1px solid #8883;white-space:nowrap}
td.ids{font-family:ui-monospace,monospace;font-size:.9em}td.num,th.num{text-align:right}
.late{color:var(--bad);font-weight:600}
"""

# Swaps <main> for a fresh copy of the page: live, without a front-end build.
_SCRIPT = f"""
async function refresh() {{
  try {{
    const answer = await fetch(location.pathname + location.search, {{cache: "no-store"}});
    if (!answer.ok) return;
    const page = new DOMParser().parseFromString(await answer.text(), "text/html");
    const fresh = page.getElementById("status");
    if (fresh) document.getElementById("status").replaceWith(fresh);
  }} catch (error) {{ /* the worker restarts: the next tick tries again */ }}
}}
setInterval(refresh, {REFRESH_MS});
"""


def render_status(snapshot: dict[str, Any]) -> str:
    """The status page: server-rendered HTML that refreshes itself every second."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<link rel="icon" href="data:,"><title>tool-worker status</title>'
        f'<style>{_STYLE}</style><noscript><meta http-equiv="refresh" content="5"></noscript>'
        f'</head><body>{_main(snapshot)}<script>{_SCRIPT}</script></body></html>'
    )


def _main(s: dict[str, Any]) -> str:
    ready = s["ready"]
    reason = "" if ready else f" {_e(s['readiness'].get('reason', ''))}"
    budget = s["budget"]
    requests = f"{budget['used']} / {budget['per_s']}" if budget["per_s"] else "no limit"
    rounds = s["rounds"]
    cards = [
        ("rounds in flight", len(s["in_flight"])),
        ("watched threads", s["watched_threads"]),
        ("requests this second", requests),
        ("streams open", f"{s['streams']['open']} / {s['streams']['max']}"),
        (f"claims ({s['claims']['backend']})",
         f"{s['claims'].get('taken', 0)} taken, {s['claims'].get('lost', 0)} lost"),
        ("rounds submitted", (f"{rounds.get('ok', 0)} ok, "
                              f"{sum(rounds.values()) - rounds.get('ok', 0)} other")),
    ]
    return (
        f'<main id="status" data-generated="{_e(s["generated_at"])}">'
        f'<header><h1>tool-worker</h1><span class="badge {"ok" if ready else "bad"}">'
        f'{"ready" if ready else "not ready"}</span>{reason} '
        f'<small>updated {_e(s["generated_at"][11:19])} UTC, up {s["uptime_s"]:.0f} s</small>'
        '</header><section class="cards">'
        + "".join(f'<div class="card"><small>{_e(k)}</small><b>{_e(v)}</b></div>'
                  for k, v in cards)
        + "</section>" + _in_flight_table(s["in_flight"]) + _tools_table(s["tools"])
        + _recent_table(s["recent_rounds"][:RECENT_SHOWN]) + _readiness_list(s["readiness"])
        + "</main>"
    )


def _table(title: str, headers: Sequence[str], rows: Sequence[str], empty: str,
           table_id: str) -> str:
    head = "".join(f'<th class="num">{_e(h[1:])}</th>' if h.startswith("#") else f"<th>{_e(h)}</th>"
                   for h in headers)
    body = "".join(rows) or f'<tr><td colspan="{len(headers)}" class="mute">{_e(empty)}</td></tr>'
    return (f'<h2>{_e(title)}</h2><div class="scroll"><table id="{table_id}"><thead><tr>{head}'
            f"</tr></thead><tbody>{body}</tbody></table></div>")


def _in_flight_table(rounds: list[dict[str, Any]]) -> str:
    rows = []
    for r in rounds:
        left = r["expires_in_s"]
        late = left is not None and left < 30
        left_text = "no expiry" if left is None else f"{left:.0f} s"
        arguments = ("<br>" + "<br>".join(_e(a) for a in r["arguments"])
                     if "arguments" in r else "")
        rows.append(
            f'<tr data-run="{_e(r["run_id"])}"><td class="ids">{_e(r["run_id"])}<br>'
            f'<span class="mute">{_e(r["thread_id"])}</span></td>'
            f'<td>{_e(", ".join(r["tools"]))}{arguments}</td>'
            f'<td class="num">{r["elapsed_s"]:.1f} s</td>'
            f'<td class="num{" late" if late else ""}">{left_text}</td></tr>')
    return _table("Rounds in flight", ["run / thread", "tools", "#elapsed", "#left"], rows,
                  "none right now", "in-flight")


def _recent_table(rounds: list[dict[str, Any]]) -> str:
    rows = [
        f'<tr><td>{_e(r["finished_at"][11:19])}</td><td class="ids">{_e(r["run_id"])}</td>'
        f'<td>{_e(", ".join(r["tools"]))}</td><td class="num">{r["latency_ms"]} ms</td>'
        f"<td>{_round_outcome(r)}</td></tr>"
        for r in rounds
    ]
    return _table("Last rounds", ["finished", "run", "tools", "#latency", "outcome"], rows,
                  "no round yet", "recent")


def _round_outcome(r: dict[str, Any]) -> str:
    """Green only when the round was submitted and every tool answered ok."""
    failed = r.get("failed_calls") or []
    if r["outcome"] == "ok" and not failed:
        return '<span class="badge ok">ok</span>'
    count = r.get("failed_count", len(failed))
    label = r["outcome"] if not failed else f"{r['outcome']}, {count} failed"
    detail = f' <small>{_e("; ".join(failed))}</small>' if failed else ""
    return f'<span class="badge bad">{_e(label)}</span>{detail}'


def _tools_table(tools: list[dict[str, Any]]) -> str:
    rows = []
    for t in tools:
        others = ", ".join(f"{k} {v}" for k, v in sorted(t["outcomes"].items()) if k != "ok")
        rows.append(
            f'<tr><td>{_e(t["tool"])}</td><td class="num">{t["calls"]}</td>'
            f'<td>{_e(others) or "-"}</td><td class="num">{_ms(t["p50_ms"])}</td>'
            f'<td class="num">{_ms(t["p95_ms"])}</td></tr>')
    return _table("Tools", ["tool", "#calls", "not ok", "#p50", "#p95"], rows,
                  "no call yet", "tools")


def _readiness_list(reasons: dict[str, Any]) -> str:
    items = "".join(f"<dt>{_e(_READINESS_WORDS.get(k, k.replace('_', ' ')))}</dt>"
                    f"<dd>{_e(_readiness_value(k, v))}</dd>" for k, v in reasons.items())
    return f"<h2>Readiness</h2><dl>{items}</dl>"


# /readyz's keys, as the page says them.
_READINESS_WORDS = {
    "reason": "why not ready",
    "since_api_answer_s": "the API last answered",
    "api_answered": "the API has answered",
    "error": "last API error",
    "dependencies": "dependencies not answering",
    "stalled_s": "the poll loop last turned",
    "refused_threads": "threads whose key is refused",
}


def _readiness_value(key: str, value: Any) -> str:
    if key in ("since_api_answer_s", "stalled_s") and isinstance(value, int | float):
        return f"{value:.0f} s ago"
    if isinstance(value, bool):
        return "yes" if value else "not yet"
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items())
    return str(value)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _e(value: object) -> str:
    return html.escape(str(value))
