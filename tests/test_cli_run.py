"""`harness new` then `harness run` against the demo shop, as a newcomer does, and what a run
prints with `--json` and `--quiet`: real runs (Ray, Locust subprocesses, the demo), short.

`--json`: stdout is the summary and nothing else (the same document as summary.json), the
progress goes to stderr. `--quiet`: one line, the verdict with the run id. Results go to an
address where nothing listens, so they stay in the run directory (no InfluxDB needed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.demo.control import DemoInfo, down, up

pytestmark = pytest.mark.slow

BASE_PORT = 19640  # its own ports and payments subnet (10.214.140.0/24): no other test module uses them


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    directory = tmp_path_factory.mktemp("demo")
    try:
        yield up(directory=directory, base_port=BASE_PORT, restart_delay=3.0)
    finally:
        down(directory=directory)


@pytest.fixture(scope="module")
def scenario(demo: DemoInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `harness new` wrote, pointed at this module's demo, its stages cut to 2 s + 6 s."""
    where = tmp_path_factory.mktemp("new")
    done = _cli("new", "first-steps", "--base-url", demo.base_url, cwd=where)
    assert done.returncode == 0, done.stderr
    path = where / "first-steps.yaml"
    text = path.read_text()
    assert "duration: 10s" in text and "duration: 50s" in text
    path.write_text(text.replace("duration: 10s", "duration: 2s").replace("duration: 50s", "duration: 6s"))
    return path


def _cli(*args: str, cwd: Path | None = None, runs: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if runs is not None:
        env["HARNESS_RUNS_DIR"] = str(runs)
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _run(scenario: Path, runs: Path, run_id: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return _cli(
        "run", str(scenario), "--run-id", run_id, "--processes", "1", "--results-url", "http://127.0.0.1:9", *flags,
        runs=runs,
    )  # fmt: skip


def test_a_new_scenario_runs_against_the_demo_and_json_is_the_summary(scenario: Path, tmp_path: Path) -> None:
    done = _run(scenario, tmp_path, "new-json", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    printed = json.loads(done.stdout)  # stdout is one JSON document and nothing else
    written = json.loads((tmp_path / "new-json" / "summary.json").read_text())
    assert printed == written
    assert (printed["run_id"], printed["scenario"], printed["verdict"]) == ("new-json", "first-steps", "passed")
    assert printed["totals"]["requests"] > 0 and printed["totals"]["failures"] == 0
    assert sorted(slo["name"] for slo in printed["slos"]) == ["errors", "steady-latency"]
    # What the run said as it went is on stderr: its plan line and where its outputs are.
    assert "run new-json: first-steps, 8s; outputs in" in done.stderr
    assert f"summary: {tmp_path / 'new-json' / 'summary.json'}" in done.stderr
    assert "PASSED" not in done.stdout


def test_quiet_prints_the_verdict_line_alone(scenario: Path, tmp_path: Path) -> None:
    done = _run(scenario, tmp_path, "new-quiet", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "new-quiet" / "summary.json").read_text())
    assert summary["reason"] == "all 2 SLOs met"
    assert done.stdout == "PASSED: all 2 SLOs met (run new-quiet)\n"
    assert "phase=" not in done.stderr and "outputs in" not in done.stderr  # no progress, no chatter
