"""Process faults, the journal and recovery, on real processes this test starts.

Every signal goes to a child this module spawned (a Python sleeper carrying a unique token in
its argv); each child is resumed, killed and reaped in a ``finally``.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import http.client
import json
import os
import re
import shlex
import signal
import socket
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
from pydantic import ValidationError

from harness.chaos import journal as journal_mod
from harness.chaos.cgroups import cgroup_pids
from harness.chaos.families.process import describe, inject, revert
from harness.chaos.families.process.params import ProcessKillFault, ProcessPauseFault
from harness.chaos.journal import FaultRecord, FaultState, Journal, all_outstanding
from harness.chaos.processes import resolve_targets
from harness.chaos.recover import RecoverFailed, recover, revert_outstanding
from harness.errors import FaultError
from harness.scenario import ProcessTarget

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


def test_invalid_pattern_is_refused_when_read_and_when_resolved() -> None:
    # A scenario with it never validates (exit 2 before anything starts) ...
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        ProcessTarget(pattern="(unclosed")
    # ... and a target built without validation is still refused, never half-applied.
    with pytest.raises(FaultError, match="not a valid regular expression"):
        resolve_targets(ProcessTarget.model_construct(pattern="(unclosed"))


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


# ---------------------------------------------------------------- kill with a restart command

# A tiny HTTP server that answers every GET with its own PID, so a test can tell the original
# from the restarted one. Its argv carries a unique token (after the port) for pattern targets.
HTTP_SERVER = """\
import http.server, os, sys

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _http_pid(port: int) -> int | None:
    """The PID the server on ``port`` answers with, or None when nothing answers (a real GET)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        return int(response.read()) if response.status == 200 else None
    except (OSError, http.client.HTTPException, ValueError):
        return None
    finally:
        conn.close()


def _wait_answering(port: int, timeout: float = 10.0) -> tuple[int, float]:
    """(PID that answered, seconds it took) once the server on ``port`` answers."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        pid = _http_pid(port)
        if pid is not None:
            return pid, time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"nothing answered on 127.0.0.1:{port} within {timeout}s")


def _end_pid(pid: int) -> None:
    """SIGKILL one process this test (or the code under test, on its behalf) started, and wait
    until it is gone or a zombie (its parent reaps it: the restart code's reaper thread)."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # ours when we are its parent or subreaper
    _wait_for(lambda: _gone(pid), what=f"pid {pid} to end")


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _with_token(token: str) -> list[int]:
    """Live processes whose argv carries ``token``: ones this test started, directly or not."""
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if token in (proc.info.get("cmdline") or []) and proc.info.get("status") != psutil.STATUS_ZOMBIE:
            found.append(proc.pid)
    return found


class HttpService:
    """A real HTTP server on a free loopback port, its restart argv, and cleanup of every
    instance of it (original and restarted, found by their unique token) by PID."""

    def __init__(self, workdir: Path, start: bool = True) -> None:
        self.token = f"harness-http-test-{uuid.uuid4().hex}"
        self.port = _free_port()
        self.workdir = workdir
        script = workdir / "server.py"
        script.write_text(HTTP_SERVER)
        self.argv = [sys.executable, str(script), str(self.port), self.token]
        self.popen: subprocess.Popen[bytes] | None = None
        self.pid = 0
        if start:
            self.popen = subprocess.Popen(self.argv, cwd=workdir, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
            self.pid, _ = _wait_answering(self.port)
            assert self.pid == self.popen.pid

    def wait_killed(self) -> int:
        assert self.popen is not None
        return self.popen.wait(timeout=10)

    def kill_fault(self, name: str = "kill-http", sig: str = "SIGKILL", restart: list[str] | None = None) -> Any:
        return ProcessKillFault.model_validate(
            {
                "name": name,
                "kind": "process.kill",
                "at": 1,
                "duration": 2,
                "target": {"pattern": re.escape(self.token)},
                "params": {"signal": sig, "restart": restart or self.argv, "restart_cwd": str(self.workdir)},
            }
        )

    def cleanup(self) -> None:
        if self.popen is not None:
            if self.popen.poll() is None:
                self.popen.kill()
            self.popen.wait(timeout=10)
        for pid in _with_token(self.token):
            _end_pid(pid)


@pytest.fixture
def http_service(tmp_path: Path) -> Iterator[HttpService]:
    service = HttpService(tmp_path)
    try:
        yield service
    finally:
        service.cleanup()


def _restart_log(journal: Journal, name: str) -> Path:
    record = journal.latest(name)
    assert record is not None
    return Path(str(record.details["restart_log"]))


def test_kill_with_restart_brings_the_http_server_back(http_service: HttpService, data_dir: Path) -> None:
    journal = Journal(RUN)
    fault = http_service.kill_fault()
    record = inject(fault, RUN, journal)
    assert http_service.wait_killed() == -signal.SIGKILL
    assert record.details["restart"] == json.dumps(http_service.argv)
    assert record.details["restart_cwd"] == str(http_service.workdir)
    assert Path(str(record.details["restart_log"])).parent == journal.directory  # beside the journal

    # During the fault window the target does not answer, however often a client asks.
    tries = [_http_pid(http_service.port) for _ in range(10)]
    assert tries == [None] * 10

    started = time.monotonic()
    revert(record, journal)
    new_pid, waited = _wait_answering(http_service.port)
    print(f"restarted server answered {time.monotonic() - started:.3f}s after revert (polled {waited:.3f}s)")
    latest = journal.latest("kill-http")
    assert latest is not None and latest.state is FaultState.REVERTED
    assert latest.details["restarted_pid"] == new_pid != http_service.pid
    assert latest.details["restart_command"] == shlex.join(http_service.argv)
    assert psutil.Process(new_pid).cwd() == str(http_service.workdir)
    assert os.getsid(new_pid) == new_pid  # detached: its own session
    log_text = _restart_log(journal, "kill-http").read_text()
    assert f"running {shlex.join(http_service.argv)} in {http_service.workdir}" in log_text
    assert states(journal, "kill-http") == [FaultState.INJECTING, FaultState.INJECTED, FaultState.REVERTED]


def test_restart_runs_once_however_often_revert_is_called(http_service: HttpService, data_dir: Path) -> None:
    journal = Journal(RUN)
    record = inject(http_service.kill_fault(), RUN, journal)
    http_service.wait_killed()

    # Four reverters at once (agent, watchdog, recover...), each with its own Journal and the
    # stale "injected" record: the O_EXCL claim on the log lets exactly one start the command.
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def revert_now() -> None:
        try:
            barrier.wait()
            revert(record, Journal(RUN))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=revert_now) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    revert(record, journal)  # and once more afterwards, sequentially
    new_pid, _ = _wait_answering(http_service.port)
    time.sleep(0.5)  # a second server would have started by now; it would fail to bind, then exit
    assert _with_token(http_service.token) == [new_pid]
    log_text = _restart_log(journal, "kill-http").read_text()
    assert log_text.count("harness: ") == 1  # one "running ..." header: one start
    restarted = [r.details.get("restarted_pid") for r in journal.records() if r.details.get("restarted_pid")]
    assert restarted == [new_pid]
    assert journal.outstanding() == []


def test_restart_from_the_journal_alone(http_service: HttpService, data_dir: Path) -> None:
    """What the watchdog and ``harness recover`` have after the agent died: only the file."""
    inject(http_service.kill_fault(), RUN, Journal(RUN))
    http_service.wait_killed()
    assert _http_pid(http_service.port) is None

    [from_disk] = Journal(RUN).outstanding()  # a fresh reader: nothing in memory
    assert from_disk.state is FaultState.INJECTED
    line = revert_outstanding(from_disk, Journal(RUN))  # the watchdog's revert path
    new_pid, _ = _wait_answering(http_service.port)
    assert f"restarted with `{shlex.join(http_service.argv)}` (pid {new_pid}, log " in line
    assert "SIGKILL sent to" in line
    assert recover() == []  # reverted: a later recover restarts nothing
    assert _with_token(http_service.token) == [new_pid]


def test_restart_that_cannot_start_is_revert_failed_and_retried(http_service: HttpService, data_dir: Path) -> None:
    journal = Journal(RUN)
    missing = str(http_service.workdir / "no-such-binary")
    record = inject(http_service.kill_fault(restart=[missing]), RUN, journal)
    http_service.wait_killed()
    with pytest.raises(FaultError, match="could not start"):
        revert(record, journal)
    latest = journal.latest("kill-http")
    assert latest is not None and latest.state is FaultState.REVERT_FAILED
    assert "no-such-binary" in str(latest.details["restart_error"])
    assert not _restart_log(journal, "kill-http").exists()  # nothing ran: the claim is freed
    with pytest.raises(RecoverFailed, match="could not start"):  # recover retries, and says so
        recover()
    assert [r.fault_name for r in journal.outstanding()] == ["kill-http"]


def test_no_restart_while_the_target_survived_the_signal(http_service: HttpService, data_dir: Path) -> None:
    journal = Journal(RUN)
    record = inject(http_service.kill_fault(sig="SIGWINCH"), RUN, journal)  # ignored by default
    revert(record, journal)
    latest = journal.latest("kill-http")
    assert latest is not None and latest.state is FaultState.REVERTED
    assert "still running" in str(latest.details["note"]) and "restarted_pid" not in latest.details
    assert _with_token(http_service.token) == [http_service.pid]
    assert _http_pid(http_service.port) == http_service.pid


def test_describe_restart() -> None:
    fault = ProcessKillFault.model_validate(
        {
            "name": "k",
            "kind": "process.kill",
            "at": 1,
            "duration": 5,
            "target": {"pattern": "api"},
            "params": {"restart": ["/usr/bin/api", "--port", "8080"]},
        }
    )
    assert describe(fault) == "SIGKILL processes matching /api/, run `/usr/bin/api --port 8080` after 5s"
    unit = kill_fault({"systemd_unit": "nginx.service"})
    assert describe(unit) == (
        "SIGKILL the processes of systemd unit nginx.service (its control group), "
        "run `systemctl start nginx.service` after 0s"
    )
    assert describe(pause_fault({"systemd_unit": "nginx.service"}, duration=3)) == (
        "SIGSTOP the processes of systemd unit nginx.service (its control group), SIGCONT them after 3s"
    )


# ---------------------------------------------------------------- systemd_unit targets

# No systemd can run on these machines (PID 1 is not systemd; see TESTBED.md), so systemd is
# simulated: the test puts a stand-in ``systemctl`` first on PATH that answers
# ``show --property=P --value UNIT`` and ``start UNIT`` the way systemctl does, from a state
# file the test writes. The control group is REAL: the test creates it in the cgroup2
# hierarchy and the processes really live in it, so resolving and signalling go through the
# kernel's cgroup.procs exactly as on a systemd host.
FAKE_SYSTEMCTL = """\
import json, os, subprocess, sys

here = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(here, "units.json")) as f:
    units = json.load(f)

def procs(directory):
    out = []
    for root, _dirs, _files in os.walk(directory):
        with open(os.path.join(root, "cgroup.procs")) as f:
            out += [int(p) for p in f.read().split()]
    return out

def main_pid(unit):
    try:
        pid = int(open(os.path.join(here, unit + ".main")).read())
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
        return pid if state != "Z" else 0
    except (OSError, ValueError):
        return 0

args = sys.argv[1:]
verb, rest = args[0], args[1:]
names = [a for a in rest if not a.startswith("-")]
if verb == "show":
    props = [a.split("=", 1)[1] for a in rest if a.startswith("--property=")]
    unit = units.get(names[0])
    for prop in props:
        if unit is None:
            value = {"LoadState": "not-found", "MainPID": "0"}.get(prop, "")
        else:
            active = bool(procs(unit["cgroup_dir"]))
            value = {
                "LoadState": "loaded",
                "ControlGroup": unit["control_group"] if active else "",
                "MainPID": str(main_pid(names[0])),
            }.get(prop, "")
        print(value if "--value" in rest else f"{prop}={value}")
elif verb == "start":
    unit = units.get(names[0])
    if unit is None:
        print(f"Failed to start {names[0]}: Unit {names[0]} not found.", file=sys.stderr)
        sys.exit(5)
    if not procs(unit["cgroup_dir"]):
        def place():  # like systemd: the service is born in its unit's control group
            with open(os.path.join(unit["cgroup_dir"], "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
        child = subprocess.Popen(unit["start"], start_new_session=True, preexec_fn=place,
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        with open(os.path.join(here, names[0] + ".main"), "w") as f:
            f.write(str(child.pid))
else:
    print(f"stand-in systemctl: unsupported verb {verb}", file=sys.stderr)
    sys.exit(1)
"""

CGROUP2 = Path("/sys/fs/cgroup/unified")
PR_SET_CHILD_SUBREAPER = 36


def _subreaper(on: bool) -> None:
    """Services the stand-in starts are orphaned when it exits; as their subreaper this test
    process can reap them after killing them (PID 1 here does not reap orphans)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1 if on else 0, 0, 0, 0)


class FakeSystemd:
    """A stand-in systemctl on PATH plus one unit whose control group is a real cgroup."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, service: HttpService) -> None:
        self.tag = uuid.uuid4().hex[:10]
        self.unit = f"harness-test-{self.tag}.service"
        self.control_group = f"/harness-test-{self.tag}.slice/{self.unit}"
        self.cgroup = CGROUP2 / self.control_group.lstrip("/")
        self.worker_cgroup = self.cgroup / "worker"  # a sub-group: still the unit's processes
        self.slice = self.cgroup.parent
        self.service = service
        self.bin = tmp_path / "fake-systemd"
        self.bin.mkdir()
        self.started: list[int] = []
        for directory in (self.slice, self.cgroup, self.worker_cgroup):
            directory.mkdir()
        units = {
            self.unit: {"control_group": self.control_group, "cgroup_dir": str(self.cgroup), "start": service.argv}
        }
        (self.bin / "units.json").write_text(json.dumps(units))
        systemctl = self.bin / "systemctl"
        systemctl.write_text(f"#!{sys.executable}\n{FAKE_SYSTEMCTL}")
        systemctl.chmod(0o755)
        monkeypatch.setenv("PATH", f"{self.bin}{os.pathsep}{os.environ['PATH']}")

    def systemctl(self, *args: str) -> str:
        done = subprocess.run(["systemctl", *args], capture_output=True, text=True, timeout=10, check=True)
        return done.stdout.strip()

    def pids(self) -> list[int]:
        return sorted(p for p in cgroup_pids(str(self.cgroup)) if not _gone(p))

    def start_sleeper(self, cgroup: Path | None) -> int:
        """A sleeper carrying the service's token, born in ``cgroup`` (None: outside the unit)."""

        def place() -> None:
            if cgroup is not None:
                (cgroup / "cgroup.procs").write_text(str(os.getpid()))

        argv = [sys.executable, "-c", "import time; time.sleep(60)", self.service.token]
        popen = subprocess.Popen(argv, preexec_fn=place, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        self.started.append(popen.pid)
        _wait_for(lambda: self.service.token in _cmdline(popen.pid), what="sleeper to exec")
        return popen.pid

    def cleanup(self) -> None:
        for directory in (self.worker_cgroup, self.cgroup, self.slice):
            if directory.exists():
                for pid in cgroup_pids(str(directory)):
                    _end_pid(pid)  # only our processes live in a cgroup this test created
        for pid in self.started:
            _end_pid(pid)
        for directory in (self.worker_cgroup, self.cgroup, self.slice):
            if directory.exists():
                _rmdir_cgroup(directory)


def _rmdir_cgroup(directory: Path, timeout: float = 10.0) -> None:
    """Remove a cgroup this test made. The kernel answers EBUSY for a moment after its last
    process died (the task is released after it is reaped), so wait that out rather than leak it."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            directory.rmdir()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture
def fake_systemd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeSystemd]:
    if not (CGROUP2 / "cgroup.procs").is_file():
        pytest.skip(f"no cgroup2 hierarchy at {CGROUP2}")
    _subreaper(True)
    service_dir = tmp_path / "service"
    service_dir.mkdir()
    fake: FakeSystemd | None = None
    service = HttpService(service_dir, start=False)  # the unit's start command starts it
    try:
        fake = FakeSystemd(tmp_path, monkeypatch, service)
        yield fake
    finally:
        try:
            if fake is not None:
                fake.cleanup()
            service.cleanup()
        finally:
            _subreaper(False)


def test_systemd_unit_kill_acts_on_its_cgroup_and_systemctl_start_brings_it_back(
    fake_systemd: FakeSystemd, data_dir: Path
) -> None:
    """systemd is simulated (none can run here): a stand-in systemctl, a real cgroup."""
    fake = fake_systemd
    fake.systemctl("start", fake.unit)
    server_pid, _ = _wait_answering(fake.service.port)
    worker = fake.start_sleeper(fake.worker_cgroup)
    outsider = fake.start_sleeper(None)  # same token, same command line, not in the unit
    assert fake.pids() == sorted([server_pid, worker])

    [main] = [p for p in fake.systemctl("show", "--property=MainPID", "--value", fake.unit).split()]
    assert int(main) == server_pid
    resolved = resolve_targets(ProcessTarget(systemd_unit=fake.unit))
    assert [p.pid for p in resolved] == sorted([server_pid, worker])

    journal = Journal(RUN)
    record = inject(kill_fault({"systemd_unit": fake.unit}, name="kill-unit"), RUN, journal)
    assert record.pids == sorted([server_pid, worker])
    assert json.loads(str(record.details["restart"])) == ["systemctl", "start", fake.unit]
    _wait_for(lambda: _gone(server_pid) and _gone(worker), what="the unit's processes to die")
    assert _http_pid(fake.service.port) is None
    assert not _gone(outsider)  # exactly the cgroup's processes: the look-alike outside lives
    _end_pid(server_pid)  # reap (we are their subreaper) so the cgroup reads empty
    _end_pid(worker)
    assert fake.pids() == []

    revert(record, journal)
    new_pid, _ = _wait_answering(fake.service.port)
    assert new_pid != server_pid and fake.pids() == [new_pid]  # born in the unit's cgroup again
    latest = journal.latest("kill-unit")
    assert latest is not None and latest.state is FaultState.REVERTED
    assert latest.details["restart_command"] == f"systemctl start {fake.unit}"
    assert isinstance(latest.details["restarted_pid"], int)  # the systemctl process


def test_systemd_unit_pause_stops_exactly_its_cgroup(fake_systemd: FakeSystemd, data_dir: Path) -> None:
    """systemd is simulated (none can run here): a stand-in systemctl, a real cgroup."""
    fake = fake_systemd
    fake.systemctl("start", fake.unit)
    server_pid, _ = _wait_answering(fake.service.port)
    worker = fake.start_sleeper(fake.worker_cgroup)
    outsider = fake.start_sleeper(None)

    journal = Journal(RUN)
    record = inject(pause_fault({"systemd_unit": fake.unit}, name="pause-unit"), RUN, journal)
    _wait_for(
        lambda: all(psutil.Process(p).status() == psutil.STATUS_STOPPED for p in (server_pid, worker)),
        what="the unit's processes to stop",
    )
    assert psutil.Process(outsider).status() != psutil.STATUS_STOPPED
    assert _http_pid(fake.service.port) is None  # a stopped server times out

    revert(record, journal)
    assert _wait_answering(fake.service.port)[0] == server_pid  # the same process, resumed
    assert psutil.Process(worker).status() != psutil.STATUS_STOPPED


def test_systemd_unit_errors(fake_systemd: FakeSystemd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = fake_systemd
    with pytest.raises(FaultError, match=r"systemd unit nope-\w+\.service not found"):
        resolve_targets(ProcessTarget(systemd_unit=f"nope-{fake.tag}.service"))
    with pytest.raises(FaultError, match="it is not running"):  # loaded, but nothing in its cgroup
        resolve_targets(ProcessTarget(systemd_unit=fake.unit))

    # A control group holding a protected process (harness, as the agent passes it) is refused.
    fake.systemctl("start", fake.unit)
    server_pid, _ = _wait_answering(fake.service.port)
    guarded = [(server_pid, psutil.Process(server_pid).create_time())]
    with pytest.raises(FaultError, match="holds harness itself"):
        resolve_targets(ProcessTarget(systemd_unit=fake.unit), protected=guarded)

    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    with pytest.raises(FaultError, match="systemctl is not installed"):
        resolve_targets(ProcessTarget(systemd_unit=fake.unit))


@pytest.mark.skipif(not os.path.exists("/usr/bin/systemctl"), reason="no systemctl binary")
def test_real_systemctl_without_systemd_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    if psutil.Process(1).name() == "systemd":
        pytest.skip("systemd runs here")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    with pytest.raises(FaultError, match="systemctl show failed: System has not been booted with systemd"):
        resolve_targets(ProcessTarget(systemd_unit="nginx.service"))


def test_plan_shows_what_a_process_target_matches_now(child: Child, tmp_path: Path) -> None:
    """``harness plan`` resolves process targets without touching them."""
    from harness.chaos.preflight import targets
    from harness.scenario import load_scenario

    locustfile = Path(__file__).parent / "locustfiles" / "ping.py"
    scenario = tmp_path / "plan.yaml"
    scenario.write_text(
        f"""
name: plan-now
target: {{base_url: "http://127.0.0.1:9"}}
load:
  locustfile: {locustfile}
  user_classes: [{{class: Ping}}]
  stages: [{{name: s, duration: 10s, users: 1}}]
faults:
  - {{name: found, kind: process.pause, at: 1s, duration: 2s, target: {{pattern: '{child.pattern}'}}}}
  - {{name: missing, kind: process.kill, at: 1s, duration: 2s, target: {{pattern: 'no-such-process-{child.token}x'}}}}
"""
    )
    lines = targets(load_scenario(scenario))
    assert f"now: pid {child.pid} (" in lines["found"]
    assert "now: nothing (" in lines["missing"]
    assert psutil.Process(child.pid).status() != psutil.STATUS_STOPPED  # nothing was applied
