"""``scenarios/demo-ladder.yaml`` against the demo with catalog run as three instances: a radius that grows.

Killing one of catalog's three instances holds (the gateway retries a refused connection on the
next instance), killing two breaks the error rate: the verdict says the largest radius that held is
1 and the first that broke is 2, the third step was never injected (its instance was never
killed), the fault was reverted when step 2 broke, and the load went on to the end of the run.
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

SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "demo-ladder.yaml"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    directory = tmp_path_factory.mktemp("demo")
    try:
        yield up(directory=directory, base_port=DEFAULT_BASE_PORT, restart_delay=3.0, catalog_instances=3)
    finally:
        down(directory=directory)


def _killed(demo: DemoInfo) -> dict[str, int]:
    """How often the supervisor saw each catalog instance die of a SIGKILL, by its name."""
    log = (demo.directory / "supervisor.log").read_text()
    names = ("catalog", "catalog-2", "catalog-3")
    return {
        name: sum(1 for line in log.splitlines() if f" {name} (pid" in line and "SIGKILL" in line) for name in names
    }


def test_the_ladder_holds_at_one_instance_of_three_and_breaks_at_two(
    demo: DemoInfo, influxd: Any, tmp_path: Path
) -> None:
    influxd.create_database("harness")
    before = _killed(demo)
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp_path / "runs")}
    command = [sys.executable, "-m", "harness.cli", "run", str(SCENARIO), "--run-id", "ladder"]
    done = subprocess.run(
        [*command, "--results-url", influxd.url], env=env, capture_output=True, text=True, timeout=300
    )
    summary = json.loads((tmp_path / "runs" / "ladder" / "summary.json").read_text())
    print(done.stdout[-6000:])
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]  # must_hold: 1 held
    assert "ladder kill-catalog: held up to radius 1, broke at radius 2" in summary["reason"]
    assert "held up to radius 1, broke at radius 2" in done.stdout

    (ladder,) = summary["ladders"]
    assert (ladder["largest_held"], ladder["first_broken"], ladder["passed"]) == ("1", "2", True)
    steps = ladder["steps"]
    assert [s["state"] for s in steps] == ["held", "broke", "skipped"]
    assert [(s["instances"], s["found"]) for s in steps[:2]] == [(1, 3), (2, 3)]
    assert steps[2]["instances"] is None and "not injected" in steps[2]["reason"]
    held, broke = steps[0]["slos"][0], steps[1]["slos"][0]
    assert held["passed"] and held["measured"] < 0.05 and held["requests"] > 50, held
    assert not broke["passed"] and broke["measured"] >= 0.05, broke

    # What was done: step 1 killed one instance, step 2 two (the first again: restarted by then),
    # step 3 nothing: the third instance was never killed.
    killed = {name: n - before[name] for name, n in _killed(demo).items()}
    assert killed == {"catalog": 2, "catalog-2": 1, "catalog-3": 0}, killed

    events = summary["events"]
    starts = [e for e in events if e["kind"] == "fault" and e["state"] == "start"]
    widened = [e for e in events if e["kind"] == "ladder" and e["state"] == "widen"]
    ends = [e for e in events if e["kind"] == "fault" and e["state"] == "end"]
    skipped = [e for e in events if e["kind"] == "ladder" and e["state"] == "skipped"]
    assert len(starts) == 1 and "1 of 3 instances" in starts[0]["text"], starts
    assert len(widened) == 1 and "2 of 3 instances" in widened[0]["text"], widened
    assert len(ends) == 1 and "escalation stopped" in ends[0]["text"], ends
    assert 21.0 <= ends[0]["offset"] < 24.0, ends  # at step 2's end (22 s), not the fault's planned end (30 s)
    assert len(skipped) == 1 and "step 3" in skipped[0]["text"], skipped

    # The load went on after the revert, and the system was whole again by the end.
    assert summary["timings"]["load_window_s"] >= 35
    after = summary["windows"]["after:kill-catalog"]
    assert after["requests"] > 50 and after["error_rate"] < 0.01, after
    assert sweep.find() == []
