"""Processes on this host: which ones a target names, how to tell a process from a recycled PID,
and which ones are never a fault target.

Host helpers shared by the process family (signals), the stress family (a target's cgroups),
the proxy family (its proxy process), the plan and the preflight. Pure of Ray; reads ``/proc``,
psutil and ``systemctl show``; changes nothing.

What callers may rely on:

* **Targets never include harness itself.** A pattern is matched against every process's
  full command line except the current process and its ancestors (and any ``protected``
  processes the caller names), so ``pattern: python`` cannot stop the agent, its Ray
  worker's parents, or the driver when it is an ancestor.
* **Nor PID 1 or a kernel thread.** Stopping init takes the machine (or the container) down,
  and a kernel thread is no service; a pattern skips them, a pid file or a systemd unit that
  names one is refused (:func:`never_a_target`).
* **systemd units are their control group.** A ``systemd_unit`` target is every process in
  the unit's control group (sub-groups included), found the way systemd publishes it:
  ``systemctl show --property=ControlGroup --value UNIT``, then ``cgroup.procs`` under the
  mounted hierarchies (cgroup2 first, then v1 ``name=systemd``, then any v1 hierarchy).
  Killing the cgroup, not only ``MainPID``, is what ``systemctl kill`` does by default; a
  worker left alive would keep the port and make the restart fail.
* **Start times identify processes.** :class:`ResolvedProcess` carries the start time, so a
  PID the kernel gave to a new process since is never taken for the old one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.chaos import cgroups
from harness.errors import FaultError
from harness.scenario.faults import ProcessTarget

__all__ = [
    "CREATE_TIME_TOLERANCE",
    "ResolvedProcess",
    "describe_target",
    "kill_if_same",
    "never_a_target",
    "normal_niceness",
    "now_text",
    "pid_file_refusal",
    "protected_processes",
    "resolve_targets",
    "start_ticks",
    "tagged",
]

log = logging.getLogger(__name__)

#: Start times are whole clock ticks (10 ms) plus the boot time; allow for float rounding only.
CREATE_TIME_TOLERANCE = 0.005
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
#: Seconds one ``systemctl show`` may take; it asks the local systemd over its bus.
SYSTEMCTL_TIMEOUT = 10.0


@dataclass(frozen=True)
class ResolvedProcess:
    """A process a fault will act on, identified by PID *and* start time.

    ``create_time`` is psutil's (seconds since the epoch). ``start_ticks`` is the kernel's
    start time in clock ticks since boot (Linux), which a wall-clock step cannot change;
    when both were recorded, ``start_ticks`` decides whether a PID is still the same process.
    """

    pid: int
    cmdline: str
    create_time: float
    start_ticks: int | None = None


def start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (start time in ticks since boot), or None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _ticks_of(pid: int, create_time: float) -> int | None:
    """``start_ticks`` if it belongs to the process psutil saw (guards a PID recycled in between)."""
    ticks = start_ticks(pid)
    if ticks is None:
        return None
    try:
        derived = ticks / _CLOCK_TICKS + psutil.boot_time()
    except psutil.Error:
        return None
    return ticks if abs(derived - create_time) < 1.0 else None


def protected_processes() -> list[tuple[int, float]]:
    """The current process and its ancestors as ``(pid, create_time)``: never a fault target.

    The chaos agent sends this from the driver so that, when the driver runs on the agent's
    node, a pattern cannot match it either (a PID with the same start time on another node
    is practically impossible, so passing it everywhere is harmless).
    """
    out: list[tuple[int, float]] = []
    try:
        proc: psutil.Process | None = psutil.Process()
    except psutil.Error:
        return out
    while proc is not None:
        try:
            out.append((proc.pid, proc.create_time()))
            proc = proc.parent()
        except psutil.Error:
            break
    return out


#: ``PF_KTHREAD`` in the flags of ``/proc/PID/stat``: the process is a kernel thread.
_PF_KTHREAD = 0x00200000


def never_a_target(pid: int) -> str | None:
    """Why ``pid`` may never be a fault target whoever asks (PID 1, a kernel thread), or None."""
    if pid == 1:
        return "PID 1 (init: stopping it takes the whole machine or container down)"
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        flags = int(data[data.rindex(b")") + 2 :].split()[6])
    except (OSError, ValueError, IndexError):
        return None
    return "a kernel thread" if flags & _PF_KTHREAD else None


def describe_target(target: ProcessTarget) -> str:
    """``processes matching /re/``, ``the process whose PID is in FILE`` or
    ``the processes of systemd unit U (its control group)``."""
    if target.pattern is not None:
        return f"processes matching /{target.pattern}/"
    if target.pid_file is not None:
        return f"the process whose PID is in {target.pid_file}"
    if target.systemd_unit is not None:
        return f"the processes of systemd unit {target.systemd_unit} (its control group)"
    if target.cgroup is not None:
        return f"the processes of cgroup {', '.join(target.cgroup)}"
    return "no process (the target names none of pid_file, pattern, systemd_unit, cgroup)"


# ---------------------------------------------------------------- resolving targets


def resolve_targets(target: ProcessTarget, *, protected: Iterable[tuple[int, float]] = ()) -> list[ResolvedProcess]:
    """The live processes ``target`` names, sorted by PID; raises ``FaultError`` if there are none.

    ``pid_file``: the file must hold one integer, and that process must be alive (not a
    zombie). ``pattern``: ``re.search`` over each process's command line joined with spaces;
    processes whose command line cannot be read (kernel threads, other users' processes
    without permission) are skipped. Either way, the current process, its ancestors,
    ``protected`` ``(pid, create_time)`` pairs, PID 1 and kernel threads are never returned
    (a pid file naming one of the last two is a ``FaultError``). ``systemd_unit``: every
    live process in the unit's control group and its sub-groups; a unit that is not loaded,
    has no control group or has no process in it is a ``FaultError``, and so is a control
    group that holds harness itself, a ``protected`` process, PID 1 or a kernel thread (refused,
    not skipped: killing the rest of harness's own unit would still take harness down).
    """
    guarded = _guarded(protected)
    given = [t for t in (target.pid_file, target.pattern, target.systemd_unit, target.cgroup) if t is not None]
    if len(given) > 1:
        raise FaultError("give exactly one of pid_file, pattern, systemd_unit or cgroup")
    if target.pid_file is not None:
        return [_resolve_pid_file(target.pid_file, guarded)]
    if target.pattern is not None:
        return _resolve_pattern(target.pattern, guarded)
    if target.systemd_unit is not None:
        return _resolve_unit(target.systemd_unit, guarded)
    if target.cgroup is not None:
        return _resolve_cgroups(target.cgroup, guarded)
    raise FaultError("the target names none of pid_file, pattern, systemd_unit or cgroup")


def _guarded(protected: Iterable[tuple[int, float]]) -> dict[int, float]:
    out = dict(protected_processes())
    for pid, create_time in protected:
        out.setdefault(pid, create_time)
    return out


def _is_guarded(pid: int, create_time: float, guarded: dict[int, float]) -> bool:
    known = guarded.get(pid)
    return known is not None and abs(known - create_time) <= CREATE_TIME_TOLERANCE


def _resolve_pid_file(pid_file: str, guarded: dict[int, float]) -> ResolvedProcess:
    path = Path(pid_file)
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip()
    except FileNotFoundError:
        raise FaultError(f"pid file {pid_file} does not exist") from None
    except OSError as exc:
        raise FaultError(f"cannot read pid file {pid_file}: {exc.strerror or exc}") from None
    try:
        pid = int(text.split()[0]) if text else -1
    except ValueError:
        pid = -1
    if pid <= 0:
        raise FaultError(f"pid file {pid_file} does not hold a process id (found {text[:40]!r})")
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                raise FaultError(f"process {pid} from {pid_file} has exited (zombie)")
            create_time = proc.create_time()
            cmdline = _cmdline(proc)
    except psutil.NoSuchProcess:
        raise FaultError(f"process {pid} from {pid_file} is not running") from None
    except psutil.AccessDenied:
        raise FaultError(f"no permission to inspect process {pid} from {pid_file}") from None
    if _is_guarded(pid, create_time, guarded):
        raise FaultError(f"process {pid} from {pid_file} is harness itself or one of its parents; refusing")
    if (why := never_a_target(pid)) is not None:
        raise FaultError(f"process {pid} from {pid_file} is {why}; refusing")
    return ResolvedProcess(pid, cmdline, create_time, _ticks_of(pid, create_time))


def _cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except (psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def _resolve_pattern(pattern: str, guarded: dict[int, float]) -> list[ResolvedProcess]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise FaultError(f"pattern /{pattern}/ is not a valid regular expression: {exc}") from None
    found: list[ResolvedProcess] = []
    for proc in psutil.process_iter(["pid", "cmdline", "create_time", "status"], ad_value=None):
        info = proc.info
        argv = info.get("cmdline")
        create_time = info.get("create_time")
        if not argv or create_time is None or info.get("status") == psutil.STATUS_ZOMBIE:
            continue
        cmdline = " ".join(argv)
        if not regex.search(cmdline) or _is_guarded(proc.pid, create_time, guarded):
            continue
        if never_a_target(proc.pid) is not None:  # PID 1 (kernel threads have no command line)
            continue
        found.append(ResolvedProcess(proc.pid, cmdline, float(create_time), _ticks_of(proc.pid, create_time)))
    if not found:
        raise FaultError(f"no running process matches /{pattern}/ (harness itself, its parents and PID 1 excluded)")
    return sorted(found, key=lambda p: p.pid)


def _systemctl_show(unit: str, prop: str) -> str:
    """One property of ``unit`` as ``systemctl show --property=P --value UNIT`` prints it."""
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        raise FaultError(f"systemd unit {unit}: systemctl is not installed here (a systemd_unit target needs systemd)")
    try:
        done = subprocess.run(
            [systemctl, "show", f"--property={prop}", "--value", unit],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=SYSTEMCTL_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise FaultError(f"systemd unit {unit}: systemctl show did not answer in {SYSTEMCTL_TIMEOUT:g}s") from None
    except OSError as exc:
        raise FaultError(f"systemd unit {unit}: cannot run systemctl: {exc.strerror or exc}") from None
    if done.returncode != 0:
        why = " ".join(done.stderr.split()) or f"exit status {done.returncode}"
        raise FaultError(f"systemd unit {unit}: systemctl show failed: {why}")
    return done.stdout.strip()


def _resolve_unit(unit: str, guarded: dict[int, float]) -> list[ResolvedProcess]:
    control_group = _systemctl_show(unit, "ControlGroup")
    main_text = _systemctl_show(unit, "MainPID")
    main_pid = int(main_text) if main_text.isdigit() else 0
    if not control_group:
        load_state = _systemctl_show(unit, "LoadState")
        if load_state in ("not-found", ""):
            raise FaultError(f"systemd unit {unit} not found (systemctl show reports LoadState={load_state or '?'})")
        raise FaultError(f"systemd unit {unit} has no control group: it is not running (systemctl start {unit})")
    directories = cgroups.cgroup_dirs(control_group)
    pids: set[int] = set()
    for directory in directories:  # the first hierarchy that holds processes is the unit's
        pids = cgroups.cgroup_pids(directory)
        if pids:
            break
    if not directories:
        if main_pid <= 0:
            raise FaultError(
                f"systemd unit {unit}: its control group {control_group} is under no mounted cgroup hierarchy"
            )
        log.warning("unit %s: control group %s not mounted here; acting on MainPID %d", unit, control_group, main_pid)
        pids = {main_pid}
    return _in_group(pids, f"systemd unit {unit}", f"control group {control_group}", guarded)


def _resolve_cgroups(directories: list[str], guarded: dict[int, float]) -> list[ResolvedProcess]:
    """Every live process in the cgroup ``directories`` and their sub-groups (a pod's containers)."""
    pids: set[int] = set()
    for directory in directories:
        if not os.path.isfile(os.path.join(directory, "cgroup.procs")):
            raise FaultError(f"cgroup {directory} does not exist (no cgroup.procs there)")
        pids |= cgroups.cgroup_pids(directory)
    return _in_group(pids, f"cgroup {', '.join(directories)}", "cgroup", guarded)


def _in_group(pids: set[int], what: str, group: str, guarded: dict[int, float]) -> list[ResolvedProcess]:
    """The live processes of a control group; refuses a group that holds harness, PID 1 or a
    kernel thread (killing the rest of the group would still take harness down)."""
    found: list[ResolvedProcess] = []
    for pid in sorted(pids):
        try:
            proc = psutil.Process(pid)
            with proc.oneshot():
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                create_time = proc.create_time()
                cmdline = _cmdline(proc)
        except psutil.NoSuchProcess:
            continue
        except psutil.AccessDenied:
            raise FaultError(f"no permission to inspect process {pid} of {what}") from None
        if _is_guarded(pid, create_time, guarded):
            raise FaultError(f"{what}: its {group} holds harness itself or one of its parents (pid {pid}); refusing")
        if (why := never_a_target(pid)) is not None:
            raise FaultError(f"{what}: its {group} holds {why} (pid {pid}); refusing")
        found.append(ResolvedProcess(pid, cmdline, create_time, _ticks_of(pid, create_time)))
    if not found:
        raise FaultError(f"{what} has no running process ({group} is empty)")
    return found


def tagged(names: Iterable[str]) -> list[tuple[psutil.Process, str]]:
    """Live processes whose environment carries one of the variables ``names`` (harness's tag of a
    process a fault started), each with ``NAME=value``; harness's own process is never one."""
    wanted = tuple(names)
    out: list[tuple[psutil.Process, str]] = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            env = proc.environ()
            tag = next((f"{k}={env[k]}" for k in wanted if k in env), None)
            if tag and proc.status() != psutil.STATUS_ZOMBIE and proc.pid != os.getpid():
                out.append((proc, tag))
    return out


def normal_niceness() -> None:
    """In a child a fault starts, before exec: nice 0, whatever the agent that starts it runs at
    (a restarted service, stress-ng or a proxy competes like an ordinary process)."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 0)


def kill_if_same(pid: int, create_time: float) -> None:
    """SIGCONT (a stopped process cannot die until resumed) and SIGKILL ``pid``, only while it is
    the process that started at ``create_time``; ``psutil.NoSuchProcess`` when it is gone."""
    proc = psutil.Process(pid)
    if proc.create_time() == create_time:  # the same process, not a reused PID
        proc.send_signal(signal.SIGCONT)
        proc.kill()


def now_text(target: ProcessTarget) -> str:
    """``; now: pid 12 (cmd), ...`` or why nothing matches now, for ``harness plan``: a process
    target is resolved again when the fault fires (it may start, or restart, after the plan)."""
    try:
        found = resolve_targets(target, protected=protected_processes())
    except FaultError as exc:
        return f"; now: nothing ({exc})"
    shown = ", ".join(f"pid {p.pid} ({p.cmdline[:60]})" for p in found[:5])
    more = f" and {len(found) - 5} more" if len(found) > 5 else ""
    return f"; now: {shown}{more}"


def pid_file_refusal(fault_name: str, target: ProcessTarget) -> str | None:
    """Why ``target``'s pid file is refused now (it already names PID 1 or a kernel thread), or None.

    A pid file not there yet, or not holding a PID, passes: it is resolved (and reported) when
    the fault fires. For faults on this (the driver's) node; on another node the agent refuses
    a pid file's PID 1 or kernel thread when it fires.
    """
    if target.pid_file is None:
        return None
    try:
        text = Path(target.pid_file).read_text(encoding="utf-8", errors="replace").split()
        pid = int(text[0]) if text else 0
    except (OSError, ValueError):
        return None
    why = never_a_target(pid) if pid > 0 else None
    if why is None:
        return None
    return f"fault '{fault_name}': pid file {target.pid_file} names process {pid}, {why}: never a fault target"
