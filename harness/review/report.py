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
  starts and aborts are marked (``<line class="phase">``, ``<line class="abort">``) on every plot
  (:mod:`harness.review.plots` draws them).
"""

from __future__ import annotations

import html
import math
import time
from collections.abc import Sequence

from harness.judge.objectives import format_duration, format_metric
from harness.review.plots import plots
from harness.review.report_model import (
    Comparison,
    EndpointRow,
    Event,
    GuardRow,
    ReportData,
    Second,
    SloRow,
    Totals,
)

__all__ = [
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
        f'<section id="plots"><h2>Over time</h2>{plots(data)}</section>\n'
        f"{_endpoints(data)}\n{_events(data)}\n{_scenario(data)}\n"
        f'<footer class="note"><p>Source: {_e(data.source or "unknown")}. Written by harness report.</p>'
        f"{notes}</footer></main></body></html>\n"
    )
