"""Every query of the generated dashboards, run against a real influxd after a real run.

Two short demo runs, each killing the catalog for a few seconds (it serves most of a shopper's
requests: payments, asked only by the rare checkout, was out too briefly to fail one for sure),
write to their own database (the first trips a guard near its end, so the abort markers have an
event to show);
then every panel target, variable query and annotation query of build_all() (found by walking
the JSON, so new panels are covered) is interpolated the way Grafana's InfluxDB datasource
does and must return rows with the columns the panel uses. ``pytest -s`` prints each query
and its row count.

The same runs log every request from a locustfile listener (tests/five_places.py): the
five-places test computes the second run's figures per window from that log and finds them,
the same, in the terminal, summary.json, JUnit, the HTML report and these dashboards' panels.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from harness.demo.control import DemoInfo, down, up
from harness.measure.windows import EndpointStats, new_histogram
from harness.results.query import InfluxQuery
from harness.review.grafana.dashboards import build_all
from tests.five_places import logging_locustfile

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BASE_PORT = 19300
DATABASE = "grafana_queries"
RUNS = ("gq-fault", "gq-plain")
# The run the run dashboard shows (the variable's first value) trips a guard near its end,
# after the fault, so the abort markers have an event to show.
# Panels that list runs going now: empty once the runs above ended (the live test reads them).
LIVE_ONLY = {"Running [A]"}
GUARDS = {"gq-fault": "guards:\n  - {name: late-trip, condition: 'rps > 0 for 13s'}\n", "gq-plain": ""}
# The five-places test reads gq-plain (two phases, one fault): an SLO for each figure of each
# window, so that the terminal and JUnit (which show SLOs) show every figure it checks.
FIVE_WINDOWS = ("run", "phase:ramp", "phase:steady", "during:kill-catalog")
FIVE_METRICS = {"p50": "p50 < 20s", "p99": "p99 < 20s", "max": "max < 30s", "error_rate": "error_rate < 95%"} | {
    "rps": "rps > 1"
}
EXTRA_SLOS = {
    "gq-fault": "",
    "gq-plain": "".join(
        f"  - {{name: {window.replace(':', '-')}-{metric}, objective: '{objective}', window: '{window}'}}\n"
        for window in FIVE_WINDOWS
        for metric, objective in FIVE_METRICS.items()
    ),
}

SCENARIO = """
name: grafana-queries
target:
  base_url: {base_url}
load:
  locustfile: {locustfile}
  user_classes:
    - class: Shopper
  processes: 1
  stages:
    - {{name: ramp, duration: 3s, users: 20, spawn_rate: 10}}
    - {{name: steady, duration: 14s, users: 20}}
faults:
  - name: kill-catalog
    kind: process.kill
    at: 6s
    duration: 4s
    recovery: 3s
    target: {{pid_file: {pid_file}}}
    heal: {{url: '{heal_url}'}}
slos:
  - name: steady-p99
    objective: p99 < 2s
    window: steady
{slos}{guards}probes:  # the probes panel: this run's own request count, read back from InfluxDB by its run id
  influxdb: {{url: {url}, database: {database}}}
  every: 1s
  queries: [{{name: served, influxql: 'SELECT sum("count") FROM "harness_totals" WHERE "run_id" = ''{{{{run_id}}}}'''}}]
results:
  url: {url}
  database: {database}
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    directory = tmp_path_factory.mktemp("demo")
    try:
        yield up(directory=directory, base_port=BASE_PORT, restart_delay=1.0)
    finally:
        down(directory=directory)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, demo: DemoInfo, influxd: Any) -> InfluxQuery:
    tmp = tmp_path_factory.mktemp("grafana-queries")
    influxd.create_database(DATABASE)
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp / "runs"), "COLUMNS": "200"}
    for run_id in RUNS:
        scenario = tmp / f"{run_id}.yaml"
        locustfile = logging_locustfile(tmp / f"{run_id}_shop.py", ROOT / "locustfiles", tmp / f"{run_id}.requests")
        scenario.write_text(
            SCENARIO.format(
                base_url=demo.base_url,
                locustfile=locustfile,
                pid_file=Path(demo.directory) / "catalog.pid",
                heal_url=f"http://127.0.0.1:{BASE_PORT + 1}/health",  # catalog's: the Heals markers have one
                url=influxd.url,
                database=DATABASE,
                guards=GUARDS[run_id],
                slos=EXTRA_SLOS[run_id],
            ).lstrip()
        )
        junit = tmp / f"{run_id}.junit.xml"
        result = subprocess.run(
            [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", run_id, "--junit", str(junit)],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
        expected = (4,) if GUARDS[run_id] else (0, 1)
        assert result.returncode in expected, result.stdout[-3000:] + result.stderr[-3000:]
        OUTPUT[run_id] = {"stdout": result.stdout, "junit": junit, "log": tmp, "scenario": scenario}
    RUNS_DIR.append(tmp / "runs")
    return InfluxQuery(influxd.url, DATABASE)


RUNS_DIR: list[Path] = []  # where the fixture's runs keep their own record
OUTPUT: dict[str, dict[str, Any]] = {}  # each run's terminal output, JUnit file, request log


# --------------------------------------------------------------------------- Grafana's interpolation


def _regex_escape(value: str) -> str:
    """@grafana/data escapeRegex: what a multi-value variable (or one used in /.../) becomes."""
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", r"\\\g<0>", value)


def interpolate(query: str, variables: dict[str, str], time_from_ms: int, time_to_ms: int, interval_s: int) -> str:
    """Substitute as Grafana's InfluxDB datasource does for raw InfluxQL.

    $timeFilter -> ``time >= <from>ms and time <= <to>ms``; $__interval -> e.g. ``1s`` and
    $__interval_ms -> ``1000``; a single-value variable ($name, ${name}, [[name]]) is inserted
    raw, unless it sits inside a /regex/, where it is regex-escaped (interpolateQueryExpr).
    """
    query = query.replace("$timeFilter", f"time >= {time_from_ms}ms and time <= {time_to_ms}ms")
    query = query.replace("$__interval_ms", str(interval_s * 1000)).replace("${__interval_ms}", str(interval_s * 1000))
    query = query.replace("$__interval", f"{interval_s}s").replace("${__interval}", f"{interval_s}s")

    def value(name: str, whole: str, at: int) -> str:
        if name not in variables:
            raise AssertionError(f"unknown variable {whole!r} in {query!r}")
        in_regex = query.rfind("/", 0, at) > query.rfind("~", 0, at) > -1
        return _regex_escape(variables[name]) if in_regex else variables[name]

    pattern = re.compile(r"\$\{(\w+)\}|\[\[(\w+)\]\]|\$(\w+)")
    return pattern.sub(lambda m: value(m.group(1) or m.group(2) or m.group(3), m.group(0), m.start()), query)


def metric_find_value(series: list[Any]) -> list[str]:
    """A variable's options: the first string column of the rows, else the first non-time one
    (Grafana's toMetricFindValue); the browser path takes the column after time, the same here."""
    values: list[str] = []
    for item in series:
        for row in item.values:
            cells = dict(zip(item.columns, row, strict=False))
            strings = [c for c in item.columns if c != "time" and isinstance(cells[c], str)]
            column = strings[0] if strings else next(c for c in item.columns if c != "time")
            text = _number_text(cells[column])
            if text not in values:
                values.append(text)
    return values


def _number_text(value: Any) -> str:
    """JavaScript's String(number): 1700000000250.0 is "1700000000250"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --------------------------------------------------------------------------- walking the dashboards


def _queries(model: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(kind, where, query object) for every variable, annotation and panel target."""
    for variable in model.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            yield "variable", variable["name"], {"query": variable["query"], "resultFormat": "variable"}
    for annotation in model.get("annotations", {}).get("list", []):
        if annotation.get("datasource", {}).get("type") == "influxdb":
            yield "annotation", annotation["name"], annotation["target"]
    stack = list(model.get("panels", []))
    while stack:
        panel = stack.pop(0)
        stack.extend(panel.get("panels", []))
        for target in panel.get("targets", []):
            yield "panel", f"{panel['title']} [{target['refId']}]", {**target, "panel": panel}


def _columns_used(kind: str, target: dict[str, Any]) -> set[str]:
    """Columns the panel or annotation reads: its aliases, and the mapped annotation columns."""
    if kind == "annotation":
        mapped = {target["textColumn"], target["timeEndColumn"], *target["tagsColumn"].split(",")}
        return {"time", *(c for c in mapped if c)}
    aliases = set(re.findall(r'AS "([^"]+)"', target["query"].split(" FROM (")[0].split(" FROM ")[0]))
    columns = {"time", *aliases}
    x_field = target["panel"].get("options", {}).get("xField")
    if x_field:
        columns.add(x_field)
    return columns


def test_every_dashboard_query_returns_rows_with_its_columns(client: InfluxQuery) -> None:
    runs = {r["run_id"]: r for r in client.query('SELECT * FROM "harness_runs"', epoch="ms")}
    assert set(RUNS) <= set(runs), runs
    start = min(r["started"] for r in runs.values())
    end = max(r["ended"] for r in runs.values())
    time_from, time_to = int(start * 1000) - 1000, int(end * 1000) + 1000  # the range `harness grafana link` opens
    failures: list[str] = []
    for name, model in build_all().items():
        # The user picks the run with the fault as run_id / run A and the other as run B.
        chosen = {"run_id": RUNS[0], "run_a": RUNS[0], "run_b": RUNS[1]}
        variables: dict[str, str] = {}
        for kind, where, target in _queries(model):
            query = interpolate(target["query"], variables, time_from, time_to, 1)
            series = client.query_series(query, epoch="ms")
            rows = sum(len(s.values) for s in series)
            print(f"{name} {kind} {where}: {rows} rows\n    {query}")
            if kind == "variable":
                options = metric_find_value(series)
                if not options:
                    failures.append(f"{name} variable {where}: no options")
                    continue
                if where in chosen:
                    assert options[0] == RUNS[-1], f"{where}: newest run first, got {options}"
                    assert chosen[where] in options, options
                    variables[where] = chosen[where]
                else:
                    variables[where] = options[0]
                    assert float(options[0]) > 1e12, f"{where} is not epoch ms: {options}"
                continue
            if not rows and where in LIVE_ONLY:
                continue  # nothing runs now: test_a_running_run_is_listed_... reads it mid-run
            if not rows:
                failures.append(f"{name} {kind} {where}: no rows\n    {query}")
                continue
            have = {c for s in series for c in (*s.columns, *s.tags)}
            missing = _columns_used(kind, target) - have
            if missing:
                failures.append(f"{name} {kind} {where}: no column {sorted(missing)} in {sorted(have)}")
            if kind == "annotation" and target["timeEndColumn"]:
                _check_fault_region(client, series, failures)
            if target.get("panel", {}).get("type") == "trend":
                _check_elapsed(series, failures, where)
    assert not failures, "\n".join(failures)


def _check_fault_region(client: InfluxQuery, series: list[Any], failures: list[str]) -> None:
    """The region spans the kill: from its start event to its end event, to the millisecond."""
    events = client.query(
        f"SELECT \"state\" FROM \"harness_events\" WHERE run_id = '{RUNS[0]}' AND kind = 'fault'", epoch="ms"
    )
    times = {e["state"]: e["time"] for e in events}
    rows = [dict(zip(s.columns, v, strict=False)) for s in series for v in s.values]
    region = [r for r in rows if r.get("fault") == "kill-catalog"]
    if len(region) != 1 or not region[0]["text"]:
        failures.append(f"fault region: expected one kill-catalog row with text, got {rows}")
        return
    start_ok = abs(region[0]["time"] - times["start"]) <= 1
    end_ok = region[0]["timeEnd"] is not None and abs(region[0]["timeEnd"] - times["end"]) <= 2
    if not (start_ok and end_ok):
        failures.append(f"fault region {region[0]} does not match the events {times}")


def _check_elapsed(series: list[Any], failures: list[str], where: str) -> None:
    """elapsed_s counts the run's seconds from 0, one per row, as the trend panel's x axis."""
    for item in series:
        elapsed = [row[item.columns.index("elapsed_s")] for row in item.values]
        if elapsed[0] != 0 or elapsed != list(range(len(elapsed))) or len(elapsed) < 10:
            failures.append(f"{where}: elapsed_s is {elapsed}")


# --------------------------------------------------------------------------- a run watched while it runs

LIVE_DATABASE = "grafana_live"
LIVE_RUN = "gq-live"
LIVE_SCENARIO = """
name: grafana-live
target:
  base_url: {base_url}
load:
  locustfile: {locustfile}
  user_classes:
    - class: Shopper
  processes: 1
  stages:
    - {{name: ramp, duration: 2s, users: 10, spawn_rate: 10}}
    - {{name: steady, duration: 16s, users: 10}}
faults:
  - name: kill-payments
    kind: process.kill
    at: 5s
    duration: 8s
    target: {{pid_file: {pid_file}}}
results:
  url: {url}
  database: {database}
"""


def _dashboard_query(model: dict[str, Any], kind: str, where: str) -> str:
    return next(target["query"] for k, w, target in _queries(model) if (k, w) == (kind, where))


def test_a_running_run_is_listed_followed_and_its_fault_drawn_while_it_runs(
    tmp_path: Path, demo: DemoInfo, influxd: Any
) -> None:
    """Mid-run, the dashboard's own queries see the run as running (with its start) and draw the
    active fault as a region up to its planned end; `harness grafana link` follows it to now.
    Once it has ended, the same row carries the verdict and the region ends where the fault did."""
    influxd.create_database(LIVE_DATABASE)
    client = InfluxQuery(influxd.url, LIVE_DATABASE)
    scenario = tmp_path / "live.yaml"
    scenario.write_text(
        LIVE_SCENARIO.format(
            base_url=demo.base_url,
            locustfile=ROOT / "locustfiles" / "shop.py",
            pid_file=Path(demo.directory) / "payments.pid",
            url=influxd.url,
            database=LIVE_DATABASE,
        ).lstrip()
    )
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp_path / "runs")}
    model = build_all()["harness-run.json"]
    running_query = _dashboard_query(model, "panel", "Running [A]")
    runs_query = _dashboard_query(model, "variable", "run_id")
    regions_query = _dashboard_query(model, "annotation", "Faults")
    run = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", LIVE_RUN, "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen_running: list[dict[str, Any]] = []
        region: dict[str, Any] | None = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None and region is None:
            time.sleep(0.5)
            now_ms = int(time.time() * 1000)
            running = [r for r in client.query(running_query, epoch="ms") if r["run_id"] == LIVE_RUN]
            seen_running = seen_running or running
            if not running:
                continue
            query = interpolate(regions_query, {"run_id": LIVE_RUN}, now_ms - 300_000, now_ms, 1)
            active = [r for r in client.query(query, epoch="ms") if r["fault"] == "kill-payments"]
            if active and run.poll() is None:
                region = {**active[0], "asked_ms": now_ms}
        assert run.poll() is None, "the run ended before its fault was seen live: " + run.communicate()[1][-3000:]
        assert seen_running, "the run never appeared as running"
        row = seen_running[0]
        assert row["verdict"] == "running" and row["scenario"] == "grafana-live", row
        assert abs(row["started"] - time.time()) < 60 and row["from_ms"] == math.floor(row["started"] * 1000) - 10000
        assert LIVE_RUN in metric_find_value(client.query_series(runs_query, epoch="ms"))
        assert region is not None, "no fault region while the fault was active"
        # Drawn from its start to its planned end (5 s + 8 s after the run's start), which is ahead.
        assert region["timeEnd"] > region["asked_ms"] >= region["time"], region
        assert abs(region["timeEnd"] - (row["started"] + 13) * 1000) < 1500, (region, row)
        link = subprocess.run(
            [sys.executable, "-m", "harness.cli", "grafana", "link", LIVE_RUN, "--results-url", influxd.url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if run.poll() is None:  # still going: the link follows it
            assert link.returncode == 0 and link.stdout.strip().endswith("&to=now&refresh=5s"), link
        out, err = run.communicate(timeout=120)
        assert run.returncode in (0, 1), out[-2000:] + err[-3000:]
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
    # Ended: one row for the run, now with its verdict; the region ends at the fault's end event.
    rows = [r for r in client.query('SELECT * FROM "harness_runs"', epoch="ms") if r["run_id"] == LIVE_RUN]
    assert len(rows) == 1 and rows[0]["verdict"] in ("passed", "failed"), rows
    assert rows[0]["ended"] > rows[0]["started"] and rows[0]["planned_end"] == rows[0]["started"] + 18, rows
    assert not [r for r in client.query(running_query) if r["run_id"] == LIVE_RUN]
    end_event = client.query(
        f"SELECT \"state\" FROM \"harness_events\" WHERE run_id = '{LIVE_RUN}' AND kind = 'fault' AND state = 'end'",
        epoch="ms",
    )
    now_ms = int(time.time() * 1000)
    query = interpolate(regions_query, {"run_id": LIVE_RUN}, now_ms - 300_000, now_ms, 1)
    final = [r for r in client.query(query, epoch="ms") if r["fault"] == "kill-payments"]
    assert len(final) == 1 and abs(final[0]["timeEnd"] - end_event[0]["time"]) <= 1, (final, end_event)


# --------------------------------------------------------------------------- one set of numbers


def test_window_figures_in_influxdb_are_the_summary_s_and_recompute_from_the_stored_histograms(
    client: InfluxQuery,
) -> None:
    """harness_windows holds summary.json's exact figures for every window; merging the stored
    per-second histograms of harness_totals gives the run's percentiles again, from InfluxDB alone."""
    run_id = RUNS[1]
    summary = json.loads((RUNS_DIR[0] / run_id / "summary.json").read_text())
    rows = client.query(f"SELECT * FROM \"harness_windows\" WHERE run_id = '{run_id}'")
    stored = {r["window"]: r for r in rows}
    assert set(stored) == set(summary["windows"]), (sorted(stored), sorted(summary["windows"]))
    for window, figures in summary["windows"].items():
        row = stored[window]
        assert row["count"] == figures["requests"] and row["failures"] == figures["failures"], window
        for field in ("p50", "p99", "max"):
            assert row[field] == figures[f"{field}_ms"], (window, field, row, figures)
        assert row["error_rate"] == figures["error_rate"] and row["rps"] == figures["rps"], window
    merged = new_histogram()
    seconds = client.query(f'SELECT "histogram", "count" FROM "harness_totals" WHERE run_id = \'{run_id}\'')
    for second in seconds:
        if second.get("histogram"):
            merged.add(HdrHistogram.decode(second["histogram"]))
    run = summary["windows"]["run"]
    assert merged.get_total_count() == run["requests"] == sum(s["count"] for s in seconds)
    exact = EndpointStats(count=merged.get_total_count(), hist=merged).latency_ms()
    assert [round(exact[k], 3) for k in ("p50", "p99", "max")] == [run["p50_ms"], run["p99_ms"], run["max_ms"]]
    # failures by kind per second add up to the run's failure kinds
    kinds: dict[str, int] = {}
    for row in client.query(f'SELECT "count", "failure_kind" FROM "harness_failures" WHERE run_id = \'{run_id}\''):
        kinds[row["failure_kind"]] = kinds.get(row["failure_kind"], 0) + row["count"]
    assert kinds == run["failure_kinds"]


# --------------------------------------------------------------------------- five places, one set of numbers

#: gq-plain's windows as offsets from its start (SCENARIO: ramp 3 s, steady 14 s, the kill at 6 s for 4 s).
FIVE_SPANS = {
    "run": [(-math.inf, math.inf)],  # the run window takes every second of the run
    "phase:ramp": [(0.0, 3.0)],
    "phase:steady": [(3.0, 17.0)],
    "during:kill-catalog": [(6.0, 10.0)],
}
_LATENCIES = (("p50", 50.0), ("p99", 99.0))


def _stat(model: dict[str, Any], title: str, panel_type: str) -> str:
    """The query of the panel ``title`` of type ``panel_type`` (stat, table...), as the dashboard has it."""
    return next(
        target["query"]
        for kind, where, target in _queries(model)
        if kind == "panel" and where == f"{title} [A]" and target["panel"]["type"] == panel_type
    )


def _terminal_slos(stdout: str) -> dict[str, list[str]]:
    """The rows of the terminal's verdict table: SLO name -> its cells (window, endpoint, measured...)."""
    rows = {}
    for line in stdout.splitlines():
        cells = [c.strip() for c in re.split(r"[│┃|]", line)]
        if len(cells) >= 7 and cells[1] and cells[1] != "SLO":
            rows[cells[1]] = cells[2:-1]
    return rows


def test_one_set_of_numbers_in_five_places_equal_to_the_raw_request_log(client: InfluxQuery) -> None:
    """gq-plain (two phases, one fault): the run's, each phase's and the fault window's p50, p99,
    max, error rate and rps from the raw request log; then the same figures, exactly, in the
    terminal's verdict, summary.json, JUnit XML, the HTML report and Grafana's panels.

    Tolerance against the log: percentiles within HdrHistogram's precision (3 significant
    digits: a value's bucket is within 1/1024 of it, plus 1 us of rounding); counts and failures
    exact, except that a request completing within 10 ms of a second's boundary between two
    windows may fall on either side (the log's clock and harness's are read microseconds apart):
    a window's count may then include it or not, and its percentiles must match the log's for
    one of those memberships. Between the five places: equal, to the precision each shows."""
    from harness.judge.objectives import format_metric
    from harness.review.report import render
    from harness.review.report_data import from_influx, from_run_dir
    from tests.five_places import read_log, window_truth
    from tests.test_report import Page

    run_id = RUNS[1]
    run_dir = RUNS_DIR[0] / run_id
    summary = json.loads((run_dir / "summary.json").read_text())
    windows, slos = summary["windows"], {s["name"]: s for s in summary["slos"]}
    log = read_log(OUTPUT[run_id]["log"], f"{run_id}.requests")
    assert len(log) > 300, len(log)
    problems: list[str] = []

    # 1. the raw log against summary.json's windows
    for window, spans in FIVE_SPANS.items():
        truth, figures = window_truth(log, summary["started"], spans), windows[window]
        if not truth.counts_ok(figures["requests"], figures["failures"]):
            problems.append(f"{window}: counts {figures['requests']}/{figures['failures']} vs log {truth}")
        for field, pct in _LATENCIES:
            if not truth.percentile_ok(figures[f"{field}_ms"], pct):
                problems.append(f"{window}: {field} {figures[f'{field}_ms']} is not the log's")
        if not truth.max_ok(figures["max_ms"]):
            problems.append(f"{window}: max {figures['max_ms']} is not the log's")
        assert figures["error_rate"] == figures["failures"] / figures["requests"], window
        if window != "run":  # a phase or fault window has one second per second of its span
            ((start, end),) = spans
            assert figures["seconds"] == end - start and figures["rps"] == figures["requests"] / (end - start), window
    run = windows["run"]
    assert run["requests"] == len(log) and run["failures"] == sum(r.failed for r in log)
    assert 17 <= run["seconds"] <= 19 and run["rps"] == run["requests"] / run["seconds"], run
    assert windows["during:kill-catalog"]["failures"] > 0, "the kill made no failures: nothing to check"

    # 2. summary.json: totals and every SLO's measured value are its window's figures
    totals = summary["totals"]
    assert {k: totals[k] for k in ("requests", "failures", "rps", "p50_ms", "p99_ms", "max_ms")} == {
        k: run[k] for k in ("requests", "failures", "rps", "p50_ms", "p99_ms", "max_ms")
    }
    expected: dict[str, tuple[str, float, int]] = {}  # SLO -> (metric, value, requests)
    for window in FIVE_SPANS:
        for metric in FIVE_METRICS:
            name = f"{window.replace(':', '-')}-{metric}"
            slo, figures = slos[name], windows[window]
            value = figures[f"{metric}_ms"] if metric in ("p50", "p99", "max") else figures[metric]
            assert abs(slo["measured"] - value) <= 0.0005 and slo["requests"] == figures["requests"], (slo, figures)
            expected[name] = (metric, slo["measured"], figures["requests"])

    # 3. the terminal: the totals line and the verdict table
    stdout = OUTPUT[run_id]["stdout"]
    line = (
        f"requests {run['requests']}, failures {run['failures']} ({run['error_rate'] * 100:.2f}%), "
        f"{run['rps']:.1f} req/s, p50 {run['p50_ms']} ms, p99 {run['p99_ms']} ms"
    )
    assert line in stdout, stdout[-3000:]
    shown = _terminal_slos(stdout)
    for name, (metric, value, _) in expected.items():
        if name not in shown or shown[name][2] != format_metric(metric, value):
            problems.append(f"terminal: {name} shows {shown.get(name)}, not {format_metric(metric, value)}")

    # 4. JUnit: each SLO's testcase tells its measured value and the window's requests
    cases = {c.get("name"): c for c in ET.parse(OUTPUT[run_id]["junit"]).getroot().iter("testcase")}
    for name, (metric, value, requests) in expected.items():
        text = cases[name].findtext("system-out") or ""
        if f" {format_metric(metric, value)} over " not in text or f"({requests} requests)" not in text:
            problems.append(f"JUnit: {name} says {text!r}")

    # 5. the HTML report: the run's figures and each SLO's measured value
    page = Page((run_dir / "report.html").read_text())
    text = " ".join(page.text)
    for figure in (f"{run['requests']:,}", f"p50 {run['p50_ms']:,.1f}", f"p99 {run['p99_ms']:,.1f}",
                   f"max {run['max_ms']:,.1f}", f"{run['error_rate'] * 100:.2f}%"):  # fmt: skip
        if figure not in text:
            problems.append(f"report: no {figure!r} in its summary")
    header = page.tables["slos"][0]
    measured = {row[0]: row[header.index("measured")] for row in page.rows("slos")}
    for name, (metric, value, _) in expected.items():
        if measured.get(name) != format_metric(metric, value):
            problems.append(f"report: {name} measured {measured.get(name)}, not {format_metric(metric, value)}")

    # 6. Grafana: the run dashboard's stat panels and tables, the compare dashboard's run figures
    variables = {"run_id": run_id, "run_a": run_id, "run_b": RUNS[0]}
    models = build_all()
    run_model, compare = models["harness-run.json"], models["harness-compare.json"]

    def ask(query: str) -> list[dict[str, Any]]:
        return client.query(interpolate(query, variables, 0, int(time.time() * 1000), 1))

    for title, key in (("Requests", "requests"), ("Run rps", "rps"), ("Error rate", "error_rate"),
                       ("p50", "p50_ms"), ("p99", "p99_ms"), ("Max", "max_ms")):  # fmt: skip
        rows = ask(_stat(run_model, title, "stat"))
        if [r[title] for r in rows] != [run[key]]:
            problems.append(f"Grafana stat {title}: {rows} vs {run[key]}")
    columns = {"requests": "requests", "error rate": "error_rate", "requests/s": "rps"} | {
        "p50 (ms)": "p50_ms",
        "p99 (ms)": "p99_ms",
        "max (ms)": "max_ms",
    }
    table = {r["window"]: r for r in ask(_stat(run_model, "Windows", "table"))}
    for window in FIVE_SPANS:
        got = {c: table.get(window, {}).get(c) for c in columns}
        if got != {c: windows[window][k] for c, k in columns.items()}:
            problems.append(f"Grafana Windows {window}: {got} vs {windows[window]}")
    (figures_row,) = [r for r in ask(_stat(compare, "Run figures", "table")) if r["run_id"] == run_id]
    if {c: figures_row[c] for c in columns} != {c: run[k] for c, k in columns.items()}:
        problems.append(f"Grafana compare Run figures: {figures_row} vs {run}")
    endpoints = {(r["method"], r["name"]): r for r in ask(_stat(run_model, "Endpoints", "table"))}
    for endpoint in summary["endpoints"]:
        row = endpoints.get((endpoint["method"], endpoint["name"]), {})
        got = {c: row.get(c) for c in columns} | {"failures": row.get("failures")}
        if got != {c: endpoint[k] for c, k in columns.items()} | {"failures": endpoint["failures"]}:
            problems.append(f"Grafana Endpoints {endpoint['name']}: {row} vs {endpoint}")
    assert not problems, "\n".join(problems)

    # The report regenerated from InfluxDB alone (the run's record gone) has the same figures.
    again = from_influx(client, run_id, (run_dir / "scenario.yaml").read_text())
    disk = from_run_dir(run_dir)
    assert again.totals == disk.totals and again.endpoints == disk.endpoints and not again.estimated
    assert again.seconds == disk.seconds and again.planned_duration_s == disk.planned_duration_s
    assert [(s.name, s.measured, s.threshold, s.passed) for s in again.slos] == [
        (s.name, s.measured, s.threshold, s.passed) for s in disk.slos
    ]
    regenerated, original = Page(render(again)), Page(render(disk))
    # Example trace ids are kept in summary.json only (docs/review.md): every other table is the same.
    assert "traces" in original.tables and "traces" not in regenerated.tables
    assert regenerated.tables == {k: v for k, v in original.tables.items() if k != "traces"}
