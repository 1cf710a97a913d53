"""The example scenarios under ``scenarios/`` run against the demo and do what their SLOs say.

Each scenario's SLOs describe the expected behaviour under its fault (checkouts fail during a
partition, slow down under loss, recover afterwards, ...), so a passing verdict (exit 0) is
the check; the measured values are printed (``-s``). After each run nothing of harness may be
left on the node (the sweep finds no tagged object). ``demo-netem.yaml`` needs a kernel with
netem: where it is missing (these VMs) the run must be refused with exit 2 before anything
starts. The demo runs at its default ports (the scenarios name them), with payments in its
network namespace and under harness's clock shim (demo-time skews its clock).
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

from harness.chaos import sweep
from harness.demo.control import DEFAULT_BASE_PORT, DemoInfo, down, up

pytestmark = [pytest.mark.slow, pytest.mark.skipif(os.geteuid() != 0, reason="the demo's namespace needs root")]

SCENARIOS = Path(__file__).resolve().parents[1] / "scenarios"
RUN = [
    "demo-partition",
    "demo-loss",
    "demo-bandwidth",
    "demo-link-down",
    "demo-proxy",
    "demo-stress",
    "demo-time",
    "demo-io",
    "demo-dns",
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    directory = tmp_path_factory.mktemp("demo")
    try:
        # payments under the clock shim (at rest, +0) for demo-time's time.skew, as
        # `harness demo up --clock-shim payments` starts it
        info = up(directory=directory, base_port=DEFAULT_BASE_PORT, restart_delay=3.0, clock_shims=("payments",))
        assert info.payments_netns is not None, info.note
        yield info
    finally:
        down(directory=directory)


def _run(name: str, tmp: Path, influx_url: str) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp / "runs")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness.cli",
            "run",
            str(SCENARIOS / f"{name}.yaml"),
            "--run-id",
            name,
            "--results-url",
            influx_url,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    path = tmp / "runs" / name / "summary.json"
    return done, json.loads(path.read_text()) if path.exists() else {}


@pytest.mark.parametrize("name", RUN)
def test_example_scenario_behaves_as_its_slos_say(name: str, demo: DemoInfo, influxd: Any, tmp_path: Path) -> None:
    influxd.create_database("harness")
    done, summary = _run(name, tmp_path, influxd.url)
    for slo in summary.get("slos", []):
        print(f"{name}: {slo.get('name')} {slo.get('window')} measured {slo.get('measured')} ({slo.get('passed')})")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert summary["verdict"] == "passed"
    left = [item.describe() for item in sweep.find()]
    assert left == [], f"left behind after {name}: {left}"


def test_netem_scenario_is_refused_where_the_kernel_has_no_netem(demo: DemoInfo, influxd: Any, tmp_path: Path) -> None:
    from harness.chaos import netem_probe as netem

    influxd.create_database("harness")
    has_netem, why = netem.available()
    done, summary = _run("demo-netem", tmp_path, influxd.url)
    if has_netem:  # a kernel with netem runs it like the others
        assert done.returncode == 0, done.stdout[-4000:]
        return
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "needs netem" in done.stdout + done.stderr, why
    assert summary == {}  # refused before the run existed
