"""Where harness keeps things on disk. Environment variables override each default, so tests
and CI runs stay inside their own temporary directories.

Runs live in one place per user, not in the directory a command happens to be started from:
``harness run`` in one directory and ``harness runs``, ``report``, ``compare`` or
``grafana link`` in another must find the same runs. The default follows the XDG base
directory convention that the rest of the per-user state already uses
(``${XDG_DATA_HOME:-~/.local/share}/harness/runs``, or ``$HARNESS_DATA_DIR/runs``), so one
variable moves everything harness keeps; ``HARNESS_RUNS_DIR`` moves the runs alone (a CI job
that caches its runs sets ``HARNESS_RUNS_DIR=runs`` to keep them in its workspace).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_dir", "journal_dir", "run_dir", "runs_dir", "runs_dir_source"]


def _data_dir_path() -> Path:
    chosen = os.environ.get("HARNESS_DATA_DIR")
    if chosen:
        return Path(chosen)
    return Path(os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share")) / "harness"


def data_dir() -> Path:
    """Per-user state: the embedded InfluxDB, the fault journal, the demo system's pid files."""
    path = _data_dir_path()
    path.mkdir(parents=True, exist_ok=True)
    return path


def journal_dir() -> Path:
    """The node-local fault journal: every fault is recorded here before it is applied."""
    path = data_dir() / "journal"
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Per-run outputs (summary.json, results.lp, logs), the same from any working directory.

    ``$HARNESS_RUNS_DIR`` when set (a relative value is taken from the working directory, as
    a CI job that caches ``runs`` in its workspace wants), else ``runs`` under the data
    directory (``$HARNESS_DATA_DIR``, else ``${XDG_DATA_HOME:-~/.local/share}/harness``).
    Not created here: listing runs must not make directories.
    """
    chosen = os.environ.get("HARNESS_RUNS_DIR")
    return Path(chosen).absolute() if chosen else _data_dir_path().absolute() / "runs"


def runs_dir_source() -> str:
    """Where :func:`runs_dir` came from, in words, for messages that say where harness looked."""
    if os.environ.get("HARNESS_RUNS_DIR"):
        return "HARNESS_RUNS_DIR"
    if os.environ.get("HARNESS_DATA_DIR"):
        return "HARNESS_DATA_DIR/runs; HARNESS_RUNS_DIR moves it"
    return "the default; HARNESS_RUNS_DIR moves it"


def run_dir(run_id: str) -> Path:
    path = runs_dir() / run_id
    path.mkdir(parents=True, exist_ok=True)
    return path
