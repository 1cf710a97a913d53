"""stress-ng processes and fill files: starting them placed in a target's cgroups, finding them
again by their tag, and removing them.

Why it is shaped this way:

* **Bounded twice.** stress-ng runs as a child in its own session, with ``--timeout`` set to
  the fault's duration plus :data:`TIMEOUT_MARGIN`: if every revert path (agent, watchdog,
  ``harness recover``) failed, stress-ng still stops by itself.
* **Findable without a PID.** Every stress-ng process of a fault inherits the environment tag
  ``HARNESS_STRESS_FAULT=<run>/<fault>`` (:data:`TAG`); a crash between starting it and
  journaling its PID leaves nothing unfindable.
* **Only our processes.** :func:`kill` sends SIGKILL to the recorded process group only while
  its leader's start time still matches, and to processes that carry the fault's tag in their
  environment; nothing is found by name.
* **Placement in the target's cgroups.** With a target, stress-ng is started through a tiny
  shell that writes its own PID into the target's ``cgroup.procs`` in every hierarchy the
  target belongs to (read from ``/proc/<pid>/cgroup``) and then ``exec``s stress-ng, so every
  stress-ng worker is *born* inside the target's cgroups: no window where a worker forked
  before a move escapes. On cgroup v1 that is one write per mounted hierarchy (cpu, cpuacct,
  memory, blkio, pids, ...): the target's CPU shares/quota and memory limit then apply to the
  stress too, and ``cpuacct.usage`` shows it. On cgroup v2 it is one write to the unified
  hierarchy, where ``cpu.stat`` ``usage_usec`` shows it (the file exists even with no
  controller enabled). On a hybrid host (both, as on the testbed) both are done. The move is
  checked afterwards by reading the stress-ng leader's ``/proc/<pid>/cgroup``.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psutil

from harness.chaos import cgroups
from harness.chaos.families.stress.params import (
    StressCpuFault,
    StressDiskFillFault,
    StressFault,
    StressIoFault,
    StressMemoryFault,
)
from harness.chaos.journal import FaultRecord
from harness.chaos.processes import normal_niceness, start_ticks
from harness.errors import FaultError

__all__ = [
    "TAG",
    "TIMEOUT_MARGIN",
    "fill",
    "fill_path",
    "kill",
    "memory_bytes",
    "reap",
    "start",
    "stress_argv",
    "tagged",
    "workdir_of",
]

#: Seconds past the fault's duration after which stress-ng stops by itself (the second net;
#: the lease TTL plus the watchdog's reaction time fit well inside it).
TIMEOUT_MARGIN = 15.0
TAG = "HARNESS_STRESS_FAULT"
_PAGE = 4096
_PLACEMENT_FAILED = 97  # exit status of the placing shell when a cgroup write failed

# Children started in this process, so they are reaped (no zombies in a long-lived agent).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

# Write $$ into each cgroup.procs file given, then exec stress-ng: its workers are born placed.
_PLACE_AND_EXEC = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 97; shift; n=$((n-1)); done; exec "$@"'


def workdir_of(fault: StressFault, run_id: str) -> str:
    base = fault.params.path if isinstance(fault, StressIoFault) else tempfile.gettempdir()
    return os.path.join(base, f"harness-stress-{run_id}-{fault.name}")


def fill_path(fault: StressDiskFillFault, run_id: str) -> str:
    return os.path.join(fault.params.path, f"harness-fill-{run_id}-{fault.name}")


def memory_bytes(fault: StressMemoryFault, pid: int | None) -> tuple[int, str]:
    """The bytes a memory fault allocates, and how a ``percent`` was resolved ("" for ``bytes``).

    A percentage is of the target's memory limit (:func:`cgroups.memory_limit`) when it has one,
    else of the node's total memory: what stress-ng's own ``--vm-bytes N%`` (a share of the
    *available* memory, which changes under load) would not give.
    """
    if fault.params.bytes is not None:
        return fault.params.bytes, ""
    if fault.params.percent is None:  # the scenario's checks refuse this; a fault built in code may not
        raise FaultError(f"fault '{fault.name}': give exactly one of bytes or percent")
    limit = cgroups.memory_limit(pid) if pid is not None else None
    if limit is not None:
        base, of = limit, f"the memory limit of pid {pid}'s cgroup"
    else:
        base, of = psutil.virtual_memory().total, "the node's total memory"
    size = max(_PAGE, int(base * fault.params.percent / 100))  # a page at least: stress-ng refuses 0
    return size, f"{fault.params.percent:g}% of {of} ({base} bytes)"


def stress_argv(
    fault: StressCpuFault | StressMemoryFault | StressIoFault, workdir: str, memory: int | None = None
) -> list[str]:
    """stress-ng's command line; ``memory`` is the resolved size of a memory fault (:func:`memory_bytes`)."""
    timeout = math.ceil(fault.duration + TIMEOUT_MARGIN)
    argv = ["stress-ng", "--timeout", f"{timeout}s", "--temp-path", workdir, "--quiet"]
    if isinstance(fault, StressCpuFault):
        argv += ["--cpu", str(fault.params.workers), "--cpu-load", str(fault.params.load)]
    elif isinstance(fault, StressMemoryFault):
        # One vm worker touching every page; --vm-hang 0 then sleeps holding them (no CPU).
        size = memory if memory is not None else fault.params.bytes
        if size is None:
            raise FaultError(f"fault '{fault.name}': the size of a percent was not resolved before the start")
        argv += ["--vm", "1", "--vm-bytes", str(size), "--vm-keep"]
        if fault.params.hold:
            argv += ["--vm-hang", "0"]
    else:
        argv += ["--hdd", str(fault.params.workers), "--hdd-bytes", "64M"]
    return argv


def reap() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


def start(argv: list[str], cgroup_files: list[str], tag: str, workdir: str) -> tuple[int, int]:
    """Start stress-ng (placed first) in its own session; return (pid, start ticks) once it runs."""
    env = {**os.environ, TAG: tag}
    stderr_path = os.path.join(workdir, "stress-ng.log")
    cmd = ["sh", "-c", _PLACE_AND_EXEC, "harness-stress", str(len(cgroup_files)), *cgroup_files, *argv]
    with open(stderr_path, "ab") as stderr:
        child = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env=env,
            start_new_session=True,
            # The stress competes like an ordinary process, not at the agent's raised priority.
            preexec_fn=normal_niceness,
        )
    _CHILDREN[child.pid] = child
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:  # until the shell has exec'd stress-ng, or died
        if child.poll() is not None:
            why = Path(stderr_path).read_text(errors="replace").strip()[-300:]
            if child.returncode == _PLACEMENT_FAILED:
                raise FaultError(f"could not move stress-ng into the target's cgroups: {why}")
            raise FaultError(f"stress-ng exited at once with status {child.returncode}: {why}")
        try:
            if os.path.basename(os.readlink(f"/proc/{child.pid}/exe")) == "stress-ng":
                break
        except OSError:
            pass
        time.sleep(0.01)
    ticks = start_ticks(child.pid)
    if ticks is None:
        raise FaultError("stress-ng vanished right after it started")
    return child.pid, ticks


def tagged(tag: str) -> list[psutil.Process]:
    """Live processes whose environment carries ``tag``: the stress-ng processes of one fault."""
    found = []
    for proc in psutil.process_iter(["name"]):
        name = proc.info.get("name") or ""
        if not (name.startswith("stress-ng") or name == "sh"):
            continue
        try:
            if proc.environ().get(TAG) == tag and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def kill(record: FaultRecord) -> list[int]:
    """SIGKILL the fault's stress-ng processes (recorded group if its leader matches, plus tagged); wait."""
    killed: list[int] = []
    members: list[psutil.Process] = []
    pid, ticks = record.details.get("stress_pid"), record.details.get("stress_start_ticks")
    if isinstance(pid, int) and isinstance(ticks, int) and pid > 0 and start_ticks(pid) == ticks:
        members = _group(pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the leader started the session: the group is ours
            killed.append(pid)
    tag = str(record.details.get("tag", ""))
    victims = tagged(tag) if tag else []
    for proc in victims:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.kill()
            killed.append(proc.pid)
    if isinstance(pid, int) and pid in _CHILDREN:
        with contextlib.suppress(subprocess.TimeoutExpired):
            _CHILDREN.pop(pid).wait(timeout=5)
    # Wait until every process is really gone: a worker freeing a large allocation stays
    # "running" for a moment after SIGKILL, and its environment (the tag) is unreadable then,
    # so the group members found before the kill are waited for as well.
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and (_alive(members + victims) or (tag and tagged(tag))):
        time.sleep(0.05)
    reap()
    if _alive(members + victims) or (tag and tagged(tag)):
        raise FaultError(f"stress-ng processes of {tag or pid} still alive after SIGKILL")
    return sorted(set(killed))


def _group(pgid: int) -> list[psutil.Process]:
    """The live members of process group ``pgid``."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(ProcessLookupError, psutil.Error):
            if os.getpgid(proc.pid) == pgid:
                members.append(proc)
    return members


def _alive(processes: list[psutil.Process]) -> bool:
    """True while one of ``processes`` still runs (a zombie has released everything: it counts as gone)."""
    for proc in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


def fill(path: str, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)  # allocated blocks: the file system really fills
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise FaultError(f"cannot fill {path} with {size} bytes: {exc.strerror or exc}") from None
    os.close(fd)
