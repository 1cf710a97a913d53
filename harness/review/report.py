"""A run as one self-contained HTML page: summary, verdict, plots over time, endpoints, scenario.

Pure: :func:`render` takes a :class:`ReportData` (assembled by :mod:`harness.review.report_data` from
``runs/<run_id>/`` or InfluxDB) and returns the page as a string; it reads and writes nothing.

What a caller may rely on:

* The page is usable offline: no external URL is referenced, CSS is inline, plots are inline
  SVG drawn here, and there is no JavaScript at all. A Content-Security-Policy ``<meta>``
  (``default-src 'none'``) makes the browser refuse any load or script that might slip in.
* Every text from the run (names, messages, the scenario file) is HTML-escaped.
* Plots share one time axis, seconds since the run's start; each per-second value is drawn at
  the midpoint of its second. Fault windows are shaded (``<rect class="fault">``) and phase
  starts and aborts are marked (``<line class="phase">``, ``<line class="abort">``) on every plot.
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from harness.results import schema
from harness.scenario.expressions import format_duration, format_metric

__all__ = [
    "LATENCY_CAPTION",
    "Comparison",
    "EndpointRow",
    "Event",
    "GuardRow",
    "ReportData",
    "Second",
    "SloRow",
    "Totals",
    "render",
]

LATENCY_CAPTION = (
    "Latency percentiles of all endpoints together, per second. Each endpoint's per-second "
    "percentiles (p50 ... max) are read as a piecewise-linear distribution; the endpoints' "
    "distributions are mixed in proportion to their request counts and the percentile of the "
    "mixture is drawn. It always lies between the lowest and the highest endpoint's percentile "
    "for that second, and equals it when one endpoint served the second."
)


# ---------------------------------------------------------------- the data a report shows


@dataclass(frozen=True)
class Second:
    """One epoch second of the run over all endpoints (latency None when nothing completed)."""

    second: int
    requests: int
    failures: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    target_rate: float | None = None  # open model: arrivals per second asked for

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None


@dataclass(frozen=True)
class Event:
    """A harness_events point: kind is run, phase, stage, fault or abort; state start or end."""

    time: float  # epoch seconds
    kind: str
    name: str
    state: str
    text: str = ""


@dataclass(frozen=True)
class SloRow:
    name: str
    objective: str
    window: str
    endpoint: str
    metric: str
    measured: float | None
    threshold: float | None
    passed: bool
    status: str = ""  # met, breached, no_data, never_recovered ('' when unknown)
    message: str = ""


@dataclass(frozen=True)
class GuardRow:
    name: str
    condition: str
    tripped: bool
    message: str = ""


@dataclass(frozen=True)
class Comparison:
    """One baseline comparison as summary.json's ``baseline.comparisons`` holds it."""

    phase: str
    endpoint: str
    metric: str
    regressed: bool
    message: str


@dataclass(frozen=True)
class Totals:
    requests: int
    failures: int
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True, kw_only=True)
class EndpointRow(Totals):
    """One endpoint's totals: the same figures as the run's, with the endpoint they are for."""

    method: str
    name: str


@dataclass(frozen=True)
class ReportData:
    """Everything :func:`render` shows. Times are epoch seconds; latencies milliseconds.

    ``estimated`` says the endpoint table and totals were computed from per-second rows (the
    InfluxDB path) rather than taken from the run's merged histograms (summary.json).
    """

    run_id: str
    scenario: str
    verdict: str
    reason: str
    started: float | None
    ended: float | None
    planned_duration_s: float | None = None
    totals: Totals | None = None
    slos: tuple[SloRow, ...] = ()
    guards: tuple[GuardRow, ...] = ()
    baseline_ref: str | None = None
    baseline_run: str | None = None
    comparisons: tuple[Comparison, ...] = ()
    endpoints: tuple[EndpointRow, ...] = ()
    seconds: tuple[Second, ...] = ()
    events: tuple[Event, ...] = ()
    scenario_yaml: str | None = None
    source: str = ""
    estimated: bool = False
    notes: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------- small helpers

_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1d2329;margin:0;background:#fff}
main{max-width:1180px;margin:0 auto;padding:16px 24px 48px}
h1{font-size:20px;margin:8px 0 4px;word-break:break-all}h2{font-size:16px;margin:28px 0 8px;
border-bottom:1px solid #dde1e5;padding-bottom:4px}
.verdict{display:inline-block;padding:2px 10px;border-radius:4px;font-weight:600;color:#fff;background:#6c757d}
.v-passed{background:#1e7b34}.v-failed,.v-aborted{background:#b42318}.v-invalid{background:#a15c00}
dl{display:grid;grid-template-columns:max-content 1fr;gap:2px 16px;margin:8px 0}dt{color:#5b6670}dd{margin:0}
table{border-collapse:collapse;margin:6px 0;font-size:13px}th,td{border:1px solid #dde1e5;padding:3px 8px;
text-align:left;vertical-align:top}th{background:#f3f5f7}td.n{text-align:right;font-variant-numeric:tabular-nums}
.pass{color:#1e7b34;font-weight:600}.fail{color:#b42318;font-weight:600}
figure{margin:12px 0 20px}figcaption{color:#5b6670;font-size:12px;max-width:960px}
.legend span{margin-right:14px;font-size:12px}.legend i{display:inline-block;width:18px;height:3px;
vertical-align:middle;margin-right:4px}
svg text{font:11px system-ui,sans-serif;fill:#5b6670}
pre{background:#f6f8fa;border:1px solid #dde1e5;padding:10px;overflow:auto;font-size:12px}
.note{color:#5b6670;font-size:12px}
"""

# Line colours: unique on the page, so a screenshot test can find each plot's lines.
REQUESTS_COLOUR = "#1f77b4"
TARGET_COLOUR = "#8c8c8c"
P50_COLOUR = "#2ca02c"
P95_COLOUR = "#ff7f0e"
P99_COLOUR = "#d62728"
ERRORS_COLOUR = "#9467bd"
_FAULT_FILL = "#f6c8c0"
_PHASE_COLOUR = "#4a5560"
_ABORT_COLOUR = "#b42318"

# Longer runs are drawn with one point per bucket of seconds: a plot is ~900 px wide.
_MAX_POINTS = 900


_NONE = "\u2013"  # an en dash: no value


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _ms(value: float | None) -> str:
    return _NONE if value is None or not math.isfinite(value) else f"{value:,.1f}"


def _pct(value: float | None) -> str:
    return _NONE if value is None else f"{value * 100:.2f}%"


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "unknown"
    return format_duration(round(seconds, 1))


def _metric_value(metric: str, value: float | None) -> str:
    if value is None:
        return "no data"
    return format_metric(metric, value) if metric else f"{value:g}"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = (), cls: str = "") -> str:
    """A table of already-escaped cells; ``numeric`` column indexes are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    klass = f' class="{cls}"' if cls else ""
    return f"<table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


# ---------------------------------------------------------------- plots


@dataclass(frozen=True)
class _Line:
    label: str
    colour: str
    values: Sequence[float | None]  # one per second of the run, None for a gap
    dashed: bool = False
    bucket: Callable[[list[float]], float] = max


@dataclass(frozen=True)
class _Axis:
    """The run's time axis: epoch second -> x offset (seconds since the start)."""

    start: float
    duration: float
    seconds: Sequence[int]

    def offset(self, second: int) -> float:
        return second + 0.5 - self.start


def _nice_step(span: float, ticks: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _buckets(xs: Sequence[float], line: _Line, size: int) -> list[tuple[float, float | None]]:
    """Points of one line, ``size`` seconds per point (1: as is)."""
    if size <= 1:
        return list(zip(xs, line.values, strict=True))
    out: list[tuple[float, float | None]] = []
    for begin in range(0, len(xs), size):
        chunk_x = xs[begin : begin + size]
        values = [v for v in line.values[begin : begin + size] if v is not None]
        out.append((sum(chunk_x) / len(chunk_x), line.bucket(values) if values else None))
    return out


class _Frame:
    """Pixel geometry of one plot."""

    width, height = 1000, 230
    left, right, top, bottom = 64, 16, 22, 30

    def __init__(self, duration: float, y_max: float) -> None:
        self.duration = max(duration, 1.0)
        self.y_max = y_max

    def x(self, offset: float) -> float:
        inner = self.width - self.left - self.right
        return self.left + inner * min(max(offset, 0.0), self.duration) / self.duration

    def y(self, value: float) -> float:
        inner = self.height - self.top - self.bottom
        return self.top + inner * (1 - min(max(value, 0.0), self.y_max) / self.y_max)


def _fault_spans(events: Sequence[Event], start: float, end: float) -> list[tuple[str, float, float]]:
    """(fault name, start offset, end offset); a fault never reverted is shaded to the run's end."""
    spans = []
    for event in sorted(events, key=lambda e: e.time):
        if event.kind != "fault" or event.state != "start":
            continue
        ends = [e.time for e in events if e.kind == "fault" and e.name == event.name and e.state == "end"]
        until = min((t for t in ends if t >= event.time), default=end)
        spans.append((event.name, event.time - start, until - start))
    return spans


def _plot(
    key: str,
    title: str,
    axis: _Axis,
    lines: Sequence[_Line],
    events: Sequence[Event],
    fmt: Callable[[float], str],
    caption: str,
    y_floor: float,
) -> str:
    frame_max = max([y_floor, *(v for line in lines for v in line.values if v is not None)])
    step = _nice_step(frame_max)
    y_max = step * math.ceil(frame_max / step) if frame_max > 0 else y_floor
    frame = _Frame(axis.duration, y_max)
    parts = [
        f'<svg class="plot" id="plot-{_e(key)}" role="img" aria-label="{_e(title)}" width="{frame.width}" '
        f'height="{frame.height}" viewBox="0 0 {frame.width} {frame.height}">',
        f"<title>{_e(title)}</title>",
    ]
    bottom, top = frame.height - frame.bottom, frame.top
    # fault windows under everything else
    for name, begin, end in _fault_spans(events, axis.start, axis.start + axis.duration):
        x0, x1 = frame.x(begin), frame.x(end)
        parts.append(
            f'<rect class="fault" data-fault="{_e(name)}" x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 1.0):.1f}" '
            f'height="{bottom - top}" fill="{_FAULT_FILL}" fill-opacity="0.55"><title>fault {_e(name)}: '
            f"+{begin:.1f}s to +{end:.1f}s</title></rect>"
            f'<text x="{x0 + 3:.1f}" y="{top + 11}">{_e(name)}</text>'
        )
    # grid and axes
    tick = 0.0
    while tick <= y_max + 1e-9:
        y = frame.y(tick)
        parts.append(
            f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9ec"/>'
            f'<text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(fmt(tick))}</text>'
        )
        tick += step
    x_step = _nice_step(axis.duration, 8)
    x_step = max(x_step, 1.0)
    tick = 0.0
    while tick <= axis.duration + 1e-9:
        x = frame.x(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#9aa3ab"/>'
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{_e(format_duration(round(tick, 1)))}</text>'
        )
        tick += x_step
    parts.append(
        f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{bottom}" y2="{bottom}" stroke="#9aa3ab"/>'
    )
    # phase starts and aborts
    for event in events:
        if (event.kind, event.state) not in (("phase", "start"), ("abort", "start")):
            continue
        x = frame.x(event.time - axis.start)
        colour = _PHASE_COLOUR if event.kind == "phase" else _ABORT_COLOUR
        label = event.name if event.kind == "phase" else f"abort: {event.name}"
        parts.append(
            f'<line class="{event.kind}" data-{event.kind}="{_e(event.name)}" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
            f'y2="{bottom}" stroke="{colour}" stroke-width="1" stroke-dasharray="4 3"><title>{_e(label)} at '
            f"+{event.time - axis.start:.1f}s</title></line>"
            f'<text x="{x + 3:.1f}" y="{bottom - 4}" fill="{colour}">{_e(label)}</text>'
        )
    # the lines
    xs = [axis.offset(s) for s in axis.seconds]
    size = math.ceil(len(xs) / _MAX_POINTS) if xs else 1
    drawn = 0
    for line in lines:
        segment: list[str] = []
        segments: list[list[str]] = []
        for x_offset, value in _buckets(xs, line, size):
            if value is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{frame.x(x_offset):.1f},{frame.y(value):.1f}")
        if segment:
            segments.append(segment)
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        for points in segments:
            drawn += 1
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{line.colour}"/>')
            else:
                parts.append(
                    f'<polyline class="series" data-series="{_e(line.label)}" fill="none" stroke="{line.colour}" '
                    f'stroke-width="2" stroke-linejoin="round"{dash} points="{" ".join(points)}"/>'
                )
    if not drawn:
        middle = (top + bottom) / 2
        parts.append(f'<text x="{frame.width / 2}" y="{middle}" text-anchor="middle">no data</text>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{line.colour}"></i>{_e(line.label)}</span>' for line in lines) + (
        f'<span><i style="background:{_FAULT_FILL}"></i>fault window</span>' if _has(events, "fault") else ""
    )
    if size > 1:
        caption += f" Each point covers {size} seconds."
    return (
        f'<figure id="fig-{_e(key)}"><h3>{_e(title)}</h3>{"".join(parts)}'
        f'<div class="legend">{legend}</div><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _has(events: Sequence[Event], kind: str) -> bool:
    return any(e.kind == kind for e in events)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def _plots(data: ReportData) -> str:
    if not data.seconds:
        return f'<p class="note">No per-second data: the run has no {schema.REQUESTS.name} points.</p>'
    first, last = data.seconds[0].second, data.seconds[-1].second
    start = data.started if data.started is not None else float(first)
    end = data.ended if data.ended is not None else float(last + 1)
    end = max(end, last + 1.0)
    by_second = {s.second: s for s in data.seconds}
    seconds = list(range(first, last + 1))
    axis = _Axis(start, end - start, seconds)
    rows = [by_second.get(s) for s in seconds]

    def values(get: Callable[[Second], float | None]) -> list[float | None]:
        return [get(r) if r is not None else None for r in rows]

    rate = _Line("requests/s", REQUESTS_COLOUR, values(lambda r: float(r.requests)), bucket=_mean)
    rate_lines = [rate]
    if any(r is not None and r.target_rate for r in rows):
        rate_lines.append(_Line("target rate", TARGET_COLOUR, values(lambda r: r.target_rate), True, _mean))
    latency = [
        _Line("p50", P50_COLOUR, values(lambda r: r.p50_ms)),
        _Line("p95", P95_COLOUR, values(lambda r: r.p95_ms)),
        _Line("p99", P99_COLOUR, values(lambda r: r.p99_ms)),
    ]
    errors = [_Line("error rate", ERRORS_COLOUR, values(lambda r: r.error_rate))]
    events = data.events
    return "".join(
        (
            _plot(
                "rps",
                "Requests per second",
                axis,
                rate_lines,
                events,
                lambda v: f"{v:g}",
                "Requests completed per second over all endpoints (failures included)"
                + ("; dashed: the open model's target arrival rate." if len(rate_lines) > 1 else "."),
                1.0,
            ),
            _plot("latency", "Latency (ms)", axis, latency, events, lambda v: f"{v:g}", LATENCY_CAPTION, 1.0),
            _plot(
                "errors",
                "Error rate",
                axis,
                errors,
                events,
                lambda v: f"{v * 100:g}%",
                "Failed requests / completed requests per second over all endpoints (no point: no request completed).",
                0.01,
            ),
        )
    )


# ---------------------------------------------------------------- sections


def _summary(data: ReportData) -> str:
    duration = data.ended - data.started if data.started is not None and data.ended is not None else None
    planned = f" (planned {_duration(data.planned_duration_s)})" if data.planned_duration_s else ""
    items = [
        ("run id", _e(data.run_id)),
        ("scenario", _e(data.scenario or "unknown")),
        ("started", _e(_when(data.started))),
        ("duration", _e(_duration(duration) + planned)),
        ("verdict", f'<span class="verdict v-{_e(data.verdict)}">{_e(data.verdict.upper())}</span>'),
        ("reason", _e(data.reason or _NONE)),
    ]
    t = data.totals
    if t is not None:
        items += [
            ("requests", f"{t.requests:,} ({t.rps:,.1f}/s)"),
            ("failures", f"{t.failures:,} ({_pct(t.error_rate)})"),
            (
                "latency (ms)",
                f"p50 {_ms(t.p50_ms)} · p95 {_ms(t.p95_ms)} · p99 {_ms(t.p99_ms)} · max {_ms(t.max_ms)}"
                + (" (estimated from per-second rows)" if data.estimated else ""),
            ),
        ]
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return f'<section id="summary"><h2>Summary</h2><dl>{body}</dl></section>'


def _slo_result(row: SloRow) -> str:
    if row.passed:
        return '<span class="pass">pass</span>'
    label = {"no_data": "FAIL (no data)", "never_recovered": "FAIL (never recovered)"}.get(row.status, "FAIL")
    return f'<span class="fail">{label}</span>'


def _verdict(data: ReportData) -> str:
    out = ['<section id="verdict"><h2>Verdict</h2>']
    if data.slos:
        rows = [
            (
                _e(s.name),
                _e(s.objective or _NONE),
                _e(s.window or _NONE),
                _e(s.endpoint or _NONE),
                _e(_metric_value(s.metric, s.measured)),
                _e(_metric_value(s.metric, s.threshold)),
                _slo_result(s),
            )
            for s in data.slos
        ]
        out.append(
            _table(
                ("SLO", "objective", "window", "endpoint", "measured", "threshold", "result"),
                rows,
                (4, 5),
                "slos",
            )
        )
    else:
        out.append('<p class="note">No SLO results.</p>')
    if data.guards:
        guard_rows = [
            (
                _e(g.name),
                _e(g.condition or _NONE),
                '<span class="fail">TRIPPED</span>' if g.tripped else '<span class="pass">held</span>',
                _e(g.message or ""),
            )
            for g in data.guards
        ]
        out.append("<h3>Guards</h3>" + _table(("guard", "condition", "result", "message"), guard_rows, (), "guards"))
    if data.baseline_run or data.baseline_ref:
        regressions = [c for c in data.comparisons if c.regressed]
        out.append(
            f"<h3>Baseline</h3><p>Compared with run {_e(data.baseline_run or '?')} "
            f"(--baseline {_e(data.baseline_ref or '?')}): {len(data.comparisons)} comparisons, "
            f"{len(regressions)} regression{'' if len(regressions) == 1 else 's'}.</p>"
        )
        columns = ("phase", "endpoint", "metric", "result", "detail")

        def row(c: Comparison) -> tuple[str, ...]:
            result = '<span class="fail">REGRESSED</span>' if c.regressed else "ok"
            return (_e(c.phase), _e(c.endpoint), _e(c.metric), result, _e(c.message))

        if regressions:
            out.append(_table(columns, [row(c) for c in regressions], (), "regressions"))
        if data.comparisons:
            out.append(
                f"<details><summary>All {len(data.comparisons)} comparisons</summary>"
                f"{_table(columns, [row(c) for c in data.comparisons])}</details>"
            )
    out.append("</section>")
    return "".join(out)


def _endpoints(data: ReportData) -> str:
    if not data.endpoints:
        return '<section id="endpoints"><h2>Endpoints</h2><p class="note">No endpoint statistics.</p></section>'
    rows = [
        (
            _e(f"{r.method} {r.name}".strip()),
            f"{r.requests:,}",
            f"{r.failures:,}",
            _pct(r.error_rate),
            f"{r.rps:,.1f}",
            _ms(r.p50_ms),
            _ms(r.p95_ms),
            _ms(r.p99_ms),
            _ms(r.max_ms),
        )
        for r in data.endpoints
    ]
    note = (
        "Percentiles estimated from per-second rows (request-count-weighted mixture), max exact."
        if data.estimated
        else "Percentiles over the whole run, from the run's merged latency histograms."
    )
    table = _table(
        ("endpoint", "requests", "failures", "error rate", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms"),
        rows,
        range(1, 9),
        "endpoints",
    )
    return f'<section id="endpoints"><h2>Endpoints</h2>{table}<p class="note">{_e(note)}</p></section>'


def _events(data: ReportData) -> str:
    shown = [e for e in sorted(data.events, key=lambda e: e.time) if e.kind in ("phase", "stage", "fault", "abort")]
    if not shown:
        return ""
    start = data.started if data.started is not None else shown[0].time
    rows = [(f"+{e.time - start:.3f}s", _e(e.kind), _e(e.name), _e(e.state), _e(e.text)) for e in shown]
    table = _table(("offset", "kind", "name", "state", "text"), rows, (0,), "events")
    return f'<section id="events"><h2>Timeline</h2>{table}</section>'


def _scenario(data: ReportData) -> str:
    body = (
        f"<pre>{_e(data.scenario_yaml)}</pre>"
        if data.scenario_yaml is not None
        else '<p class="note">The scenario file as run is not available (no scenario.yaml for this run).</p>'
    )
    return f'<section id="scenario"><h2>Scenario as run</h2>{body}</section>'


def render(data: ReportData) -> str:
    """The report as one HTML document (UTF-8 text; no external references, no script)."""
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in data.notes)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>harness report: {_e(data.run_id)}</title><style>{_STYLE}</style></head>\n"
        f"<body><main><h1>{_e(data.scenario or 'run')}: {_e(data.run_id)}</h1>"
        f'<p><span class="verdict v-{_e(data.verdict)}">{_e(data.verdict.upper())}</span> {_e(data.reason)}</p>\n'
        f"{_summary(data)}\n{_verdict(data)}\n"
        f'<section id="plots"><h2>Over time</h2>{_plots(data)}</section>\n'
        f"{_endpoints(data)}\n{_events(data)}\n{_scenario(data)}\n"
        f'<footer class="note"><p>Source: {_e(data.source or "unknown")}. Written by harness report.</p>'
        f"{notes}</footer></main></body></html>\n"
    )
