"""Shared fixtures: isolated state directories and a check that nothing is left running.

Every test session gets its own HARNESS_DATA_DIR and HARNESS_RUNS_DIR, so the journal,
the demo system's pid files and run outputs never touch a user's real ones. After each
test module, no Locust subprocess, demo service, Ray process or influxd started during the
module may still be alive (a fault watchdog included: it exits by itself 3 s after its
last fault in tests); a leftover is killed (it is ours: it was born after the module
started and matches one of our command lines) and the module fails.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

pytest_plugins = ["tests.influx_fixtures"]

OURS = re.compile(
    r"harness\.load\.runner|harness\.demo\.|raylet|gcs_server|ray::|ray/dashboard|default_worker\.py"
    r"|influxd -config|victoria-metrics|stress-ng|harness\.chaos\.watchdog|harness\.chaos\.proxy_server"
    r"|harness\.chaos\.dns_server"
)


@pytest.fixture(scope="session", autouse=True)
def isolated_state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("harness-state")
    saved = {k: os.environ.get(k) for k in ("HARNESS_DATA_DIR", "HARNESS_RUNS_DIR", "HARNESS_WATCHDOG_IDLE_EXIT")}
    os.environ["HARNESS_DATA_DIR"] = str(base / "data")
    os.environ["HARNESS_RUNS_DIR"] = str(base / "runs")
    # A fault watchdog leaves a few seconds after its last fault, well inside the check below.
    os.environ["HARNESS_WATCHDOG_IDLE_EXIT"] = "3"
    yield base
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


def _ours_since(started: float, exclude: set[int]) -> list[psutil.Process]:
    """Processes of ours born since ``started``: they carry this session's HARNESS_DATA_DIR.

    Ray, the demo shop and influxd inherit the environment of whoever started them, so the
    session's private data directory identifies them even after they were re-parented;
    processes of other sessions on the same machine are never touched.
    """
    mine = os.environ.get("HARNESS_DATA_DIR", "")
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        try:
            if proc.info["pid"] in exclude or proc.info["create_time"] < started - 0.5 or proc.pid == os.getpid():
                continue
            cmdline = " ".join(proc.info["cmdline"] or [])
            if OURS.search(cmdline) and proc.environ().get("HARNESS_DATA_DIR") == mine:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


SESSION_PIDS: set[int] = set()


def register_session_process(pid: int) -> None:
    """Session-scoped fixtures (influxd) register their servers so module checks skip them."""
    SESSION_PIDS.add(pid)


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind() -> Iterator[None]:
    started = time.time()
    yield
    deadline = time.monotonic() + 15
    leftovers = _ours_since(started, SESSION_PIDS)
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.5)
        leftovers = _ours_since(started, SESSION_PIDS)
    if leftovers:
        described = [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in leftovers if p.is_running()]
        for proc in leftovers:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        if described:
            pytest.fail("processes left behind: " + "; ".join(described))
