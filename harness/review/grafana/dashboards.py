# long: both dashboards read the same quoted names and figure helpers; one module keeps every query beside them
"""The Grafana dashboards of a run, built as code with ``grafana_foundation_sdk``.

:func:`build_all` returns every dashboard as the JSON model Grafana imports (file name ->
model); ``grafana/dashboards/*.json`` are its output, committed, and regenerated with::

    python -m harness.review.grafana.dashboards --write

Every query is raw InfluxQL against the datasource with uid ``harness-influxdb`` (the panel
builders are in :mod:`.panels`), and every measurement, tag and field it reads is named by
:mod:`harness.results.schema`. Grafana interpolates ``$run_id`` (a single-value variable: raw,
inside the quotes written here), ``$timeFilter``, ``$__interval`` and ``$__interval_ms``;
tests/test_grafana_queries.py runs every query the same way against a real influxd.

* ``harness-run.json`` (uid ``harness-run``): one run; fault start/end as regions, phases and
  aborts as markers.
* ``harness-compare.json`` (uid ``harness-compare``): two runs overlaid on the seconds since
  each run's first second (trend panels: InfluxQL cannot shift timestamps, so each query
  computes its own elapsed-seconds column and the panel plots against it).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.models import dashboard as model

from harness.bundled import bundled_dir
from harness.results import schema
from harness.results.influxql import quote_identifier, quote_string, run_filter, time_range_ms
from harness.review.grafana.panels import (
    DATASOURCE_UID,
    InfluxAnnotationTarget,
    InfluxQL,
    annotation,
    link,
    pos,
    query_variable,
    stat_panel,
    table_panel,
    timeseries_panel,
    to_json,
    trend_panel,
)
from harness.review.grafana.probe_panel import probes_panel

__all__ = ["DATASOURCE_UID", "build_all", "compare_dashboard", "main", "run_dashboard"]

TAGS = ["harness"]

_q = quote_identifier
REQUESTS = _q(schema.REQUESTS.name)
LOAD = _q(schema.LOAD.name)
EVENTS = _q(schema.EVENTS.name)
SLOS = _q(schema.SLO.name)
TOTALS = _q(schema.TOTALS.name)
FAILURE_KINDS = _q(schema.FAILURE_KINDS.name)
WINDOWS = _q(schema.WINDOWS.name)
ENDPOINTS = _q(schema.ENDPOINTS.name)
RUNS = _q(schema.RUNS.name)
HEALS = _q(schema.HEALS.name)


def _agg(function: str, field: str, alias: str) -> str:
    """``function("field") AS "alias"``: one column of a panel."""
    return f"{function}({_q(field)}) AS {_q(alias)}"


def _ratio(numerator: str, denominator: str, alias: str) -> str:
    """``sum("numerator") / sum("denominator") AS "alias"`` (an error rate)."""
    return f"sum({_q(numerator)}) / sum({_q(denominator)}) AS {_q(alias)}"


# Newest run first (Grafana keeps the query's order with sort 0). The variable's value is the
# first string column (run_id), in both the backend and the browser InfluxQL code paths.
RUNS_QUERY = f"SELECT {_q(schema.RUN_ID)}, {_q(schema.STARTED)} FROM {RUNS} ORDER BY time DESC"


def _start_ms(run_var: str) -> str:
    """A run's start (epoch ms, from harness_runs.started) as a variable query: one number."""
    return f'SELECT floor({_q(schema.STARTED)} * 1000) AS "start_ms" FROM {RUNS} WHERE {run_filter("$" + run_var)}'


def _end_ms(run_var: str) -> str:
    return f'SELECT ceil({_q(schema.ENDED)} * 1000) AS "end_ms" FROM {RUNS} WHERE {run_filter("$" + run_var)}'


# --------------------------------------------------------------------------- run dashboard

RUN = run_filter("$run_id")
_FAULTS = f"{RUN} AND {_q(schema.KIND)} = {quote_string(schema.EventKind.FAULT)}"
_BY_NAME = f"GROUP BY {_q(schema.NAME)}"

# Fault regions: one row per fault, its start event, which carries the fault's end (end_ms):
# the planned end while the fault is active, the real one once it was reverted (the revert
# writes the start event again). So a fault is drawn as a region from the moment it starts.
FAULT_REGIONS = (
    f'SELECT {_q(schema.TEXT)}, {_q(schema.NAME)} AS "fault", {_q(schema.END_MS)} AS "timeEnd" '
    f"FROM {EVENTS} WHERE {_FAULTS} AND {_q(schema.STATE)} = {quote_string(schema.EventState.START)} "
    "AND $timeFilter"
)
_TOP = 6  # the run lists' height: the run dashboard's other panels sit below them
RUN_LINK = "/d/harness-run/harness-run"
COMPARE_LINK = "/d/harness-compare/harness-compare"
LIVE_REFRESH = "5s"
_RUN_COLUMNS = ", ".join(
    _q(c) for c in (schema.RUN_ID, schema.SCENARIO, schema.VERDICT, schema.STARTED, schema.ENDED, schema.TEXT)
)
# The range a run's link opens: its start and end, 10 s each side (as `harness grafana link`).
_RUN_RANGE = (
    f'floor({_q(schema.STARTED)} * 1000) - 10000 AS "from_ms", ceil({_q(schema.ENDED)} * 1000) + 10000 AS "to_ms"'
)
RUNNING_QUERY = (
    f"SELECT {_RUN_COLUMNS}, {_RUN_RANGE} FROM {RUNS} "
    f"WHERE {_q(schema.VERDICT)} = {quote_string(schema.RUNNING)} ORDER BY time DESC"
)
RECENT_QUERY = f"SELECT {_RUN_COLUMNS}, {_RUN_RANGE} FROM {RUNS} ORDER BY time DESC LIMIT 20"


def _events(kind: str) -> str:
    columns = ", ".join(_q(c) for c in (schema.TEXT, schema.NAME, schema.STATE))
    return f"SELECT {columns} FROM {EVENTS} WHERE {RUN} AND {_q(schema.KIND)} = {quote_string(kind)} AND $timeFilter"


def _run_header() -> dash.Dashboard:
    """The run dashboard without panels: its variables and its fault, phase and abort annotations."""
    faults = InfluxAnnotationTarget(
        FAULT_REGIONS, text_column=schema.TEXT, tags_column="fault", time_end_column="timeEnd"
    )
    return (
        dash.Dashboard("Harness run")
        .uid("harness-run")
        .description("One harness run: load, latency, errors and generator health, with faults, phases and aborts.")
        .tags(TAGS)
        .time("now-15m", "now")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("")
        .with_variable(query_variable("run_id", "run", RUNS_QUERY))
        .with_variable(
            dash.TextBoxVariable("reports_url")
            .label("reports at")
            .description("Where run directories are published; 'Run report' opens <this>/<run id>/report.html.")
            .default_value("")
        )
        .link(
            link(
                "Compare with another run",
                f"{COMPARE_LINK}?var-run_a=${{run_id}}",
                "The compare dashboard with this run as run A.",
            )
        )
        .link(link("Run report", "${reports_url}/${run_id}/report.html", "This run's HTML report."))
        .annotation(annotation("Faults", "red", faults))
        .annotation(annotation("Phases", "blue", _marks(schema.EventKind.PHASE)))
        .annotation(annotation("Aborts", "purple", _marks(schema.EventKind.ABORT)))
        # The instant each watched fault's heal condition first held (heal_time's end): "healed after 2.1s".
        .annotation(annotation("Heals", "green", _marks(schema.EventKind.HEAL)))
    )


def _marks(kind: str) -> InfluxAnnotationTarget:
    """Markers at the events of ``kind``, tagged with their name and state."""
    return InfluxAnnotationTarget(_events(kind), tags_column=f"{schema.NAME},{schema.STATE}")


def _run_lists() -> list[Any]:
    """The runs to pick from: each row opens this dashboard on that run and its time range."""
    run = f"{RUN_LINK}?var-run_id=${{__data.fields.run_id}}&from=${{__data.fields.from_ms}}"
    return [
        table_panel(
            "Running",
            "Runs going now (a run whose driver was killed before its verdict stays here: `harness runs` tells). "
            "Click a row to follow it: from its start to now, refreshing.",
            pos(0, 0, 10, _TOP),
            InfluxQL("A", RUNNING_QUERY, "table"),
            [link("Follow this run", f"{run}&to=now&refresh={LIVE_REFRESH}")],
        ),
        table_panel(
            "Recent runs",
            "The last 20 runs, newest first. Click a row to open it over its own time range.",
            pos(10, 0, 14, _TOP),
            InfluxQL("A", RECENT_QUERY, "table"),
            [link("Open this run", f"{run}&to=${{__data.fields.to_ms}}")],
        ),
    ]


def _run_stats() -> list[Any]:
    """The top row: one figure each for the whole run."""
    run_window = f"{RUN} AND {_q(schema.WINDOW)} = 'run'"
    stats = (
        ("Requests", "Requests completed in the run so far (all endpoints).", "short", schema.COUNT),
        ("Run rps", "Requests per second over the run's seconds so far.", "reqps", schema.RPS),
        ("Error rate", "Failed requests / requests over the run so far.", "percentunit", schema.ERROR_RATE),
        ("p50", "The run's median latency so far (ms): exact, from every request's histogram merged.", "ms",
         schema.P50),
        ("p99", "The run's p99 latency so far (ms): exact, the figure the verdict, summary.json, JUnit and the "
         "report show.", "ms", schema.P99),
        ("Max", "The slowest request of the run so far (ms).", "ms", schema.MAX),
    )  # fmt: skip
    return [
        stat_panel(
            title,
            description + " Written every 5 s while the run goes, final when it ends.",
            unit,
            pos(4 * i, _TOP, 4, 4),
            InfluxQL("A", f"SELECT last({_q(field)}) AS {_q(title)} FROM {WINDOWS} WHERE {run_window}", "table"),
        )
        for i, (title, description, unit, field) in enumerate(stats)
    ]


def _run_series() -> list[Any]:
    """Per-second panels: load, latency, errors and generator health."""
    per_second = "GROUP BY time($__interval) fill(null)"
    per_endpoint = f"GROUP BY time($__interval), {_q(schema.NAME)} fill(null)"
    requests = f"FROM {REQUESTS} WHERE {RUN} AND $timeFilter"
    load = f"FROM {LOAD} WHERE {RUN} AND $timeFilter"
    rate = f"sum({_q(schema.COUNT)}) / ($__interval_ms / 1000)"
    latency = ", ".join(
        _agg("max", field, alias)
        for field, alias in ((schema.P50, "p50"), (schema.P95, "p95"), (schema.P99, "p99"), (schema.P999, "p99.9"))
    )
    health = (
        f"{_agg('max', schema.GENERATOR_CPU, 'busiest CPU %')}, {_agg('max', schema.GENERATOR_LAG_MS, 'lag ms')}, "
        f"{_agg('last', schema.GENERATORS, 'generators')}"
    )
    series = (
        ("Requests/s", "Completed requests per second: all endpoints summed, and per endpoint.", "reqps",
         pos(0, _TOP + 4, 12, 8),
         InfluxQL("A", f'SELECT {rate} AS "all" {requests} {per_second}'),
         InfluxQL("B", f'SELECT {rate} AS "rps" {requests} {per_endpoint}', alias="$tag_name")),
        ("Latency percentiles (all endpoints)",
         "p50/p95/p99/p99.9 in ms of all endpoints together, exact for each second (harness merges the "
         "second's histograms before it writes them). Zoomed out beyond 1 s per point, each point is the "
         "highest second in it.", "ms",
         pos(12, _TOP + 4, 12, 8),
         InfluxQL("A", f"SELECT {latency} FROM {TOTALS} WHERE {RUN} AND $timeFilter {per_second}")),
        ("p99 per endpoint", "Each endpoint's p99 (ms) per second, from its own HDR histogram of that second.", "ms",
         pos(0, _TOP + 12, 12, 8),
         InfluxQL("A", f'SELECT {_agg("max", schema.P99, "p99")} {requests} {per_endpoint}', alias="$tag_name")),
        ("Error rate", "Failed requests / requests per second, all endpoints.", "percentunit",
         pos(12, _TOP + 12, 12, 8),
         InfluxQL("A", f'SELECT {_ratio(schema.FAILURES, schema.COUNT, "error rate")} {requests} {per_second}')),
        ("Users and target rate",
         "Concurrent users (closed model) and the target arrival rate in requests/s (open model, 0 when "
         "the scenario has none).", "short",
         pos(0, _TOP + 20, 12, 8),
         InfluxQL("A", f'SELECT {_agg("last", schema.USERS, "users")}, '
                       f'{_agg("last", schema.TARGET_RATE, "target rate")} {load} {per_second}')),
        ("Achieved vs target rate", "Requests/s the generators completed against the rate the scenario asked for.",
         "reqps",
         pos(12, _TOP + 20, 12, 8),
         InfluxQL("A", f'SELECT {_agg("mean", schema.ACHIEVED_RATE, "achieved")}, '
                       f'{_agg("mean", schema.TARGET_RATE, "target")} {load} {per_second}')),
        ("Generator health",
         "The busiest load process: CPU (%) and event-loop lag (ms); generators running; saturated is 1 "
         "when a generator could not keep up (its numbers then understate what the target can do).", "short",
         pos(0, _TOP + 28, 24, 8),
         InfluxQL("A", f"SELECT {health} {load} {per_second}"),
         InfluxQL("B", f'SELECT {_agg("last", schema.SATURATED, "saturated")} {load} {per_second}')),
        ("Failures by kind",
         "Failed requests per second by kind (HTTP status or exception) and endpoint.", "short",
         pos(0, _TOP + 36, 24, 8),
         InfluxQL("A", f'SELECT sum({_q(schema.COUNT)}) AS "failures" FROM {FAILURE_KINDS} WHERE {RUN} '
                       f"AND $timeFilter GROUP BY time($__interval), {_q(schema.FAILURE_KIND)}, {_q(schema.NAME)} "
                       "fill(none)", alias="$tag_failure_kind $tag_name")),
    )  # fmt: skip
    return [
        timeseries_panel(title, description, unit, grid, *targets)
        for title, description, unit, grid, *targets in series
    ]


_FIGURES = (
    (schema.COUNT, "requests"), (schema.FAILURES, "failures"), (schema.ERROR_RATE, "error rate"),
    (schema.RPS, "requests/s"), (schema.P50, "p50 (ms)"), (schema.P99, "p99 (ms)"), (schema.MAX, "max (ms)"),
)  # fmt: skip


def _figures(*skip: str) -> str:
    """A window's (harness_windows) or an endpoint's (harness_endpoints) exact figures, as
    summary.json has them: the last point written (so far while the run goes, then final)."""
    return ", ".join(_agg("last", field, alias) for field, alias in _FIGURES if field not in skip)


def _run_tables() -> list[Any]:
    """Whole-run tables: per endpoint, the SLOs as judged, their windows, and each watched fault's heal."""
    endpoints = f"{_figures()}, {_agg('last', schema.BYTES, 'bytes')}"
    slos = ", ".join(_agg("last", field, field) for field in (schema.VALUE, schema.THRESHOLD, schema.PASSED))
    windows = _figures(schema.FAILURES)
    heals = ", ".join(_agg("last", f, f) for f in (schema.HEAL_TIME, schema.SINCE, schema.CHECK, schema.LAST_ERROR))
    by_endpoint = f"GROUP BY {_q(schema.METHOD)}, {_q(schema.NAME)}"
    return [
        table_panel(
            "Endpoints",
            "Each endpoint over the whole run (independent of the time range), exact: the figures of its "
            "merged histogram, as summary.json, JUnit and the report have them (so far while the run goes).",
            pos(0, _TOP + 44, 24, 8),
            InfluxQL("A", f"SELECT {endpoints} FROM {ENDPOINTS} WHERE {RUN} {by_endpoint}", "table"),
        ),
        table_panel(
            "SLOs",
            "Each SLO of the scenario as judged at the end of the run: measured value, threshold, passed.",
            pos(0, _TOP + 52, 24, 6),
            InfluxQL("A", f"SELECT {slos} FROM {SLOS} WHERE {RUN} GROUP BY {_q(schema.SLO_NAME)}", "table"),
        ),
        table_panel(
            "Windows",
            "Each SLO window (run, steady, phases, during and after each fault) with its exact figures: "
            "requests, error rate, requests/s, p50, p99 and max, as summary.json and the report have them "
            "(so far while the run goes).",
            pos(0, _TOP + 58, 24, 8),
            InfluxQL("A", f"SELECT {windows} FROM {WINDOWS} WHERE {RUN} GROUP BY {_q(schema.WINDOW)}", "table"),
        ),
        table_panel(
            "Healing",
            "Each watched fault's heal_time, measured from the system's side: from the fault's end (a kill: the "
            "kill) until its heal condition (a health URL, a process, pods, replicas) first held; none: never.",
            pos(0, _TOP + 66, 24, 6),
            InfluxQL("A", f"SELECT {heals} FROM {HEALS} WHERE {RUN} GROUP BY {_q(schema.FAULT)}", "table"),
        ),
        probes_panel(RUN, pos(0, _TOP + 72, 24, 8)),  # the servers' own metrics, on the faults' time axis
    ]


def run_dashboard() -> dict[str, Any]:
    builder = _run_header()
    for panel in (*_run_lists(), *_run_stats(), *_run_series(), *_run_tables()):
        builder = builder.with_panel(panel)
    return to_json(builder)


# --------------------------------------------------------------------------- compare dashboard


def _aligned(
    run_var: str, ref_id: str, label: str, select: str, source: str, counter: str, per_second: bool = False
) -> InfluxQL:
    """One run's series with an ``elapsed_s`` column: seconds since the run's first second.

    InfluxQL cannot shift or subtract timestamps, so the elapsed time is counted instead: one
    row per second (GROUP BY time(1s)), and cumulative_sum(count(...)) - 1 numbers them from 0.
    ``counter`` must have exactly one point per second per run (a per-second subquery does).
    """
    window = time_range_ms(f"${{{run_var}_start_ms}}", f"${{{run_var}_end_ms}}")
    where = f"{run_filter('$' + run_var)} AND {window}"
    if per_second:  # sum the endpoints of each second first, so that each second is one row
        source = f"(SELECT {source.format(where=where)} GROUP BY time(1s) fill(none))"
    else:
        source = f"{source} WHERE {where}"
    return InfluxQL(
        ref_id,
        f'SELECT cumulative_sum(count({_q(counter)})) - 1 AS "elapsed_s", {select} AS {_q(label)} '
        f"FROM {source}{f' WHERE {window}' if per_second else ''} GROUP BY time(1s) fill(none)",
        "table",
    )


def _compare_pair(
    title: str,
    description: str,
    unit: str,
    grid: model.GridPos,
    select: str,
    source: str,
    counter: str,
    per_second: bool,
) -> Any:
    return trend_panel(
        title,
        description + " X axis: seconds since each run's first second.",
        unit,
        grid,
        _aligned("run_a", "A", "run A", select, source, counter, per_second),
        _aligned("run_b", "B", "run B", select, source, counter, per_second),
    )


def _compare_header() -> dash.Dashboard:
    """The compare dashboard without panels: the two runs and their time ranges as variables."""
    builder = (
        dash.Dashboard("Harness compare")
        .uid("harness-compare")
        .description(
            "Two harness runs overlaid on the time since each run started. InfluxQL cannot shift timestamps, "
            "so every query computes an elapsed-seconds column and the trend panels plot against it."
        )
        .tags(TAGS)
        .time("now-24h", "now")
        .refresh("")
        .with_variable(query_variable("run_a", "run A", RUNS_QUERY))
        .with_variable(query_variable("run_b", "run B", RUNS_QUERY))
    )
    for run, label in (("run_a", "run A"), ("run_b", "run B")):
        builder = builder.link(
            link(
                f"Open {label}",
                f"{RUN_LINK}?var-run_id=${{{run}}}&from=${{{run}_start_ms}}&to=${{{run}_end_ms}}",
                f"The run dashboard on {label} over its own time range.",
            )
        )
    for run, label in (("run_a", "run A"), ("run_b", "run B")):
        builder = builder.with_variable(
            query_variable(f"{run}_start_ms", f"{label} start (ms)", _start_ms(run), hidden=True)
        )
        builder = builder.with_variable(query_variable(f"{run}_end_ms", f"{label} end (ms)", _end_ms(run), hidden=True))
    return builder


def _compare_trends() -> list[Any]:
    """Per-second trends of both runs on a shared elapsed-seconds axis, from harness_totals: one
    exact all-endpoints row per second (its p99 from the second's merged histogram)."""
    totals = (
        f"{_agg('sum', schema.COUNT, 'rps')}, {_agg('sum', schema.FAILURES, 'failed')}, "
        f"{_agg('last', schema.P99, 'p99')} FROM {TOTALS} WHERE {{where}}"
    )
    trends = (
        ("Requests/s", "Completed requests per second, all endpoints.", "reqps", pos(0, 5, 12, 8),
         'sum("rps")', totals, "rps", True),
        ("p99 (all endpoints)", "p99 of all endpoints together in each second (ms), exact: from the "
         "second's merged histogram.", "ms", pos(12, 5, 12, 8),
         'last("p99")', totals, "rps", True),
        ("Error rate", "Failed requests / requests per second.", "percentunit", pos(0, 13, 12, 8),
         'sum("failed") / sum("rps")', totals, "rps", True),
        ("Users", "Concurrent users (closed model).", "short", pos(12, 13, 12, 8),
         f"last({_q(schema.USERS)})", LOAD, schema.USERS, False),
    )  # fmt: skip
    return [_compare_pair(*trend) for trend in trends]


def compare_dashboard() -> dict[str, Any]:
    both = f"({run_filter('$run_a')} OR {run_filter('$run_b')})"
    columns = ", ".join(
        _q(c) for c in (schema.RUN_ID, schema.SCENARIO, schema.VERDICT, schema.STARTED, schema.ENDED, schema.TEXT)
    )
    runs = table_panel(
        "Runs",
        "The two runs: scenario, verdict, start and end (epoch s) and the verdict's reason.",
        pos(0, 0, 24, 5),
        InfluxQL("A", f"SELECT {columns} FROM {RUNS} WHERE {both}", "table"),
    )
    figures = table_panel(
        "Run figures",
        "Each run's exact whole-run figures (all endpoints, from the merged histograms): the p99 here is "
        "the one summary.json, JUnit, the terminal and the report show for the run.",
        pos(0, 21, 24, 5),
        InfluxQL(
            "A",
            f"SELECT {_figures(schema.FAILURES)} FROM {WINDOWS} WHERE {both} AND {_q(schema.WINDOW)} = 'run' "
            f"GROUP BY {_q(schema.RUN_ID)}",
            "table",
        ),
    )
    per_endpoint = table_panel(
        "Endpoints",
        "Each endpoint of both runs over its whole run, exact (as summary.json has them).",
        pos(0, 26, 24, 8),
        InfluxQL(
            "A",
            f"SELECT {_figures()} FROM {ENDPOINTS} WHERE {both} "
            f"GROUP BY {_q(schema.RUN_ID)}, {_q(schema.METHOD)}, {_q(schema.NAME)}",
            "table",
        ),
    )
    builder = _compare_header()
    for panel in (runs, *_compare_trends(), figures, per_endpoint):
        builder = builder.with_panel(panel)
    return to_json(builder)


# --------------------------------------------------------------------------- files


def build_all() -> dict[str, dict[str, Any]]:
    """Every dashboard: file name (in grafana/dashboards) -> Grafana's dashboard JSON model."""
    return {"harness-run.json": run_dashboard(), "harness-compare.json": compare_dashboard()}


def render(model_json: dict[str, Any]) -> str:
    """The committed file's text: sorted keys, two-space indent, trailing newline."""
    return json.dumps(model_json, indent=2, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.review.grafana.dashboards", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--write", action="store_true", help="write grafana/dashboards/*.json")
    parser.add_argument("--dir", type=Path, help="where to write (default: grafana/dashboards, see harness.bundled)")
    args = parser.parse_args(argv)
    args.dir = args.dir or bundled_dir("grafana") / "dashboards"
    for name, model_json in build_all().items():
        if args.write:
            args.dir.mkdir(parents=True, exist_ok=True)
            (args.dir / name).write_text(render(model_json))
            print(f"wrote {args.dir / name}")
        else:
            sys.stdout.write(f"--- {name}\n{render(model_json)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
