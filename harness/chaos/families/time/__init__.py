"""The time family: ``time.skew`` moves a process's wall clock by an offset (and a rate) for the window.

Chaos Mesh's TimeChaos patches a running process's vDSO through ptrace; here the target is a
process started under harness's clock shim (:mod:`harness.chaos.clock_shim`: libfaketime
preloaded, reading its skew from a file named in the process's environment). The fault finds
that file through ``/proc/PID/environ``, journals its current line, and writes the skew; a
revert writes the journaled line back. A target not started under the shim is refused, with
the command that starts it so. docs/faults.md says what each mechanism covers here.

What callers may rely on:

* **Journal first.** The skew files and their lines before the fault are journaled (fsynced)
  before any file is written; a revert needs nothing but that record.
* **All or nothing.** If any matched process was not started under the shim, nothing is
  written and the fault fails, naming it.
* **A drift starts at the inject.** libfaketime measures a rate from the process's start, so
  the offset written is corrected by ``(rate - 1) * (inject - start)``: the clock reads
  ``offset`` at the inject and drifts by ``rate`` from there.
* **Idempotent revert.** Writing the journaled line back twice is the same as once; a skew file
  that is gone (its service stopped) is reported, not an error.
* **Sweep.** Skew files of live shimmed processes (tagged ``HARNESS_CLOCK_SHIM``) that hold a
  skew are leftovers; removing one writes :data:`~harness.chaos.clock_shim.REST` into it.
"""

from __future__ import annotations

import time
from pathlib import Path

import psutil

from harness.chaos import capabilities, clock_shim
from harness.chaos.families.time.params import TimeSkewFault
from harness.chaos.family import FaultFamily, HostContext, Leftover
from harness.chaos.journal import FaultRecord
from harness.chaos.processes import (
    ResolvedProcess,
    describe_target,
    pid_file_refusal,
    protected_processes,
    resolve_targets,
)
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import FaultError, FaultNotApplied, RevertFailed

__all__ = ["FAMILY", "TimeFamily"]


def _offset_text(seconds: float) -> str:
    sign = "-" if seconds < 0 else "+"
    left = abs(seconds)
    for unit, size in (("h", 3600.0), ("m", 60.0)):
        if left >= size and left % size == 0:
            return f"{sign}{left / size:g}{unit}"
    return f"{sign}{left:g}s"


def _skew_text(fault: TimeSkewFault) -> str:
    """``by -10m``, ``by +2h, running at 1.01x`` or ``running at 0.5x``."""
    parts = [f"by {_offset_text(fault.params.offset)}"] if fault.params.offset else []
    if fault.params.rate != 1:
        parts.append(f"running at {fault.params.rate:g}x")
    return ", ".join(parts)


def _shims(targets: list[ResolvedProcess]) -> tuple[list[clock_shim.Shim], list[str]]:
    """The shims of ``targets`` and, for those without one, why (one line each)."""
    found: list[clock_shim.Shim] = []
    refused: list[str] = []
    for proc in targets:
        try:
            shim = clock_shim.shim_of(proc.pid)
        except psutil.AccessDenied:
            refused.append(f"pid {proc.pid}: no permission to read its environment")
            continue
        if shim is None:
            refused.append(f"pid {proc.pid} ({proc.cmdline[:80]}) was not started under harness's clock shim")
        else:
            found.append(shim)
    return found, refused


def _refusal_text(refused: list[str]) -> str:
    return "; ".join(refused) + "; " + clock_shim.how_to_start()


class TimeFamily(FaultFamily):
    """Wall-clock skew for processes started under harness's clock shim (libfaketime)."""

    name = "time"
    models = (TimeSkewFault,)
    undo_failed_inject = True  # some files written, one failed: write the journaled lines back at once

    def describe(self, fault: TimeSkewFault) -> str:
        """e.g. ``shift the wall clock (CLOCK_REALTIME) of processes matching /payments/ by -10m for 10s``."""
        what = describe_target(fault.target)
        return f"shift the wall clock (CLOCK_REALTIME) of {what} {_skew_text(fault)} for {fault.duration:g}s"

    def requirements(self, fault: TimeSkewFault) -> list[str]:
        return [capabilities.LIBFAKETIME]

    def resolve(self, fault: TimeSkewFault, context: HostContext) -> str:
        try:
            targets = resolve_targets(fault.target, protected=protected_processes())
        except FaultError as exc:
            return f"; now: nothing ({exc})"
        shims, refused = _shims(targets)
        if refused:
            return "; now: refused: " + _refusal_text(refused)
        files = ", ".join(f"pid {s.pid} (skew file {s.skew_file}: {clock_shim.read_skew(s.skew_file)})" for s in shims)
        return f"; now: {files}"

    def refusal(self, fault: TimeSkewFault, context: HostContext) -> str | None:
        """A pid file naming PID 1 or a kernel thread; or a target that runs now without the shim,
        which this run can never skew. One not running yet is resolved when the fault fires (a
        service may start later). Faults on another node are decided by that node's agent."""
        if fault.node is not None:
            return None
        if (why := pid_file_refusal(fault.name, fault.target)) is not None:
            return why
        try:
            targets = resolve_targets(fault.target, protected=protected_processes())
        except FaultError:
            return None
        refused = _shims(targets)[1]
        return f"fault '{fault.name}': {_refusal_text(refused)}" if refused else None

    def check(self, fault: TimeSkewFault, context: HostContext) -> None:
        return None  # what this host refuses is in refusal(); libfaketime is a requirement

    def warm_up(self, kinds: frozenset[str]) -> None:
        return None  # psutil only

    def prepare(self, fault: TimeSkewFault, ctx: InjectContext) -> Prepared:
        try:
            targets = resolve_targets(fault.target, protected=ctx.protected)
        except FaultError as exc:
            raise FaultError(f"fault '{fault.name}': {exc}") from None
        shims, refused = _shims(targets)
        if refused:
            raise FaultError(f"fault '{fault.name}': {_refusal_text(refused)}")
        details: Details = {
            "target": f"{describe_target(fault.target)} {_skew_text(fault)}",
            "offset": repr(fault.params.offset),
            "rate": repr(fault.params.rate),
        }
        files: dict[Path, clock_shim.Shim] = {}
        for shim in shims:
            files.setdefault(shim.skew_file, shim)  # a shared file: anchored on its first process
        for index, (path, shim) in enumerate(sorted(files.items())):
            details[f"file.{index}"] = str(path)
            details[f"previous.{index}"] = clock_shim.read_skew(path) or clock_shim.REST
            details[f"started.{index}"] = repr(shim.create_time)
        for proc in targets:
            details[f"create_time.{proc.pid}"] = repr(proc.create_time)
        return Prepared(details, [p.pid for p in targets])

    def apply(self, fault: TimeSkewFault, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:
        rate = float(str(record.details["rate"]))
        offset = float(str(record.details["offset"]))
        now = time.time()
        written: list[str] = []
        for index, path in _files(record):
            started = float(str(record.details.get(f"started.{index}", now)))
            # libfaketime runs a rate from the process's start: take back what it adds for the past
            line = clock_shim.skew_line(offset - (rate - 1.0) * max(now - started, 0.0), rate)
            if not path.exists():
                raise FaultNotApplied(f"fault '{fault.name}': skew file {path} is gone (its process stopped)")
            try:
                clock_shim.write_skew(path, line)
            except OSError as exc:
                raise FaultError(f"fault '{fault.name}': cannot write {path}: {exc.strerror or exc}") from None
            written.append(f"{path}={line}")
        return {"written": "; ".join(written)}

    def undo(self, record: FaultRecord) -> Details:
        restored: list[str] = []
        gone: list[str] = []
        errors: list[str] = []
        for index, path in _files(record):
            previous = str(record.details.get(f"previous.{index}", clock_shim.REST))
            if not path.exists():
                gone.append(str(path))
                continue
            try:
                clock_shim.write_skew(path, previous)
            except OSError as exc:
                errors.append(f"{path}: {exc.strerror or exc}")
                continue
            restored.append(f"{path}={previous}")
        outcome: Details = {"restored": "; ".join(restored), "gone": "; ".join(gone)}
        if errors:
            raise RevertFailed(f"fault '{record.fault_name}': cannot restore {'; '.join(errors)}", **outcome)
        return outcome

    def reverted_text(self, before: FaultRecord, after: FaultRecord) -> str:
        parts = []
        if after.details.get("restored"):
            parts.append(f"restored {after.details['restored']}")
        if after.details.get("gone"):
            parts.append(f"skew file gone (its process stopped): {after.details['gone']}")
        return "; ".join(parts) or "no skew file recorded"

    def applied_text(self, record: FaultRecord) -> str:
        return f"on {len(record.pids)} process(es) {list(record.pids)}: {record.details.get('target', '')}"

    def leftovers(self) -> list[Leftover]:
        out = []
        for path, pids in sorted(clock_shim.tagged_files().items()):
            line = clock_shim.read_skew(path)
            if line is not None and line != clock_shim.REST:
                name = f"{path} ({line}; pid {', '.join(map(str, pids))})"
                out.append(Leftover("", "clock skew file", name, (str(path),), self.name))
        return out

    def remove(self, leftover: Leftover) -> None:
        path = Path(str(leftover.key[0]))
        if path.exists():
            clock_shim.write_skew(path, clock_shim.REST)


def _files(record: FaultRecord) -> list[tuple[int, Path]]:
    out = []
    index = 0
    while f"file.{index}" in record.details:
        out.append((index, Path(str(record.details[f"file.{index}"]))))
        index += 1
    return out


FAMILY = TimeFamily()
