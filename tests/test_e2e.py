"""End to end: the CLI runs a short demo scenario with real Ray, Locust, influxd and the demo shop.

What a user sees is checked: the exit code, one row per second per endpoint in InfluxDB
whose counts add up to summary.json, fault events at their planned offsets, failures that
rise during the kill and fall after recovery, and percentiles equal to those computed from
every raw latency.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.demo.control import DemoInfo, down, up
from tests.ground_truth import hdr_close, nearest_rank, read_raw

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BASE_PORT = 18700
KILL_AT, KILL_FOR = 10, 6


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    directory = tmp_path_factory.mktemp("demo")
    try:
        yield up(directory=directory, base_port=BASE_PORT, restart_delay=3.0)
    finally:
        down(directory=directory)


def _scenario(path: Path, demo: DemoInfo, url: str, database: str, body: str) -> Path:
    path.write_text(
        f"""
name: e2e
target:
  base_url: {demo.base_url}
load:
  locustfile: {ROOT / "locustfiles" / "shop.py"}
  user_classes:
    - class: Shopper
  processes: 2
{body}
results:
  url: {url}
  database: {database}
""".lstrip()
    )
    return path


def _run(
    scenario: Path, tmp: Path, run_id: str, raw: Path | None = None, extra: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp / "runs")}
    if raw is not None:
        raw.mkdir()
        env["HARNESS_RAW_LATENCY_DIR"] = str(raw)
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", run_id, *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


MAIN = f"""  stages:
    - {{name: ramp, duration: 4s, users: 40, spawn_rate: 20}}
    - {{name: steady, duration: 22s, users: 40}}
faults:
  - name: kill-payments
    kind: process.kill
    at: {KILL_AT}s
    duration: {KILL_FOR}s
    recovery: 4s
    target: {{pid_file: PIDFILE}}
slos:
  - name: steady-p99
    objective: p99 < 1s
    window: steady
  - name: steady-errors
    objective: error_rate < 2%
    window: steady
guards:
  - name: meltdown
    condition: error_rate > 90% for 5s
"""


@pytest.fixture(scope="module")
def main_run(tmp_path_factory: pytest.TempPathFactory, demo: DemoInfo, influxd: Any) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("e2e")
    influxd.create_database("e2e")
    body = MAIN.replace("PIDFILE", str(Path(demo.directory) / "payments.pid"))
    scenario = _scenario(tmp / "e2e.yaml", demo, influxd.url, "e2e", body)
    result = _run(scenario, tmp, "e2e-main", raw=tmp / "raw")
    summary_path = tmp / "runs" / "e2e-main" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return {"result": result, "summary": summary, "raw": tmp / "raw", "influxd": influxd}


def test_run_passes(main_run: dict[str, Any]) -> None:
    result = main_run["result"]
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    assert "PASSED" in result.stdout
    assert main_run["summary"]["verdict"] == "passed"


def _rows(influxd: Any, query: str) -> list[dict[str, Any]]:
    return influxd.query(query, "e2e")


def test_one_row_per_second_per_endpoint_and_counts_match(main_run: dict[str, Any]) -> None:
    influxd, summary = main_run["influxd"], main_run["summary"]
    rows = _rows(influxd, 'SELECT "count", failures, method, "name" FROM harness_requests WHERE run_id = \'e2e-main\'')
    assert rows, "no harness_requests rows"
    per_endpoint: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        per_endpoint[(row["method"], row["name"])].append(row)
    expected = {(e["method"], e["name"]): e for e in summary["endpoints"]}
    assert set(per_endpoint) == set(expected)
    for key, series in per_endpoint.items():
        seconds = sorted(int(r["time"]) // 1_000_000_000 for r in series)
        assert len(seconds) == len(set(seconds)), f"duplicate seconds for {key}"
        assert seconds == list(range(seconds[0], seconds[-1] + 1)), f"gap in seconds for {key}"
        assert sum(r["count"] for r in series) == expected[key]["requests"], key
        assert sum(r["failures"] for r in series) == expected[key]["failures"], key
    total = sum(r["count"] for r in rows)
    assert total == summary["totals"]["requests"] > 500


def test_fault_events_on_time(main_run: dict[str, Any]) -> None:
    influxd, summary = main_run["influxd"], main_run["summary"]
    rows = _rows(
        influxd,
        "SELECT state, \"text\", kind, \"name\" FROM harness_events WHERE run_id = 'e2e-main' AND kind = 'fault'",
    )
    times = {r["state"]: int(r["time"]) / 1e9 for r in rows if r["name"] == "kill-payments"}
    assert set(times) == {"start", "end"}, rows
    assert abs(times["start"] - (summary["started"] + KILL_AT)) < 1.0
    assert abs(times["end"] - (summary["started"] + KILL_AT + KILL_FOR)) < 1.0


def test_failures_rise_during_kill_and_recover(main_run: dict[str, Any]) -> None:
    influxd, summary = main_run["influxd"], main_run["summary"]
    rows = _rows(
        influxd,
        'SELECT "count", failures FROM harness_requests '
        "WHERE run_id = 'e2e-main' AND \"name\" = '/api/checkout/[session]'",
    )
    start = summary["started"]
    during = [r for r in rows if KILL_AT <= int(r["time"]) / 1e9 - start < KILL_AT + KILL_FOR]
    after = [r for r in rows if int(r["time"]) / 1e9 - start >= KILL_AT + KILL_FOR + 2]
    before = [r for r in rows if 2 <= int(r["time"]) / 1e9 - start < KILL_AT - 1]
    assert sum(r["failures"] for r in during) >= 3, during
    assert sum(r["failures"] for r in before) == 0, before
    assert sum(r["count"] for r in after) > 0
    assert sum(r["failures"] for r in after) == 0, after


def _gateway_saw(directory: Path, run_id: str) -> list[tuple[float, str, str]]:
    """(time, traceparent, baggage) of each request of run ``run_id`` the demo's gateway received."""
    seen = []
    for name in ("gateway-traces.log.1", "gateway-traces.log"):
        path = directory / name
        for line in path.read_text().splitlines() if path.exists() else []:
            stamp, _method, _path, traceparent, baggage = line.split(" ", 4)
            if f"harness.run_id={run_id}" in baggage:
                seen.append((float(stamp), traceparent.removeprefix("traceparent="), baggage.removeprefix("baggage=")))
    return seen


def test_example_traces_are_requests_the_gateway_saw(main_run: dict[str, Any], demo: DemoInfo) -> None:
    """summary.json's example trace ids (load.trace is on by default) were sent to the gateway, which
    logs the trace context it receives; the slowest example of an endpoint is its slowest request."""
    summary = main_run["summary"]
    seen = _gateway_saw(Path(demo.directory), "e2e-main")
    assert len(seen) >= summary["totals"]["requests"], "a request reached the gateway without this run's baggage"
    ids = {traceparent.split("-")[1] for _, traceparent, _ in seen}
    assert len(ids) == len(seen), "per request (the default): a trace of its own each"
    examples = {(e["method"], e["name"]): e for e in summary["trace_examples"]}
    endpoints = {(e["method"], e["name"]): e for e in summary["endpoints"]}
    assert set(examples) == set(endpoints)
    for key, example in examples.items():
        slowest = [x["latency_ms"] for x in example["slowest"]]
        assert len(slowest) == min(3, endpoints[key]["requests"]) and slowest == sorted(slowest, reverse=True)
        assert slowest[0] == pytest.approx(endpoints[key]["max_ms"], rel=0.01, abs=0.01), key
        assert len(example["failed"]) == min(3, endpoints[key]["failures"]), key
        for x in example["slowest"] + example["failed"]:
            assert x["trace_id"] in ids, (key, x)
    failed = examples[("POST", "/api/checkout/[session]")]["failed"]
    start = summary["started"]
    # ``second`` is the epoch second a request completed in: the one the fault started in counts
    assert failed and all(KILL_AT - 1 < x["second"] - start < KILL_AT + KILL_FOR + 2 for x in failed), failed


def test_baggage_names_the_phase_and_the_fault_during_its_window(main_run: dict[str, Any], demo: DemoInfo) -> None:
    summary = main_run["summary"]
    faults = {e["state"]: e["time"] for e in summary["events"] if e["kind"] == "fault"}
    seen = _gateway_saw(Path(demo.directory), "e2e-main")
    with_fault = [t for t, _, baggage in seen if "harness.faults=kill-payments" in baggage]
    assert with_fault, "no request named the active fault"
    # Named from when the inject returned until the revert did, give or take a request in flight.
    assert faults["start"] - 0.2 <= min(with_fault) and max(with_fault) <= faults["end"] + 0.5
    inside = [baggage for t, _, baggage in seen if faults["start"] + 0.5 < t < faults["end"] - 0.5]
    assert inside and all("harness.faults=kill-payments" in b for b in inside)
    phases = {b.split("harness.phase=")[1].split(",")[0] for t, _, b in seen if "harness.phase=" in b}
    assert phases == {"ramp", "steady"}


def test_percentiles_equal_raw_latency_ground_truth(main_run: dict[str, Any]) -> None:
    influxd, summary, raw = main_run["influxd"], main_run["summary"], main_run["raw"]
    files = list(raw.glob("raw-*.log"))
    assert len(files) >= 2, files
    per_second, per_endpoint = read_raw(files)
    rows = _rows(influxd, "SELECT * FROM harness_requests WHERE run_id = 'e2e-main' AND \"count\" > 0")
    checked = 0
    for row in rows:
        key = (int(row["time"]) // 1_000_000_000, row["method"], row["name"])
        values = per_second[key]
        assert len(values) == row["count"], key
        for field, pct in (("p50", 50), ("p90", 90), ("p99", 99), ("p999", 99.9), ("max", 100)):
            assert hdr_close(row[field], nearest_rank(values, pct)), (key, field, row[field], nearest_rank(values, pct))
        checked += 1
    assert checked > 20
    for endpoint in summary["endpoints"]:
        values = per_endpoint[(endpoint["method"], endpoint["name"])]
        assert len(values) == endpoint["requests"]
        for field, pct in (("p50_ms", 50), ("p90_ms", 90), ("p99_ms", 99), ("p999_ms", 99.9)):
            assert hdr_close(endpoint[field], nearest_rank(values, pct)), (endpoint["name"], field)
        assert hdr_close(endpoint["max_ms"], max(values) / 1000.0)


def test_breach_scenario_fails_and_names_the_slo(tmp_path: Path, demo: DemoInfo, influxd: Any) -> None:
    influxd.create_database("e2e")
    body = f"""  stages:
    - {{name: steady, duration: 14s, users: 30, spawn_rate: 30}}
faults:
  - name: pause-payments
    kind: process.pause
    at: 4s
    duration: 6s
    target: {{pid_file: {Path(demo.directory) / "payments.pid"}}}
slos:
  - name: checkout-latency-during-pause
    objective: p99 < 200ms
    window: during:pause-payments
    endpoint: /api/checkout/[session]
  - name: run-errors
    objective: error_rate < 50%
"""
    scenario = _scenario(tmp_path / "breach.yaml", demo, influxd.url, "e2e", body)
    junit = tmp_path / "junit.xml"
    result = _run(scenario, tmp_path, "e2e-breach", extra=("--junit", str(junit)))
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    # The JUnit file a CI report shows: read by a real JUnit consumer library.
    from junitparser import Failure, JUnitXml

    cases = {case.name: case for suite in JUnitXml.fromfile(str(junit)) for case in suite}
    assert set(cases) == {"checkout-latency-during-pause", "run-errors"}
    [failure] = [r for r in cases["checkout-latency-during-pause"].result if isinstance(r, Failure)]
    assert "p99 < 200ms not met: measured" in (failure.message or "")
    assert cases["run-errors"].is_passed
    assert "checkout-latency-during-pause" in result.stdout
    assert "FAILED" in result.stdout
    summary = json.loads((tmp_path / "runs" / "e2e-breach" / "summary.json").read_text())
    failed = [s["name"] for s in summary["slos"] if not s["passed"]]
    assert failed == ["checkout-latency-during-pause"]
    assert summary["verdict"] == "failed"
    # The pause was reverted: payments answers again after the run.
    import psutil

    pid = int((Path(demo.directory) / "payments.pid").read_text())
    assert psutil.Process(pid).status() != psutil.STATUS_STOPPED


def test_ctrl_c_reverts_the_fault_stops_load_and_exits_130(tmp_path: Path, demo: DemoInfo, influxd: Any) -> None:
    import signal
    import time

    import psutil

    influxd.create_database("e2e")
    pid_file = Path(demo.directory) / "payments.pid"
    body = f"""  stages:
    - {{name: steady, duration: 40s, users: 10, spawn_rate: 10}}
faults:
  - name: pause-payments
    kind: process.pause
    at: 1s
    duration: 30s
    target: {{pid_file: {pid_file}}}
"""
    scenario = _scenario(tmp_path / "interrupt.yaml", demo, influxd.url, "e2e", body)
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp_path / "runs")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", "e2e-interrupt"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        payments = psutil.Process(int(pid_file.read_text()))
        deadline = time.monotonic() + 60
        while payments.status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[0][-3000:]
            time.sleep(0.2)
        assert payments.status() == psutil.STATUS_STOPPED, "the pause was never applied"
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output[-3000:]
    assert "Traceback" not in output
    assert payments.status() != psutil.STATUS_STOPPED
    summary = json.loads((tmp_path / "runs" / "e2e-interrupt" / "summary.json").read_text())
    assert summary["verdict"] == "interrupted"
    ends = [e for e in summary["events"] if e["kind"] == "fault" and e["state"] == "end"]
    assert [e["name"] for e in ends] == ["pause-payments"]
