"""``time.skew`` on a process that is already running: the vDSO patch (:mod:`harness.chaos.vdso_skew`), journaled.

The family calls this mechanism for ``params.mechanism: vdso``, and for ``auto`` when a target
was not started under the clock shim. What is journaled before the patch, per process ``i``:
``vdso.i.pid``, ``vdso.i.ticks`` (its start time: a PID reused later is never touched),
``vdso.i.base`` (the vDSO's address), ``vdso.i.syscall`` (the ``syscall`` instruction used) and
``vdso.i.entries`` (each patched function's address and its original 12 bytes, in hex); the
apply adds ``vdso.i.page`` (the page mapped in the target). A revert needs nothing else: it
writes the original bytes back where the jump is harness's (the page carries
:data:`~harness.chaos.vdso_skew.MAGIC`) and unmaps the page; a process that exited took its vDSO
with it (``gone``).

The sweep finds processes whose ``__vdso_clock_gettime`` jumps into a page tagged
:data:`~harness.chaos.vdso_skew.MAGIC` and restores their entries from this process's own
(never patched) vDSO: every process on one kernel maps the same vDSO image.
"""

from __future__ import annotations

import os

from harness.chaos import vdso_skew
from harness.chaos.family import Leftover
from harness.chaos.journal import FaultRecord
from harness.chaos.processes import ResolvedProcess, never_a_target
from harness.chaos.steps import Details
from harness.errors import FaultError, FaultPartlyApplied, RevertFailed

__all__ = ["apply", "leftovers", "prepare", "remove", "undo"]

KIND = "vDSO clock patch"


def prepare(targets: list[ResolvedProcess]) -> Details:
    """Read each target's vDSO and the bytes the patch replaces (raises, naming the process, when one cannot be)."""
    details: Details = {"mechanism": "vdso"}
    for index, proc in enumerate(targets):
        why = "harness itself" if proc.pid == os.getpid() else never_a_target(proc.pid)
        if why is not None:
            raise FaultError(f"pid {proc.pid}: never a clock-skew target ({why})")
        patch = vdso_skew.plan_patch(proc.pid)
        details[f"vdso.{index}.pid"] = patch.pid
        details[f"vdso.{index}.ticks"] = patch.start_ticks if patch.start_ticks is not None else ""
        details[f"vdso.{index}.base"] = f"{patch.vdso:#x}"
        details[f"vdso.{index}.syscall"] = f"{patch.syscall_at:#x}"
        entries = (f"{e.name}@{e.address:#x}={e.original.hex()}" for e in patch.entries)
        details[f"vdso.{index}.entries"] = ",".join(entries)
    return details


def _patches(record: FaultRecord) -> list[tuple[int, vdso_skew.Patch, int | None]]:
    """(index, patch, page) for every process the record names."""
    out = []
    index = 0
    while f"vdso.{index}.pid" in record.details:
        d = record.details
        entries = []
        for item in str(d[f"vdso.{index}.entries"]).split(","):
            name, rest = item.split("@", 1)
            address, original = rest.split("=", 1)
            entries.append(vdso_skew.VdsoEntry(name, int(address, 16), bytes.fromhex(original)))
        ticks = str(d.get(f"vdso.{index}.ticks", ""))
        patch = vdso_skew.Patch(
            pid=int(d[f"vdso.{index}.pid"]),
            start_ticks=int(ticks) if ticks else None,
            vdso=int(str(d[f"vdso.{index}.base"]), 16),
            syscall_at=int(str(d[f"vdso.{index}.syscall"]), 16),
            entries=tuple(entries),
        )
        page = str(d.get(f"vdso.{index}.page", ""))
        out.append((index, patch, int(page, 16) if page else None))
        index += 1
    return out


def apply(record: FaultRecord, offset: float, *, resumed: bool) -> Details:
    """Patch every process the record names; a resumed inject first undoes what a dead attempt left."""
    if resumed:
        undo(record)
    done: Details = {}
    failed: list[str] = []
    for index, patch, _ in _patches(record):
        try:
            page = vdso_skew.apply_patch(patch, offset)
        except (FaultError, OSError) as exc:
            failed.append(f"pid {patch.pid}: {exc}")
            continue
        done[f"vdso.{index}.page"] = f"{page:#x}"
    if failed and done:
        raise FaultPartlyApplied(f"fault '{record.fault_name}': {'; '.join(failed)}", **done)
    if failed:
        raise FaultError(f"fault '{record.fault_name}': {'; '.join(failed)}")
    done["patched"] = ", ".join(f"pid {p.pid}" for _, p, _ in _patches(record))
    return done


def undo(record: FaultRecord) -> Details:
    """Restore every process's vDSO from the record alone; idempotent."""
    outcome: dict[str, list[str]] = {"restored": [], "gone": [], "already clean": []}
    errors: list[str] = []
    for _, patch, page in _patches(record):
        try:
            result = vdso_skew.revert_patch(patch, page)
        except (FaultError, OSError) as exc:
            errors.append(f"pid {patch.pid}: {exc}")
            continue
        outcome[result].append(str(patch.pid))
    details: Details = {
        "restored_pids": ", ".join(outcome["restored"]),
        "gone_pids": ", ".join(outcome["gone"]),
        "clean_pids": ", ".join(outcome["already clean"]),
    }
    if errors:
        raise RevertFailed(f"fault '{record.fault_name}': cannot restore {'; '.join(errors)}", **details)
    return details


def reverted_text(after: FaultRecord) -> str:
    parts = []
    for key, text in (
        ("restored_pids", "vDSO restored in pid"),
        ("gone_pids", "exited (nothing to restore): pid"),
        ("clean_pids", "already clean: pid"),
    ):
        if after.details.get(key):
            parts.append(f"{text} {after.details[key]}")
    return "; ".join(parts) or "no process recorded"


def leftovers(family: str) -> list[Leftover]:
    """Processes whose vDSO jumps into a harness page (no journal needed to find them)."""
    found = vdso_skew.patched_processes()
    return [Leftover("", KIND, f"pid {pid} (page {page:#x})", (pid, page), family) for pid, page in found]


def remove(leftover: Leftover) -> None:
    pid, page = int(leftover.key[0]), int(leftover.key[1])
    vdso_skew.restore_from_own(pid, page)
