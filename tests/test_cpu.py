"""How many Locust processes ``processes: auto`` starts: the cores the generator may really use."""

from __future__ import annotations

import os
from pathlib import Path

from harness.measure.cpu import usable_cores


def _own_cgroup(root: Path) -> Path:
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    relative = next(line[3:] for line in lines if line.startswith("0::")).lstrip("/")
    path = root / relative
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_affinity_without_a_quota(tmp_path: Path) -> None:
    (_own_cgroup(tmp_path) / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == len(os.sched_getaffinity(0))
    assert usable_cores(tmp_path / "missing") == len(os.sched_getaffinity(0))


def test_a_quota_caps_the_count_rounding_up(tmp_path: Path) -> None:
    (_own_cgroup(tmp_path) / "cpu.max").write_text("50000 100000\n")  # half a core: still one process
    assert usable_cores(tmp_path) == 1
    (_own_cgroup(tmp_path) / "cpu.max").write_text(f"{100000 * 64} 100000\n")  # more than we have
    assert usable_cores(tmp_path) == len(os.sched_getaffinity(0))
