"""Stopping every thread of a running x86-64 process, and making a system call in it: ptrace through ctypes.

The ``time.skew`` vDSO mechanism (:mod:`harness.chaos.vdso_skew`) needs three things from a running process: all of
its threads held still while a jump is written over a function they may be running, one system
call (``mmap``, ``munmap``) made *by the process*, and its memory read and written. This module
is those three, over libc's ``ptrace(2)`` and ``/proc/PID/mem``, for x86-64 Linux only.

Why ctypes and not a library: python-ptrace (last release 2024-03) covers far more (a debugger's
worth) than the four requests used here, and its syscall injection is not what is needed; the
requests are ``PTRACE_SEIZE``, ``PTRACE_INTERRUPT``, ``PTRACE_GETREGS``/``SETREGS``,
``PTRACE_SINGLESTEP`` and ``PTRACE_DETACH``.

What callers may rely on:

* :class:`Stopped` is a context manager: on entry every thread of the process is in a ptrace
  stop (threads born while stopping are caught: the task list is read again until it is
  stable); on exit every thread is detached and runs on, with the registers it had, whatever
  happened in between. A process ptraced by someone else (a debugger, strace) is refused.
* :meth:`Stopped.syscall` runs one system call in a stopped thread by pointing its ``rip`` at a
  ``syscall`` instruction the caller names, single-stepping it, and restoring every register.
  A thread stopped inside a system call of its own (``epoll_wait``, ``nanosleep``) gets that
  call restarted as the kernel would after a signal (``orig_rax`` is kept out of the way
  during the injected call and restored after).
* Memory is read and written through ``/proc/PID/mem`` while the process is stopped; writes
  reach read-only mappings (the vDSO) by the kernel's copy-on-write, as a debugger's
  breakpoints do; the process's own page tables never become writable.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
from pathlib import Path
from types import TracebackType

from harness.errors import FaultError

__all__ = ["ARCH", "Regs", "Stopped", "read_memory", "write_memory"]

#: The only architecture this module speaks (its register layout and syscall numbers).
ARCH = "x86_64"

PTRACE_GETREGS = 12
PTRACE_SETREGS = 13
PTRACE_SINGLESTEP = 9
PTRACE_DETACH = 17
PTRACE_SEIZE = 0x4206
PTRACE_INTERRUPT = 0x4207
WALL = 0x40000000
SIGTRAP = 5


_REGISTERS = (
    *("r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi"),
    *("rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs"),
)


class Regs(ctypes.Structure):
    """``struct user_regs_struct`` of x86-64 (``sys/user.h``)."""

    _fields_ = [(name, ctypes.c_ulonglong) for name in _REGISTERS]


_libc = ctypes.CDLL(None, use_errno=True)
_libc.ptrace.restype = ctypes.c_long
_libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]


def _ptrace(request: int, tid: int, addr: int = 0, data: int | ctypes.c_void_p | None = 0) -> int:
    result = _libc.ptrace(request, tid, ctypes.c_void_p(addr), data)
    if result == -1:
        err = ctypes.get_errno()
        raise OSError(err, f"ptrace({request:#x}, {tid}): {os.strerror(err)}")
    return int(result)


def _tids(pid: int) -> set[int]:
    try:
        return {int(name) for name in os.listdir(f"/proc/{pid}/task")}
    except FileNotFoundError:
        return set()


def read_memory(pid: int, address: int, size: int) -> bytes:
    """``size`` bytes at ``address`` of process ``pid`` (``/proc/PID/mem``)."""
    with open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        mem.seek(address)
        data = mem.read(size)
    if len(data) != size:
        raise OSError(errno.EIO, f"pid {pid}: read {len(data)} of {size} bytes at {address:#x}")
    return data


def write_memory(pid: int, address: int, data: bytes) -> None:
    """Write ``data`` at ``address`` of process ``pid``; reaches read-only mappings (copy-on-write)."""
    with open(f"/proc/{pid}/mem", "r+b", buffering=0) as mem:
        mem.seek(address)
        written = mem.write(data)
    if written != len(data):
        raise OSError(errno.EIO, f"pid {pid}: wrote {written} of {len(data)} bytes at {address:#x}")


def _tracer_of(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("TracerPid:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class Stopped:
    """Every thread of ``pid`` held in a ptrace stop for the ``with`` block (see the module docstring)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.regs: dict[int, Regs] = {}  # tid -> registers at the stop (what detach restores)
        self._signals: dict[int, int] = {}  # tid -> a signal that arrived while stopped: delivered at detach

    def __enter__(self) -> Stopped:
        if (tracer := _tracer_of(self.pid)) not in (0, os.getpid()):
            raise FaultError(f"pid {self.pid} is already traced by pid {tracer} (a debugger?): not touched")
        try:
            self._stop_all()
        except BaseException:
            self._detach_all()
            raise
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._detach_all()

    def _stop_all(self) -> None:
        seen: set[int] = set()
        for _ in range(100):  # a thread may be born while the others stop: read the list again
            new = _tids(self.pid) - seen
            if not new:
                if not seen:
                    raise FaultError(f"pid {self.pid} has exited")
                return
            for tid in sorted(new):
                seen.add(tid)
                try:
                    _ptrace(PTRACE_SEIZE, tid)
                    _ptrace(PTRACE_INTERRUPT, tid)
                except OSError as exc:
                    if exc.errno == errno.ESRCH:  # the thread exited in between
                        continue
                    raise FaultError(f"cannot ptrace pid {self.pid} thread {tid}: {exc.strerror}") from None
                if self._wait(tid) is not None:
                    self.regs[tid] = self._getregs(tid)
        raise FaultError(f"pid {self.pid} keeps starting threads: cannot stop them all")

    def _wait(self, tid: int) -> int | None:
        """Wait for ``tid``'s next stop: its wait status, or None when it exited instead.

        A signal sent to the thread meanwhile shows up as a signal-delivery stop: it is kept and
        delivered when the thread is detached, so no signal is lost or run on injected registers.
        """
        while True:
            try:
                _, status = os.waitpid(tid, WALL)
            except ChildProcessError:
                return None
            if os.WIFSTOPPED(status):
                sig = os.WSTOPSIG(status)
                if status >> 16 == 0 and sig not in (SIGTRAP, signal.SIGSTOP):
                    self._signals[tid] = sig
                return status
            if os.WIFEXITED(status) or os.WIFSIGNALED(status):
                return None

    @staticmethod
    def _getregs(tid: int) -> Regs:
        regs = Regs()
        _ptrace(PTRACE_GETREGS, tid, 0, ctypes.cast(ctypes.pointer(regs), ctypes.c_void_p))
        return regs

    @staticmethod
    def _setregs(tid: int, regs: Regs) -> None:
        _ptrace(PTRACE_SETREGS, tid, 0, ctypes.cast(ctypes.pointer(regs), ctypes.c_void_p))

    def _detach_all(self) -> None:
        for tid in list(_tids(self.pid)):
            try:
                if tid in self.regs:
                    self._setregs(tid, self.regs[tid])
                _ptrace(PTRACE_DETACH, tid, 0, self._signals.pop(tid, 0))
            except OSError:
                continue  # not ours (never seized) or gone
        self.regs.clear()

    def rips(self) -> list[int]:
        """Where each stopped thread will resume."""
        return [int(r.rip) for r in self.regs.values()]

    def syscall(self, syscall_at: int, number: int, *args: int) -> int:
        """Run system call ``number`` with ``args`` in one stopped thread; its return value (``-errno`` on failure).

        ``syscall_at`` is the address of a ``syscall`` instruction (``0f 05``) mapped executable
        in the process.
        """
        tid = min(self.regs)  # the lowest: the main thread while it lives
        saved = self.regs[tid]
        regs = Regs.from_buffer_copy(saved)
        regs.rax = number
        regs.orig_rax = 2**64 - 1  # -1: no restart of an interrupted call during ours
        for name, value in zip(("rdi", "rsi", "rdx", "r10", "r8", "r9"), args, strict=False):
            setattr(regs, name, value % 2**64)
        regs.rip = syscall_at
        self._setregs(tid, regs)
        after = regs
        try:
            for _ in range(10):  # a signal or a pending interrupt may stop it before the step ends
                _ptrace(PTRACE_SINGLESTEP, tid)
                status = self._wait(tid)
                if status is None:
                    del self.regs[tid]
                    raise FaultError(f"pid {self.pid} thread {tid} exited during an injected system call")
                after = self._getregs(tid)
                if status >> 16 == 0 and os.WSTOPSIG(status) == SIGTRAP and after.rip != syscall_at:
                    break
        finally:
            if tid in self.regs:
                self._setregs(tid, saved)
        if after.rip != syscall_at + 2:
            raise FaultError(f"pid {self.pid}: injected system call {number} did not complete (rip {after.rip:#x})")
        value = int(after.rax)
        return value - 2**64 if value >= 2**63 else value
