"""harness's clock shim: processes started under libfaketime, reading their clock's skew from a file.

``python -m harness.chaos.clock_shim --file SKEW_FILE -- COMMAND [ARG...]`` runs COMMAND with
Debian's libfaketime preloaded and pointed at SKEW_FILE (written at rest, ``+0 x1``, first), and
tagged ``HARNESS_CLOCK_SHIM=SKEW_FILE`` in its environment. A ``time.skew`` fault finds that file
through the target's ``/proc/PID/environ`` and writes an offset and a rate into it; the process's
next clock read sees them (``FAKETIME_NO_CACHE``: libfaketime re-reads the file on every call).

Why a shim and not the running process itself (what was measured on this machine, Debian
libfaketime 0.9.10, kernel 6.18; docs/faults.md has the whole comparison):

* libfaketime acts only on a process that loaded it at start (``LD_PRELOAD``), and only on clock
  reads that go through libc: a Go binary reads the vDSO directly and is not affected.
* Only ``CLOCK_REALTIME`` is shifted (``FAKETIME_DONT_FAKE_MONOTONIC=1``). Without that flag
  0.9.10 reports ``CLOCK_MONOTONIC`` as the *faked wall clock* (a jump of the whole epoch) and a
  ``threading.Event.wait`` hangs under a negative offset. With it, an unpatched Python
  ``time.sleep`` fails with EINVAL (0.9.10's ``clock_nanosleep`` with an absolute monotonic
  deadline); gevent's sleep, ``select`` and ``threading`` waits work, which is what the demo's
  gevent services use.
* ``FAKETIME_NO_CACHE`` costs a file read per clock read: 4.3 us per ``time.time()`` here,
  against 0.12 us with libfaketime's default 10 s cache (which would delay a fault by up to 10 s;
  ``benchmarks/clock_cost.py``).

What callers may rely on: :func:`write_skew` replaces the file atomically (a reader sees the old
or the new line, never half of one); :data:`REST` is the content of an unskewed clock.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

__all__ = [
    "LIBRARY_GLOB",
    "REST",
    "STARTED",
    "TAG",
    "Shim",
    "how_to_start",
    "library",
    "main",
    "read_skew",
    "shim_environment",
    "shim_of",
    "skew_line",
    "tagged_files",
    "write_skew",
]

#: The environment variable that tags a process started under the shim; its value is the skew file.
TAG = "HARNESS_CLOCK_SHIM"
#: The environment variable holding when the process was started under the shim (epoch seconds,
#: just before its exec): libfaketime runs a rate from its own load, not from the PID's creation
#: (a launcher that execs keeps its PID and start time).
STARTED = "HARNESS_CLOCK_SHIM_STARTED"
#: Where Debian's ``libfaketime`` package puts the preload library (multiarch directory).
LIBRARY_GLOB = "/usr/lib/*/faketime/libfaketime.so.1"
#: A skew file's content when no fault is on: no offset, normal speed (the rate is written
#: explicitly: libfaketime keeps the last rate when a line gives none).
REST = "+0 x1"


def library() -> Path | None:
    """The libfaketime preload library on this host, or None when the package is not installed."""
    found = sorted(glob.glob(LIBRARY_GLOB))
    return Path(found[0]) if found else None


def skew_line(offset: float, rate: float = 1.0) -> str:
    """The line libfaketime reads: ``-600.000000 x1.010000``; ``+0 x1`` for no skew."""
    if offset == 0 and rate == 1:
        return REST
    return f"{offset:+.6f} x{rate:.6f}"


def write_skew(path: Path, line: str) -> None:
    """Replace ``path``'s content with ``line`` atomically (rename over it)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(line + "\n", encoding="ascii")
    os.replace(tmp, path)


def read_skew(path: Path) -> str | None:
    """The skew line in ``path``, or None when the file is gone or unreadable."""
    try:
        return path.read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None


def shim_environment(skew_file: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) plus what starts a process under the shim.

    Writes :data:`REST` into ``skew_file`` first, so a restarted process never inherits a skew
    a crashed run left. Raises ``FileNotFoundError`` when libfaketime is not installed.
    """
    lib = library()
    if lib is None:
        raise FileNotFoundError(f"libfaketime is not installed (no {LIBRARY_GLOB}): apt-get install faketime")
    skew_file.parent.mkdir(parents=True, exist_ok=True)
    write_skew(skew_file, REST)
    env = dict(os.environ if base is None else base)
    preload = [p for p in env.get("LD_PRELOAD", "").split(":") if p]
    env["LD_PRELOAD"] = ":".join([str(lib), *[p for p in preload if p != str(lib)]])
    env["FAKETIME_TIMESTAMP_FILE"] = str(skew_file)
    env["FAKETIME_NO_CACHE"] = "1"
    env["FAKETIME_DONT_FAKE_MONOTONIC"] = "1"
    env[TAG] = str(skew_file)
    env[STARTED] = repr(time.time())
    return env


@dataclass(frozen=True)
class Shim:
    """A live process started under the shim: its skew file and when libfaketime started counting
    (for a rate's anchor: :data:`STARTED`, else the process's creation)."""

    pid: int
    skew_file: Path
    create_time: float


def shim_of(pid: int) -> Shim | None:
    """The shim ``pid`` was started under, or None (not tagged, libfaketime not preloaded, or gone).

    Raises ``psutil.AccessDenied`` when its environment cannot be read.
    """
    try:
        proc = psutil.Process(pid)
        env = proc.environ()
        create_time = proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    skew_file = env.get(TAG)
    if not skew_file or "libfaketime" not in env.get("LD_PRELOAD", ""):
        return None
    if env.get("FAKETIME_TIMESTAMP_FILE") != skew_file:
        return None
    try:
        started = float(env.get(STARTED, ""))
    except ValueError:
        started = create_time
    return Shim(pid, Path(skew_file), started)


def how_to_start(command: str = "COMMAND") -> str:
    """The sentence a refusal ends with: how to start a target a ``time.skew`` fault can act on."""
    return (
        "start it under harness's clock shim: `python -m harness.chaos.clock_shim --file SKEW_FILE -- "
        f"{command}` (the demo: `harness demo up --clock-shim payments`)"
    )


def tagged_files() -> dict[Path, list[int]]:
    """Skew files of live processes started under the shim, with their PIDs; changes nothing."""
    files: dict[Path, list[int]] = {}
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            value = proc.environ().get(TAG)
            if value and proc.status() != psutil.STATUS_ZOMBIE:
                files.setdefault(Path(value), []).append(proc.pid)
    return files


def main(argv: list[str] | None = None) -> int:
    """Exec COMMAND under the shim (this process becomes it: its PID is the one a pid file names)."""
    parser = argparse.ArgumentParser(prog="python -m harness.chaos.clock_shim", description=__doc__.split("\n")[0])
    parser.add_argument("--file", type=Path, required=True, help="the skew file (created, written +0 x1)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command after --")
    try:
        env = shim_environment(args.file.resolve())
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    sys.exit(main())
