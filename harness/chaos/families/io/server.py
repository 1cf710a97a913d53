"""The io family's FUSE server: a passthrough file system over a directory that delays or fails
a share of the chosen operations. Run as ``python -m harness.chaos.families.io.server SPEC``.

Why it is shaped this way:

* **Passthrough to what is underneath.** The directory is opened (``O_PATH``) *before* the mount
  covers it, and every operation is done relative to that descriptor (``openat`` and friends),
  so the server reads and writes the very files the directory held: the data is never copied,
  and what is written during the fault is there after the unmount.
* **Every operation reaches the server.** ``direct_io`` (no page cache on the mount) and zero
  attribute, entry and negative timeouts: a read the page cache would answer, or a ``stat`` the
  kernel would answer from its cache, would escape the fault and make ``percent`` a lie.
* **Tagged.** The mount's source is ``harness-io:<run>/<fault>`` and its type
  ``fuse.harness-io`` (``/proc/self/mountinfo``), and the process carries the environment tag
  ``HARNESS_IO_FAULT``; ``harness recover --sweep`` finds both without a journal.
* **Bounded twice.** Past its ``lifetime`` (the fault's duration plus a margin) the server
  detaches its own mount and exits, should the agent, the watchdog and ``recover`` all fail.
* **Threads.** libfuse's multithreaded loop calls the operations from several threads; a delay
  is a ``time.sleep`` (the GIL is released), so concurrent operations are delayed side by side.

mfusepy (ctypes over libfuse3) is imported here only: the agent and ``harness validate`` never load it.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import random
import signal
import sys
import threading
import time
from typing import Any

import mfusepy as fuse

from harness.chaos.families.io import mounts
from harness.chaos.families.io.spec import Spec

__all__ = ["Passthrough", "main"]


class Passthrough(fuse.Operations):
    """Each operation on ``/rel`` is done on ``rel`` under the directory descriptor, after the fault."""

    use_ns = True

    def __init__(self, spec: Spec, dir_fd: int) -> None:
        self.spec = spec
        self.dir_fd = dir_fd
        self._random = random.Random()
        self._lock = threading.Lock()
        #: Cleared by SIGUSR1 (:data:`mounts.QUIESCE`): the revert's first step; pure passthrough from then on.
        self.active = threading.Event()
        self.active.set()

    # ---------------------------------------------------------------- the fault

    def _fault(self, method: str, path: str | None) -> None:
        spec = self.spec
        if method not in spec.methods or not self.active.is_set():
            return
        rel = (path or "/").lstrip("/") or "."
        if spec.pattern != "*" and not fnmatch.fnmatchcase(rel, spec.pattern):
            return
        with self._lock:  # random.Random is not documented as thread-safe
            hit = self._random.random() * 100.0 < spec.percent
            spread = self._random.uniform(-spec.jitter, spec.jitter) if spec.jitter else 0.0
        if not hit:
            return
        if spec.errno:
            raise fuse.FuseOSError(spec.errno)
        time.sleep(max(0.0, spec.delay + spread))

    def _rel(self, path: str) -> str:
        return path.lstrip("/") or "."

    # ---------------------------------------------------------------- files

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        self._fault("getattr", path)
        st = os.fstat(fh) if fh is not None else os.stat(self._rel(path), dir_fd=self.dir_fd, follow_symlinks=False)
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_ino", "st_dev", "st_blocks")
        attrs: dict[str, Any] = {key: getattr(st, key) for key in keys}
        attrs.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return attrs

    def access(self, path: str, amode: int) -> int:
        if not os.access(self._rel(path), amode, dir_fd=self.dir_fd):
            raise fuse.FuseOSError(errno.EACCES)
        return 0

    def open(self, path: str, flags: int) -> int:
        self._fault("open", path)
        return os.open(self._rel(path), flags & ~os.O_CREAT, dir_fd=self.dir_fd)

    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        self._fault("create", path)
        return os.open(self._rel(path), flags | os.O_CREAT, mode, dir_fd=self.dir_fd)

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        self._fault("read", path)
        return os.pread(fh, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        self._fault("write", path)
        return os.pwrite(fh, data, offset)

    def flush(self, path: str, fh: int) -> int:
        self._fault("flush", path)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        self._fault("fsync", path)
        if datasync:
            os.fdatasync(fh)
        else:
            os.fsync(fh)
        return 0

    def release(self, path: str, fh: int) -> int:
        try:
            self._fault("release", path)
        finally:
            os.close(fh)  # the descriptor is closed whatever the fault says: no leak
        return 0

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        self._fault("truncate", path)
        if fh is not None:
            os.ftruncate(fh, length)
        else:
            fd = os.open(self._rel(path), os.O_WRONLY, dir_fd=self.dir_fd)
            try:
                os.ftruncate(fd, length)
            finally:
                os.close(fd)
        return 0

    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._rel(path), mode, dir_fd=self.dir_fd)
        return 0

    def chown(self, path: str, uid: int, gid: int) -> int:
        os.chown(self._rel(path), uid, gid, dir_fd=self.dir_fd, follow_symlinks=False)
        return 0

    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        if times is None:
            os.utime(self._rel(path), dir_fd=self.dir_fd, follow_symlinks=False)
        else:
            os.utime(self._rel(path), ns=times, dir_fd=self.dir_fd, follow_symlinks=False)
        return 0

    def unlink(self, path: str) -> int:
        self._fault("unlink", path)
        os.unlink(self._rel(path), dir_fd=self.dir_fd)
        return 0

    def rename(self, old: str, new: str) -> int:
        self._fault("rename", old)
        os.rename(self._rel(old), self._rel(new), src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        return 0

    def link(self, target: str, source: str) -> int:
        os.link(self._rel(source), self._rel(target), src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        return 0

    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._rel(target), dir_fd=self.dir_fd)
        return 0

    def readlink(self, path: str) -> str:
        return os.readlink(self._rel(path), dir_fd=self.dir_fd)

    def statfs(self, path: str) -> dict[str, int]:
        st = os.statvfs(f"/proc/self/fd/{self.dir_fd}")
        keys = ("f_bsize", "f_frsize", "f_blocks", "f_bfree", "f_bavail", "f_files", "f_ffree", "f_favail")
        return {key: getattr(st, key) for key in keys} | {"f_namemax": st.f_namemax}

    # ---------------------------------------------------------------- directories

    def mkdir(self, path: str, mode: int) -> int:
        self._fault("mkdir", path)
        os.mkdir(self._rel(path), mode, dir_fd=self.dir_fd)
        return 0

    def rmdir(self, path: str) -> int:
        self._fault("rmdir", path)
        os.rmdir(self._rel(path), dir_fd=self.dir_fd)
        return 0

    def readdir(self, path: str, fh: int) -> list[str]:
        self._fault("readdir", path)
        fd = os.open(self._rel(path), os.O_RDONLY | os.O_DIRECTORY, dir_fd=self.dir_fd)
        try:
            return [".", "..", *os.listdir(fd)]
        finally:
            os.close(fd)


def _quiesce_on_signal(operations: Passthrough) -> None:
    """Stop faulting at the revert's first signal: operations in flight finish, new ones pass."""
    signal.sigwait({mounts.QUIESCE})
    operations.active.clear()


def _end_of_life(spec: Spec) -> None:
    """The second net: detach our own mount and exit once the fault's lifetime is over."""
    time.sleep(spec.lifetime)
    mounts.detach(spec.volume_path, spec.source)
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m harness.chaos.families.io.server SPEC_JSON", file=sys.stderr)
        return 2
    spec = Spec.from_json(args[0])
    dir_fd = os.open(spec.volume_path, os.O_RDONLY | os.O_DIRECTORY)  # before the mount covers it
    operations = Passthrough(spec, dir_fd)
    # The main thread sits in libfuse's loop (C), where a Python signal handler never runs: the
    # signal is blocked in every thread (libfuse's inherit the mask) and one thread waits for it.
    signal.pthread_sigmask(signal.SIG_BLOCK, {mounts.QUIESCE})
    threading.Thread(target=_quiesce_on_signal, args=(operations,), daemon=True).start()
    threading.Thread(target=_end_of_life, args=(spec,), daemon=True).start()
    fuse.FUSE(
        operations,
        spec.volume_path,
        foreground=True,
        fsname=spec.source,
        subtype=mounts.SUBTYPE,
        allow_other=True,
        default_permissions=True,
        direct_io=True,
        attr_timeout=0,
        entry_timeout=0,
        negative_timeout=0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
