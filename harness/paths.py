"""Where harness keeps things on disk. Environment variables override each default, so tests
and CI runs stay inside their own temporary directories."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "journal_dir", "run_dir", "runs_dir"]


def data_dir() -> Path:
    """Per-user state: the embedded InfluxDB, the fault journal, the demo system's pid files."""
    base = os.environ.get("HARNESS_DATA_DIR") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "harness"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def journal_dir() -> Path:
    """The node-local fault journal: every fault is recorded here before it is applied."""
    path = data_dir() / "journal"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Per-run outputs (summary.json, results.lp, logs): ``./runs`` unless HARNESS_RUNS_DIR is set."""
    path = Path(os.environ.get("HARNESS_RUNS_DIR") or "runs")
    return path


def run_dir(run_id: str) -> Path:
    path = runs_dir() / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path
