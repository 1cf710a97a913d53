"""Stress faults for real: stress-ng processes, placed in a cgroup the test makes, measured.

The target is a ``sleep 60`` in a private cgroup (``harness-test-<random>``) in the cpu,
cpuacct and unified hierarchies. Its CPU use is read from ``cpuacct.usage`` (v1) and
``cpu.stat`` ``usage_usec`` (v2): a sleeping target uses ~0, so what the cgroup uses is the
stress placed beside it. Every cgroup, process and file is removed at the end, also on failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from pydantic import TypeAdapter

from harness.chaos.families import stress
from harness.chaos.families.stress import stress_ng
from harness.chaos.journal import FaultState, Journal
from harness.scenario import Fault

pytestmark = pytest.mark.skipif(shutil.which("stress-ng") is None, reason="stress-ng is not installed")

HIERARCHIES = ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpuacct", "/sys/fs/cgroup/unified")
FAULT = TypeAdapter(Fault)


class Target:
    def __init__(self, proc: subprocess.Popen[bytes], dirs: list[Path], pid_file: Path) -> None:
        self.proc, self.dirs, self.pid_file = proc, dirs, pid_file

    def cpu_seconds(self) -> float:
        """CPU seconds used in the cgroup: cpuacct.usage (v1) where present, else cpu.stat (v2)."""
        for d in self.dirs:
            if (d / "cpuacct.usage").exists():
                return int((d / "cpuacct.usage").read_text()) / 1e9
        for d in self.dirs:
            if (d / "cpu.stat").exists():
                stat = dict(line.split() for line in (d / "cpu.stat").read_text().splitlines())
                return int(stat["usage_usec"]) / 1e6
        raise AssertionError("no CPU accounting in the test cgroup")

    def members(self) -> set[int]:
        return {int(p) for p in (self.dirs[0] / "cgroup.procs").read_text().split()}


@pytest.fixture()
def target(tmp_path: Path) -> Iterator[Target]:
    name = f"harness-test-{secrets.token_hex(4)}"
    dirs: list[Path] = []
    for root in HIERARCHIES:
        if os.path.isdir(root):
            d = Path(root) / name
            d.mkdir()
            dirs.append(d)
    if not dirs:
        pytest.skip("no writable cgroup hierarchy")
    proc = subprocess.Popen(["sleep", "60"])
    try:
        for d in dirs:
            (d / "cgroup.procs").write_text(str(proc.pid))
        pid_file = tmp_path / "target.pid"
        pid_file.write_text(str(proc.pid))
        yield Target(proc, dirs, pid_file)
    finally:
        proc.kill()
        proc.wait()
        for d in dirs:  # anything still inside (a failed revert) is ours: kill it, then remove
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
                for pid in pids:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, 9)
                with contextlib.suppress(OSError):
                    d.rmdir()
                    break
                time.sleep(0.1)


def _fault(kind: str, params: dict[str, object], pid_file: Path | None = None, name: str = "s") -> stress.StressFault:
    spec: dict[str, object] = {"kind": kind, "name": name, "at": 0, "duration": "20s", "params": params}
    if pid_file is not None:
        spec["target"] = {"pid_file": str(pid_file)}
    fault = FAULT.validate_python(spec)
    assert isinstance(fault, stress.StressFault)
    return fault


def _rate(target: Target, seconds: float) -> float:
    """Cores used by the target's cgroup over ``seconds``."""
    c0, t0 = target.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return (target.cpu_seconds() - c0) / (time.monotonic() - t0)


def _stress_pids(record_pid: int) -> list[psutil.Process]:
    """Live (not zombie: a killed worker's exit is reaped by its new parent, not by us) members."""
    return [
        p
        for p in psutil.process_iter(["name", "status"])
        if _pgid(p.pid) == record_pid and p.info["status"] != psutil.STATUS_ZOMBIE
    ]


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_cpu_stress_in_target_cgroup(target: Target, tmp_path: Path) -> None:
    journal = Journal("stress-run", tmp_path / "journal")
    fault = _fault("stress.cpu", {"workers": 1, "load": 50}, target.pid_file)
    idle = _rate(target, 1.0)
    try:
        record = stress.inject(fault, "stress-run", journal)
        pid = int(record.details["stress_pid"])
        assert pid in target.members()  # born inside the target's cgroup
        time.sleep(0.5)
        loaded = _rate(target, 4.0)
        print(f"idle {idle:.3f} cores, under stress.cpu 1x50%: {loaded:.3f} cores")
        # 50% of one core, +/- 15 points: stress-ng's --cpu-load duty-cycles busy/sleep in
        # ~100 ms slices, and the other tests and services share the 2 cores.
        assert 0.35 <= loaded - idle <= 0.65
    finally:
        stress.revert(journal.latest("s") or record, journal)
    assert journal.latest("s").state is FaultState.REVERTED  # type: ignore[union-attr]
    assert not _stress_pids(pid)
    assert target.members() == {target.proc.pid}
    after = _rate(target, 1.0)
    print(f"after revert: {after:.3f} cores")
    assert after < 0.05
    assert not os.path.exists(str(record.details["workdir"]))


def _group_rss(pgid: int) -> int:
    total = 0
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if _pgid(proc.pid) == pgid:
                total += proc.memory_info().rss
    return total


def test_memory_stress_rss_and_release(tmp_path: Path) -> None:
    journal = Journal("stress-run", tmp_path / "journal")
    asked = 256 * 1024 * 1024
    fault = _fault("stress.memory", {"bytes": asked})
    record = stress.inject(fault, "stress-run", journal)
    pid = int(record.details["stress_pid"])
    try:
        deadline, rss = time.monotonic() + 10, 0
        while time.monotonic() < deadline:
            rss = _group_rss(pid)
            if rss >= asked * 0.8:
                time.sleep(0.5)
                rss = _group_rss(pid)
                break
            time.sleep(0.1)
        print(f"stress.memory {asked} bytes: group RSS {rss} bytes ({rss / asked:.2f}x)")
        # +/- 20%: the worker's own RSS (stress-ng's text and heap, some MB) comes on top.
        assert asked * 0.8 <= rss <= asked * 1.2
    finally:
        stress.revert(record, journal)
    assert _group_rss(pid) == 0
    assert not _stress_pids(pid)


def test_disk_fill(tmp_path: Path) -> None:
    journal = Journal("stress-run", tmp_path / "journal")
    fault = _fault("stress.disk_fill", {"path": str(tmp_path), "bytes": "64M"})
    record = stress.inject(fault, "stress-run", journal)
    path = Path(str(record.details["file"]))
    try:
        assert path.stat().st_size == 64 * 1024 * 1024
        assert path.stat().st_blocks * 512 >= 64 * 1024 * 1024  # really allocated
    finally:
        stress.revert(record, journal)
    assert not path.exists()


def test_inject_twice_revert_once(tmp_path: Path) -> None:
    journal = Journal("stress-run", tmp_path / "journal")
    fault = _fault("stress.io", {"workers": 1, "path": str(tmp_path)})
    first = stress.inject(fault, "stress-run", journal)
    second = stress.inject(fault, "stress-run", journal)
    assert second.details["stress_pid"] == first.details["stress_pid"]
    stress.revert(first, journal)
    stress.revert(first, journal)  # idempotent
    assert not stress_ng.tagged("stress-run/s")
    assert not os.path.exists(str(first.details["workdir"]))
    assert [p for p in tmp_path.iterdir() if p.name.startswith("harness-")] == []


def test_revert_of_interrupted_inject_finds_tagged_processes(tmp_path: Path) -> None:
    """A crash between starting stress-ng and journaling ``injected``: the tag still finds it."""
    journal = Journal("stress-run", tmp_path / "journal")
    fault = _fault("stress.cpu", {"workers": 1, "load": 10})
    done = stress.inject(fault, "stress-run", journal)
    interrupted = done.advance(FaultState.INJECTING, stress_pid=0, stress_start_ticks=0)
    journal.append(interrupted)
    stress.revert(interrupted, journal)
    assert not stress_ng.tagged("stress-run/s")
