"""The io family's mounts and server processes: starting the FUSE server over a directory,
finding harness's mounts in ``/proc/self/mountinfo``, detaching them and ending the servers.

Why it is shaped this way:

* **Only our mount is detached.** :func:`detach` unmounts a directory only while the mount on
  top of it is of type ``fuse.harness-io`` with the fault's own source, and stops as soon as it
  is not: the directory may itself be a mount point (``/tmp`` on tmpfs) that must stay.
* **Lazy.** ``umount2(MNT_DETACH)``: it succeeds while a target still holds files open through
  the mount; the mount disappears from every path at once, and the kernel lets go of it when
  the last such descriptor closes.
* **Another mount namespace.** A target in a mount namespace of its own (a container, a service
  started by ``ip netns exec``) would never see a mount made in the agent's: there the server is
  started through ``nsenter --mount`` and mounts in the target's namespace, whose mount table is
  read through ``/proc/<pid>/mountinfo`` and which ``umount -l`` is run in to detach it.
* **Only our processes.** The server is killed by its PID only while its start time still
  matches the journaled one, and by the environment tag ``HARNESS_IO_FAULT=<run>/<fault>``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from harness.chaos.fault_servers import FaultServer, reap
from harness.chaos.processes import start_ticks
from harness.errors import FaultError

__all__ = [
    "FS_TYPE",
    "SERVER",
    "SOURCE_PREFIX",
    "SUBTYPE",
    "TAG",
    "Mount",
    "detach",
    "drain",
    "harness_mounts",
    "kill",
    "other_namespaces",
    "quiesce",
    "start",
]

TAG = "HARNESS_IO_FAULT"
#: The server's FUSE subtype: the mount table shows the type ``fuse.harness-io``, the sweep's tag.
SUBTYPE = "harness-io"
FS_TYPE = f"fuse.{SUBTYPE}"
#: The mount's source is this plus ``<run>/<fault>``.
SOURCE_PREFIX = "harness-io:"
_MNT_DETACH = 2
#: The signal that makes a server stop faulting (the revert's first step; see :func:`quiesce`).
QUIESCE = signal.SIGUSR1
#: The FUSE server process: spawned, found by its tag and stopped as every fault server is.
SERVER = FaultServer(module="harness.chaos.families.io.server", tag=TAG, noun="FUSE server", grace=2.0)


@dataclass(frozen=True)
class Mount:
    """One line of /proc/self/mountinfo that matters here."""

    point: str
    fs_type: str
    source: str


def _unescape(field: str) -> str:
    """mountinfo writes space, tab, newline and backslash as octal escapes (``\\040``)."""
    return field.encode().decode("unicode_escape") if "\\" in field else field


def mounts(ns_pid: int | None = None) -> list[Mount]:
    """Every mount of this process's mount namespace (or ``ns_pid``'s), in mount order (the last one
    at a point is on top)."""
    out = []
    where = f"/proc/{ns_pid}/mountinfo" if ns_pid else "/proc/self/mountinfo"
    for line in Path(where).read_text().splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) >= 5 and len(tail) >= 2:
            out.append(Mount(_unescape(fields[4]), tail[0], _unescape(tail[1])))
    return out


def top_mount(point: str, ns_pid: int | None = None) -> Mount | None:
    """The mount on top at ``point`` (a real path), or None when nothing is mounted there."""
    found = [m for m in mounts(ns_pid) if m.point == point]
    return found[-1] if found else None


def harness_mounts(ns_pid: int | None = None) -> list[Mount]:
    """Every harness io mount (any run) in this mount namespace (or ``ns_pid``'s)."""
    return [m for m in mounts(ns_pid) if m.fs_type == FS_TYPE and m.source.startswith(SOURCE_PREFIX)]


def other_namespaces() -> dict[str, int]:
    """One live process per mount namespace other than this process's: ``{namespace: pid}``."""
    mine = os.readlink("/proc/self/ns/mnt")
    found: dict[str, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                ns = os.readlink(entry / "ns" / "mnt")
                if ns != mine:
                    found.setdefault(ns, int(entry.name))
    return found


def _enter(ns_pid: int | None) -> list[str]:
    """The command prefix that runs a program in ``ns_pid``'s mount namespace (nothing: in ours)."""
    return ["nsenter", f"--mount=/proc/{ns_pid}/ns/mnt", "--"] if ns_pid else []


def detach(point: str, source: str, ns_pid: int | None = None) -> int:
    """Lazily unmount every harness mount of ``source`` stacked on top at ``point`` (in ``ns_pid``'s
    mount namespace when given); how many."""
    umount2 = ctypes.CDLL(None, use_errno=True).umount2
    done = 0
    for _ in range(16):  # a resumed inject may have stacked a second one
        top = top_mount(point, ns_pid)
        if top is None or top.fs_type != FS_TYPE or top.source != source:
            break
        if ns_pid:  # setns() is refused to a threaded process: umount runs in the namespace instead
            argv = [*_enter(ns_pid), "umount", "-i", "-l", point]
            result = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
            if result.returncode != 0:
                raise FaultError(f"cannot unmount {point} in the mount namespace of pid {ns_pid}: {result.stderr}")
        elif umount2(point.encode(), _MNT_DETACH) != 0:
            err = ctypes.get_errno()
            raise FaultError(f"cannot unmount {point}: {os.strerror(err)}")
        done += 1
    return done


def start(
    spec_json: str, point: str, source: str, tag: str, log_path: str, ns_pid: int | None = None
) -> tuple[int, int]:
    """Start the server in its own session (in ``ns_pid``'s mount namespace when given); return
    (pid, start ticks) once its mount is on top at ``point``."""
    cmd = [*_enter(ns_pid), sys.executable, "-m", SERVER.module, spec_json]
    child = SERVER.spawn(cmd, log_path=log_path, tag_value=tag)
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):  # nsenter has not exec'd yet
            top = top_mount(point, ns_pid)
            if top is not None and top.fs_type == FS_TYPE and top.source == source:
                break
        if child.poll() is not None:
            why = Path(log_path).read_text(errors="replace").strip()[-400:]
            raise FaultError(f"the FUSE server exited at once with status {child.returncode}: {why}")
        time.sleep(0.02)
    else:
        why = Path(log_path).read_text(errors="replace").strip()[-400:]
        child.kill()
        raise FaultError(f"the FUSE server did not mount {point} within 10 s: {why}")
    ticks = start_ticks(child.pid)
    if ticks is None:
        raise FaultError("the FUSE server vanished right after it mounted")
    return child.pid, ticks


def quiesce(pid: object, ticks: object) -> int | None:
    """Tell the fault's server (by PID, start time checked) to stop faulting; its PID, or None when gone."""
    if isinstance(pid, int) and isinstance(ticks, int) and pid > 0 and start_ticks(pid) == ticks:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, QUIESCE)
            return pid
    return None


def drain(pid: int | None, timeout: float) -> None:
    """Wait up to ``timeout`` for a detached server to end by itself, which libfuse's loop does
    once nothing holds a file of the mount open any more."""
    if pid is None:
        return
    deadline = time.monotonic() + timeout
    with contextlib.suppress(psutil.NoSuchProcess):
        proc = psutil.Process(pid)
        while proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.02)
    reap()


def kill(pid: object, ticks: object, tag: str) -> str:
    """End the fault's server: SIGTERM, then SIGKILL after 2 s; by PID (start time checked) and tag."""
    return SERVER.stop(pid, ticks, tag)
