"""Process faults, the journal and recovery, on real processes this test starts.

Every signal goes to a child this module spawned (a Python sleeper carrying a unique token in
its argv); each child is resumed, killed and reaped in a ``finally``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from harness.chaos import journal as journal_mod
from harness.chaos.journal import FaultRecord, FaultState, Journal, all_outstanding
from harness.chaos.process import describe, inject, resolve_targets, revert
from harness.chaos.recover import recover
from harness.errors import FaultError
from harness.scenario import ProcessKillFault, ProcessPauseFault, ProcessTarget

RUN = "run-test-1"


# ---------------------------------------------------------------- helpers


class Child:
    """A sleeping Python child with a unique token in its command line."""

    def __init__(self) -> None:
        self.token = f"harness-chaos-test-{uuid.uuid4().hex}"
        self.popen = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; time.sleep(60)", self.token],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.pid = self.popen.pid
        self.pattern = re.escape(self.token)
        _wait_for(lambda: self.token in " ".join(_cmdline(self.pid)), what="child to exec")

    def status(self) -> str:
        return psutil.Process(self.pid).status()

    def cleanup(self) -> None:
        if self.popen.poll() is None:
            try:
                os.kill(self.pid, signal.SIGCONT)
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.popen.wait(timeout=10)


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def _wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _wait_status(child: Child, *statuses: str) -> None:
    _wait_for(lambda: child.status() in statuses, what=f"status in {statuses}")


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("HARNESS_DATA_DIR", str(tmp_path / "data"))
    return tmp_path / "data"


@pytest.fixture
def child() -> Iterator[Child]:
    proc = Child()
    try:
        yield proc
    finally:
        proc.cleanup()


def kill_fault(target: dict[str, str], sig: str = "SIGKILL", name: str = "kill-it") -> ProcessKillFault:
    return ProcessKillFault.model_validate(
        {
            "name": name,
            "kind": "process.kill",
            "at": 1,
            "duration": 0,
            "target": target,
            "params": {"signal": sig},
        }
    )


def pause_fault(target: dict[str, str], name: str = "pause-it", duration: float = 10) -> ProcessPauseFault:
    return ProcessPauseFault.model_validate(
        {"name": name, "kind": "process.pause", "at": 1, "duration": duration, "target": target}
    )


def states(journal: Journal, fault_name: str) -> list[FaultState]:
    return [r.state for r in journal.records() if r.fault_name == fault_name]


# ---------------------------------------------------------------- resolving targets


def test_resolve_by_pid_file(child: Child, tmp_path: Path) -> None:
    pid_file = tmp_path / "svc.pid"
    pid_file.write_text(f"{child.pid}\n")
    [found] = resolve_targets(ProcessTarget(pid_file=str(pid_file)))
    assert (found.pid, found.create_time) == (child.pid, psutil.Process(child.pid).create_time())
    assert found.start_ticks is not None  # Linux: the clock-step-proof start time is recorded too
    assert child.token in found.cmdline


def test_resolve_pid_file_errors(tmp_path: Path) -> None:
    with pytest.raises(FaultError, match="does not exist"):
        resolve_targets(ProcessTarget(pid_file=str(tmp_path / "missing.pid")))
    garbage = tmp_path / "garbage.pid"
    garbage.write_text("not a pid")
    with pytest.raises(FaultError, match="does not hold a process id"):
        resolve_targets(ProcessTarget(pid_file=str(garbage)))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(timeout=10)
    stale = tmp_path / "stale.pid"
    stale.write_text(str(dead.pid))
    with pytest.raises(FaultError, match="not running"):
        resolve_targets(ProcessTarget(pid_file=str(stale)))


def test_pid_file_naming_harness_itself_is_refused(tmp_path: Path) -> None:
    own = tmp_path / "self.pid"
    own.write_text(str(os.getpid()))
    with pytest.raises(FaultError, match="harness itself"):
        resolve_targets(ProcessTarget(pid_file=str(own)))


def test_resolve_by_pattern(child: Child) -> None:
    found = resolve_targets(ProcessTarget(pattern=child.pattern))
    assert [p.pid for p in found] == [child.pid]
    assert child.token in found[0].cmdline


def test_pattern_never_matches_the_current_process_or_its_ancestors(child: Child) -> None:
    me = psutil.Process()
    ancestors = {p.pid for p in me.parents()}
    own_cmdline = re.escape(" ".join(me.cmdline()))
    # Matches this test process and the child; only the child may come back.
    found = {p.pid for p in resolve_targets(ProcessTarget(pattern=f"{own_cmdline}|{child.pattern}"))}
    assert child.pid in found
    assert os.getpid() not in found
    # Matches every process with a command line: still never this one or its parents.
    everything = {p.pid for p in resolve_targets(ProcessTarget(pattern=".*"))}
    assert child.pid in everything
    assert os.getpid() not in everything
    assert not ancestors & everything


def test_pattern_matching_nothing_raises(data_dir: Path) -> None:
    token = f"no-such-process-{uuid.uuid4().hex}"
    with pytest.raises(FaultError, match="no running process matches"):
        resolve_targets(ProcessTarget(pattern=token))
    with pytest.raises(FaultError, match="fault 'kill-it': no running process matches"):
        inject(kill_fault({"pattern": token}), RUN, Journal(RUN))
    assert Journal(RUN).records() == []  # nothing was journaled: nothing was about to be applied


def test_invalid_pattern_raises() -> None:
    with pytest.raises(FaultError, match="not a valid regular expression"):
        resolve_targets(ProcessTarget(pattern="(unclosed"))


def test_describe() -> None:
    assert (
        describe(kill_fault({"pattern": r"harness\.demo\.services payments"}))
        == r"SIGKILL processes matching /harness\.demo\.services payments/"
    )
    assert describe(kill_fault({"pid_file": "/run/x.pid"}, sig="TERM")) == (
        "SIGTERM the process whose PID is in /run/x.pid"
    )
    assert describe(pause_fault({"pattern": "api"}, duration=15)) == (
        "SIGSTOP processes matching /api/, SIGCONT them after 15s"
    )


# ---------------------------------------------------------------- kill


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_kill_ends_the_process_and_records_the_signal(child: Child, data_dir: Path, sig: signal.Signals) -> None:
    journal = Journal(RUN)
    record = inject(kill_fault({"pattern": child.pattern}, sig=sig.name), RUN, journal)
    assert child.popen.wait(timeout=10) == -sig
    assert record.state is FaultState.INJECTED
    assert record.pids == [child.pid]
    assert record.details["signal"] == int(sig)
    assert record.details["signal_name"] == sig.name
    assert states(journal, "kill-it") == [FaultState.INJECTING, FaultState.INJECTED]

    revert(record, journal)  # a kill has nothing to undo: journaled as reverted
    revert(record, journal)
    assert states(journal, "kill-it") == [FaultState.INJECTING, FaultState.INJECTED, FaultState.REVERTED]
    assert journal.outstanding() == []


def test_inject_is_idempotent_per_fault_name(child: Child, data_dir: Path) -> None:
    journal = Journal(RUN)
    fault = pause_fault({"pattern": child.pattern})
    first = inject(fault, RUN, journal)
    second = inject(fault, RUN, journal)
    assert second == first
    assert states(journal, "pause-it") == [FaultState.INJECTING, FaultState.INJECTED]
    revert(first, journal)
    _wait_status(child, psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)


# ---------------------------------------------------------------- pause


def test_pause_stops_and_revert_resumes(child: Child, data_dir: Path) -> None:
    journal = Journal(RUN)
    record = inject(pause_fault({"pattern": child.pattern}), RUN, journal)
    _wait_status(child, psutil.STATUS_STOPPED)
    assert record.pids == [child.pid]
    assert record.details["signal_name"] == "SIGSTOP"
    assert [r.fault_name for r in journal.outstanding()] == ["pause-it"]

    revert(record, journal)
    _wait_status(child, psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
    revert(record, journal)  # idempotent: nothing sent, nothing journaled
    assert states(journal, "pause-it") == [FaultState.INJECTING, FaultState.INJECTED, FaultState.REVERTED]
    assert journal.latest("pause-it").details["resumed"] == str(child.pid)  # type: ignore[union-attr]
    assert journal.outstanding() == []
    assert child.popen.poll() is None  # paused and resumed, never killed


def test_pause_by_pid_file(child: Child, data_dir: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "svc.pid"
    pid_file.write_text(str(child.pid))
    journal = Journal(RUN)
    record = inject(pause_fault({"pid_file": str(pid_file)}), RUN, journal)
    _wait_status(child, psutil.STATUS_STOPPED)
    revert(record, journal)
    _wait_status(child, psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)


def test_revert_of_exited_process_is_recorded_as_gone(child: Child, data_dir: Path) -> None:
    journal = Journal(RUN)
    record = inject(pause_fault({"pattern": child.pattern}), RUN, journal)
    child.cleanup()  # the paused target dies (and is reaped) before the revert
    revert(record, journal)
    latest = journal.latest("pause-it")
    assert latest is not None and latest.state is FaultState.REVERTED
    assert latest.details["gone"] == str(child.pid)
    assert latest.details["resumed"] == ""


def test_recycled_pid_is_not_signalled(child: Child, data_dir: Path) -> None:
    """A journaled PID whose start time no longer matches is someone else now: leave it alone."""
    os.kill(child.pid, signal.SIGSTOP)
    _wait_status(child, psutil.STATUS_STOPPED)
    real = psutil.Process(child.pid).create_time()
    journal = Journal(RUN)
    stale = FaultRecord(
        run_id=RUN,
        fault_name="old-pause",
        kind="process.pause",
        state=FaultState.INJECTED,
        pids=[child.pid],
        details={"signal": int(signal.SIGSTOP), f"create_time.{child.pid}": repr(real - 3600.0)},
    )
    journal.append(stale)

    revert(stale, journal)
    time.sleep(0.2)
    assert child.status() == psutil.STATUS_STOPPED  # no SIGCONT went to the "recycled" PID
    latest = journal.latest("old-pause")
    assert latest is not None and latest.state is FaultState.REVERTED
    assert latest.details["pid_reused"] == str(child.pid)

    # The kernel's start ticks decide when recorded, even if the wall-clock start time matches.
    [resolved] = resolve_targets(ProcessTarget(pattern=child.pattern))
    assert resolved.start_ticks is not None
    ticks_differ = FaultRecord(
        run_id=RUN,
        fault_name="old-pause-2",
        kind="process.pause",
        state=FaultState.INJECTED,
        pids=[child.pid],
        details={
            f"create_time.{child.pid}": repr(real),
            f"start_ticks.{child.pid}": resolved.start_ticks + 1,
        },
    )
    journal.append(ticks_differ)
    revert(ticks_differ, journal)
    time.sleep(0.2)
    assert child.status() == psutil.STATUS_STOPPED


# ---------------------------------------------------------------- journal


def test_journal_records_survive_a_torn_last_line(data_dir: Path) -> None:
    journal = Journal(RUN)
    first = FaultRecord(RUN, "a", "process.pause", FaultState.INJECTING, [1234], {"create_time.1234": "1.0"})
    journal.append(first)
    journal.append(first.advance(FaultState.INJECTED))
    with journal.path.open("ab") as f:  # a crash in the middle of writing the next line
        f.write(b'{"run_id":"run-test-1","fault_name":"a","kind":"process.pa')
    assert states(journal, "a") == [FaultState.INJECTING, FaultState.INJECTED]

    journal.append(first.advance(FaultState.REVERTED))  # starts on a fresh line
    assert states(journal, "a") == [FaultState.INJECTING, FaultState.INJECTED, FaultState.REVERTED]
    assert journal.outstanding() == []
    assert journal.path.read_bytes().endswith(b"\n")


def test_journal_outstanding_across_runs_and_retire(data_dir: Path) -> None:
    one, two = Journal("run-a"), Journal("run-b")
    one.append(FaultRecord("run-a", "p", "process.pause", FaultState.INJECTED, [1]))
    two.append(FaultRecord("run-b", "k", "process.kill", FaultState.INJECTING, [2]))
    two.append(FaultRecord("run-b", "q", "process.pause", FaultState.REVERTED, [3]))
    assert sorted((r.run_id, r.fault_name) for r in all_outstanding()) == [("run-a", "p"), ("run-b", "k")]
    assert one.retire() is False and one.path.exists()

    one.append(FaultRecord("run-a", "p", "process.pause", FaultState.REVERTED, [1]))
    assert one.retire() is True
    assert not one.path.exists()
    assert (one.directory / f"run-a{journal_mod.DONE_SUFFIX}").exists()
    assert [r.run_id for r in all_outstanding()] == ["run-b"]

    # The same run id journaling again after retiring starts a new live file; retiring that
    # one keeps both histories in the .done file.
    one.append(FaultRecord("run-a", "again", "process.kill", FaultState.REVERTED, [4]))
    assert one.retire() is True
    done = (one.directory / f"run-a{journal_mod.DONE_SUFFIX}").read_text().splitlines()
    assert [FaultRecord.from_json(line).fault_name for line in done] == ["p", "p", "again"]


def test_concurrent_appends_never_interleave(data_dir: Path) -> None:
    def write(worker: int) -> None:
        journal = Journal(RUN)  # separate instances: only the file lock serialises them
        for i in range(50):
            journal.append(FaultRecord(RUN, f"f{worker}-{i}", "process.kill", FaultState.INJECTING, [i]))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    lines = Journal(RUN).path.read_text().splitlines()
    assert len(lines) == 400
    assert len({FaultRecord.from_json(line).fault_name for line in lines}) == 400


def test_journal_rejects_unsafe_run_ids(data_dir: Path) -> None:
    for bad in ("../etc", "a/b", "", ".hidden"):
        with pytest.raises(ValueError):
            Journal(bad)


# ---------------------------------------------------------------- recover


def test_recover_resumes_an_abandoned_pause(child: Child, data_dir: Path) -> None:
    journal = Journal(RUN)
    inject(pause_fault({"pattern": child.pattern}), RUN, journal)
    _wait_status(child, psutil.STATUS_STOPPED)
    del journal  # the agent died: nothing in memory remembers the pause, only the journal

    lines = recover()
    _wait_status(child, psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
    assert len(lines) == 1
    assert "pause-it" in lines[0] and f"sent SIGCONT to pid {child.pid}" in lines[0]
    assert all_outstanding() == []
    assert not Journal(RUN).path.exists()  # retired
    assert recover() == []  # nothing left: safe to run again


def test_recover_handles_interrupted_inject_and_kill(child: Child, data_dir: Path) -> None:
    journal = Journal("run-crashed")
    create_time = repr(psutil.Process(child.pid).create_time())
    # Crashed after SIGSTOP but before "injected" was written.
    journal.append(
        FaultRecord(
            "run-crashed",
            "p",
            "process.pause",
            FaultState.INJECTING,
            [child.pid],
            {f"create_time.{child.pid}": create_time},
        )
    )
    os.kill(child.pid, signal.SIGSTOP)
    _wait_status(child, psutil.STATUS_STOPPED)
    journal.append(
        FaultRecord("run-crashed", "k", "process.kill", FaultState.INJECTED, [999_999], {"signal_name": "SIGKILL"})
    )

    lines = recover()
    _wait_status(child, psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
    assert any("interrupted while injecting" in line and "SIGCONT" in line for line in lines)
    assert any("'k'" in line and "cannot be undone" in line for line in lines)
    assert all_outstanding() == []


def test_recover_does_not_signal_a_recycled_pid(child: Child, data_dir: Path) -> None:
    os.kill(child.pid, signal.SIGSTOP)
    _wait_status(child, psutil.STATUS_STOPPED)
    Journal(RUN).append(
        FaultRecord(RUN, "p", "process.pause", FaultState.INJECTED, [child.pid], {f"create_time.{child.pid}": "12.5"})
    )
    [line] = recover()
    assert "now belongs to another process" in line
    time.sleep(0.2)
    assert child.status() == psutil.STATUS_STOPPED


# ---------------------------------------------------------------- the Ray agent


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    ray = pytest.importorskip("ray")
    data = tmp_path_factory.mktemp("ray-data")
    saved = {k: os.environ.get(k) for k in ("HARNESS_DATA_DIR", "RAY_ENABLE_UV_RUN_RUNTIME_ENV")}
    # Ray workers inherit the driver's environment: the agent journals into this directory.
    os.environ["HARNESS_DATA_DIR"] = str(data)
    os.environ["RAY_ENABLE_UV_RUN_RUNTIME_ENV"] = "0"
    try:
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
        yield data
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _actor_is_dead(agent: Any) -> bool:
    import ray
    from ray.exceptions import RayActorError

    try:
        ray.get(agent._handle.ping.remote(), timeout=5)
    except RayActorError:
        return True
    return False


def test_chaos_agent_pauses_reverts_and_stop_reverts_the_rest(ray_cluster: Path, child: Child) -> None:
    from harness.chaos import ChaosAgent

    run_id = f"ray-{uuid.uuid4().hex[:8]}"
    agent = ChaosAgent.start(run_id)
    try:
        assert abs(agent.ping() - time.time()) < 5

        first: dict[str, Any] = agent.inject(pause_fault({"pattern": child.pattern}, name="pause-1"))
        assert first["pids"] == [child.pid] and first["state"] == "injected" and first["time"] > 0
        _wait_status(child, psutil.STATUS_STOPPED)
        assert agent.active() == ["pause-1"]
        assert agent.inject(pause_fault({"pattern": child.pattern}, name="pause-1"))["time"] == first["time"]

        reverted = agent.revert("pause-1")
        assert reverted["state"] == "reverted"
        _wait_status(child, psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
        assert agent.revert("pause-1")["state"] == "reverted"  # idempotent
        assert agent.revert("never-injected")["state"] == "not_injected"
        assert agent.active() == []

        with pytest.raises(FaultError, match="fault 'nothing': no running process matches"):
            agent.inject(pause_fault({"pattern": f"no-such-{uuid.uuid4().hex}"}, name="nothing"))

        agent.inject(pause_fault({"pattern": child.pattern}, name="pause-2"))
        _wait_status(child, psutil.STATUS_STOPPED)
        assert agent.active() == ["pause-2"]
        assert [r["fault"] for r in agent.stop()] == ["pause-2"]
        _wait_status(child, psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
        assert agent.stop() == []  # stopping twice is fine

        # The agent journaled on disk in the directory the driver gave it, and stop() retired
        # the journal once everything in it was reverted.
        journal = Journal(run_id, ray_cluster / "journal")
        assert not journal.path.exists()
        done = journal.path.with_name(journal.path.name[: -len(".jsonl")] + journal_mod.DONE_SUFFIX)
        assert [FaultRecord.from_json(line).state for line in done.read_text().splitlines()] == [
            FaultState.INJECTING,
            FaultState.INJECTED,
            FaultState.REVERTED,
            FaultState.INJECTING,
            FaultState.INJECTED,
            FaultState.REVERTED,
        ]
        with pytest.raises(FaultError, match="was stopped"):
            agent.ping()
        _wait_for(lambda: _actor_is_dead(agent), what="the agent actor to be killed")
    finally:
        agent.stop(grace=2.0)


def test_agent_killed_mid_pause_leaves_a_journal_that_recover_fixes(ray_cluster: Path, child: Child) -> None:
    import ray

    from harness.chaos import ChaosAgent

    run_id = f"ray-{uuid.uuid4().hex[:8]}"
    agent = ChaosAgent.start(run_id)
    try:
        agent.inject(pause_fault({"pattern": child.pattern}, name="pause-lost"))
        _wait_status(child, psutil.STATUS_STOPPED)
        ray.kill(agent._handle, no_restart=True)  # the agent dies with the pause in effect
        _wait_for(lambda: _actor_is_dead(agent), what="the agent actor to die")
        with pytest.raises(FaultError, match="harness recover"):
            agent.stop(grace=2.0)
        assert child.status() == psutil.STATUS_STOPPED

        [line] = recover(ray_cluster / "journal")
        assert "pause-lost" in line and f"SIGCONT to pid {child.pid}" in line
        _wait_status(child, psutil.STATUS_SLEEPING, psutil.STATUS_RUNNING)
    finally:
        agent.stop(grace=2.0)
