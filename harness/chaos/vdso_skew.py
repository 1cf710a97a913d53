"""Skewing a RUNNING process's wall clock by patching its vDSO through ptrace (Chaos Mesh TimeChaos's way).

A process reads the time without a system call through the vDSO, a small library the kernel
maps into every process (``[vdso]`` in ``/proc/PID/maps``); glibc's ``clock_gettime``,
``gettimeofday`` and ``time``, and Go's runtime (which never goes through libc), call its
``__vdso_clock_gettime``, ``__vdso_gettimeofday`` and ``__vdso_time``. This module, with every
thread of the target stopped (:class:`~.ptrace.Stopped`):

1. makes the target ``mmap`` one page (``PROT_READ|PROT_EXEC``, private, anonymous) by running
   that system call in one of its threads, through a ``syscall`` instruction found in the vDSO;
2. writes into that page a small routine per function (:data:`STUB_CODE`, assembled from
   ``vdso_skew.s`` beside this file): the real system call (``clock_gettime`` 228,
   ``gettimeofday`` 96), then, for the clocks in a mask (``CLOCK_REALTIME`` and
   ``CLOCK_REALTIME_COARSE``), the offset held in the page's data area (``sec``, ``nsec``)
   added; and a tag (:data:`MAGIC`) that the sweep recognises;
3. writes a jump (``movabs rax, ROUTINE; jmp rax``, 12 bytes) over the start of each of the
   three vDSO functions (copy-on-write: only this process's copy of the vDSO changes).

The revert writes the 12 original bytes back (read before the patch and journaled by the caller)
and unmaps the page when no thread is inside it. Changing the offset of a patched process writes
the data area only (:func:`set_offset`).

Measured on this machine (kernel 6.18, x86-64, root; tests/test_time_vdso.py, docs/faults.md):
a whole inject (journal, symbols, stop, patch) took 25 ms and a revert 0.9 ms, the target stopped
for part of each; the first clock read after it has the offset; a Python ``time.time()`` costs
0.32 us patched instead of 0.09 us (both ``benchmarks/clock_cost.py``); a Go ``time.Now()`` reads two clocks,
so it makes two system calls.

Limits (honest):

* **x86-64 only** (the routine, the jump and the register layout); a 32-bit process's vDSO is
  refused. Chaos Mesh has the same per-architecture code (x86-64 and arm64).
* **Every clock read becomes a system call** while patched, the faked clocks and the others
  (``CLOCK_MONOTONIC`` too): the routine does not call the original vDSO code, whose start it
  overwrote (that would need the overwritten instructions decoded and relocated, e.g. with
  capstone). Values stay right; a read costs the system call (~0.25 us instead of ~20 ns), and
  a seccomp filter that forbids ``clock_gettime``/``gettimeofday`` (none of the usual ones do:
  the vDSO itself falls back to them) would turn reads into errors.
* **Threads**: all are stopped for the patch and the revert (a few ms); a thread stopped inside
  the 12 bytes being rewritten is let run and the stop retried. A process already under ptrace
  (a debugger, strace) is refused. If harness itself is killed during the one injected system
  call (under a millisecond), the kernel detaches the target with the injected registers and it
  most likely crashes: Chaos Mesh's way has the same window. A thread inside the page at the
  revert (in its system call) keeps the page mapped (4 KiB, no jump into it any more).
* **Forks**: a child forked while patched keeps the patch (its copy of the vDSO and the page)
  after the parent's revert; the sweep (:func:`patched_processes`) finds and restores it.
* **What it cannot reach**: a process that caches time (reads once and counts), reads the TSC
  itself, or calls the ``clock_gettime`` system call directly (not through the vDSO) sees no skew;
  children forked after the patch inherit it (they share the copied page), children exec'ed get a
  clean vDSO. Only ``CLOCK_REALTIME`` and ``CLOCK_REALTIME_COARSE`` move; ``time()`` too.
* **No rate**: a fixed offset only (Chaos Mesh's TimeChaos has no rate either).
"""

from __future__ import annotations

import io
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass

from harness.chaos.processes import start_ticks
from harness.chaos.ptrace import Stopped, read_memory, write_memory
from harness.errors import CapabilityMissing, FaultError

__all__ = [
    "MAGIC",
    "STUB_CODE",
    "SYMBOLS",
    "Patch",
    "VdsoEntry",
    "apply_patch",
    "find_vdso",
    "patched_processes",
    "plan_patch",
    "probe",
    "restore_from_own",
    "revert_patch",
    "set_offset",
]

#: The vDSO functions patched, with where each one's routine starts in the page.
SYMBOLS = {"__vdso_clock_gettime": 0x000, "__vdso_gettimeofday": 0x080, "__vdso_time": 0x100}
#: The routines, assembled from vdso_skew.s (``as --64``; tests/test_time_vdso.py checks they match).
STUB_CODE = bytes.fromhex(
    "f30f1efab8e40000000f054885c0753e83ff3f7739488b05f4070000480fa3f8732a488b05d7070000480106488b05d5"
    "07000048034608483d00ca9a3b7c09482d00ca9a3b48ff064889460831c0c3" + "cc" * 49 + "f30f1efab8600000000f05"
    "4885c0753c4885ff7437488b0574070000a801742a488b0559070000480107488b056707000048034708483d40420f00"
    "7c09482d40420f0048ff074889470831c0c3" + "cc" * 51 + "f30f1efa574883ec104889e631ffb8e40000000f05"
    "488b0424488b0df0060000f6c101741f480305d4060000488b0dd506000048034c24084881f900ca9a3b7c0348ffc048"
    "83c4105f4885ff7403488907c3"
)
DATA_AT = 0x800  # int64 sec, int64 nsec (0..1e9), uint64 clock mask, int64 usec (nsec // 1000)
MAGIC_AT = 0x820
#: The tag in every page this module maps: what the sweep looks for behind a jump.
MAGIC = b"HARNESS-VDSO-SKEW\0"
PAGE = 4096
JUMP_LEN = 12
#: Clocks skewed: CLOCK_REALTIME (0) and CLOCK_REALTIME_COARSE (5).
DEFAULT_MASK = (1 << 0) | (1 << 5)
SYS_MMAP, SYS_MUNMAP = 9, 11
PROT_READ, PROT_EXEC = 1, 4
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
EM_X86_64 = 62


def _jump(target: int) -> bytes:
    return b"\x48\xb8" + target.to_bytes(8, "little") + b"\xff\xe0"


def _jump_target(code: bytes) -> int | None:
    if len(code) == JUMP_LEN and code[:2] == b"\x48\xb8" and code[10:] == b"\xff\xe0":
        return int.from_bytes(code[2:10], "little")
    return None


def data_area(offset: float, mask: int = DEFAULT_MASK) -> bytes:
    """The page's data area for ``offset`` seconds: sec (floor), nsec in [0, 1e9), mask, usec."""
    sec = math.floor(offset)
    nsec = round((offset - sec) * 1e9)
    if nsec >= 1_000_000_000:
        sec, nsec = sec + 1, nsec - 1_000_000_000
    fields = (sec, nsec, mask, nsec // 1000)
    return b"".join(v.to_bytes(8, "little", signed=True) for v in fields)


def find_vdso(pid: int) -> tuple[int, int] | None:
    """The ``[vdso]`` mapping of ``pid`` (start, end), or None (none mapped, or the process is gone)."""
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                if line.rstrip().endswith("[vdso]"):
                    start, end = line.split()[0].split("-")
                    return int(start, 16), int(end, 16)
    except OSError:
        return None
    return None


@dataclass(frozen=True)
class VdsoEntry:
    """One patched function: its name, address in the target, and the bytes the jump replaces."""

    name: str
    address: int
    original: bytes


@dataclass(frozen=True)
class Patch:
    """What a revert needs (the caller journals it before :func:`apply_patch`)."""

    pid: int
    start_ticks: int | None
    vdso: int
    syscall_at: int
    entries: tuple[VdsoEntry, ...]


def _symbols(image: bytes) -> dict[str, int]:
    """Offsets (in the image) of :data:`SYMBOLS` in a vDSO image; raises for one not x86-64."""
    from elftools.elf.elffile import ELFFile  # pyelftools: loaded only when a vDSO is read
    from elftools.elf.sections import SymbolTableSection

    elf = ELFFile(io.BytesIO(image))
    if elf.elfclass != 64 or elf["e_machine"] != "EM_X86_64":
        raise FaultError(f"the vDSO is {elf['e_machine']} ({elf.elfclass}-bit): only x86-64 is patched")
    base = min(seg["p_vaddr"] for seg in elf.iter_segments() if seg["p_type"] == "PT_LOAD")
    dynsym = elf.get_section_by_name(".dynsym")
    found: dict[str, int] = {}
    for sym in dynsym.iter_symbols() if isinstance(dynsym, SymbolTableSection) else ():
        if sym.name in SYMBOLS and sym["st_value"]:
            found[sym.name] = sym["st_value"] - base
    return found


def plan_patch(pid: int) -> Patch:
    """Read ``pid``'s vDSO and what the patch will replace. Changes nothing."""
    if pid in (1, os.getpid()):
        raise FaultError(f"pid {pid}: never patched (PID 1 or harness itself)")
    where = find_vdso(pid)
    if where is None:
        raise FaultError(f"pid {pid} has no vDSO mapped (or has exited)")
    patch = _patch_of(pid, where[0], read_memory(pid, where[0], where[1] - where[0]))
    for entry in patch.entries:
        if _jump_target(entry.original) is not None:
            raise FaultError(
                f"pid {pid}: {entry.name} is already patched (a clock skew left over? run: harness recover --sweep)"
            )
    return patch


def _patch_of(pid: int, base: int, image: bytes) -> Patch:
    """The patch of process ``pid`` whose vDSO is at ``base``, from a vDSO ``image`` (its own or an identical one)."""
    offsets = _symbols(image)
    if "__vdso_clock_gettime" not in offsets:
        raise FaultError(f"pid {pid}: its vDSO has no __vdso_clock_gettime")
    syscall_at = image.find(b"\x0f\x05")
    if syscall_at < 0:
        raise FaultError(f"pid {pid}: no syscall instruction in its vDSO")
    entries = tuple(VdsoEntry(name, base + at, image[at : at + JUMP_LEN]) for name, at in sorted(offsets.items()))
    return Patch(pid, start_ticks(pid), base, base + syscall_at, entries)


def _same_process(patch: Patch) -> bool:
    ticks = start_ticks(patch.pid)
    return ticks is not None and (patch.start_ticks is None or ticks == patch.start_ticks)


def _stopped_clear_of(pid: int, windows: list[tuple[int, int]], attempts: int = 50) -> Stopped:
    """``pid`` stopped with no thread about to run inside one of ``windows`` (retried: a thread
    inside one is let run a moment)."""
    for _ in range(attempts):
        stopped = Stopped(pid).__enter__()
        if not any(lo < rip < hi for rip in stopped.rips() for lo, hi in windows):
            return stopped
        stopped.__exit__(None, None, None)
        time.sleep(0.001)
    raise FaultError(f"pid {pid}: a thread stays inside the vDSO code being rewritten; not patched")


def apply_patch(patch: Patch, offset: float, mask: int = DEFAULT_MASK) -> int:
    """Patch ``patch.pid``'s vDSO to add ``offset`` seconds to the clocks in ``mask``; the page's address."""
    if not _same_process(patch):
        raise FaultError(f"pid {patch.pid} has exited (or its PID was reused): not patched")
    if (find_vdso(patch.pid) or (None,))[0] != patch.vdso:
        raise FaultError(f"pid {patch.pid}: its vDSO moved since it was read")
    windows = [(e.address, e.address + JUMP_LEN) for e in patch.entries]
    stopped = _stopped_clear_of(patch.pid, windows)
    try:
        for entry in patch.entries:
            if read_memory(patch.pid, entry.address, JUMP_LEN) != entry.original:
                raise FaultError(f"pid {patch.pid}: {entry.name} changed since it was read; not patched")
        flags = MAP_PRIVATE | MAP_ANONYMOUS
        page = stopped.syscall(patch.syscall_at, SYS_MMAP, 0, PAGE, PROT_READ | PROT_EXEC, flags, -1, 0)
        if page < 0:
            raise FaultError(f"pid {patch.pid}: mmap in the target failed: {os.strerror(-page)}")
        write_memory(patch.pid, page, STUB_CODE)
        write_memory(patch.pid, page + DATA_AT, data_area(offset, mask))
        write_memory(patch.pid, page + MAGIC_AT, MAGIC)
        for entry in patch.entries:
            write_memory(patch.pid, entry.address, _jump(page + SYMBOLS[entry.name]))
        return page
    finally:
        stopped.__exit__(None, None, None)


def set_offset(pid: int, page: int, offset: float, mask: int = DEFAULT_MASK) -> None:
    """Change a patched process's offset: its data area only, written while its threads are stopped."""
    if read_memory(pid, page + MAGIC_AT, len(MAGIC)) != MAGIC:
        raise FaultError(f"pid {pid}: no clock-skew page at {page:#x}")
    with Stopped(pid):
        write_memory(pid, page + DATA_AT, data_area(offset, mask))


def revert_patch(patch: Patch, page: int | None) -> str:
    """Write the original vDSO bytes back and unmap ``page`` if no thread is in it; idempotent.

    Returns what was done: ``restored``, ``already clean`` or ``gone`` (the process exited: its
    vDSO went with it). Raises when the bytes there are neither the original nor harness's jump.
    """
    if not _same_process(patch) or (find_vdso(patch.pid) or (None,))[0] != patch.vdso:
        return "gone"
    current = [read_memory(patch.pid, e.address, JUMP_LEN) for e in patch.entries]
    if page is None:  # journaled before the apply could say it: the jump names it
        page = next((t & ~(PAGE - 1) for t in map(_jump_target, current) if t is not None), None)
    clean = all(now == e.original for now, e in zip(current, patch.entries, strict=True))
    if clean and (page is None or not _is_harness_page(patch.pid, page)):
        return "already clean"
    windows = [(e.address, e.address + JUMP_LEN) for e in patch.entries]
    stopped = _stopped_clear_of(patch.pid, windows)
    try:
        restored = 0
        for entry in patch.entries:
            now = read_memory(patch.pid, entry.address, JUMP_LEN)
            if now == entry.original:
                continue
            target = _jump_target(now)
            if target is None or not _is_harness_page(patch.pid, target & ~(PAGE - 1)):
                raise FaultError(f"pid {patch.pid}: {entry.name} holds bytes harness did not write; left alone")
            write_memory(patch.pid, entry.address, entry.original)
            restored += 1
        idle = page is not None and not any(page <= rip < page + PAGE for rip in stopped.rips())
        if page is not None and idle and _is_harness_page(patch.pid, page):
            stopped.syscall(patch.syscall_at, SYS_MUNMAP, page, PAGE)
        return "restored" if restored else "already clean"
    finally:
        stopped.__exit__(None, None, None)


def restore_from_own(pid: int, page: int) -> str:
    """Revert a patch no journal knows (the sweep): the original bytes come from this process's own
    vDSO, the same image as every process's on this kernel (this process is never patched)."""
    own = find_vdso(os.getpid())
    where = find_vdso(pid)
    if own is None or where is None:
        return "gone"
    patch = _patch_of(pid, where[0], read_memory(os.getpid(), own[0], own[1] - own[0]))
    return revert_patch(patch, page)


def _is_harness_page(pid: int, page: int) -> bool:
    try:
        return read_memory(pid, page + MAGIC_AT, len(MAGIC)) == MAGIC
    except OSError:
        return False


def patched_processes() -> list[tuple[int, int]]:
    """Every process whose ``__vdso_clock_gettime`` jumps into a harness page: (pid, page).

    All processes share one vDSO image (one kernel): the entry's offset is read from this
    process's own vDSO, never patched.
    """
    own = find_vdso(os.getpid())
    if own is None:
        return []
    offsets = _symbols(read_memory(os.getpid(), own[0], own[1] - own[0]))
    at = offsets.get("__vdso_clock_gettime")
    if at is None:
        return []
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) == os.getpid():
            continue
        pid = int(name)
        where = find_vdso(pid)
        if where is None:
            continue
        try:
            target = _jump_target(read_memory(pid, where[0] + at, JUMP_LEN))
        except OSError:
            continue
        if target is not None and _is_harness_page(pid, target & ~(PAGE - 1)):
            found.append((pid, target & ~(PAGE - 1)))
    return found


_PROBE_CHILD = "import sys, time\nfor line in sys.stdin:\n    print(time.time(), flush=True)\n"


def probe() -> str:
    """``harness doctor``'s check: a real child's ``time.time()`` moved an hour ahead by the patch and back."""
    if platform.machine() != "x86_64":
        raise CapabilityMissing(f"the vDSO clock patch is x86-64 only; this machine is {platform.machine()}")
    child = subprocess.Popen(
        [sys.executable, "-c", _PROBE_CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert child.stdin is not None and child.stdout is not None
    try:

        def read() -> float:
            assert child.stdin is not None and child.stdout is not None
            child.stdin.write("\n")
            child.stdin.flush()
            line = child.stdout.readline()
            try:
                return float(line) - time.time()
            except ValueError:
                raise CapabilityMissing(f"a patched child printed {line[:80]!r}, not its clock") from None

        read()
        try:
            patch = plan_patch(child.pid)
            page = apply_patch(patch, 3600.0)
        except (FaultError, OSError) as exc:
            raise CapabilityMissing(f"cannot patch a child's vDSO: {exc} (needs root or CAP_SYS_PTRACE)") from None
        ahead = read()
        revert_patch(patch, page)
        after = read()
    finally:
        child.kill()
        child.wait()
    if abs(ahead - 3600) > 5 or abs(after) > 5:
        raise CapabilityMissing(f"the patch moved a child's clock {ahead:+.0f} s and back to {after:+.0f} s")
    return "ptrace patches a running child's vDSO (time.skew mechanism vdso: any x86-64 process, Go too)"
