"""Stress faults with stress-ng: ``stress.cpu``, ``stress.memory``, ``stress.io`` and ``stress.disk_fill``.

Pure of Ray, like :mod:`harness.chaos.process`: the agent calls :func:`inject`, ``harness
recover`` and the watchdog call :func:`revert`, tests call both directly.

Why it is shaped this way:

* **Bounded twice.** stress-ng runs as a child in its own session, with ``--timeout`` set to
  the fault's duration plus :data:`TIMEOUT_MARGIN`: if every revert path (agent, watchdog,
  ``harness recover``) failed, stress-ng still stops by itself.
* **Journal first.** ``injecting`` is written (fsynced) before stress-ng starts or the fill
  file is made, with what revert needs to find them without a PID: the private work
  directory, the fill file's path and an environment tag ``HARNESS_STRESS_FAULT=<run>/<fault>``
  that every stress-ng process of the fault inherits. ``injected`` then adds the PID and its
  start time (ticks since boot).
* **Only our processes.** Revert sends SIGKILL to the recorded process group only while its
  leader's start time still matches, and to processes that carry the fault's tag in their
  environment; nothing is found by name. Then the work directory and the fill file go.
* **Idempotent.** A fault already injected or reverted is not started again; one left
  ``injecting`` by a crash is cleaned (tagged processes killed) and started afresh.
  Reverting twice does nothing the second time.
* **Placement in the target's cgroups.** With a ``target``, stress-ng is started through a
  tiny shell that writes its own PID into the target's ``cgroup.procs`` in every hierarchy
  the target belongs to (read from ``/proc/<pid>/cgroup``) and then ``exec``s stress-ng, so
  every stress-ng worker is *born* inside the target's cgroups: no window where a worker
  forked before a move escapes. On cgroup v1 that is one write per mounted hierarchy (cpu,
  cpuacct, memory, blkio, pids, ...): the target's CPU shares/quota and memory limit then
  apply to the stress too, and ``cpuacct.usage`` shows it. On cgroup v2 it is one write to
  the unified hierarchy, where ``cpu.stat`` ``usage_usec`` shows it (the file exists even
  with no controller enabled). On a hybrid host (both, as on the testbed) both are done.
  The move is checked afterwards by reading the stress-ng leader's ``/proc/<pid>/cgroup``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from harness.chaos.journal import FaultRecord, FaultState, Journal
from harness.chaos.process import _start_ticks, describe_target, resolve_targets
from harness.errors import FaultError
from harness.scenario import StressCpuFault, StressDiskFillFault, StressIoFault, StressMemoryFault

__all__ = ["KINDS", "StressFault", "cgroup_procs_files", "describe", "inject", "is_stress_kind", "revert"]

log = logging.getLogger(__name__)

StressFault = StressCpuFault | StressMemoryFault | StressIoFault | StressDiskFillFault

CPU, MEMORY, IO, DISK_FILL = "stress.cpu", "stress.memory", "stress.io", "stress.disk_fill"
KINDS = (CPU, MEMORY, IO, DISK_FILL)

#: Seconds past the fault's duration after which stress-ng stops by itself (the second net;
#: the lease TTL plus the watchdog's reaction time fit well inside it).
TIMEOUT_MARGIN = 15.0
TAG = "HARNESS_STRESS_FAULT"
_PLACEMENT_FAILED = 97  # exit status of the placing shell when a cgroup write failed

# Children started in this process, so they are reaped (no zombies in a long-lived agent).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

# Write $$ into each cgroup.procs file given, then exec stress-ng: its workers are born placed.
_PLACE_AND_EXEC = 'n=$1; shift; while [ "$n" -gt 0 ]; do echo $$ > "$1" || exit 97; shift; n=$((n-1)); done; exec "$@"'


def is_stress_kind(kind: str) -> bool:
    return kind in KINDS


def describe(fault: StressFault) -> str:
    """One line for ``harness plan``: what load, for how long, in whose cgroups. Touches nothing."""
    if isinstance(fault, StressCpuFault):
        what = f"stress-ng {fault.params.workers} CPU worker(s) at {fault.params.load}% load"
    elif isinstance(fault, StressMemoryFault):
        how = "held" if fault.params.hold else "rewritten continuously"
        what = f"stress-ng allocates {fault.params.bytes} bytes, {how}"
    elif isinstance(fault, StressIoFault):
        what = f"stress-ng {fault.params.workers} hdd worker(s) in {fault.params.path}"
    else:
        return f"fill {fault.params.path} with a {fault.params.bytes}-byte file for {fault.duration:g}s"
    where = f" in the cgroups of {describe_target(fault.target)}" if fault.target is not None else ""
    return f"{what}{where} for {fault.duration:g}s"


# ---------------------------------------------------------------- cgroups


def _cgroup_mounts() -> tuple[dict[str, tuple[str, str]], tuple[str, str] | None]:
    """v1 mounts by controller (or ``name=``) and the cgroup2 mount, each as (mount root, mount point)."""
    v1: dict[str, tuple[str, str]] = {}
    v2: tuple[str, str] | None = None
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) < 5 or len(rfields) < 3:
                continue
            root, point = fields[3], fields[4]
            if rfields[0] == "cgroup2" and v2 is None:
                v2 = (root, point)
            elif rfields[0] == "cgroup":
                for option in rfields[2].split(","):
                    v1.setdefault(option, (root, point))
    return v1, v2


def cgroup_procs_files(pid: int) -> list[str]:
    """The ``cgroup.procs`` file of ``pid``'s cgroup in every mounted hierarchy it belongs to.

    Hierarchies that are not mounted here (or whose mount does not reach the process's
    cgroup, as inside a container with a private cgroup namespace) are skipped.
    """
    v1, v2 = _cgroup_mounts()
    files: list[str] = []
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FaultError(f"cannot read the cgroups of process {pid}: {exc.strerror or exc}") from None
    for line in lines:
        hierarchy_id, controllers, path = line.split(":", 2)
        mount = v2 if hierarchy_id == "0" and not controllers else v1.get(controllers.split(",")[0])
        if mount is None:
            continue
        root, point = mount
        if root != "/":
            if not (path == root or path.startswith(root + "/")):
                continue
            path = path[len(root) :] or "/"
        procs = os.path.join(point, path.lstrip("/"), "cgroup.procs")
        if os.path.exists(procs) and procs not in files:
            files.append(procs)
    return files


# ---------------------------------------------------------------- stress-ng


def _workdir(fault: StressFault, run_id: str) -> str:
    base = fault.params.path if isinstance(fault, StressIoFault) else tempfile.gettempdir()
    return os.path.join(base, f"harness-stress-{run_id}-{fault.name}")


def _fill_path(fault: StressDiskFillFault, run_id: str) -> str:
    return os.path.join(fault.params.path, f"harness-fill-{run_id}-{fault.name}")


def _stress_argv(fault: StressCpuFault | StressMemoryFault | StressIoFault, workdir: str) -> list[str]:
    timeout = math.ceil(fault.duration + TIMEOUT_MARGIN)
    argv = ["stress-ng", "--timeout", f"{timeout}s", "--temp-path", workdir, "--quiet"]
    if isinstance(fault, StressCpuFault):
        argv += ["--cpu", str(fault.params.workers), "--cpu-load", str(fault.params.load)]
    elif isinstance(fault, StressMemoryFault):
        # One vm worker touching every page; --vm-hang 0 then sleeps holding them (no CPU).
        argv += ["--vm", "1", "--vm-bytes", str(fault.params.bytes), "--vm-keep"]
        if fault.params.hold:
            argv += ["--vm-hang", "0"]
    else:
        argv += ["--hdd", str(fault.params.workers), "--hdd-bytes", "64M"]
    return argv


def _reap() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


def _start(argv: list[str], cgroup_files: list[str], tag: str, workdir: str) -> tuple[int, int]:
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
            preexec_fn=_normal_niceness,
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
    ticks = _start_ticks(child.pid)
    if ticks is None:
        raise FaultError("stress-ng vanished right after it started")
    return child.pid, ticks


def _normal_niceness() -> None:
    """In the stress-ng child before exec: nice 0, whatever the agent that starts it runs at."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 0)


def _tagged(tag: str) -> list[psutil.Process]:
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


def _kill(record: FaultRecord) -> list[int]:
    """SIGKILL the fault's stress-ng processes (recorded group if its leader matches, plus tagged); wait."""
    killed: list[int] = []
    members: list[psutil.Process] = []
    pid, ticks = record.details.get("stress_pid"), record.details.get("stress_start_ticks")
    if isinstance(pid, int) and isinstance(ticks, int) and pid > 0 and _start_ticks(pid) == ticks:
        members = _group(pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the leader started the session: the group is ours
            killed.append(pid)
    tag = str(record.details.get("tag", ""))
    victims = _tagged(tag) if tag else []
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
    while time.monotonic() < deadline and (_alive(members + victims) or (tag and _tagged(tag))):
        time.sleep(0.05)
    _reap()
    if _alive(members + victims) or (tag and _tagged(tag)):
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


def _fill(path: str, size: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.posix_fallocate(fd, 0, size)  # allocated blocks: the file system really fills
    except OSError as exc:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise FaultError(f"cannot fill {path} with {size} bytes: {exc.strerror or exc}") from None
    os.close(fd)


# ---------------------------------------------------------------- inject / revert


def inject(
    fault: StressFault,
    run_id: str,
    journal: Journal,
    *,
    protected: Iterable[tuple[int, float]] = (),
    lease_until: float | None = None,
) -> FaultRecord:
    """Start the stress now and return its ``injected`` record. Idempotent per fault name.

    Raises ``FaultError`` (after undoing what it started and journaling ``reverted``) when
    the target cannot be resolved, stress-ng cannot be placed or started, or the disk
    cannot be filled.
    """
    _reap()
    previous, settled = journal.previous_inject(run_id, fault.name, fault.kind)
    if settled:
        assert previous is not None
        return previous
    cgroup_files: list[str] = []
    target_desc = "the agent's own cgroups"
    if fault.target is not None and not isinstance(fault, StressDiskFillFault):
        try:
            target = resolve_targets(fault.target, protected=protected)[0]
            cgroup_files = cgroup_procs_files(target.pid)
        except FaultError as exc:
            raise FaultError(f"fault '{fault.name}': {exc}") from None
        target_desc = f"cgroups of pid {target.pid}"
    details: dict[str, str | int] = {
        "target": target_desc,
        "tag": f"{run_id}/{fault.name}",
        "workdir": "" if isinstance(fault, StressDiskFillFault) else _workdir(fault, run_id),
        "file": _fill_path(fault, run_id) if isinstance(fault, StressDiskFillFault) else "",
        "cgroups": ",".join(cgroup_files),
    }
    if previous is not None:  # an earlier attempt died mid-way: clean up what it may have started
        _kill(previous)
        record = previous
    else:
        record = journal.begin(fault.name, fault.kind, details, lease_until)
    try:
        if isinstance(fault, StressDiskFillFault):
            _fill(str(record.details["file"]), fault.params.bytes)
            done = record.advance(FaultState.INJECTED, size=fault.params.bytes)
        else:
            workdir = str(record.details["workdir"])
            os.makedirs(workdir, exist_ok=True)
            pid, ticks = _start(_stress_argv(fault, workdir), cgroup_files, str(record.details["tag"]), workdir)
            done = record.advance(FaultState.INJECTED, stress_pid=pid, stress_start_ticks=ticks)
    except (FaultError, OSError) as exc:
        with contextlib.suppress(FaultError):
            revert(record, journal)
        raise FaultError(f"fault '{fault.name}': {exc}") from None
    journal.append(done)
    log.info("run %s: fault %s: %s", run_id, fault.name, describe(fault))
    return done


def revert(record: FaultRecord, journal: Journal) -> None:
    """Stop the stress ``record`` describes and remove what it made; journal the outcome.

    Safe to call any number of times, and on a record left ``injecting`` by a crash (the
    tag and paths recorded then are enough). Raises ``FaultError`` after journaling
    ``revert_failed`` when a process survived SIGKILL or a file could not be removed.
    """
    latest = journal.latest(record.fault_name) or record
    if latest.state is FaultState.REVERTED:
        return
    try:
        killed = _kill(latest)
        removed: list[str] = []
        fill = str(latest.details.get("file", ""))
        if fill and os.path.lexists(fill):
            os.unlink(fill)
            removed.append(fill)
        workdir = str(latest.details.get("workdir", ""))
        if workdir and os.path.isdir(workdir):
            shutil.rmtree(workdir)
            removed.append(workdir)
    except (FaultError, OSError) as exc:
        journal.append(latest.advance(FaultState.REVERT_FAILED, error=str(exc)))
        raise FaultError(f"fault '{latest.fault_name}': revert failed: {exc}") from None
    journal.append(
        latest.advance(FaultState.REVERTED, killed=",".join(str(p) for p in killed), removed=",".join(removed))
    )
    log.info("run %s: fault %s: reverted (killed %s)", latest.run_id, latest.fault_name, killed)
