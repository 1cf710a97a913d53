"""Fault leases and the node-local watchdog, with real processes and real signals.

The unit tests pause a ``sleep 60`` child through the process fault code (SIGSTOP), give it
a short lease and start the real watchdog process; the end-to-end test SIGKILLs a real
``harness run`` driver while its pause is active. Every process started here (sleepers,
watchdogs, the driver, its Ray) is signalled by PID and reaped in a ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.chaos import watchdog
from harness.chaos.families.process import inject
from harness.chaos.families.process.params import ProcessPauseFault
from harness.chaos.journal import FaultState, Journal, all_outstanding

ROOT = Path(__file__).resolve().parents[1]
TTL = 1.5


class Sleeper:
    """A ``sleep 60`` child whose PID is in a pid file, so a fault can target it."""

    def __init__(self, directory: Path) -> None:
        self.popen = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
        self.pid = self.popen.pid
        self.pid_file = directory / f"sleeper-{self.pid}.pid"
        self.pid_file.write_text(f"{self.pid}\n")

    def status(self) -> str:
        return psutil.Process(self.pid).status()

    def cleanup(self) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=10)


def _wait_for(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def _stop_pid(pid: int | None) -> None:
    """SIGTERM one process we started, SIGKILL it if it lingers, and reap it if it is our child."""
    if pid is None:
        return
    try:
        proc = psutil.Process(pid)
        proc.terminate()
        proc.wait(5)
    except psutil.TimeoutExpired:
        proc.kill()
        proc.wait(5)
    except psutil.NoSuchProcess:
        pass


def pause_fault(pid_file: Path, name: str = "pause-sleeper") -> ProcessPauseFault:
    return ProcessPauseFault.model_validate(
        {"name": name, "kind": "process.pause", "at": 1, "duration": 60, "target": {"pid_file": str(pid_file)}}
    )


@pytest.fixture
def journal_dir(tmp_path: Path) -> Path:
    return tmp_path / "journal"


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[Sleeper]:
    proc = Sleeper(tmp_path)
    try:
        yield proc
    finally:
        proc.cleanup()


@pytest.fixture
def started_watchdog(journal_dir: Path) -> Iterator[Callable[[], int]]:
    """Start the real watchdog (as the agent does) and stop it by PID afterwards."""
    pids: list[int] = []

    def start() -> int:
        pid = watchdog.ensure_running(journal_dir)
        assert pid is not None, "a watchdog was already running for a fresh directory"
        pids.append(pid)
        assert _wait_for(lambda: watchdog.running_pid(journal_dir) == pid, 10), "the watchdog did not take its lock"
        return pid

    try:
        yield start
    finally:
        for pid in pids:
            _stop_pid(pid)


def test_lapsed_lease_is_reverted_by_the_watchdog_within_ttl_plus_2s(
    journal_dir: Path, sleeper: Sleeper, started_watchdog: Callable[[], int]
) -> None:
    started_watchdog()
    journal = Journal("lease-lapse", journal_dir)
    lease_until = time.time() + TTL
    inject(pause_fault(sleeper.pid_file), journal.run_id, journal, lease_until=lease_until)
    assert sleeper.status() == psutil.STATUS_STOPPED
    assert journal.latest("pause-sleeper").lease_until == lease_until  # type: ignore[union-attr]

    assert _wait_for(lambda: sleeper.status() != psutil.STATUS_STOPPED, TTL + 2.0, step=0.01)
    resumed_at = time.time()
    assert resumed_at >= lease_until, "reverted while its lease was still valid"
    assert resumed_at - lease_until < 2.0
    # Journaled through the recover code path, and the journal retired: nothing is outstanding.
    assert _wait_for(lambda: not journal.path.exists(), 3.0)
    assert all_outstanding(journal_dir) == []
    done = (journal_dir / "lease-lapse.jsonl.done").read_text()
    assert '"state":"reverted"' in done and f'"resumed":"{sleeper.pid}"' in done


def test_renewed_lease_is_left_alone_and_lapses_when_renewals_stop(
    journal_dir: Path, sleeper: Sleeper, started_watchdog: Callable[[], int]
) -> None:
    started_watchdog()
    journal = Journal("lease-renewed", journal_dir)
    # A longer lease than the other tests': renewals come every 0.3 s, but on a machine busy
    # with a whole test suite one renewal (a journal write) can stall past 1.5 s.
    ttl = 2 * TTL
    inject(pause_fault(sleeper.pid_file), journal.run_id, journal, lease_until=time.time() + ttl)
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(0.3):
            journal.renew(time.time() + ttl)

    beat = threading.Thread(target=heartbeat, daemon=True)
    beat.start()
    try:
        # Three TTLs of renewals: the watchdog must not touch the fault.
        deadline = time.monotonic() + 3 * TTL
        while time.monotonic() < deadline:
            assert sleeper.status() == psutil.STATUS_STOPPED, "a fault with a valid lease was reverted"
            time.sleep(0.05)
        assert [r.state for r in journal.records()] == [FaultState.INJECTING, FaultState.INJECTED]
    finally:
        stop.set()
        beat.join()
    last_lease = journal.renewed_until()
    assert last_lease is not None
    assert _wait_for(lambda: sleeper.status() != psutil.STATUS_STOPPED, ttl + 2.0, step=0.01)
    assert time.time() >= last_lease
    assert _wait_for(lambda: all_outstanding(journal_dir) == [] and not journal.lease_path.exists(), 3.0)


def test_unleased_fault_is_left_to_recover_and_one_watchdog_per_directory(
    journal_dir: Path, sleeper: Sleeper, started_watchdog: Callable[[], int]
) -> None:
    pid = started_watchdog()
    assert watchdog.ensure_running(journal_dir) is None  # one is running: nothing started
    journal = Journal("unleased", journal_dir)
    inject(pause_fault(sleeper.pid_file), journal.run_id, journal)
    time.sleep(1.5)  # three scans
    assert sleeper.status() == psutil.STATUS_STOPPED
    assert psutil.Process(pid).status() != psutil.STATUS_ZOMBIE


def test_idle_watchdog_exits_by_itself(journal_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.chaos.watchdog", "--journal-dir", str(journal_dir), "--idle-exit", "1"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.wait(10) == 0
    finally:
        _stop_pid(proc.pid)
        proc.wait(5)


# ---------------------------------------------------------------- end to end, with Ray


@pytest.mark.slow
def test_sigkilled_driver_leaves_no_paused_process(tmp_path: Path, sleeper: Sleeper, influxd: Any) -> None:
    """SIGKILL ``harness run`` mid-pause: the watchdog resumes the sleeper within TTL + 2 s."""
    from tests.influx_fixtures import free_port

    influxd.create_database("lease")
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "--directory", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    scenario = tmp_path / "lease.yaml"
    scenario.write_text(
        f"""
name: lease-e2e
target:
  base_url: http://127.0.0.1:{port}
load:
  locustfile: {ROOT / "tests" / "locustfiles" / "ping.py"}
  user_classes:
    - class: Idler
  processes: 1
  stages:
    - {{name: steady, duration: 90s, users: 2, spawn_rate: 2}}
faults:
  - name: pause-sleeper
    kind: process.pause
    at: 1s
    duration: 80s
    target: {{pid_file: {sleeper.pid_file}}}
results:
  url: {influxd.url}
  database: lease
""".lstrip()
    )
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp_path / "runs")}
    driver = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", "lease-e2e"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=open(tmp_path / "driver.log", "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    tree: list[psutil.Process] = []
    journal_dir = Path(os.environ["HARNESS_DATA_DIR"]) / "journal"
    watchdog_pid: int | None = None
    try:
        assert _wait_for(
            lambda: sleeper.status() == psutil.STATUS_STOPPED or driver.poll() is not None, 90, step=0.1
        ), "the pause was never applied"
        assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
        time.sleep(2 * TTL)  # a few renewals: the lease is being kept alive
        assert sleeper.status() == psutil.STATUS_STOPPED, "the watchdog reverted a renewed fault"
        watchdog_pid = watchdog.running_pid(journal_dir)
        assert watchdog_pid is not None, "the chaos agent started no watchdog"
        # Everything the driver started (Ray, its workers, Locust), to clean up by PID later.
        tree = [p for p in psutil.Process(driver.pid).children(recursive=True) if p.pid != watchdog_pid]
        journal = Journal("lease-e2e", journal_dir)
        record = journal.latest("pause-sleeper")
        assert record is not None and record.lease_until is not None
        lease = journal.lease_expiry(record)
        assert lease is not None and lease > time.time()

        driver.send_signal(signal.SIGKILL)
        killed_at = time.time()
        driver.wait(10)
        from harness.chaos.agent import LEASE_TTL

        resumed = _wait_for(lambda: sleeper.status() != psutil.STATUS_STOPPED, LEASE_TTL + 2.0, step=0.01)
        revert_s = time.time() - killed_at
        print(f"sleeper resumed {revert_s:.2f}s after SIGKILL of the driver (lease TTL {LEASE_TTL:g}s)")
        assert resumed, f"still stopped {revert_s:.1f}s after the driver was killed"
        assert revert_s <= LEASE_TTL + 2.0

        recovered = subprocess.run(
            [sys.executable, "-m", "harness.cli", "recover"], env=env, capture_output=True, text=True, timeout=60
        )
        assert recovered.returncode == 0, recovered.stdout + recovered.stderr
        assert "nothing to recover" in recovered.stdout, recovered.stdout
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait(10)
        # Ray goes away with its driver; whatever has not within 15 s is killed by PID.
        _gone, alive = psutil.wait_procs(tree, timeout=15)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)
        _stop_pid(watchdog_pid)
        server.terminate()
        server.wait(10)
