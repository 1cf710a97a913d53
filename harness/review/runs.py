"""The runs kept under ``runs/``, newest first, for ``harness runs``; the driver's record of a run.

Apart from reading each run's directory, this looks at one thing only: whether a run's
driver process is still alive. ``harness run`` writes ``runs/<id>/driver.json`` (its pid,
its process start time and host) before anything starts, and ``summary.json`` at the end.
A directory without ``summary.json`` is then:

* ``running`` while that process (same pid *and* start time, so never a recycled pid) is alive;
* ``aborted`` once it is gone: the driver died before its verdict (SIGKILL, a crash, a second
  Ctrl-C, its machine lost). Its faults were left to the node's fault watchdog, which
  reverts them when their lease lapses; ``harness recover`` says whether anything is left;
* ``unfinished`` when it cannot be told: no ``driver.json`` (a run from before it existed),
  or a driver on another host.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from harness.judge.summary import RunSummary

__all__ = [
    "ABORTED",
    "DRIVER_FILE",
    "RUNNING",
    "UNFINISHED",
    "RunInfo",
    "driver_alive",
    "list_runs",
    "note_driver_exit",
    "write_driver_record",
]

UNFINISHED = "unfinished"
RUNNING = "running"
ABORTED = "aborted"
DRIVER_FILE = "driver.json"
_SAME_START = 0.05  # process start times within this (s) are the same process
_SCENARIO_TAG = re.compile(r",scenario=((?:[^\s,\\]|\\.)+)")
_HEAD_BYTES = 65536


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    scenario: str
    started: float | None
    duration_s: float | None
    verdict: str
    reason: str


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _unfinished(directory: Path) -> RunInfo:
    """What a run without a verdict still tells: its scenario (from its first points) and when it began."""
    scenario = ""
    try:
        with (directory / "results.lp").open("rb") as handle:
            head = handle.read(_HEAD_BYTES).decode("utf-8", "replace")
        match = _SCENARIO_TAG.search(head)
        scenario = match.group(1).replace("\\", "") if match else ""
    except OSError:
        pass
    try:
        started: float | None = directory.stat().st_mtime
    except OSError:
        started = None
    reason = "no verdict was written: the run was killed or its machine lost; see `harness recover`"
    return RunInfo(directory.name, scenario, started, None, UNFINISHED, reason)


def write_driver_record(directory: Path, scenario: str) -> None:
    """Record the calling process as the driver of the run in ``directory`` (atomically)."""
    me = psutil.Process()
    record = {
        "pid": me.pid,
        "create_time": me.create_time(),
        "host": socket.gethostname(),
        "scenario": scenario,
        "started": time.time(),
    }
    _write_json(directory / DRIVER_FILE, record)


def note_driver_exit(directory: Path, how: str, faults_left: bool = True) -> None:
    """Add how the driver left without a verdict to its record. Never raises.

    ``faults_left``: it left without reverting (a second interrupt), so the faults were the
    watchdog's; False when its teardown ran (an internal error after the run).
    """
    try:
        record = _driver_record(directory) or {}
        record["exit"] = {"at": time.time(), "how": how, "faults_left": faults_left}
        _write_json(directory / DRIVER_FILE, record)
    except OSError:
        pass


def driver_alive(record: dict[str, Any]) -> bool | None:
    """Whether the driver a ``driver.json`` names still runs; None when that cannot be told here."""
    if record.get("host") != socket.gethostname():
        return None
    pid, started = record.get("pid"), _number(record.get("create_time"))
    if not isinstance(pid, int) or started is None:
        return None
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - started) < _SAME_START and proc.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def _write_json(path: Path, data: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _driver_record(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / DRIVER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _without_verdict(directory: Path, record: dict[str, Any]) -> RunInfo:
    """A run with a driver record but no summary: running, or aborted when its driver is gone."""
    info = _unfinished(directory)
    scenario = str(record.get("scenario") or info.scenario)
    started = _number(record.get("started")) or info.started
    pid = record.get("pid")
    alive = driver_alive(record)
    if alive is None:
        reason = f"no verdict yet; its driver (pid {pid}) ran on {record.get('host')}: not checked from here"
        return RunInfo(directory.name, scenario, started, None, UNFINISHED, reason)
    if alive:
        return RunInfo(directory.name, scenario, started, None, RUNNING, f"in progress (driver pid {pid})")
    noted = record.get("exit")
    exit_: dict[str, Any] = noted if isinstance(noted, dict) else {}
    how = str(exit_.get("how") or f"the driver (pid {pid}) died")
    if exit_.get("faults_left", True):
        reason = (
            f"{how} before its verdict: its faults were left to the fault watchdog "
            "(reverted when their lease lapsed); `harness recover` says whether anything is left"
        )
    else:
        reason = f"{how} before its verdict (faults reverted, load stopped; see harness.log)"
    return RunInfo(directory.name, scenario, started, None, ABORTED, reason)


def list_runs(runs_dir: Path, limit: int | None = None) -> list[RunInfo]:
    """Every run directory under ``runs_dir``, newest first (at most ``limit``)."""
    try:
        children = [child for child in runs_dir.iterdir() if child.is_dir()] if runs_dir.is_dir() else []
    except OSError:
        children = []
    runs = []
    for child in children:
        summary = RunSummary.read(child)
        if summary is None:
            record = _driver_record(child)
            if record is not None:
                runs.append(_without_verdict(child, record))
            # A directory with neither summary.json nor results.lp holds no run, e.g. only the
            # report.html that `harness report` wrote for a run kept in InfluxDB alone.
            elif (child / "results.lp").exists():
                runs.append(_unfinished(child))
            continue
        runs.append(
            RunInfo(
                run_id=summary.run_id or child.name,
                scenario=summary.scenario,
                started=summary.started,
                duration_s=summary.duration_s,
                verdict=summary.verdict or UNFINISHED,
                reason=summary.reason,
            )
        )
    runs.sort(key=lambda run: run.started or 0.0, reverse=True)
    return runs[:limit] if limit is not None else runs
