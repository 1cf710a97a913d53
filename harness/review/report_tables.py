"""The report's tables of figures: endpoints (with the all-endpoints row), failures by kind, SLO
windows and every second. They are the page's numbers whether or not its charts can be drawn
(a browser without JavaScript shows them all). Every text from the run is HTML-escaped. Pure.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence

from harness.review.report_model import ReportData, Totals

__all__ = ["NONE", "endpoints", "failures", "heals", "ms", "pct", "seconds", "table", "windows"]

NONE = "\u2013"  # an en dash: no value


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def ms(value: float | None) -> str:
    return NONE if value is None or not math.isfinite(value) else f"{value:,.1f}"


def pct(value: float | None) -> str:
    return NONE if value is None else f"{value * 100:.2f}%"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: Sequence[int] = (), cls: str = "") -> str:
    """A table of already-escaped cells; ``numeric`` column indexes are right-aligned."""
    head = "".join(f"<th>{h}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    klass = f' class="{cls}"' if cls else ""
    return f'<div class="wide"><table{klass}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


_FIGURES = ("requests", "failures", "error rate", "req/s", "avg ms", "p50 ms", "p90 ms", "p95 ms", "p99 ms")
_FIGURES_TAIL = ("p99.9 ms", "max ms")


def _figures(t: Totals) -> tuple[str, ...]:
    return (
        f"{t.requests:,}",
        f"{t.failures:,}",
        pct(t.error_rate),
        f"{t.rps:,.1f}",
        ms(t.mean_ms),
        ms(t.p50_ms),
        ms(t.p90_ms),
        ms(t.p95_ms),
        ms(t.p99_ms),
        ms(t.p999_ms),
        ms(t.max_ms),
    )


def endpoints(data: ReportData) -> str:
    """One row per endpoint, then the all-endpoints row (the run's own figures, not a sum of rows)."""
    if not data.endpoints:
        return '<section id="endpoints"><h2>Endpoints</h2><p class="note">No endpoint statistics.</p></section>'
    rows = [(_e(f"{r.method} {r.name}".strip()), *_figures(r)) for r in data.endpoints]
    if data.totals is not None:
        rows.append(("<strong>all endpoints</strong>", *_figures(data.totals)))
    note = (
        "Percentiles estimated from per-second rows (request-count-weighted mixture), mean and max exact."
        if data.estimated
        else "Percentiles over the whole run, from the run's merged latency histograms."
    )
    columns = ("endpoint", *_FIGURES, *_FIGURES_TAIL)
    body = table(columns, rows, range(1, len(columns)), "endpoints")
    return f'<section id="endpoints"><h2>Endpoints</h2>{body}<p class="note">{_e(note)}</p></section>'


def failures(data: ReportData) -> str:
    """Failed requests by endpoint and kind over the run, most first, with each one's share."""
    if not data.failures:
        note = (
            "No failed requests." if data.totals is None or not data.totals.failures else "No failure kinds recorded."
        )
        return f'<section id="failures"><h2>Failures by kind</h2><p class="note">{note}</p></section>'
    total = sum(r.count for r in data.failures)
    rows = [
        (_e(f"{r.method} {r.name}".strip()), _e(r.kind), f"{r.count:,}", f"{r.count / total * 100:.1f}%")
        for r in data.failures
    ]
    body = table(("endpoint", "kind", "failed requests", "share of failures"), rows, (2, 3), "failures")
    return f'<section id="failures"><h2>Failures by kind</h2>{body}</section>'


def windows(data: ReportData) -> str:
    """Each SLO window's exact figures, as the verdict judged them."""
    if not data.windows:
        return ""
    rows = [(_e(w.window), *_figures(w.totals)) for w in data.windows]
    columns = ("window", *_FIGURES, *_FIGURES_TAIL)
    body = table(columns, rows, range(1, len(columns)), "windows")
    return (
        f'<section id="windows"><h2>SLO windows</h2>{body}<p class="note">The figures of each window an SLO '
        "is judged on, from the merged histograms of its seconds.</p></section>"
    )


def seconds(data: ReportData) -> str:
    """Every second of the run over all endpoints, folded: the charts' numbers."""
    if not data.seconds:
        return ""
    start = data.started if data.started is not None else float(data.seconds[0].second)
    rows = [
        (
            f"+{s.second - start:.1f}s",
            f"{s.requests:,}",
            f"{s.failures:,}",
            pct(s.error_rate),
            NONE if s.users is None else f"{s.users:,}",
            NONE if s.target_rate is None else f"{s.target_rate:,.1f}",
            ms(s.p50_ms),
            ms(s.p95_ms),
            ms(s.p99_ms),
            ms(s.p999_ms),
            ms(s.max_ms),
            _e(", ".join(f"{kind} {count}" for kind, count in s.failure_kinds)),
        )
        for s in data.seconds
    ]
    head = ("second from", "requests", "failures", "error rate", "users", "target/s", "p50 ms", "p95 ms")
    columns = (*head, "p99 ms", "p99.9 ms", "max ms", "failures by kind")
    body = table(columns, rows, range(11), "seconds")
    return (
        f'<section id="seconds"><details><summary>Per-second figures ({len(rows)} seconds)</summary>'
        f"{body}</details></section>"
    )


def heals(data: ReportData) -> str:
    """How long the system took to be whole again after each watched fault (heal_time), from its side."""
    if not data.heals:
        return ""
    rows = []
    for h in data.heals:
        since = "the kill" if h.since == "kill" else "the fault's end"
        if h.seconds is None:
            took = '<span class="fail">never healed within the run</span>'
            took += f" (last poll: {_e(h.last_error)})" if h.last_error else ""
        else:
            took = f"{h.seconds:.2f}s"
        rows.append((_e(h.fault), _e(since), _e(h.check), took))
    headers = ("fault", "measured from", "whole again when", "heal time")
    return f'<section id="heals"><h2>Healing</h2>{table(headers, rows, (), "heals")}</section>'
