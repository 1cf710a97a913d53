"""A run as one self-contained HTML page: summary, verdict, plots over time, endpoints, scenario.

Pure: :func:`render` takes a :class:`ReportData` (assembled by :mod:`harness.review.report_data` from
``runs/<run_id>/`` or InfluxDB) and returns the page as a string; it reads and writes nothing.

What a caller may rely on:

* The page is usable offline: no external URL is referenced anywhere in it. CSS is inline; the
  charts are drawn by uPlot (:mod:`harness.review.vendor`, its MIT licence in the page) and the
  report's own ``report.js``, both inline, from the JSON :mod:`harness.review.plots` computes.
  A Content-Security-Policy ``<meta>`` (``default-src 'none'``, scripts only by their sha256
  hashes, no ``connect-src``) makes the browser refuse any load, request or other script.
* Without JavaScript the page still shows every figure: the summary, the verdict and the
  tables (endpoints with the all-endpoints row, failures by kind, SLO windows, every second).
* Every text from the run (names, messages, the scenario file) is HTML-escaped; in the charts'
  JSON ``<``, ``>`` and ``&`` are escaped too, so it cannot close its element.
"""

from __future__ import annotations

import base64
import hashlib
import html
import time
from importlib.resources import files

from harness.judge.ladder import LadderResult
from harness.judge.objectives import format_duration, format_metric
from harness.review import report_tables, vendor
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

_APP = files("harness.review").joinpath("report.js").read_text(encoding="utf-8")


def _sha256(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode("ascii") + "'"


def csp() -> str:
    """The page's Content-Security-Policy: nothing loads; only the two inline scripts run."""
    scripts = " ".join(_sha256(s) for s in (vendor.script(), _APP))
    return f"default-src 'none'; script-src {scripts}; style-src 'unsafe-inline'; img-src data:"


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
.wide{overflow-x:auto}.chart{width:100%;min-height:40px}.uplot{width:100%}.u-legend{font-size:12px;text-align:left}
figure.endpoint h3{font-size:13px;margin:4px 0;word-break:break-all}
pre{background:#f6f8fa;border:1px solid #dde1e5;padding:10px;overflow:auto;font-size:12px}
.note{color:#5b6670;font-size:12px}
"""

_NONE = report_tables.NONE
_ms, _pct, _table = report_tables.ms, report_tables.pct, report_tables.table


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def _duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "unknown"
    return format_duration(round(seconds, 1))


def _metric_value(metric: str, value: float | None) -> str:
    if value is None:
        return "no data"
    return format_metric(metric, value) if metric else f"{value:g}"


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
                f"avg {_ms(t.mean_ms)} · p50 {_ms(t.p50_ms)} · p90 {_ms(t.p90_ms)} · p95 {_ms(t.p95_ms)} · "
                f"p99 {_ms(t.p99_ms)} · p99.9 {_ms(t.p999_ms)} · max {_ms(t.max_ms)}"
                + (" (estimated from per-second rows)" if data.estimated else ""),
            ),
        ]
    body = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in items)
    return f'<section id="summary"><h2>Summary</h2><dl>{body}</dl></section>'


def _slo_result(row: SloRow) -> str:
    if row.passed:
        return '<span class="pass">pass</span>'
    label = {
        "no_data": "FAIL (no data)",
        "never_recovered": "FAIL (never recovered)",
        "never_healed": "FAIL (never healed)",
    }.get(row.status, "FAIL")
    return f'<span class="fail">{label}</span>'


_STEP_CLASSES = {"held": "pass", "broke": "fail"}


def _ladder(ladder: LadderResult) -> str:
    """A fault's ladder: each step's radius, what it acted on, its SLOs and whether it held."""
    rows = []
    for step in ladder.steps:
        on = f"{step.instances} of {step.found}" if step.instances is not None else _NONE
        measured = ", ".join(f"{r.name} {_metric_value(r.metric, r.measured)}" for r in step.slos) or step.reason
        state = f'<span class="{_STEP_CLASSES.get(step.state.value, "note")}">{_e(step.state.value)}</span>'
        rows.append((str(step.step), _e(step.radius), _e(on), _e(measured), state))
    title = f"<h3>Ladder of fault {_e(ladder.fault)}</h3><p>{_e(ladder.message)}</p>"
    return title + _table(("step", "radius", "instances", "SLOs (measured)", "result"), rows, (), "ladder")


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
    out += [_ladder(ladder) for ladder in data.ladders]
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


def _events(data: ReportData) -> str:
    kinds = ("phase", "stage", "fault", "abort", "heal", "steady")
    shown = [e for e in sorted(data.events, key=lambda e: e.time) if e.kind in kinds]
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


def _licences() -> str:
    return (
        f'<details id="licences"><summary>Licences: the charts are drawn by uPlot {vendor.UPLOT_VERSION} '
        f"(MIT), embedded in this page</summary><pre>{_e(vendor.licence())}</pre></details>"
    )


def render(data: ReportData) -> str:
    """The report as one HTML document (UTF-8 text; no external references, inline scripts only)."""
    notes = "".join(f'<p class="note">{_e(n)}</p>' for n in data.notes)
    charts = plots(data)
    scripts = f"<script>{vendor.script()}</script>\n<script>{_APP}</script>" if 'id="report-data"' in charts else ""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{csp()}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>harness report: {_e(data.run_id)}</title><style>{vendor.stylesheet()}{_STYLE}</style></head>\n"
        f"<body><main><h1>{_e(data.scenario or 'run')}: {_e(data.run_id)}</h1>"
        f'<p><span class="verdict v-{_e(data.verdict)}">{_e(data.verdict.upper())}</span> {_e(data.reason)}</p>\n'
        f"{_summary(data)}\n{_verdict(data)}\n{report_tables.heals(data)}\n"
        f'<section id="plots"><h2>Over time</h2>{charts}</section>\n'
        f"{report_tables.endpoints(data)}\n{report_tables.traces(data)}\n"
        f"{report_tables.failures(data)}\n{report_tables.windows(data)}\n"
        f"{_events(data)}\n{report_tables.seconds(data)}\n{_scenario(data)}\n"
        f'<footer class="note"><p>Source: {_e(data.source or "unknown")}. Written by harness report.</p>'
        f"{notes}{_licences()}</footer></main>\n{scripts}</body></html>\n"
    )
