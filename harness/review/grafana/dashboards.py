"""The Grafana dashboards of a run, built as code with ``grafana_foundation_sdk``.

:func:`build_all` returns every dashboard as the JSON model Grafana imports (file name ->
model); ``grafana/dashboards/*.json`` are its output, committed, and regenerated with::

    python -m harness.review.grafana.dashboards --write

This is the only module that imports the SDK. Every query is raw InfluxQL against the
datasource with uid ``harness-influxdb`` (provisioned by ``grafana/provisioning`` and by
``harness grafana push``), over the measurements of ``harness.results.points``. Grafana interpolates
``$run_id`` (a single-value variable: raw, inside the quotes written here), ``$timeFilter``,
``$__interval`` and ``$__interval_ms``; tests/test_grafana_queries.py runs every query the
same way against a real influxd.

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

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries, trend
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

__all__ = ["DASHBOARDS_DIR", "DATASOURCE_UID", "build_all", "compare_dashboard", "main", "run_dashboard"]

DATASOURCE_UID = "harness-influxdb"
DATASOURCE = model.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)
DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "grafana" / "dashboards"
TAGS = ["harness"]

# Newest run first (Grafana keeps the query's order with sort 0). The variable's value is the
# first string column (run_id), in both the backend and the browser InfluxQL code paths.
RUNS_QUERY = 'SELECT "run_id", "started" FROM "harness_runs" ORDER BY time DESC'


def _start_ms(run_var: str) -> str:
    """A run's start (epoch ms, from harness_runs.started) as a variable query: one number."""
    return f'SELECT floor("started" * 1000) AS "start_ms" FROM "harness_runs" WHERE "run_id" = \'${run_var}\''


def _end_ms(run_var: str) -> str:
    return f'SELECT ceil("ended" * 1000) AS "end_ms" FROM "harness_runs" WHERE "run_id" = \'${run_var}\''


# --------------------------------------------------------------------------- SDK edges


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    """A raw InfluxQL target as Grafana's influxdb datasource stores it.

    The SDK has no typed InfluxDB query, so this builds the SDK's own escape hatch for query
    types it does not know (``UnknownDataquery``).
    """

    def __init__(self, ref_id: str, query: str, result_format: str = "time_series", alias: str = "") -> None:
        self._data: dict[str, Any] = {
            "datasource": {"type": "influxdb", "uid": DATASOURCE_UID},
            "query": query,
            "rawQuery": True,
            "refId": ref_id,
            "resultFormat": result_format,
        }
        if alias:
            self._data["alias"] = alias

    def build(self) -> cogvariants.Dataquery:
        return UnknownDataquery(dict(self._data))


class _InfluxAnnotationTarget(model.AnnotationTarget):
    """The SDK types an annotation target after the built-in Grafana datasource; InfluxQL
    annotations carry a raw query and the names of the columns Grafana maps."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.data = data

    def to_json(self) -> dict[str, object]:
        return dict(self.data)


class InfluxAnnotationTarget(cogbuilder.Builder[model.AnnotationTarget]):
    """``text_column``/``tags_column``/``time_end_column`` name columns of the query's rows;
    a ``time_end_column`` (epoch ms) makes every row a region from ``time`` to it."""

    def __init__(self, query: str, text_column: str = "text", tags_column: str = "", time_end_column: str = "") -> None:
        self._data: dict[str, Any] = {
            "fromAnnotations": True,
            "query": query,
            "rawQuery": True,
            "refId": "Anno",
            "resultFormat": "table",
            "tagsColumn": tags_column,
            "textColumn": text_column,
            "textEditor": True,
            "timeEndColumn": time_end_column,
            "titleColumn": "",
        }

    def build(self) -> model.AnnotationTarget:
        return _InfluxAnnotationTarget(dict(self._data))


def _annotation(name: str, color: str, target: InfluxAnnotationTarget) -> dash.AnnotationQuery:
    return dash.AnnotationQuery().name(name).datasource(DATASOURCE).enable(True).icon_color(color).target(target)


def _query_variable(name: str, label: str, query: str, hidden: bool = False) -> dash.QueryVariable:
    variable = (
        dash.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.DISABLED)
    )
    if hidden:
        variable = variable.hide(model.VariableHide.HIDE_VARIABLE)
    return variable


def _legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["mean", "max"])
    )


def _pos(x: int, y: int, w: int, h: int) -> model.GridPos:
    return model.GridPos(h=h, w=w, x=x, y=y)


def _timeseries(title: str, description: str, unit: str, pos: model.GridPos, *targets: InfluxQL) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .interval("1s")  # one point per second is what harness writes; never finer
        .grid_pos(pos)
        .line_width(1)
        .fill_opacity(10)
        .legend(_legend())
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def _table(title: str, description: str, pos: model.GridPos, target: InfluxQL) -> table.Panel:
    return (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .grid_pos(pos)
        .with_target(target)
        # The per-series time column of a table result is the start of the range: noise here.
        .with_transformation(model.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}}))
    )


def _stat(title: str, description: str, unit: str, pos: model.GridPos, target: InfluxQL) -> stat.Panel:
    reduce = common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .grid_pos(pos)
        .reduce_options(reduce)
        .with_target(target)
    )


def _to_json(builder: dash.Dashboard) -> dict[str, Any]:
    model_json: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return model_json


# --------------------------------------------------------------------------- run dashboard

RUN = "\"run_id\" = '$run_id'"

# Fault regions. InfluxQL has no join and cannot read a timestamp as a value, so the one row
# per fault that Grafana needs (time = start, timeEnd = end, in ms) is put together from the
# two events of the fault (GROUP BY "name" pairs them):
# * elapsed("state") in descending time order puts start - end (ms, negative) on the start row;
# * the start row's own planned_offset (s) and late_ms give its time as a number:
#   run start + planned_offset + late_ms, with the run start from harness_runs ($run_start_ms);
# * both subqueries are merged in one inner query first (influxd 1.x drops the fields of the
#   second source when an outer aggregate reads two sources that differ in kind), then
#   GROUP BY time(1ms) puts them on one row. A fault that never ended has no timeEnd and is
#   drawn as a marker.
FAULT_REGIONS = (
    'SELECT ${run_start_ms} + 1000 * max("p") + max("l") - max("negdur") AS "timeEnd", '
    'first("txt") AS "text", first("fault") AS "fault" FROM ('
    "SELECT * FROM ("
    'SELECT elapsed("state", 1ms) AS "negdur" FROM "harness_events" '
    f'WHERE {RUN} AND "kind" = \'fault\' GROUP BY "name" ORDER BY time DESC), ('
    'SELECT "planned_offset" AS "p", "late_ms" AS "l", "text" AS "txt", "name" AS "fault" FROM "harness_events" '
    f'WHERE {RUN} AND "kind" = \'fault\' AND "state" = \'start\' GROUP BY "name" ORDER BY time DESC) '
    'GROUP BY "name" ORDER BY time DESC) '
    'WHERE $timeFilter GROUP BY time(1ms), "name" fill(none) ORDER BY time DESC'
)


def _events(kind: str) -> str:
    return f'SELECT "text", "name", "state" FROM "harness_events" WHERE {RUN} AND "kind" = \'{kind}\' AND $timeFilter'


def run_dashboard() -> dict[str, Any]:
    per_second = "GROUP BY time($__interval) fill(null)"
    requests = 'FROM "harness_requests" WHERE ' + RUN + " AND $timeFilter"
    load = 'FROM "harness_load" WHERE ' + RUN + " AND $timeFilter"
    builder = (
        dash.Dashboard("Harness run")
        .uid("harness-run")
        .description("One harness run: load, latency, errors and generator health, with faults, phases and aborts.")
        .tags(TAGS)
        .time("now-15m", "now")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
        .refresh("")
        .with_variable(_query_variable("run_id", "run", RUNS_QUERY))
        .with_variable(_query_variable("run_start_ms", "run start (ms)", _start_ms("run_id"), hidden=True))
        .annotation(
            _annotation(
                "Faults",
                "red",
                InfluxAnnotationTarget(
                    FAULT_REGIONS, text_column="text", tags_column="fault", time_end_column="timeEnd"
                ),
            )
        )
        .annotation(_annotation("Phases", "blue", InfluxAnnotationTarget(_events("phase"), tags_column="name,state")))
        .annotation(_annotation("Aborts", "purple", InfluxAnnotationTarget(_events("abort"), tags_column="name,state")))
        .with_panel(
            _stat(
                "Requests",
                "Requests completed in the run (all endpoints).",
                "short",
                _pos(0, 0, 6, 4),
                InfluxQL("A", f'SELECT sum("count") AS "requests" FROM "harness_requests" WHERE {RUN}', "table"),
            )
        )
        .with_panel(
            _stat(
                "Error rate",
                "Failed requests / requests over the whole run.",
                "percentunit",
                _pos(6, 0, 6, 4),
                InfluxQL(
                    "A",
                    f'SELECT sum("failures") / sum("count") AS "error rate" FROM "harness_requests" WHERE {RUN}',
                    "table",
                ),
            )
        )
        .with_panel(
            _stat(
                "Worst p99",
                "The highest per-second p99 of any endpoint in the run (ms).",
                "ms",
                _pos(12, 0, 6, 4),
                InfluxQL("A", f'SELECT max("p99") AS "worst p99" FROM "harness_requests" WHERE {RUN}', "table"),
            )
        )
        .with_panel(
            _stat(
                "Peak users",
                "The most concurrent users (closed model) in any second.",
                "short",
                _pos(18, 0, 6, 4),
                InfluxQL("A", f'SELECT max("users") AS "peak users" FROM "harness_load" WHERE {RUN}', "table"),
            )
        )
        .with_panel(
            _timeseries(
                "Requests/s",
                "Completed requests per second: all endpoints summed, and per endpoint.",
                "reqps",
                _pos(0, 4, 12, 8),
                InfluxQL("A", f'SELECT sum("count") / ($__interval_ms / 1000) AS "all" {requests} {per_second}'),
                InfluxQL(
                    "B",
                    f'SELECT sum("count") / ($__interval_ms / 1000) AS "rps" {requests} '
                    'GROUP BY time($__interval), "name" fill(null)',
                    alias="$tag_name",
                ),
            )
        )
        .with_panel(
            _timeseries(
                "Latency percentiles (worst endpoint)",
                "p50/p95/p99/p99.9 in ms. Each line is the highest value of any endpoint in that second "
                "(percentiles of different endpoints cannot be merged in InfluxQL), so it is an upper bound "
                "for the run as a whole; the per-endpoint p99 panel shows which endpoint it is.",
                "ms",
                _pos(12, 4, 12, 8),
                InfluxQL(
                    "A",
                    'SELECT max("p50") AS "p50", max("p95") AS "p95", max("p99") AS "p99", max("p999") AS "p99.9" '
                    f"{requests} {per_second}",
                ),
            )
        )
        .with_panel(
            _timeseries(
                "p99 per endpoint",
                "Each endpoint's p99 (ms) per second, from its own HDR histogram of that second.",
                "ms",
                _pos(0, 12, 12, 8),
                InfluxQL(
                    "A",
                    f'SELECT max("p99") AS "p99" {requests} GROUP BY time($__interval), "name" fill(null)',
                    alias="$tag_name",
                ),
            )
        )
        .with_panel(
            _timeseries(
                "Error rate",
                "Failed requests / requests per second, all endpoints.",
                "percentunit",
                _pos(12, 12, 12, 8),
                InfluxQL("A", f'SELECT sum("failures") / sum("count") AS "error rate" {requests} {per_second}'),
            )
        )
        .with_panel(
            _timeseries(
                "Users and target rate",
                "Concurrent users (closed model) and the target arrival rate in requests/s (open model, 0 when "
                "the scenario has none).",
                "short",
                _pos(0, 20, 12, 8),
                InfluxQL(
                    "A", f'SELECT last("users") AS "users", last("target_rate") AS "target rate" {load} {per_second}'
                ),
            )
        )
        .with_panel(
            _timeseries(
                "Achieved vs target rate",
                "Requests/s the generators completed against the rate the scenario asked for.",
                "reqps",
                _pos(12, 20, 12, 8),
                InfluxQL(
                    "A",
                    f'SELECT mean("achieved_rate") AS "achieved", mean("target_rate") AS "target" {load} {per_second}',
                ),
            )
        )
        .with_panel(
            _timeseries(
                "Generator health",
                "The busiest load process: CPU (%) and event-loop lag (ms); generators running; saturated is 1 "
                "when a generator could not keep up (its numbers then understate what the target can do).",
                "short",
                _pos(0, 28, 24, 8),
                InfluxQL(
                    "A",
                    'SELECT max("generator_cpu") AS "busiest CPU %", max("generator_lag_ms") AS "lag ms", '
                    f'last("generators") AS "generators" {load} {per_second}',
                ),
                InfluxQL("B", f'SELECT last("saturated") AS "saturated" {load} {per_second}'),
            )
        )
        .with_panel(
            _table(
                "Endpoints",
                "Totals per endpoint over the whole run (independent of the time range).",
                _pos(0, 36, 24, 8),
                InfluxQL(
                    "A",
                    'SELECT sum("count") AS "requests", sum("failures") AS "failures", '
                    'sum("failures") / sum("count") AS "error rate", max("p50") AS "max p50 (ms)", '
                    'max("p99") AS "max p99 (ms)", max("max") AS "max (ms)", sum("bytes") AS "bytes" '
                    f'FROM "harness_requests" WHERE {RUN} GROUP BY "method", "name"',
                    "table",
                ),
            )
        )
        .with_panel(
            _table(
                "SLOs",
                "Each SLO of the scenario as judged at the end of the run: measured value, threshold, passed.",
                _pos(0, 44, 24, 6),
                InfluxQL(
                    "A",
                    'SELECT last("value") AS "value", last("threshold") AS "threshold", last("passed") AS "passed" '
                    f'FROM "harness_slo" WHERE {RUN} GROUP BY "slo"',
                    "table",
                ),
            )
        )
    )
    return _to_json(builder)


# --------------------------------------------------------------------------- compare dashboard


def _aligned(
    run_var: str, ref_id: str, label: str, select: str, source: str, counter: str, per_second: bool = False
) -> InfluxQL:
    """One run's series with an ``elapsed_s`` column: seconds since the run's first second.

    InfluxQL cannot shift or subtract timestamps, so the elapsed time is counted instead: one
    row per second (GROUP BY time(1s)), and cumulative_sum(count(...)) - 1 numbers them from 0.
    ``counter`` must have exactly one point per second per run (a per-second subquery does).
    """
    window = f"time >= ${{{run_var}_start_ms}}ms AND time <= ${{{run_var}_end_ms}}ms"
    where = f"\"run_id\" = '${run_var}' AND {window}"
    if per_second:  # sum the endpoints of each second first, so that each second is one row
        source = f"(SELECT {source.format(where=where)} GROUP BY time(1s) fill(none))"
    else:
        source = f"{source} WHERE {where}"
    return InfluxQL(
        ref_id,
        f'SELECT cumulative_sum(count("{counter}")) - 1 AS "elapsed_s", {select} AS "{label}" '
        f"FROM {source}{f' WHERE {window}' if per_second else ''} GROUP BY time(1s) fill(none)",
        "table",
    )


def _trend(title: str, description: str, unit: str, pos: model.GridPos, a: InfluxQL, b: InfluxQL) -> trend.Panel:
    return (
        trend.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .grid_pos(pos)
        .x_field("elapsed_s")
        .legend(_legend())
        .with_target(a)
        .with_target(b)
        # A trend panel plots one frame: join run A and run B on their elapsed seconds.
        .with_transformation(
            model.DataTransformerConfig(id_val="joinByField", options={"byField": "elapsed_s", "mode": "outer"})
        )
        .with_transformation(model.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}}))
    )


def _compare_pair(
    title: str,
    description: str,
    unit: str,
    pos: model.GridPos,
    select: str,
    source: str,
    counter: str,
    per_second: bool,
) -> trend.Panel:
    return _trend(
        title,
        description + " X axis: seconds since each run's first second.",
        unit,
        pos,
        _aligned("run_a", "A", "run A", select, source, counter, per_second),
        _aligned("run_b", "B", "run B", select, source, counter, per_second),
    )


def compare_dashboard() -> dict[str, Any]:
    requests = (
        'sum("count") AS "rps", sum("failures") AS "failed", max("p99") AS "p99" FROM "harness_requests" WHERE {where}'
    )
    load = '"harness_load"'
    both = "\"run_id\" = '$run_a' OR \"run_id\" = '$run_b'"
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
        .with_variable(_query_variable("run_a", "run A", RUNS_QUERY))
        .with_variable(_query_variable("run_b", "run B", RUNS_QUERY))
        .with_variable(_query_variable("run_a_start_ms", "run A start (ms)", _start_ms("run_a"), hidden=True))
        .with_variable(_query_variable("run_a_end_ms", "run A end (ms)", _end_ms("run_a"), hidden=True))
        .with_variable(_query_variable("run_b_start_ms", "run B start (ms)", _start_ms("run_b"), hidden=True))
        .with_variable(_query_variable("run_b_end_ms", "run B end (ms)", _end_ms("run_b"), hidden=True))
        .with_panel(
            _table(
                "Runs",
                "The two runs: scenario, verdict, start and end (epoch s) and the verdict's reason.",
                _pos(0, 0, 24, 5),
                InfluxQL(
                    "A",
                    'SELECT "run_id", "scenario", "verdict", "started", "ended", "text" FROM "harness_runs" '
                    f"WHERE {both}",
                    "table",
                ),
            )
        )
        .with_panel(
            _compare_pair(
                "Requests/s",
                "Completed requests per second, all endpoints.",
                "reqps",
                _pos(0, 5, 12, 8),
                'sum("rps")',
                requests,
                "rps",
                per_second=True,
            )
        )
        .with_panel(
            _compare_pair(
                "p99, worst endpoint",
                "The highest p99 of any endpoint in each second (ms).",
                "ms",
                _pos(12, 5, 12, 8),
                'max("p99")',
                requests,
                "rps",
                per_second=True,
            )
        )
        .with_panel(
            _compare_pair(
                "Error rate",
                "Failed requests / requests per second.",
                "percentunit",
                _pos(0, 13, 12, 8),
                'sum("failed") / sum("rps")',
                requests,
                "rps",
                per_second=True,
            )
        )
        .with_panel(
            _compare_pair(
                "Users",
                "Concurrent users (closed model).",
                "short",
                _pos(12, 13, 12, 8),
                'last("users")',
                load,
                "users",
                per_second=False,
            )
        )
        .with_panel(
            _table(
                "Endpoints",
                "Totals per endpoint of both runs.",
                _pos(0, 21, 24, 8),
                InfluxQL(
                    "A",
                    'SELECT sum("count") AS "requests", sum("failures") AS "failures", '
                    'sum("failures") / sum("count") AS "error rate", max("p99") AS "max p99 (ms)" '
                    f'FROM "harness_requests" WHERE {both} GROUP BY "run_id", "name"',
                    "table",
                ),
            )
        )
    )
    return _to_json(builder)


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
    parser.add_argument("--dir", type=Path, default=DASHBOARDS_DIR, help="where to write (default: %(default)s)")
    args = parser.parse_args(argv)
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
