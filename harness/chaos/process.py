"""Process faults: ``process.kill`` (any signal) and ``process.pause`` (SIGSTOP, then SIGCONT).

Pure of Ray: the chaos agent calls these functions inside its actor, ``harness recover`` calls
:func:`revert` directly, and tests call them on processes they started.

What callers may rely on:

* **Targets never include harness itself.** A pattern is matched against every process's
  full command line except the current process and its ancestors (and any ``protected``
  processes the caller names), so ``pattern: python`` cannot stop the agent, its Ray
  worker's parents, or the driver when it is an ancestor.
* **Journal first.** :func:`inject` writes an ``injecting`` record with the resolved PIDs
  and their start times, fsynced, before sending any signal; ``injected`` follows.
* **Idempotent.** Injecting a fault whose name is already journaled as injected or reverted
  in this run signals nothing and returns the existing record; reverting a fault that is
  already reverted does nothing. Reverting a kill is a no-op that is journaled as reverted.
* **No recycled PIDs.** A PID is signalled only while its start time matches the one
  recorded at resolution, so a PID the kernel gave to a new process is never touched.
"""

from __future__ import annotations

import logging
import os
import re
import signal
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
    "describe",
    "describe_target",
    "inject",
    "protected_processes",
    "resolve_targets",
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


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe_target(target: ProcessTarget) -> str:
    """``processes matching /re/`` or ``the process whose PID is in FILE``."""
    if target.pattern is not None:
        return f"processes matching /{target.pattern}/"
    if target.pid_file is not None:
        return f"the process whose PID is in {target.pid_file}"
    return "no process (the target names neither pid_file nor pattern)"


def describe(fault: ProcessFault) -> str:
    """What the fault will do, in one line, for ``harness plan`` and dry runs. Touches nothing.

    e.g. ``SIGKILL processes matching /harness\\.demo\\.services payments/`` or
    ``SIGSTOP the process whose PID is in /run/x.pid, SIGCONT it after 10s``.
    """
    what = describe_target(fault.target)
    if isinstance(fault, ProcessKillFault):
        return f"{_signal_name(fault.params.signal)} {what}"
    it = "them" if fault.target.pattern is not None else "it"
    return f"SIGSTOP {what}, SIGCONT {it} after {fault.duration:g}s"


# ---------------------------------------------------------------- resolving targets


def resolve_targets(target: ProcessTarget, *, protected: Iterable[tuple[int, float]] = ()) -> list[ResolvedProcess]:
    """The live processes ``target`` names, sorted by PID; raises ``FaultError`` if there are none.

    ``pid_file``: the file must hold one integer, and that process must be alive (not a
    zombie). ``pattern``: ``re.search`` over each process's command line joined with spaces;
    processes whose command line cannot be read (kernel threads, other users' processes
    without permission) are skipped. Either way, the current process, its ancestors and
    ``protected`` ``(pid, create_time)`` pairs are never returned.
    """
    guarded = _guarded(protected)
    if target.pid_file is not None and target.pattern is not None:
        raise FaultError("give exactly one of pid_file or pattern, not both")
    if target.pid_file is not None:
        return [_resolve_pid_file(target.pid_file, guarded)]
    if target.pattern is not None:
        return _resolve_pattern(target.pattern, guarded)
    raise FaultError("the target names neither pid_file nor pattern")


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
        found.append(ResolvedProcess(proc.pid, cmdline, float(create_time), _ticks_of(proc.pid, create_time)))
    if not found:
        raise FaultError(f"no running process matches /{pattern}/ (harness itself and its parents excluded)")
    return sorted(found, key=lambda p: p.pid)


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
        for proc in targets:
            details[f"create_time.{proc.pid}"] = repr(proc.create_time)
            if proc.start_ticks is not None:
                details[f"start_ticks.{proc.pid}"] = proc.start_ticks
        record = FaultRecord(
            run_id=run_id,
            fault_name=fault.name,
            kind=fault.kind,
            state=FaultState.INJECTING,
            pids=[p.pid for p in targets],
            details=details,
            lease_until=lease_until,
        )
        journal.append(record)

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


def revert(record: FaultRecord, journal: Journal) -> None:
    """Undo the fault ``record`` describes, and journal the outcome. Safe to call any number of times.

    The fault's latest state is read from ``journal`` first: already reverted means nothing
    to do. A kill cannot be undone, so it is journaled as reverted and nothing is sent. A
    pause gets SIGCONT, but only on recorded PIDs whose start time still matches the record:
    a process that exited, or whose PID now belongs to another process, is left alone (and
    listed under ``gone`` in the reverted record's details). If SIGCONT fails for a live
    target, ``revert_failed`` is journaled and ``FaultError`` raised, so ``recover`` retries.
    """
    latest = journal.latest(record.fault_name) or record
    if latest.state is FaultState.REVERTED:
        return
    if latest.kind == KILL:
        journal.append(latest.advance(FaultState.REVERTED, note="a kill cannot be undone; nothing to revert"))
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
