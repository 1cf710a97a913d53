"""The time family: ``time.skew`` moves a process's wall clock by an offset (and a rate) for the window.

Two mechanisms, chosen by ``params.mechanism``:

* ``shim`` (the default): the target is a process started under harness's clock shim
  (:mod:`harness.chaos.clock_shim`: libfaketime preloaded, reading its skew from a file named in
  the process's environment). The fault finds that file through ``/proc/PID/environ``, journals
  its current line, and writes the skew; a revert writes the journaled line back. A target not
  started under the shim is refused, with the command that starts it so.
* ``vdso``: any running x86-64 process, Go binaries included (Chaos Mesh TimeChaos's way): its
  vDSO's clock functions are patched through ptrace to add the offset (:mod:`.running`,
  :mod:`harness.chaos.vdso_skew`); an offset only, no rate. ``auto`` takes the shim when every
  target was started under it, else ``vdso``.

docs/faults.md says what each mechanism covers here.

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

from harness.chaos import capabilities, clock_shim, vdso_skew
from harness.chaos.families.time import running
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


def _uses_vdso(fault: TimeSkewFault, targets: list[ResolvedProcess]) -> bool:
    """Whether the vDSO patch moves these targets' clocks (else the shim does)."""
    mechanism = fault.params.mechanism
    return mechanism == "vdso" or (mechanism == "auto" and bool(_shims(targets)[1]))


def _vdso_refusal(fault: TimeSkewFault, targets: list[ResolvedProcess]) -> str | None:
    """Why the vDSO patch cannot act on ``targets`` now (one line each), or None."""
    if fault.params.rate != 1:
        return f"a rate needs harness's clock shim: {_refusal_text(_shims(targets)[1])}"
    refused = []
    for proc in targets:
        try:
            vdso_skew.plan_patch(proc.pid)
        except (FaultError, OSError) as exc:
            refused.append(f"pid {proc.pid} ({proc.cmdline[:80]}): {exc}")
    return "; ".join(refused) or None


class TimeFamily(FaultFamily):
    """Wall-clock skew: libfaketime for a process started under harness's clock shim, a vDSO patch otherwise."""

    name = "time"
    models = (TimeSkewFault,)
    undo_failed_inject = True  # some files written, one failed: write the journaled lines back at once

    def describe(self, fault: TimeSkewFault) -> str:
        """e.g. ``shift the wall clock (CLOCK_REALTIME) of processes matching /payments/ by -10m for 10s``."""
        what = describe_target(fault.target)
        how = {"shim": "", "vdso": " through its vDSO (ptrace)", "auto": " (clock shim, else its vDSO)"}
        text = f"shift the wall clock (CLOCK_REALTIME) of {what} {_skew_text(fault)} for {fault.duration:g}s"
        return text + how[fault.params.mechanism]

    def requirements(self, fault: TimeSkewFault) -> list[str]:
        # auto: a target under the shim proves libfaketime is there; the others need ptrace
        return [capabilities.LIBFAKETIME] if fault.params.mechanism == "shim" else [capabilities.PTRACE_VDSO]

    def resolve(self, fault: TimeSkewFault, context: HostContext) -> str:
        try:
            targets = resolve_targets(fault.target, protected=protected_processes())
        except FaultError as exc:
            return f"; now: nothing ({exc})"
        if _uses_vdso(fault, targets):
            if (why := _vdso_refusal(fault, targets)) is not None:
                return f"; now: refused: {why}"
            return "; now: " + ", ".join(f"pid {p.pid} (vDSO patch)" for p in targets)
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
        if _uses_vdso(fault, targets):
            why = _vdso_refusal(fault, targets)
            return f"fault '{fault.name}': {why}" if why else None
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
        details: Details = {
            "target": f"{describe_target(fault.target)} {_skew_text(fault)}",
            "offset": repr(fault.params.offset),
            "rate": repr(fault.params.rate),
        }
        if _uses_vdso(fault, targets):
            if (why := _vdso_refusal(fault, targets)) is not None:
                raise FaultError(f"fault '{fault.name}': {why}")
            try:
                details.update(running.prepare(targets))
            except (FaultError, OSError) as exc:
                raise FaultError(f"fault '{fault.name}': {exc}") from None
            return Prepared(details, [p.pid for p in targets])
        shims, refused = _shims(targets)
        if refused:
            raise FaultError(f"fault '{fault.name}': {_refusal_text(refused)}")
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
        if record.details.get("mechanism") == "vdso":
            return running.apply(record, offset, resumed=resumed)
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
        if record.details.get("mechanism") == "vdso":
            return running.undo(record)
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
        if before.details.get("mechanism") == "vdso":
            return running.reverted_text(after)
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
        return out + running.leftovers(self.name)

    def remove(self, leftover: Leftover) -> None:
        if leftover.kind == running.KIND:
            running.remove(leftover)
            return
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
