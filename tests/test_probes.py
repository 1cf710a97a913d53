"""Scenario probes: the servers' own metrics, polled during a run and judged by SLOs and guards.

Against real servers only: the demo shop with its VictoriaMetrics (``harness demo up`` starts
it; it scrapes every service's ``/metrics``), and the session's real influxd for InfluxQL probes
and the run's results.

* a probe SLO on the gateway's in-flight requests passes, a PromQL probe with a label from
  ``probes.labels`` and an InfluxQL probe templated with the run's own id read real values, and
  every value lands in summary.json and in InfluxDB's ``harness_probes``;
* a guard on the gateway's server-side error rate trips while payments is killed: exit 4;
* an unreachable probe source is exit 2 before anything starts (no run directory, no Ray);
* what a probe's answer may be (one number; several series is refused with the reason).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ProbeFailed, ScenarioError
from harness.results.promql import number_of
from harness.scenario import load_scenario
from harness.scenario.probes import render
from tests.influx_fixtures import InfluxServer, free_port

ROOT = Path(__file__).resolve().parents[1]
SHOP = ROOT / "locustfiles" / "shop.py"


def _scenario(tmp: Path, body: str, base: int = 8700) -> Path:
    path = tmp / "probes.yaml"
    path.write_text(
        f"""\
name: probes
target: {{base_url: 'http://127.0.0.1:{base}'}}
load:
  locustfile: {SHOP}
  user_classes: [{{class: Shopper}}]
  stages: [{{name: main, duration: 14s, users: 40, spawn_rate: 40}}]
"""
        + body
    )
    return path


def _run(path: Path, tmp: Path, run_id: str, influx: str, timeout: float = 180) -> tuple[int, str, dict[str, Any]]:
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp / "runs")}
    command = [sys.executable, "-m", "harness.cli", "run", str(path), "--run-id", run_id, "--results-url", influx]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    summary = tmp / "runs" / run_id / "summary.json"
    return done.returncode, done.stdout + done.stderr, json.loads(summary.read_text()) if summary.exists() else {}


# ---------------------------------------------------------------- what a probe's answer may be


def test_a_probe_is_one_number_and_several_series_are_refused_with_the_reason() -> None:
    assert number_of({"resultType": "scalar", "result": [1.0, "3.5"]}) == 3.5
    assert number_of({"resultType": "vector", "result": [{"metric": {}, "value": [1.0, "7"]}]}) == 7.0
    assert math.isnan(number_of({"resultType": "vector", "result": []}))  # no series yet: no value, not 0
    two = [{"metric": {"service": s}, "value": [1.0, "1"]} for s in ("cart", "gateway")]
    with pytest.raises(ProbeFailed, match=r"gave 2 series .*aggregate it, e\.g\. sum\(\.\.\.\)"):
        number_of({"resultType": "vector", "result": two})
    with pytest.raises(ProbeFailed, match="matrix result"):
        number_of({"resultType": "matrix", "result": []})


def test_a_query_is_templated_with_the_run_and_the_labels() -> None:
    query = 'sum(x{run="{{run_id}}", job="{{ job }}"}[{{elapsed}}s])'
    assert render(query, {"run_id": "r-1", "job": "demo", "elapsed": 7}) == 'sum(x{run="r-1", job="demo"}[7s])'


def test_probe_mistakes_are_located_and_reported_together(tmp_path: Path) -> None:
    body = """\
probes:
  queries:
    - {name: errors, promql: 'sum(rate(e[5s]))'}
    - {name: rows, influxql: 'SELECT last(v) FROM m WHERE r = ''{{run}}'''}
slos:
  - {name: calm, objective: 'probe:erors < 1'}
guards:
  - {name: stop, condition: 'probe < 1 for 2s'}
"""
    with pytest.raises(ScenarioError) as info:
        load_scenario(_scenario(tmp_path, body))
    text = str(info.value)
    assert "probes.yaml:7:1: probes: probe 'errors' is PromQL: give probes.prometheus" in text
    assert "probe 'rows' is InfluxQL: give probes.influxdb {url, database}" in text
    assert "probe 'rows' names {{run}}, which is neither one of run_id" in text
    assert "probes.yaml:12:18: slos[0].objective: no probe is named 'erors'; did you mean 'errors'?" in text
    assert "probes.yaml:14:18: guards[0].condition: 'probe < 1' names no probe; write probe:NAME" in text


def test_an_unreachable_probe_source_is_exit_2_with_nothing_started(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    path = _scenario(
        tmp_path,
        f"""\
probes:
  prometheus: http://127.0.0.1:{port}
  queries: [{{name: up, promql: 'sum(up)'}}]
slos:
  - {{name: up, objective: 'probe:up >= 1'}}
""",
    )
    code, output, summary = _run(path, tmp_path, "unreachable", f"http://127.0.0.1:{free_port()}", timeout=60)
    assert code == 2, output
    assert f"probes.queries[0] (up): Prometheus API http://127.0.0.1:{port} unreachable" in output
    assert "nothing was started" in output and "Traceback" not in output
    assert not summary and not (tmp_path / "runs" / "unreachable").exists()


# ---------------------------------------------------------------- real runs against the demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from harness.demo.control import down, up
    from tests.test_demo import free_base_port

    directory = tmp_path_factory.mktemp("demo")
    try:
        info = up(directory=directory, base_port=free_base_port(), restart_delay=2.0)
        if info.metrics_url is None:
            pytest.skip("victoria-metrics is not installed (apt-get install victoria-metrics)")
        yield info
    finally:
        down(directory=directory)


def _base(demo: Any) -> int:
    return int(demo.base_url.rsplit(":", 1)[1])


@pytest.mark.slow
def test_probe_slos_pass_on_real_server_metrics_and_are_stored(
    demo: Any, influxd: InfluxServer, tmp_path: Path
) -> None:
    """In-flight requests at the gateway stay low; VictoriaMetrics sees its scrape targets up;
    the InfluxQL probe reads this run's own requests from InfluxDB by its templated run id."""
    db = influxd.create_database("probes_pass")
    body = f"""\
probes:
  prometheus: {demo.metrics_url}
  influxdb: {{url: {influxd.url}, database: {db}}}
  every: 1s
  labels: {{service: gateway}}
  queries:
    - {{name: in_flight, promql: 'sum(demo_http_requests_in_flight{{service="{{{{service}}}}"}})'}}
    - {{name: targets_up, promql: 'sum(up{{job="demo"}})'}}
    - {{name: served, influxql: 'SELECT sum("count") FROM "harness_totals" WHERE "run_id" = ''{{{{run_id}}}}'''}}
slos:
  - {{name: calm, objective: 'probe:in_flight < 30'}}
  - {{name: scraped, objective: 'probe:targets_up >= 4', window: 'last:5s'}}
  - {{name: counted, objective: 'probe:served >= 10', window: 'last:4s'}}
results: {{url: {influxd.url}, database: {db}}}
"""
    code, output, summary = _run(_scenario(tmp_path, body, _base(demo)), tmp_path, "probes-pass", influxd.url)
    assert code == 0, output
    slos = {s["name"]: s for s in summary["slos"]}
    assert all(s["status"] == "met" for s in slos.values()), slos
    assert "probe:in_flight highest" in slos["calm"]["message"]
    series = {p["name"]: p for p in summary["probes"]}
    assert set(series) == {"in_flight", "targets_up", "served"}
    assert series["in_flight"]["language"] == "promql" and series["served"]["language"] == "influxql"
    for name in series:
        values = [v["value"] for v in series[name]["values"] if v["value"] is not None]
        assert len(values) >= 8, (name, series[name])  # about one a second over 14 s
        assert series[name]["failures"] == 0
    served = [v["value"] for v in series["served"]["values"] if v["value"] is not None]
    assert served == sorted(served) and served[-1] > served[0]  # this run's requests, growing
    stored = influxd.query(
        'SELECT count("value") FROM "harness_probes" WHERE "run_id" = \'probes-pass\' GROUP BY "probe"', db
    )
    assert {row["probe"] for row in stored} == set(series)


@pytest.mark.slow
def test_a_guard_on_the_gateways_server_side_errors_trips_while_payments_is_killed(
    demo: Any, influxd: InfluxServer, tmp_path: Path
) -> None:
    db = influxd.create_database("probes_guard")
    base = _base(demo)
    body = f"""\
faults:
  - name: kill-payments
    kind: process.kill
    at: 5s
    duration: 8s
    target: {{pattern: 'harness\\.demo\\.services payments --port {base + 3}\\b'}}
    params: {{signal: SIGKILL}}
probes:
  prometheus: {demo.metrics_url}
  every: 1s
  queries:
    - {{name: gateway_errors, promql: 'sum(rate(demo_http_request_errors_total{{service="gateway"}}[3s]))'}}
guards:
  - {{name: server-errors, condition: 'probe:gateway_errors > 0 for 2s'}}
results: {{url: {influxd.url}, database: {db}}}
"""
    code, output, summary = _run(_scenario(tmp_path, body, base), tmp_path, "probes-guard", influxd.url)
    assert code == 4, output
    guard = summary["guard"]
    assert guard["guard"] == "server-errors" and guard["value"] > 0
    assert guard["message"].startswith("guard 'server-errors' tripped: probe:gateway_errors was ")
    kill = next(e for e in summary["events"] if e["kind"] == "fault" and e["state"] == "start")
    tripped = guard["second"] - summary["started"]
    assert kill["offset"] < tripped < 14, (kill, guard)  # during the kill, not before it


# ---------------------------------------------------------------- the report


def test_the_reports_probe_chart_puts_each_value_in_its_second_and_a_failed_poll_is_a_gap(tmp_path: Path) -> None:
    from harness.review.plots import chart_data, plots
    from harness.review.report_model import ProbeLine, ReportData, Second

    seconds = tuple(Second(s, 10, 0, 1.0, 2.0, 3.0) for s in range(1000, 1005))
    line = ProbeLine("in_flight", ((1000.4, 2.0), (1001.5, 3.0), (1003.2, 5.0)))  # 1002: the poll failed
    data = ReportData("r", "s", "passed", "", 1000.0, 1005.0, seconds=seconds, probes=(line,))
    chart = chart_data(data)
    assert chart is not None
    [probe] = chart["probes"]
    assert probe["label"] == "in_flight" and probe["values"] == [2.0, 3.0, None, 5.0, None]
    assert 'id="chart-probes"' in plots(data)
    without = ReportData("r", "s", "passed", "", 1000.0, 1005.0, seconds=seconds)
    assert 'id="chart-probes"' not in plots(without)
