"""Signals to a real ``harness run`` driver, checked on a real fault and on the real load.

Each test runs the CLI in its own session against a counting HTTP server in this process,
with a ``process.pause`` fault (SIGSTOP) on a ``sleep`` child of this test, and signals the
driver by PID:

* SIGTERM behaves like Ctrl-C: the pause is reverted, the load stops, summary.json is
  written with the verdict ``interrupted``, exit 130; ``harness runs`` showed the run as
  ``running`` before and shows ``interrupted`` after.
* Two Ctrl-C (SIGINT) while teardown is stuck (the chaos agent is SIGSTOPped, so the revert
  hangs): the second exits at once with 130, and the node's fault watchdog still resumes the
  paused process within the lease TTL + 2 s; the load stops; ``harness runs`` shows the run as
  ``aborted``; ``harness recover`` finds nothing left.
* The driver SIGSTOPped (alive but silent: a generator cut off from its driver) and then
  SIGKILLed: the generator stops its Locust processes by itself within ``CUT_OFF_AFTER`` + 2 s
  and the watchdog resumes the paused process within the lease TTL + 2 s of the silence;
  after the kill ``harness runs`` shows the run as ``aborted`` and ``harness recover`` finds
  nothing left. (A SIGKILL without the stop first is ``tests/test_watchdog.py`` and
  ``tests/test_crash_safety.py``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from harness.chaos.agent import LEASE_TTL
from harness.chaos.recover import recover
from harness.load.generator import CUT_OFF_AFTER
from harness.review.runs import RunInfo, list_runs
from tests.influx_fixtures import InfluxServer
from tests.test_generator_loss import (
    CountingTarget,
    counting_target,
    driver_log,
    end_driver,
    harness_cli,
    runners,
    scenario_file,
    start_driver,
    tree,
    wait_for,
)

DATABASE = "signals"
LOAD_STOPPED_S = 3.0  # after the driver exits, no request arrives later than this
QUIET_S = 1.5  # no request for this long: the load has stopped


@pytest.fixture
def sleeper(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """A ``sleep`` child for the pause fault, by pid file; resumed and killed by PID afterwards."""
    proc = subprocess.Popen(["sleep", "120"], stdin=subprocess.DEVNULL)
    pid_file = tmp_path / "sleeper.pid"
    pid_file.write_text(f"{proc.pid}\n")
    try:
        yield proc, pid_file
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGCONT)
            proc.kill()
        proc.wait(10)


def _paused(proc: subprocess.Popen[bytes]) -> bool:
    return bool(psutil.Process(proc.pid).status() == psutil.STATUS_STOPPED)


def _scenario(tmp: Path, name: str, target: CountingTarget, influxd: InfluxServer, pid_file: Path) -> Path:
    body = f"""  processes: 1
  stages:
    - {{name: steady, duration: 60s, users: 10, spawn_rate: 10}}
faults:
  - name: pause-sleeper
    kind: process.pause
    at: 1s
    duration: 50s
    target: {{pid_file: {pid_file}}}"""
    return scenario_file(tmp, name, target.url, influxd, DATABASE, body)


def _under_way(driver: subprocess.Popen[bytes], sleeper: subprocess.Popen[bytes], target: CountingTarget) -> None:
    """Wait until the pause is applied and requests arrive."""
    assert wait_for(lambda: driver.poll() is not None or (_paused(sleeper) and target.count > 0), 90, 0.1)
    assert driver.poll() is None, "the driver ended before the run was under way"


def _load_stopped_after(target: CountingTarget, since: float, limit: float) -> float | None:
    """Seconds from ``since`` to the last request, once none came for QUIET_S; None if load goes on."""
    quiet = wait_for(lambda: time.time() - max(target.last, since) >= QUIET_S, limit + QUIET_S, 0.05)
    return max(0.0, target.last - since) if quiet else None


def _verdict(tmp: Path, run_id: str) -> RunInfo:
    """What ``harness runs`` shows for the run (read in-process: the CLI costs a second per call)."""
    [run] = [r for r in list_runs(tmp / "runs") if r.run_id == run_id]
    return run


def _runs_row(tmp: Path, run_id: str) -> str:
    listed = harness_cli(tmp, "runs")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if f" {run_id} " in line]
    assert rows, listed.stdout
    return rows[0]


@pytest.mark.slow
def test_sigterm_reverts_the_fault_stops_load_flushes_results_and_exits_130(
    tmp_path: Path, influxd: InfluxServer, sleeper: tuple[subprocess.Popen[bytes], Path]
) -> None:
    run_id = "sig-term"
    proc, pid_file = sleeper
    with counting_target() as target:
        driver = start_driver(_scenario(tmp_path, "sigterm", target, influxd, pid_file), tmp_path, run_id)
        started: list[psutil.Process] = []
        try:
            _under_way(driver, proc, target)
            started = tree(driver.pid)
            locust = list(runners(run_id).values())
            assert _verdict(tmp_path, run_id).verdict == "running"
            termed_at = time.time()
            driver.send_signal(signal.SIGTERM)
            driver.wait(60)
            exit_s = time.time() - termed_at
            stopped_s = _load_stopped_after(target, termed_at, LOAD_STOPPED_S)
        finally:
            end_driver(driver, started)
    output = driver_log(tmp_path, run_id)
    assert driver.returncode == 130, output
    assert "Traceback" not in output
    assert not _paused(proc), "the pause was not reverted"
    assert locust and not any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in locust)
    assert stopped_s is not None and stopped_s < LOAD_STOPPED_S, stopped_s
    summary = json.loads((tmp_path / "runs" / run_id / "summary.json").read_text())
    assert summary["verdict"] == "interrupted" and summary["exit_code"] == 130
    ends = [e for e in summary["events"] if e["kind"] == "fault" and e["state"] == "end"]
    assert [e["name"] for e in ends] == ["pause-sleeper"]
    assert summary["totals"]["requests"] > 0
    # Results flushed: InfluxDB holds the run's verdict and its requests as summary.json counts them.
    rows = influxd.query(f"SELECT \"text\", verdict FROM harness_runs WHERE run_id = '{run_id}'", DATABASE)
    assert [r["verdict"] for r in rows] == ["interrupted"]
    counted = influxd.query(f"SELECT sum(\"count\") FROM harness_requests WHERE run_id = '{run_id}'", DATABASE)
    assert counted and counted[0]["sum"] == summary["totals"]["requests"]
    assert _verdict(tmp_path, run_id).verdict == "interrupted"
    print(f"SIGTERM: exit 130 after {exit_s:.2f} s, last request at most {stopped_s:.2f} s after the signal")


@pytest.mark.slow
def test_a_second_ctrl_c_exits_at_once_and_the_watchdog_still_reverts(
    tmp_path: Path, influxd: InfluxServer, sleeper: tuple[subprocess.Popen[bytes], Path]
) -> None:
    run_id = "sig-twice"
    proc, pid_file = sleeper
    agent: psutil.Process | None = None
    with counting_target() as target:
        driver = start_driver(_scenario(tmp_path, "sigtwice", target, influxd, pid_file), tmp_path, run_id)
        started: list[psutil.Process] = []
        try:
            _under_way(driver, proc, target)
            started = tree(driver.pid)
            agent = next(p for p in started if "ChaosAgent" in " ".join(p.cmdline()))
            agent.suspend()  # SIGSTOP: teardown's revert will hang on it
            time.sleep(0.5)
            driver.send_signal(signal.SIGINT)
            time.sleep(1.0)
            assert driver.poll() is None, "the first Ctrl-C did not wait for teardown"
            assert _paused(proc), "reverted although the agent is stopped"
            second_at = time.time()
            driver.send_signal(signal.SIGINT)
            driver.wait(10)
            exit_s = time.time() - second_at
            resumed = wait_for(lambda: not _paused(proc), LEASE_TTL + 2.0, 0.01)
            revert_s = time.time() - second_at
            stopped_s = _load_stopped_after(target, second_at, LOAD_STOPPED_S)
            listed = _verdict(tmp_path, run_id)
            left = recover()
        finally:
            end_driver(driver, started)  # the stopped agent too (resumed, then killed)
    output = driver_log(tmp_path, run_id)
    assert driver.returncode == 130, output
    assert "interrupted twice: exiting now" in output and "Traceback" not in output
    assert exit_s < 2.0, exit_s
    assert resumed, f"still paused {revert_s:.1f} s after the second Ctrl-C"
    assert stopped_s is not None and stopped_s < LOAD_STOPPED_S, stopped_s
    assert not (tmp_path / "runs" / run_id / "summary.json").exists()
    assert listed.verdict == "aborted" and listed.reason.startswith("interrupted twice"), listed
    assert left == [], left
    print(
        f"second Ctrl-C: exit 130 after {exit_s:.2f} s; pause reverted by the watchdog {revert_s:.2f} s after it "
        f"(lease TTL {LEASE_TTL:g} s); last request {stopped_s:.2f} s after it"
    )


@pytest.mark.slow
def test_a_generator_cut_off_from_its_driver_stops_by_itself_and_a_dead_driver_is_aborted(
    tmp_path: Path, influxd: InfluxServer, sleeper: tuple[subprocess.Popen[bytes], Path]
) -> None:
    run_id = "sig-cutoff"
    proc, pid_file = sleeper
    with counting_target() as target:
        driver = start_driver(_scenario(tmp_path, "cutoff", target, influxd, pid_file), tmp_path, run_id)
        started: list[psutil.Process] = []
        try:
            _under_way(driver, proc, target)
            started = tree(driver.pid)
            locust = list(runners(run_id).values())
            silent_at = time.time()
            os.kill(driver.pid, signal.SIGSTOP)  # alive, but no drain, command or lease renewal
            resumed = wait_for(lambda: not _paused(proc), LEASE_TTL + 2.0, 0.01)
            revert_s = time.time() - silent_at
            stopped_s = _load_stopped_after(target, silent_at, CUT_OFF_AFTER + 2.0)
            exited = wait_for(lambda: not any(p.is_running() and p.status() != "zombie" for p in locust), 5)
            exited_s = time.time() - silent_at
            assert _verdict(tmp_path, run_id).verdict == "running"  # stopped is not dead
            killed_at = time.time()
            os.kill(driver.pid, signal.SIGKILL)
            driver.wait(10)
            runs_row = _runs_row(tmp_path, run_id)
            recovered = harness_cli(tmp_path, "recover")
            listed_s = time.time() - killed_at
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(driver.pid, signal.SIGCONT)
            end_driver(driver, started)
    assert resumed, f"still paused {revert_s:.1f} s after the driver went silent"
    assert stopped_s is not None and stopped_s < CUT_OFF_AFTER + 2.0, stopped_s
    assert locust and exited, "Locust processes still running after the cut-off"
    assert " aborted " in runs_row and "died before its verdict" in runs_row, runs_row
    assert recovered.returncode == 0 and "nothing to recover" in recovered.stdout, recovered.stdout
    log = "".join(p.read_text(errors="replace") for p in (tmp_path / "runs" / run_id / "logs").glob("*.log"))
    assert "Traceback" not in log, log[-3000:]
    print(
        f"driver SIGSTOPped: pause reverted by the watchdog after {revert_s:.2f} s, last request "
        f"{stopped_s:.2f} s after (cut-off {CUT_OFF_AFTER:g} s), Locust processes exited after {exited_s:.2f} s; "
        f"SIGKILLed: 'aborted' in harness runs and recover clean {listed_s:.2f} s later"
    )


def test_a_run_without_verdict_is_running_while_its_driver_lives_and_aborted_after(tmp_path: Path) -> None:
    """``harness runs`` tells a live driver from a dead one by pid *and* process start time."""
    from harness.review.runs import ABORTED, RUNNING, UNFINISHED, note_driver_exit, write_driver_record

    runs = tmp_path / "runs"
    live = runs / "live"
    live.mkdir(parents=True)
    write_driver_record(live, "shop")  # this test's own process: alive
    sleeper = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL)
    try:
        dead = runs / "dead"
        dead.mkdir()
        record = {"pid": sleeper.pid, "create_time": psutil.Process(sleeper.pid).create_time()}
        twice = runs / "twice"
        twice.mkdir()
        recycled = runs / "recycled"
        recycled.mkdir()
        elsewhere = runs / "elsewhere"
        elsewhere.mkdir()
        for directory, extra in (
            (dead, {}),
            (twice, {}),
            (recycled, {"create_time": record["create_time"] - 100}),  # same pid, another process
            (elsewhere, {"host": "another-host"}),
        ):
            data = {**record, "host": socket.gethostname(), "scenario": "shop", "started": time.time(), **extra}
            (directory / "driver.json").write_text(json.dumps(data))
        while_alive = {r.run_id: r.verdict for r in list_runs(runs)}
        assert while_alive["dead"] == RUNNING
        assert while_alive["recycled"] == ABORTED  # the pid lives, but it is another process
    finally:
        sleeper.kill()
        sleeper.wait(10)
    note_driver_exit(twice, "interrupted twice: the driver exited at once")
    by_id = {r.run_id: r for r in list_runs(runs)}
    assert by_id["live"].verdict == RUNNING and by_id["live"].scenario == "shop"
    assert by_id["dead"].verdict == ABORTED
    assert by_id["dead"].reason.startswith(f"the driver (pid {sleeper.pid}) died before its verdict: its faults were")
    assert "harness recover" in by_id["dead"].reason
    assert by_id["twice"].reason.startswith("interrupted twice: the driver exited at once before its verdict")
    assert by_id["elsewhere"].verdict == UNFINISHED and "another-host" in by_id["elsewhere"].reason
    (dead / "summary.json").write_text(json.dumps({"run_id": "dead", "verdict": "passed", "started": 1.0}))
    assert {r.run_id: r.verdict for r in list_runs(runs)}["dead"] == "passed"  # a verdict always wins
