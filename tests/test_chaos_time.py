"""time.skew on a real process started under harness's clock shim (libfaketime), read by the target.

The target prints, every 100 ms, its own ``time.time()`` and ``time.monotonic()`` and the true
wall and monotonic clocks read with a raw ``clock_gettime`` system call (which libfaketime does
not intercept), so every sample says how far the target's clocks are from the truth at that
moment. Each test starts processes: run under the shared lock.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from harness.chaos import clock_shim, recover, sweep
from harness.chaos.family import HostContext, family_of
from harness.chaos.journal import FaultState, Journal
from harness.chaos.steps import InjectContext
from harness.errors import FaultError
from harness.scenario import Fault, Safety

pytestmark = pytest.mark.skipif(clock_shim.library() is None, reason="libfaketime is not installed (make setup)")

PROBE = textwrap.dedent(
    """
    import ctypes, json, select, sys, time
    libc = ctypes.CDLL(None, use_errno=True)
    class TS(ctypes.Structure):
        _fields_ = [("s", ctypes.c_long), ("ns", ctypes.c_long)]
    def raw(clock):  # SYS_clock_gettime: past libc, so past libfaketime
        ts = TS(); libc.syscall(228, clock, ctypes.byref(ts)); return ts.s + ts.ns / 1e9
    print(json.dumps({"ready": True}), flush=True)
    while True:
        select.select([], [], [], 0.1)  # time.sleep fails under libfaketime 0.9.10 with real monotonic
        print(json.dumps({"wall": time.time(), "mono": time.monotonic(), "real": raw(0), "real_mono": raw(1)}),
              flush=True)
    """
)


class Target:
    """A probe process and the samples it printed, collected on a thread."""

    def __init__(self, command: list[str], env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        self.samples: list[dict[str, float]] = []
        assert self.process.stdout is not None
        first = self.process.stdout.readline()
        assert json.loads(first) == {"ready": True}, first
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.samples.append(json.loads(line))

    def between(self, start: float, end: float) -> list[dict[str, float]]:
        """Samples whose true wall time lies in [start, end]."""
        return [s for s in self.samples if start <= s["real"] <= end]

    def stop(self) -> None:
        self.process.kill()
        self.process.wait(5)


@pytest.fixture
def shimmed(tmp_path: Path) -> Iterator[Target]:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    skew = tmp_path / "probe.faketime"
    target = Target(
        [sys.executable, "-m", "harness.chaos.clock_shim", "--file", str(skew), "--", sys.executable, str(script)]
    )
    yield target
    target.stop()


def _pid_fault(tmp_path: Path, pid: int, name: str = "skew", **params: object) -> Fault:
    pid_file = tmp_path / f"{name}.pid"
    pid_file.write_text(f"{pid}\n")
    spec = {"name": name, "kind": "time.skew", "at": 0, "duration": 5, "target": {"pid_file": str(pid_file)}}
    return TypeAdapter(Fault).validate_python({**spec, "params": params})


def _offsets(samples: list[dict[str, float]]) -> list[float]:
    return [s["wall"] - s["real"] for s in samples]


def test_offset_moves_the_wall_clock_only_during_the_window(shimmed: Target, tmp_path: Path) -> None:
    fault = _pid_fault(tmp_path, shimmed.process.pid, offset="-10m")
    family = family_of(fault.kind)
    journal = Journal("skew-offset", tmp_path / "journal")
    time.sleep(0.6)
    injected_at = time.time()
    record = family.inject(fault, InjectContext("skew-offset", journal))
    applied_at = time.time()
    assert record.state is FaultState.INJECTED and record.pids == [shimmed.process.pid]
    time.sleep(1.0)
    reverted_at = time.time()
    family.revert(record, journal)
    done_at = time.time()
    time.sleep(0.6)

    before = shimmed.between(0, injected_at)
    during = shimmed.between(applied_at, reverted_at)
    after = shimmed.between(done_at, time.time())
    assert len(before) >= 4 and len(during) >= 8 and len(after) >= 4, (len(before), len(during), len(after))
    assert all(abs(o) < 0.05 for o in _offsets(before)), _offsets(before)
    assert all(abs(o + 600) < 0.05 for o in _offsets(during)), _offsets(during)
    assert all(abs(o) < 0.05 for o in _offsets(after)), _offsets(after)
    # CLOCK_MONOTONIC is left alone throughout: its distance to the true monotonic clock never moves
    mono = [s["mono"] - s["real_mono"] for s in shimmed.samples]
    assert max(mono) - min(mono) < 0.05, (min(mono), max(mono))
    assert journal.records()[-1].state is FaultState.REVERTED
    assert clock_shim.read_skew(tmp_path / "probe.faketime") == clock_shim.REST


def test_rate_makes_the_wall_clock_drift_from_the_inject(shimmed: Target, tmp_path: Path) -> None:
    fault = _pid_fault(tmp_path, shimmed.process.pid, offset="+1h", rate=1.5)
    family = family_of(fault.kind)
    journal = Journal("skew-rate", tmp_path / "journal")
    time.sleep(1.0)  # the process has run a while: a rate must not count that time
    record = family.inject(fault, InjectContext("skew-rate", journal))
    applied_at = time.time()
    time.sleep(2.0)
    reverted_at = time.time()
    family.revert(record, journal)
    done_at = time.time()
    time.sleep(0.5)

    during = shimmed.between(applied_at, reverted_at)
    assert len(during) >= 8
    first, last = during[0], during[-1]
    rate = (last["wall"] - first["wall"]) / (last["real"] - first["real"])
    assert 1.45 < rate < 1.55, rate
    # at the inject the clock read +1h (no jump for the time the process ran before)
    start_offset = first["wall"] - first["real"] - 0.5 * (first["real"] - applied_at)
    assert abs(start_offset - 3600) < 0.1, start_offset
    after = shimmed.between(done_at, time.time())
    assert after and all(abs(o) < 0.05 for o in _offsets(after)), _offsets(after)
    rates_after = (after[-1]["wall"] - after[0]["wall"]) / (after[-1]["real"] - after[0]["real"])
    assert abs(rates_after - 1) < 0.05


def test_a_process_not_started_under_the_shim_is_refused_with_how_to(tmp_path: Path) -> None:
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    plain = Target([sys.executable, str(script)])
    try:
        fault = _pid_fault(tmp_path, plain.process.pid, offset="-10m")
        family = family_of(fault.kind)
        journal = Journal("skew-refused", tmp_path / "journal")
        with pytest.raises(FaultError, match=r"was not started under harness's clock shim; start it under"):
            family.inject(fault, InjectContext("skew-refused", journal))
        assert journal.records() == []  # refused before anything was journaled
        refusal = family.refusal(fault, HostContext(Safety()))
        assert refusal is not None and refusal.startswith(f"fault 'skew': pid {plain.process.pid} (")
        assert refusal.endswith("(the demo: `harness demo up --clock-shim payments`)"), refusal
        assert family.resolve(fault, HostContext(Safety())).startswith("; now: refused: pid ")
        assert "libfaketime" in family.requirements(fault)[0]
    finally:
        plain.stop()


def test_recover_from_the_journal_alone_and_the_sweep(shimmed: Target, tmp_path: Path) -> None:
    skew = tmp_path / "probe.faketime"
    fault = _pid_fault(tmp_path, shimmed.process.pid, offset="+2h")
    journal_dir = tmp_path / "journal"
    record = family_of(fault.kind).inject(fault, InjectContext("skew-recover", Journal("skew-recover", journal_dir)))
    assert record.details["previous.0"] == clock_shim.REST and record.details["file.0"] == str(skew)
    assert clock_shim.read_skew(skew) != clock_shim.REST
    lines = recover.recover(journal_dir)  # what `harness recover` runs: the record is all it has
    assert any(f"restored {skew}={clock_shim.REST}" in line for line in lines), lines
    assert clock_shim.read_skew(skew) == clock_shim.REST

    # A run whose journal was lost left a skew: the sweep finds it by the process's tag and rests it.
    clock_shim.write_skew(skew, clock_shim.skew_line(-600.0))
    found = [item for item in sweep.find() if item.family == "time"]
    assert [item.key for item in found] == [(str(skew),)], found
    assert f"pid {shimmed.process.pid}" in found[0].name
    done, failed = sweep.sweep()
    assert not failed and any(str(skew) in line for line in done), (done, failed)
    assert clock_shim.read_skew(skew) == clock_shim.REST
    time.sleep(0.3)
    assert abs(_offsets(shimmed.samples[-2:])[-1]) < 0.05
    assert [item for item in sweep.find() if item.family == "time"] == []


def test_offsets_and_bad_params_are_located(tmp_path: Path) -> None:
    from harness.chaos.families.time.params import signed_duration

    assert signed_duration("-10m") == -600 and signed_duration("+2h") == 7200 and signed_duration(-1.5) == -1.5
    assert clock_shim.skew_line(-600, 1.01) == "-600.000000 x1.010000" and clock_shim.skew_line(0) == "+0 x1"
    scenario = tmp_path / "bad.yaml"
    scenario.write_text(
        "name: bad\ntarget: {base_url: http://127.0.0.1:8700}\n"
        "load: {locustfile: x.py, stages: [{duration: 5s, users: 1}]}\n"
        "faults:\n"
        "  - {name: s, kind: time.skew, at: 1s, duration: 2s, target: {pid_file: /tmp/x.pid},\n"
        "     params: {offset: soon, rate: 0}}\n"
        "  - {name: t, kind: time.skew, at: 1s, duration: 2s, target: {pid_file: /tmp/x.pid}}\n"
    )
    (tmp_path / "x.py").write_text("from locust import HttpUser\nclass U(HttpUser):\n    pass\n")
    done = subprocess.run(
        [str(Path(sys.executable).with_name("harness")), "validate", str(scenario)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "HARNESS_DATA_DIR": str(tmp_path / "data")},
    )
    assert done.returncode == 2, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "bad.yaml:6:15: faults[0].params.offset: 'soon' is not a duration" in out, out
    assert "bad.yaml:6:29: faults[0].params.rate: 0 is too small: it must be greater than 0.0" in out, out
    assert "bad.yaml:7:5: faults[1].params: give an offset (e.g. -10m) or a rate other than 1" in out, out
    assert "3 problems found; nothing was started." in out, out
