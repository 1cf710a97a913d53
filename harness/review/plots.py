"""The report's charts: what they draw, as JSON in the page, and the HTML around them.

The charts are drawn in the browser by uPlot (:mod:`harness.review.vendor`) and the report's
own script (``report.js`` beside this module), both inline. This module computes everything
they show, so the script only draws: one shared time axis in seconds since the run's start,
each per-second value at the midpoint of its second, and

* a timeline: the phases, each fault window, each SLO's window(s) in green (met) or red (not
  met), and for a recovery_time SLO the recovery window, from the fault's end to the instant the
  service counted as recovered (to the window's end when it never did);
* load: requests/s, users (right axis) and, for the open model, the target and achieved
  arrival rates;
* latency over all endpoints on a log axis: p50, p95, p99, p99.9 and max;
* failures by kind per second, and the error rate (right axis);
* one chart per endpoint: its p50 and p99 (log) and requests/s (right axis).

Fault windows are shaded (:data:`FAULT_COLOUR`, opaque, under the lines) and phase starts,
aborts and recovery instants are marked on every chart; names are written only on the
timeline, one lane each, so no label can overlap another. A second only partly inside the run
(the first, and the last when the run ended inside it) would read as a false drop of the rate
lines: its rates are left out (a gap), its latency is kept. Pure.
"""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import yaml

from harness.results import schema
from harness.review.report_model import Event, ReportData, Second, SloRow
from harness.scenario.expressions import WindowKind, parse_duration, parse_window

__all__ = [
    "ACHIEVED_COLOUR",
    "ENDPOINT_P50_COLOUR",
    "ENDPOINT_P99_COLOUR",
    "ENDPOINT_RPS_COLOUR",
    "ERRORS_COLOUR",
    "FAULT_COLOUR",
    "KIND_COLOURS",
    "MAX_COLOUR",
    "MAX_ENDPOINT_CHARTS",
    "P50_COLOUR",
    "P95_COLOUR",
    "P99_COLOUR",
    "P999_COLOUR",
    "REQUESTS_COLOUR",
    "TARGET_COLOUR",
    "USERS_COLOUR",
    "chart_data",
    "data_json",
    "plots",
]

# Line colours: unique on the page, so a screenshot test can find each chart's lines.
REQUESTS_COLOUR = "#1f77b4"
TARGET_COLOUR = "#8c8c8c"
ACHIEVED_COLOUR = "#17becf"
USERS_COLOUR = "#bcbd22"
P50_COLOUR = "#2ca02c"
P95_COLOUR = "#ff7f0e"
P99_COLOUR = "#d62728"
P999_COLOUR = "#8c564b"
MAX_COLOUR = "#7f7f7f"
ERRORS_COLOUR = "#9467bd"
ENDPOINT_P50_COLOUR = "#74c476"
ENDPOINT_P99_COLOUR = "#e6550d"
ENDPOINT_RPS_COLOUR = "#6baed6"
KIND_COLOURS = ("#e377c2", "#a0522d", "#393b79", "#637939", "#843c39", "#7b4173", "#bd9e39", "#5254a3")
PROBE_COLOURS = ("#006d2c", "#08519c", "#a50f15", "#54278f", "#b15928", "#01665e")  # one per probe, cycled
FAULT_COLOUR = "#f6c8c0"  # opaque: a screenshot finds it exactly
_MAX_KINDS = len(KIND_COLOURS)  # more kinds than colours: the rarest are drawn together as "other"
MAX_ENDPOINT_CHARTS = 12  # the busiest endpoints get a chart each; the table has them all


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _fault_spans(events: Sequence[Event], start: float, end: float) -> list[tuple[str, float, float]]:
    """(fault name, start offset, end offset); a fault never reverted lasts to the run's end."""
    spans = []
    for event in events:
        if event.kind != schema.EventKind.FAULT or event.state != schema.EventState.START:
            continue
        ends = [e.time for e in events if e.kind == event.kind and e.name == event.name and e.state == "end"]
        until = min((t for t in ends if t >= event.time), default=end)
        spans.append((event.name, event.time - start, until - start))
    return spans


def _phase_spans(events: Sequence[Event], start: float, end: float) -> list[tuple[str, float, float]]:
    spans = []
    for event in events:
        if event.kind != schema.EventKind.PHASE or event.state != schema.EventState.START:
            continue
        ends = [e.time for e in events if e.kind == event.kind and e.name == event.name and e.state == "end"]
        until = min((t for t in ends if t >= event.time), default=end)
        spans.append((event.name, event.time - start, until - start))
    return spans


def _recoveries(scenario_yaml: str | None) -> dict[str, float]:
    """Each fault's ``recovery`` (seconds after it left out of ``steady``) from the scenario as run."""
    try:
        document = yaml.safe_load(scenario_yaml) if scenario_yaml else None
        faults = document.get("faults") if isinstance(document, dict) else None
        return {
            str(f["name"]): parse_duration(f.get("recovery", 0))
            for f in faults or []
            if isinstance(f, dict) and "name" in f
        }
    except (yaml.YAMLError, ValueError, TypeError):
        return {}


class _Timeline:
    """Where a run's windows lie, in seconds since its start: what the plan computed, from events."""

    def __init__(self, data: ReportData, start: float, end: float) -> None:
        self.duration = data.planned_duration_s or end - start  # the plan's windows end at its planned end
        self.faults = {name: (a, b) for name, a, b in _fault_spans(data.events, start, end)}
        self.phases = {name: (a, b) for name, a, b in _phase_spans(data.events, start, end)}
        self.recovery = _recoveries(data.scenario_yaml)

    def spans(self, window: str) -> list[tuple[float, float]]:
        """The offsets a window covers ([] when it cannot be placed: a name the run did not have)."""
        try:
            ref = parse_window(window or "run")
        except ValueError:
            return []
        run = (0.0, self.duration)
        if ref.kind is WindowKind.RUN:
            return [run]
        if ref.kind is WindowKind.PHASE:
            return [self.phases[ref.ref]] if ref.ref in self.phases else []
        if ref.kind is WindowKind.DURING:
            return [self.faults[ref.ref]] if ref.ref in self.faults else []
        if ref.kind is WindowKind.AFTER:
            if ref.ref not in self.faults:
                return []
            begin = self.faults[ref.ref][1]
            return [(begin, min(self.duration, begin + (ref.seconds or self.duration)))]
        if ref.kind is WindowKind.LAST:
            return [(max(0.0, self.duration - ref.seconds), self.duration)]
        pieces = [run]
        for name, (a, b) in sorted(self.faults.items(), key=lambda item: item[1]):
            hole = (a, min(self.duration, b + self.recovery.get(name, 0.0)))
            pieces = [
                part
                for lo, hi in pieces
                for part in ((lo, min(hi, hole[0])), (max(lo, hole[1]), hi))
                if part[1] > part[0]
            ]
        return pieces

    def recovered(self, slo: SloRow) -> dict[str, Any] | None:
        """A recovery_time SLO's recovery window: from the fault's end to recovery (or the window's end)."""
        try:
            ref = parse_window(slo.window)
        except ValueError:
            return None
        if slo.metric != "recovery_time" or ref.kind is not WindowKind.AFTER or ref.ref not in self.faults:
            return None
        begin = self.faults[ref.ref][1]
        spans = self.spans(slo.window)
        if slo.measured is not None and slo.status != "never_recovered":
            return {"from": begin, "to": begin + slo.measured, "recovered": True}
        return {"from": begin, "to": spans[0][1] if spans else self.duration, "recovered": False}


def _lanes(data: ReportData, timeline: _Timeline) -> list[dict[str, Any]]:
    lanes: list[dict[str, Any]] = []
    if timeline.phases:
        spans = [{"from": a, "to": b, "text": name} for name, (a, b) in timeline.phases.items()]
        lanes.append({"label": "phases", "kind": "phase", "spans": spans})
    for name, (a, b) in timeline.faults.items():
        lanes.append({"label": f"fault {name}", "kind": "fault", "spans": [{"from": a, "to": b, "text": name}]})
    for slo in data.slos:
        spans = [{"from": a, "to": b, "text": slo.window} for a, b in timeline.spans(slo.window)]
        lane: dict[str, Any] = {"label": f"SLO {slo.name}", "kind": "pass" if slo.passed else "fail", "spans": spans}
        recovery = timeline.recovered(slo)
        if recovery is not None:
            lane["recovery"] = recovery
        lanes.append(lane)
    return lanes


def _whole(second: int, start: float, end: float) -> bool:
    """Is the second wholly inside the run (so its counts are a full second's)?"""
    return second >= start - 1e-6 and second + 1 <= end + 1e-6


def _kind_series(rows: Sequence[Second | None], whole: Sequence[bool]) -> list[dict[str, Any]]:
    totals: Counter[str] = Counter()
    for row in rows:
        for kind, count in row.failure_kinds if row is not None else ():
            totals[kind] += count
    ranked = [kind for kind, _ in totals.most_common()]
    shown = ranked if len(ranked) <= _MAX_KINDS else ranked[: _MAX_KINDS - 1]
    other = "other kinds" if len(ranked) > len(shown) else None
    series = []
    for index, kind in enumerate([*shown, *([other] if other else [])]):
        values: list[int | None] = []
        for row, full in zip(rows, whole, strict=True):
            counts = dict(row.failure_kinds) if row is not None else {}
            count = counts.get(kind, 0) if kind != other else sum(v for k, v in counts.items() if k not in shown)
            values.append(count if full and row is not None else None)
        series.append({"label": kind, "colour": KIND_COLOURS[index], "values": values})
    return series


def _endpoint_charts(data: ReportData, seconds: Sequence[int], whole: Sequence[bool]) -> list[dict[str, Any]]:
    by_endpoint: dict[tuple[str, str], dict[int, Any]] = defaultdict(dict)
    for row in data.endpoint_seconds:
        by_endpoint[(row.method, row.name)][row.second] = row
    busiest = sorted(by_endpoint, key=lambda key: (-sum(r.requests for r in by_endpoint[key].values()), key))
    charts = []
    for method, name in busiest[:MAX_ENDPOINT_CHARTS]:
        rows = [by_endpoint[(method, name)].get(s) for s in seconds]
        charts.append(
            {
                "label": f"{method} {name}".strip(),
                "p50": [r.p50_ms if r is not None else None for r in rows],
                "p99": [r.p99_ms if r is not None else None for r in rows],
                "rps": [r.requests if r is not None and full else None for r, full in zip(rows, whole, strict=True)],
            }
        )
    return charts


def _probe_lines(data: ReportData, seconds: Sequence[int]) -> list[dict[str, Any]]:
    """Each probe on the seconds' axis: the last value polled in a second, None where none was."""
    lines = []
    for index, probe in enumerate(data.probes):
        by_second = {int(at): value for at, value in probe.values}
        colour = PROBE_COLOURS[index % len(PROBE_COLOURS)]
        lines.append({"label": probe.name, "colour": colour, "values": [by_second.get(s) for s in seconds]})
    return lines


def chart_data(data: ReportData) -> dict[str, Any] | None:
    """Everything the charts draw (JSON-ready); None when the run has no per-second rows."""
    if not data.seconds:
        return None
    first, last = data.seconds[0].second, data.seconds[-1].second
    start = data.started if data.started is not None else float(first)
    end = data.ended if data.ended is not None else float(last + 1)
    by_second = {s.second: s for s in data.seconds}
    seconds = list(range(first, last + 1))
    rows = [by_second.get(s) for s in seconds]
    whole = [_whole(s, start, end) for s in seconds]

    def values(attribute: str, rate: bool = False) -> list[Any]:
        return [
            getattr(r, attribute) if r is not None and (full or not rate) else None
            for r, full in zip(rows, whole, strict=True)
        ]

    open_model = any(r is not None and r.target_rate for r in rows)  # closed: target 0, achieved = requests
    timeline = _Timeline(data, start, max(end, start))
    markers = [
        {"at": e.time - start, "kind": e.kind, "text": e.name}
        for e in data.events
        if (e.kind, e.state) in (("phase", "start"), ("abort", "start"))
    ]
    for lane in _lanes(data, timeline):
        recovery = lane.get("recovery")
        if recovery and recovery["recovered"]:
            markers.append({"at": recovery["to"], "kind": "recovery", "text": lane["label"]})
    return {
        "end": round(end - start, 3),
        "t": [round(s + 0.5 - start, 3) for s in seconds],
        "partial": [round(s + 0.5 - start, 3) for s, full in zip(seconds, whole, strict=True) if not full],
        "requests": values("requests", rate=True),
        "target": values("target_rate") if open_model else [],
        "achieved": values("achieved_rate", rate=True) if open_model else [],
        "users": values("users"),
        "p50": values("p50_ms"),
        "p95": values("p95_ms"),
        "p99": values("p99_ms"),
        "p999": values("p999_ms"),
        "max": values("max_ms"),
        "error_rate": values("error_rate"),
        "kinds": _kind_series(rows, whole),
        "endpoints": _endpoint_charts(data, seconds, whole),
        "probes": _probe_lines(data, seconds),
        "faults": [{"from": a, "to": b, "text": n} for n, (a, b) in timeline.faults.items()],
        "markers": sorted(markers, key=lambda m: m["at"]),
        "lanes": _lanes(data, timeline),
        "colours": {
            "requests": REQUESTS_COLOUR,
            "target": TARGET_COLOUR,
            "achieved": ACHIEVED_COLOUR,
            "users": USERS_COLOUR,
            "p50": P50_COLOUR,
            "p95": P95_COLOUR,
            "p99": P99_COLOUR,
            "p999": P999_COLOUR,
            "max": MAX_COLOUR,
            "error_rate": ERRORS_COLOUR,
            "endpoint_p50": ENDPOINT_P50_COLOUR,
            "endpoint_p99": ENDPOINT_P99_COLOUR,
            "endpoint_rps": ENDPOINT_RPS_COLOUR,
            "fault": FAULT_COLOUR,
        },
    }


def data_json(chart: dict[str, Any]) -> str:
    """The chart data as the text of a ``<script type="application/json">``: no ``<``, ``>`` or ``&``
    in it, so no text of the run can close the element or open another."""
    text = json.dumps(chart, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


_FIGURES = (
    (
        "timeline",
        "Timeline",
        "Phases, fault windows and each SLO's window (green: met, red: not met). "
        "For a recovery_time SLO the darker bar is the recovery: from the fault's end to the first "
        "second of the run of good seconds it asks for, or to the window's end when it never came.",
    ),
    (
        "load",
        "Load",
        "Requests completed per second over all endpoints (failures included) and users running "
        "(right axis); for the open model also its target and achieved arrival rates.",
    ),
    (
        "latency",
        "Latency (ms, log scale)",
        "Per-second latency percentiles of all endpoints together, "
        f"exact: from each second's merged histogram (runs written before {schema.TOTALS.name} existed: the "
        "endpoints' percentiles mixed in proportion to their request counts).",
    ),
    (
        "failures",
        "Failures by kind",
        "Failed requests per second by kind (an HTTP status, an exception "
        "name), over all endpoints; the error rate on the right axis.",
    ),
)


def plots(data: ReportData) -> str:
    """The charts section's body: a figure per chart, and the data they draw."""
    chart = chart_data(data)
    if chart is None:
        return f'<p class="note">No per-second data: the run has no {schema.REQUESTS.name} points.</p>'
    figures = [
        f'<figure id="fig-{key}"><h3>{_e(title)}</h3><div class="chart" id="chart-{key}"></div>'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
        for key, title, caption in _FIGURES
    ]
    if chart["probes"]:
        figures.append(
            '<figure id="fig-probes"><h3>Probes (server-side metrics)</h3><div class="chart" id="chart-probes"></div>'
            "<figcaption>The scenario's probes: each query's value when it was polled, in its own unit; a gap is "
            "a poll that failed or gave nothing (the events say why).</figcaption></figure>"
        )
    for index, endpoint in enumerate(chart["endpoints"]):
        figures.append(
            f'<figure class="endpoint"><h3>{_e(endpoint["label"])}</h3>'
            f'<div class="chart" id="chart-endpoint-{index}"></div></figure>'
        )
    shown = len(chart["endpoints"])
    more = len({(r.method, r.name) for r in data.endpoint_seconds}) - shown
    notes = [
        "Hover a chart for the values of a second; drag across it to zoom (every chart follows), "
        "double-click to zoom out. Fault windows are shaded; dashed lines mark phase starts "
        "(red: an abort), dotted green lines the instant a recovery_time SLO saw recovery."
    ]
    if chart["partial"]:
        notes.append(
            "Seconds only partly inside the run (at "
            + ", ".join(f"{t:+.1f}s" for t in chart["partial"])
            + ") have no rate points: a part of a second would read as a drop."
        )
    if more > 0:
        notes.append(f"Per-endpoint charts for the {shown} busiest endpoints; {more} more are in the table.")
    return (
        '<p class="note" id="charts-fallback">The charts need JavaScript, which did not run here: the '
        "figures are in the tables below and in the per-second table.</p>"
        + "".join(f'<p class="note">{_e(n)}</p>' for n in notes)
        + '<div id="charts">'
        + "".join(figures)
        + "</div>"
        + f'<script type="application/json" id="report-data">{data_json(chart)}</script>'
    )
