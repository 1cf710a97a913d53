"""Process faults: ``process.kill`` (any signal, optionally restarted by a command) and
``process.pause`` (SIGSTOP, then SIGCONT).

Pure of Ray: the chaos agent calls these functions inside its actor, ``harness recover`` calls
:func:`revert` directly, and tests call them on processes they started.

What callers may rely on:

* **Targets never include harness itself.** A pattern is matched against every process's
  full command line except the current process and its ancestors (and any ``protected``
  processes the caller names), so ``pattern: python`` cannot stop the agent, its Ray
  worker's parents, or the driver when it is an ancestor.
* **Nor PID 1 or a kernel thread.** Stopping init takes the machine (or the container) down,
  and a kernel thread is no service; a pattern skips them, a pid file or a systemd unit that
  names one is refused (:func:`never_a_target`).
* **Journal first.** :func:`inject` writes an ``injecting`` record with the resolved PIDs
  and their start times, fsynced, before sending any signal; ``injected`` follows.
* **Idempotent.** Injecting a fault whose name is already journaled as injected or reverted
  in this run signals nothing and returns the existing record; reverting a fault that is
  already reverted does nothing. Reverting a kill without a restart command sends
  nothing and is journaled as reverted.
* **No recycled PIDs.** A PID is signalled only while its start time matches the one
  recorded at resolution, so a PID the kernel gave to a new process is never touched.
* **systemd units are their control group.** A ``systemd_unit`` target is every process in
  the unit's control group (sub-groups included), found the way systemd publishes it:
  ``systemctl show --property=ControlGroup --value UNIT``, then ``cgroup.procs`` under the
  mounted hierarchies (cgroup2 first, then v1 ``name=systemd``, then any v1 hierarchy).
  Killing the cgroup, not only ``MainPID``, is what ``systemctl kill`` does by default; a
  worker left alive would keep the port and make the restart fail.
* **A restart runs at most once.** A kill with a restart command (``params.restart``, or
  ``systemctl start UNIT`` for a unit) starts it when the fault is reverted: detached in its
  own session, at normal priority, output to a log file beside the journal, no shell. The
  command, its working directory and the log path are journaled with the kill, so the
  watchdog or ``harness recover`` can restart from the journal alone. The log file is
  created with ``O_EXCL`` before the command is started, and that claim is what makes the
  restart happen once even when the agent, the watchdog and ``recover`` revert at the same
  moment: whoever creates the file starts the command; a later revert finds the file, or the
  ``reverted`` record, and starts nothing. If a recorded target is still running at revert
  time (the signal did not end it), nothing is restarted: a second instance would only
  collide with the first.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.chaos.journal import FaultRecord, FaultState, Journal
from harness.errors import FaultError
from harness.scenario import ProcessKillFault, ProcessPauseFault, ProcessTarget

__all__ = [
    "ProcessFault",
    "ResolvedProcess",
    "cgroup_pids",
    "describe",
    "describe_target",
    "inject",
    "never_a_target",
    "protected_processes",
    "resolve_targets",
    "restart_command",
    "revert",
]

log = logging.getLogger(__name__)

ProcessFault = ProcessKillFault | ProcessPauseFault

KILL = "process.kill"
PAUSE = "process.pause"
KINDS = (KILL, PAUSE)

# Start times are whole clock ticks (10 ms) plus the boot time; allow for float rounding only.
_CREATE_TIME_TOLERANCE = 0.005
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


def _start_ticks(pid: int) -> int | None:
    """Field 22 of ``/proc/PID/stat`` (start time in ticks since boot), or None where unreadable."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return int(data[data.rindex(b")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _ticks_of(pid: int, create_time: float) -> int | None:
    """``_start_ticks`` if it belongs to the process psutil saw (guards a PID recycled in between)."""
    ticks = _start_ticks(pid)
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


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_target(target: ProcessTarget) -> str:
    """``processes matching /re/``, ``the process whose PID is in FILE`` or
    ``the processes of systemd unit U (its control group)``."""
    if target.pattern is not None:
        return f"processes matching /{target.pattern}/"
    if target.pid_file is not None:
        return f"the process whose PID is in {target.pid_file}"
    if target.systemd_unit is not None:
        return f"the processes of systemd unit {target.systemd_unit} (its control group)"
    return "no process (the target names none of pid_file, pattern, systemd_unit)"


def restart_command(fault: ProcessKillFault) -> list[str] | None:
    """The argv a revert of ``fault`` runs: ``params.restart``, else ``systemctl start UNIT`` for a
    unit target, else None (the kill is not undone)."""
    if fault.params.restart:
        return list(fault.params.restart)
    if fault.target.systemd_unit is not None:
        return ["systemctl", "start", fault.target.systemd_unit]
    return None


def describe(fault: ProcessFault) -> str:
    """What the fault will do, in one line, for ``harness plan`` and dry runs. Touches nothing.

    e.g. ``SIGKILL processes matching /harness\\.demo\\.services payments/``,
    ``SIGKILL the processes of systemd unit x.service (its control group), run
    `systemctl start x.service` after 5s`` or
    ``SIGSTOP the process whose PID is in /run/x.pid, SIGCONT it after 10s``.
    """
    what = describe_target(fault.target)
    if isinstance(fault, ProcessKillFault):
        restart = restart_command(fault)
        again = f", run `{shlex.join(restart)}` after {fault.duration:g}s" if restart else ""
        return f"{_signal_name(fault.params.signal)} {what}{again}"
    it = "it" if fault.target.pid_file is not None else "them"
    return f"SIGSTOP {what}, SIGCONT {it} after {fault.duration:g}s"


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
    given = [t for t in (target.pid_file, target.pattern, target.systemd_unit) if t is not None]
    if len(given) > 1:
        raise FaultError("give exactly one of pid_file, pattern or systemd_unit")
    if target.pid_file is not None:
        return [_resolve_pid_file(target.pid_file, guarded)]
    if target.pattern is not None:
        return _resolve_pattern(target.pattern, guarded)
    if target.systemd_unit is not None:
        return _resolve_unit(target.systemd_unit, guarded)
    raise FaultError("the target names none of pid_file, pattern or systemd_unit")


def _guarded(protected: Iterable[tuple[int, float]]) -> dict[int, float]:
    out = dict(protected_processes())
    for pid, create_time in protected:
        out.setdefault(pid, create_time)
    return out


def _is_guarded(pid: int, create_time: float, guarded: dict[int, float]) -> bool:
    known = guarded.get(pid)
    return known is not None and abs(known - create_time) <= _CREATE_TIME_TOLERANCE


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


def _cgroup_dirs(control_group: str) -> list[str]:
    """Where ``control_group`` (a path as systemd names it) is in each mounted hierarchy, most
    likely first: cgroup2, then v1 ``name=systemd`` (the hierarchy systemd tracks units in),
    then every other v1 hierarchy. Only existing directories are returned."""
    # stress.py imports this module, so its mount table reader is imported when needed.
    from harness.chaos.stress import _cgroup_mounts

    v1, v2 = _cgroup_mounts()
    mounts = [m for m in (v2, v1.get("name=systemd")) if m is not None]
    mounts += [m for m in v1.values() if m not in mounts]
    found: list[str] = []
    for root, point in mounts:
        path = control_group
        if root != "/":
            if not (path == root or path.startswith(root + "/")):
                continue
            path = path[len(root) :] or "/"
        directory = os.path.join(point, path.lstrip("/"))
        if os.path.isfile(os.path.join(directory, "cgroup.procs")) and directory not in found:
            found.append(directory)
    return found


def cgroup_pids(directory: str) -> set[int]:
    """Every PID in the cgroup at ``directory`` and its sub-groups (a unit's processes may sit
    in sub-groups: delegated units, ``user@.service``)."""
    pids: set[int] = set()
    for here, _dirs, _files in os.walk(directory):
        with contextlib.suppress(OSError):  # a sub-group removed while we walk
            text = Path(here, "cgroup.procs").read_text(encoding="ascii")
            pids.update(int(line) for line in text.split() if line.isdigit())
    return pids


def _resolve_unit(unit: str, guarded: dict[int, float]) -> list[ResolvedProcess]:
    control_group = _systemctl_show(unit, "ControlGroup")
    main_text = _systemctl_show(unit, "MainPID")
    main_pid = int(main_text) if main_text.isdigit() else 0
    if not control_group:
        load_state = _systemctl_show(unit, "LoadState")
        if load_state in ("not-found", ""):
            raise FaultError(f"systemd unit {unit} not found (systemctl show reports LoadState={load_state or '?'})")
        raise FaultError(f"systemd unit {unit} has no control group: it is not running (systemctl start {unit})")
    directories = _cgroup_dirs(control_group)
    pids: set[int] = set()
    for directory in directories:  # the first hierarchy that holds processes is the unit's
        pids = cgroup_pids(directory)
        if pids:
            break
    if not directories:
        if main_pid <= 0:
            raise FaultError(
                f"systemd unit {unit}: its control group {control_group} is under no mounted cgroup hierarchy"
            )
        log.warning("unit %s: control group %s not mounted here; acting on MainPID %d", unit, control_group, main_pid)
        pids = {main_pid}
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
            raise FaultError(f"no permission to inspect process {pid} of systemd unit {unit}") from None
        if _is_guarded(pid, create_time, guarded):
            raise FaultError(
                f"systemd unit {unit}: its control group {control_group} holds harness itself "
                f"or one of its parents (pid {pid}); refusing"
            )
        if (why := never_a_target(pid)) is not None:
            raise FaultError(
                f"systemd unit {unit}: its control group {control_group} holds {why} (pid {pid}); refusing"
            )
        found.append(ResolvedProcess(pid, cmdline, create_time, _ticks_of(pid, create_time)))
    if not found:
        raise FaultError(f"systemd unit {unit} has no running process (control group {control_group} is empty)")
    return found


# ---------------------------------------------------------------- signalling


class _Sent:
    """What one round of signals did: which PIDs got it, which were skipped and why."""

    def __init__(self) -> None:
        self.signalled: list[int] = []
        self.gone: list[int] = []  # exited (or a zombie) since the fault was recorded
        self.reused: list[int] = []  # alive, but no longer the recorded process: PID recycled
        self.errors: dict[int, str] = {}

    def details(self, signalled_key: str) -> dict[str, str | int]:
        """Journal details; every key is always present so a step's outcome replaces the last one's."""
        return {
            signalled_key: _pid_list(self.signalled),
            "gone": _pid_list(self.gone),
            "pid_reused": _pid_list(self.reused),
            "errors": self.error_text(),
        }

    def error_text(self) -> str:
        return "; ".join(f"pid {pid}: {why}" for pid, why in self.errors.items())


def _same_process(proc: psutil.Process, record: FaultRecord) -> bool:
    """Is ``proc`` the process ``record`` resolved under its PID? Boot-relative ticks first."""
    ticks = record.details.get(f"start_ticks.{proc.pid}")
    if isinstance(ticks, int):
        now = _start_ticks(proc.pid)
        if now is not None:
            return now == ticks
    recorded = record.create_time(proc.pid)
    return recorded is not None and abs(proc.create_time() - recorded) <= _CREATE_TIME_TOLERANCE


def _send(record: FaultRecord, number: int, only: Iterable[int] | None = None) -> _Sent:
    """Send ``number`` to every recorded PID (or those in ``only``) that is still the recorded process.

    A PID is signalled only if it is alive, not a zombie, and its start time matches the one
    recorded; a missing start time counts as a mismatch. Never raises for one process.
    """
    sent = _Sent()
    for pid in record.pids if only is None else list(only):
        try:
            proc = psutil.Process(pid)
            if not _same_process(proc, record):
                sent.reused.append(pid)
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                sent.gone.append(pid)
                continue
            proc.send_signal(number)
            sent.signalled.append(pid)
        except psutil.NoSuchProcess:
            sent.gone.append(pid)
        except psutil.AccessDenied:
            sent.errors[pid] = "permission denied"
        except OSError as exc:
            sent.errors[pid] = exc.strerror or str(exc)
    return sent


def _pid_list(pids: Iterable[int]) -> str:
    return ",".join(str(p) for p in pids)


def _signal_for(fault: ProcessFault) -> int:
    return fault.params.signal if isinstance(fault, ProcessKillFault) else int(signal.SIGSTOP)


def inject(
    fault: ProcessFault,
    run_id: str,
    journal: Journal,
    *,
    protected: Iterable[tuple[int, float]] = (),
    lease_until: float | None = None,
) -> FaultRecord:
    """Apply ``fault`` now and return its ``injected`` record.

    Order: resolve the targets (``FaultError`` if none), journal ``injecting`` with PIDs and
    start times (fsynced), send the signal (the kill signal, or SIGSTOP for a pause), journal
    ``injected``. Idempotent per fault name within the run: if the journal already holds the
    fault as injected, reverted or revert_failed, nothing is signalled and that record is
    returned; if it holds ``injecting`` (an earlier attempt died mid-way) the recorded PIDs
    are signalled again rather than resolving anew.

    If some target cannot be signalled, a pause is undone on the ones already stopped and
    journaled as reverted; a kill (which cannot be undone) is journaled as injected with the
    errors in its details. Either way ``FaultError`` is raised naming the fault and reason.

    A kill with a restart command journals the command (JSON argv), its working directory
    (``restart_cwd`` made absolute, or the current directory of the injecting process, so a
    later ``recover`` elsewhere runs it in the same place) and the log file it will write.

    ``lease_until`` (epoch seconds) leases the fault: it is written with ``injecting``, and
    the node's watchdog reverts the fault once the lease (renewed through
    :meth:`Journal.renew`) lapses. Without it the fault is not leased.
    """
    previous, settled = journal.previous_inject(run_id, fault.name, fault.kind)
    if settled:
        assert previous is not None
        return previous

    number = _signal_for(fault)
    if previous is not None:
        record = previous
    else:
        try:
            targets = resolve_targets(fault.target, protected=protected)
        except FaultError as exc:
            raise FaultError(f"fault '{fault.name}': {exc}") from None
        details: dict[str, str | int] = {
            "signal": number,
            "signal_name": _signal_name(number),
            "target": describe_target(fault.target),
        }
        if isinstance(fault, ProcessKillFault):
            details.update(_restart_details(fault, run_id, journal))
        for proc in targets:
            details[f"create_time.{proc.pid}"] = repr(proc.create_time)
            if proc.start_ticks is not None:
                details[f"start_ticks.{proc.pid}"] = proc.start_ticks
        record = journal.begin(fault.name, fault.kind, details, lease_until, pids=[p.pid for p in targets])

    sent = _send(record, number)
    outcome = sent.details("signalled")
    if sent.errors and isinstance(fault, ProcessPauseFault):
        resumed = _send(record, int(signal.SIGCONT), only=sent.signalled)
        journal.append(record.advance(FaultState.REVERTED, **outcome, resumed=_pid_list(resumed.signalled)))
        raise FaultError(f"fault '{fault.name}': could not stop {sent.error_text()}; the pause was undone")
    if not sent.signalled and not sent.errors:
        journal.append(record.advance(FaultState.REVERTED, **outcome))
        raise FaultError(f"fault '{fault.name}': every target exited before it could be signalled")
    done = record.advance(FaultState.INJECTED, **outcome)
    journal.append(done)
    log.info("run %s: fault %s: sent %s to %s", run_id, fault.name, _signal_name(number), outcome["signalled"])
    if sent.errors:
        raise FaultError(f"fault '{fault.name}': could not signal {sent.error_text()}")
    return done


def _restart_details(fault: ProcessKillFault, run_id: str, journal: Journal) -> dict[str, str | int]:
    argv = restart_command(fault)
    if argv is None:
        return {}
    cwd = os.path.abspath(fault.params.restart_cwd or os.getcwd())
    # A fresh name per inject: a run id reused after its journal was retired must not find
    # the old log and take it for a restart already done.
    log_path = journal.directory / f"{run_id}.{fault.name}.{uuid.uuid4().hex[:8]}.restart.log"
    return {"restart": json.dumps(argv), "restart_cwd": cwd, "restart_log": str(log_path)}


def _restart_argv(record: FaultRecord) -> list[str] | None:
    raw = record.details.get("restart")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        argv = json.loads(raw)
    except ValueError:
        argv = None
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and a for a in argv):
        raise FaultError(f"fault '{record.fault_name}': journaled restart command is malformed: {raw[:200]}")
    return argv


def _normal_niceness() -> None:
    """In the restarted child before exec: nice 0, not the agent's raised priority."""
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 0)


def _note_exit(child: subprocess.Popen[bytes], log_fd: int) -> None:
    """Reap the restart command when it ends (no zombie under a long-lived agent) and say how
    it ended in its log, where an operator reading why a service did not come back looks."""
    try:
        status = child.wait()
        os.write(log_fd, f"harness: restart command pid {child.pid} exited with status {status}\n".encode())
    except OSError:
        pass
    finally:
        os.close(log_fd)


def _still_running(record: FaultRecord) -> list[int]:
    """Recorded targets that are still the recorded process and alive: the kill did not end them."""
    alive: list[int] = []
    for pid in record.pids:
        try:
            proc = psutil.Process(pid)
            if _same_process(proc, record) and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            continue
    return alive


def _revert_kill(latest: FaultRecord, journal: Journal) -> None:
    """Run the journaled restart command at most once (see the module docstring), or just mark
    a kill without one reverted."""
    argv = _restart_argv(latest)
    if argv is None:
        journal.append(latest.advance(FaultState.REVERTED, note="a kill cannot be undone; nothing to revert"))
        return
    command = shlex.join(argv)
    alive = _still_running(latest)
    if alive:
        note = f"pid {_pid_list(alive)} still running (the signal did not end it); `{command}` not run"
        journal.append(latest.advance(FaultState.REVERTED, restart_command=command, note=note))
        log.warning("run %s: fault %s: %s", latest.run_id, latest.fault_name, note)
        return
    log_path = str(latest.details.get("restart_log") or "")
    cwd = str(latest.details.get("restart_cwd") or "/")
    try:
        Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, 0o644)
    except FileExistsError:  # claimed by an earlier (or concurrent) revert: never a second restart
        note = f"the restart was already started by an earlier revert (log {log_path}); not run again"
        journal.append(latest.advance(FaultState.REVERTED, restart_command=command, note=note))
        return
    except OSError as exc:
        why = f"cannot create the restart log {log_path}: {exc.strerror or exc}"
        journal.append(latest.advance(FaultState.REVERT_FAILED, restart_command=command, restart_error=why))
        raise FaultError(f"fault '{latest.fault_name}': {why}") from None
    header = f"harness: {time.strftime('%Y-%m-%dT%H:%M:%S%z')} run {latest.run_id} fault {latest.fault_name}: "
    os.write(log_fd, f"{header}running {command} in {cwd}\n".encode())
    try:
        child = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log_fd,
            stderr=log_fd,
            start_new_session=True,  # outlives the agent, the watchdog or recover that started it
            preexec_fn=_normal_niceness,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        why = f"could not start `{command}` in {cwd}: {getattr(exc, 'strerror', None) or exc}"
        os.write(log_fd, f"harness: {why}\n".encode())
        os.close(log_fd)
        os.unlink(log_path)  # nothing ran: free the claim so recover may try again
        journal.append(latest.advance(FaultState.REVERT_FAILED, restart_command=command, restart_error=why))
        raise FaultError(f"fault '{latest.fault_name}': {why}") from None
    threading.Thread(target=_note_exit, args=(child, log_fd), name=f"restart-{child.pid}", daemon=True).start()
    journal.append(
        latest.advance(
            FaultState.REVERTED,
            restart_command=command,
            restarted_pid=child.pid,
            restarted_at=repr(time.time()),
            restart_error="",
        )
    )
    log.info("run %s: fault %s: restarted with %s (pid %d)", latest.run_id, latest.fault_name, command, child.pid)


def revert(record: FaultRecord, journal: Journal) -> None:
    """Undo the fault ``record`` describes, and journal the outcome. Safe to call any number of times.

    The fault's latest state is read from ``journal`` first: already reverted means nothing
    to do. A kill cannot be undone: without a restart command it is journaled as reverted and
    nothing is sent; with one, the command is started (at most once, detached, no shell) and
    its PID journaled as ``restarted_pid``, unless a recorded target is still running. A
    restart that cannot be started journals ``revert_failed`` and raises ``FaultError`` so
    ``recover`` retries it. A pause gets SIGCONT, but only on recorded PIDs whose start time still matches the record:
    a process that exited, or whose PID now belongs to another process, is left alone (and
    listed under ``gone`` in the reverted record's details). If SIGCONT fails for a live
    target, ``revert_failed`` is journaled and ``FaultError`` raised, so ``recover`` retries.
    """
    latest = journal.latest(record.fault_name) or record
    if latest.state is FaultState.REVERTED:
        return
    if latest.kind == KILL:
        _revert_kill(latest, journal)
        return
    if latest.kind != PAUSE:
        raise FaultError(f"fault '{latest.fault_name}': cannot revert unknown kind {latest.kind}")
    sent = _send(latest, int(signal.SIGCONT))
    outcome = sent.details("resumed")
    if sent.errors:
        journal.append(latest.advance(FaultState.REVERT_FAILED, **outcome))
        raise FaultError(f"fault '{latest.fault_name}': could not resume {sent.error_text()}")
    journal.append(latest.advance(FaultState.REVERTED, **outcome))
    log.info("run %s: fault %s: reverted (%s)", latest.run_id, latest.fault_name, outcome)
