"""Every query of the generated dashboards, run against a real influxd after a real run.

Two short demo runs, each killing payments for a few seconds, write to their own database (the
first trips a guard near its end, so the abort markers have an event to show);
then every panel target, variable query and annotation query of build_all() (found by walking
the JSON, so new panels are covered) is interpolated the way Grafana's InfluxDB datasource
does and must return rows with the columns the panel uses. ``pytest -s`` prints each query
and its row count.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hdrh.histogram import HdrHistogram

from harness.demo.control import DemoInfo, down, up
from harness.measure.windows import EndpointStats, new_histogram
from harness.results.query import InfluxQuery
from harness.review.grafana.dashboards import build_all

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
  - name: kill-payments
    kind: process.kill
    at: 6s
    duration: 4s
    recovery: 3s
    target: {{pid_file: {pid_file}}}
slos:
  - name: steady-p99
    objective: p99 < 2s
    window: steady
{guards}results:
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
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp / "runs")}
    for run_id in RUNS:
        scenario = tmp / f"{run_id}.yaml"
        scenario.write_text(
            SCENARIO.format(
                base_url=demo.base_url,
                locustfile=ROOT / "locustfiles" / "shop.py",
                pid_file=Path(demo.directory) / "payments.pid",
                url=influxd.url,
                database=DATABASE,
                guards=GUARDS[run_id],
            ).lstrip()
        )
        result = subprocess.run(
            [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", run_id],
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert "Traceback" not in result.stdout + result.stderr, result.stderr[-3000:]
        expected = (4,) if GUARDS[run_id] else (0, 1)
        assert result.returncode in expected, result.stdout[-3000:] + result.stderr[-3000:]
    RUNS_DIR.append(tmp / "runs")
    return InfluxQuery(influxd.url, DATABASE)


RUNS_DIR: list[Path] = []  # where the fixture's runs keep their own record


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
    region = [r for r in rows if r.get("fault") == "kill-payments"]
    if len(region) != 1 or not region[0]["text"]:
        failures.append(f"fault region: expected one kill-payments row with text, got {rows}")
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
