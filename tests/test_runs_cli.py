"""`harness runs` and `harness compare` over a runs directory written by the project's own encoder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.review.runs import UNFINISHED, list_runs
from tests.test_baseline import T0, write_run


def _cli(runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HARNESS_RUNS_DIR": str(runs), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_runs_are_listed_newest_first_and_a_run_without_verdict_is_unfinished(tmp_path: Path) -> None:
    write_run(tmp_path, "old", started=T0 + 0.3)
    write_run(tmp_path, "new", verdict="failed", started=T0 + 100.3)
    killed = write_run(tmp_path, "killed", scenario="shop, west", started=T0 + 50.3)
    (killed / "summary.json").unlink()  # the driver died before its verdict
    os.utime(killed, (T0 + 50, T0 + 50))  # dated by its directory
    runs = list_runs(tmp_path)
    assert [r.run_id for r in runs] == ["new", "killed", "old"]
    by_id = {r.run_id: r for r in runs}
    assert by_id["killed"].verdict == UNFINISHED and by_id["killed"].scenario == "shop, west"
    assert (by_id["new"].verdict, by_id["new"].duration_s) == ("failed", 20.0)
    assert [r.run_id for r in list_runs(tmp_path, limit=1)] == ["new"]
    done = _cli(tmp_path, "runs")
    assert done.returncode == 0, done.stderr
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in done.stdout.splitlines()]
    lines = [" ".join(row) for row in rows if row and row[0] and row[0] != "run id"]
    assert [line.split()[0] for line in lines] == ["new", "killed", "old"]
    assert "failed" in lines[0] and "unfinished" in lines[1] and "passed" in lines[2]


def test_compare_passes_alike_runs_and_names_what_regressed(tmp_path: Path) -> None:
    write_run(tmp_path, "a")
    write_run(tmp_path, "b")
    write_run(tmp_path, "slow", latency_ms=70.0)
    same = _cli(tmp_path, "compare", "a", "b")
    assert same.returncode == 0, same.stdout + same.stderr
    assert "baseline a: no regression" in same.stdout
    worse = _cli(tmp_path, "compare", "a", "slow")
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "REGRESSED" in worse.stdout
    assert "p99 of POST /api/checkout in phase steady (+" in worse.stdout.replace("\n", " ")
    missing = _cli(tmp_path, "compare", "a", "nope")
    assert missing.returncode == 2 and "run nope: no " in missing.stderr + missing.stdout
    assert "Traceback" not in missing.stderr + missing.stdout


def test_a_directory_without_a_run_is_not_listed(tmp_path: Path) -> None:
    write_run(tmp_path, "real")
    (tmp_path / "report-only").mkdir()
    (tmp_path / "report-only" / "report.html").write_text("<html></html>")
    assert [r.run_id for r in list_runs(tmp_path)] == ["real"]
