"""The runs kept under ``runs/``, newest first, for ``harness runs``.

Pure apart from reading each run's directory. A directory without ``summary.json`` is a run
whose driver never reached its verdict (killed, or its machine lost): it is listed as
``unfinished``, so it is not mistaken for a run that passed; its faults were the watchdog's
to revert, and ``harness recover`` says whether anything is left.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["UNFINISHED", "RunInfo", "list_runs"]

UNFINISHED = "unfinished"
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


def _summary(directory: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((directory / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


def list_runs(runs_dir: Path, limit: int | None = None) -> list[RunInfo]:
    """Every run directory under ``runs_dir``, newest first (at most ``limit``)."""
    try:
        children = [child for child in runs_dir.iterdir() if child.is_dir()] if runs_dir.is_dir() else []
    except OSError:
        children = []
    runs = []
    for child in children:
        summary = _summary(child)
        if summary is None:
            # A directory with neither summary.json nor results.lp holds no run, e.g. only the
            # report.html that `harness report` wrote for a run kept in InfluxDB alone.
            if (child / "results.lp").exists():
                runs.append(_unfinished(child))
            continue
        started, ended = _number(summary.get("started")), _number(summary.get("ended"))
        runs.append(
            RunInfo(
                run_id=str(summary.get("run_id") or child.name),
                scenario=str(summary.get("scenario") or ""),
                started=started,
                duration_s=ended - started if started is not None and ended is not None else None,
                verdict=str(summary.get("verdict") or UNFINISHED),
                reason=str(summary.get("reason") or ""),
            )
        )
    runs.sort(key=lambda run: run.started or 0.0, reverse=True)
    return runs[:limit] if limit is not None else runs
