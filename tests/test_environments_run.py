"""Acceptance: a scenario using ``${BASE_URL}`` runs against the demo with BASE_URL set, and without
it fails located with exit 2 before anything starts; ``--users`` and ``--duration`` change the run.

Real parts: the demo shop, influxd, Ray and Locust subprocesses, through ``python -m harness.cli run``.
The run is short (4 s of load).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.demo.control import DemoInfo, down, up

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BASE_PORT = 19640  # its own ports and payments subnet (10.214.140.0/24): no other test module uses them

SCENARIO = f"""\
name: env-run
target:
  base_url: ${{BASE_URL}}
load:
  locustfile: {ROOT / "locustfiles" / "shop.py"}
  user_classes:
    - class: Browser
  processes: 1
  stages:
    - {{name: steady, duration: 20s, users: 50, spawn_rate: 50}}
slos:
  - name: some-traffic
    objective: rps >= 1
    window: run
results:
  url: ${{RESULTS_URL}}
  database: ${{DATABASE:-envs}}
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    directory = tmp_path_factory.mktemp("demo")
    try:
        yield up(directory=directory, base_port=BASE_PORT, restart_delay=3.0)
    finally:
        down(directory=directory)


def _run(tmp: Path, scenario: Path, env: dict[str, str], *flags: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k not in ("BASE_URL", "RESULTS_URL", "DATABASE")}
    environ |= {"HARNESS_RUNS_DIR": str(tmp / "runs"), "HARNESS_DATA_DIR": str(tmp / "data"), **env}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), *flags],
        env=environ,
        capture_output=True,
        text=True,
        timeout=240,
    )


def test_base_url_from_the_environment(tmp_path: Path, demo: DemoInfo, influxd: Any) -> None:
    scenario = tmp_path / "env-run.yaml"
    scenario.write_text(SCENARIO)
    influxd.create_database("envs")

    refused = _run(tmp_path, scenario, {"RESULTS_URL": influxd.url})
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert f"{scenario}:3:13: target.base_url: variable BASE_URL is not set" in refused.stderr
    assert "1 problem found; nothing was started." in refused.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())

    done = _run(
        tmp_path,
        scenario,
        {"BASE_URL": demo.base_url, "RESULTS_URL": influxd.url},
        "--run-id",
        "env-run",
        "--duration",
        "4s",
        "--users",
        "5",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp_path / "runs" / "env-run" / "summary.json").read_text())
    assert summary["verdict"] == "passed"
    assert summary["totals"]["requests"] > 0
    assert summary["planned_duration_s"] == 4.0  # --duration 4s, not the file's 20 s
    rows = influxd.query("SELECT max(\"users\") FROM harness_load WHERE run_id = 'env-run'", "envs")
    assert rows and rows[0]["max"] == 5, rows  # --users 5, not the file's 50


def test_a_secret_variable_never_shows_in_what_a_run_leaves(tmp_path: Path, demo: DemoInfo, influxd: Any) -> None:
    """A value from a variable whose name reads like a secret (PAUSE_TOKEN_FILE) reaches a fault that
    fails with it in its message mid-run (the pid file is not there); the run shows and stores
    ``***`` instead: terminal, summary.json, report, results.lp and InfluxDB's events."""
    secret = "s3cr3t-f0lder"
    scenario = tmp_path / "secret-run.yaml"
    scenario.write_text(
        SCENARIO.replace("duration: 20s", "duration: 4s")
        + "faults:\n  - {name: hush, kind: process.pause, at: 1s, duration: 2s,"
        + " target: {pid_file: '${PAUSE_TOKEN_FILE}'}}\n"
    )
    influxd.create_database("envs")
    pid_file = tmp_path / secret / "gone.pid"  # never written: the fault fails naming it
    env = {"BASE_URL": demo.base_url, "RESULTS_URL": influxd.url, "PAUSE_TOKEN_FILE": str(pid_file)}
    done = _run(tmp_path, scenario, env, "--run-id", "secret-run", "--users", "5")
    output = done.stdout + done.stderr
    assert done.returncode == 3, output[-3000:]  # a fault failed: an error verdict
    run_dir = tmp_path / "runs" / "secret-run"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert "pid file *** does not exist" in summary["reason"], summary["reason"]
    assert "pid file *** does not exist" in output and secret not in output
    for path in run_dir.rglob("*"):
        if path.is_file() and path.name != "scenario.yaml":  # the file as written holds ${...}, no value
            assert secret not in path.read_text(errors="replace"), path
    rows = influxd.query("SELECT * FROM harness_events, harness_runs WHERE run_id = 'secret-run'", "envs")
    assert rows and not any(secret in str(r) for r in rows), rows
