"""The node-local watchdog: reverts a fault whose lease lapsed, whoever died.

A plain process, not a Ray actor, so it outlives the orchestrator, Ray and the chaos agent
being SIGKILLed, a lost Ray node or a cut network::

    python -m harness.chaos.watchdog --journal-dir DIR

The chaos agent starts it (:func:`ensure_running`) detached, in its own session, when it
injects a fault and none runs for that journal directory. Every ``interval`` seconds it
reads every live journal in the directory; each outstanding fault whose lease
(:meth:`Journal.lease_expiry`) is in the past is reverted through
:func:`harness.chaos.recover.revert_outstanding`, the code ``harness recover`` uses, and the
revert is journaled there. A journal whose run no longer renews its lease and that has
nothing outstanding is retired. A fault whose lease is still valid is never touched, and a
fault without a lease is left to ``harness recover``. With nothing leased outstanding for
``idle_exit`` seconds (``HARNESS_WATCHDOG_IDLE_EXIT``, default 30) the watchdog exits, so
no daemon lingers; the agent starts a new one with the next fault.

One watchdog per directory: it holds an exclusive ``flock`` on ``DIR/watchdog.pid`` (which
holds its PID) for its whole life; a second one exits at once. The agent checks that lock
*after* journaling a fault, and the watchdog re-checks the journals *after* releasing it on
its way out, so a fault journaled while a watchdog is leaving is always seen by one of them.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

import psutil

from harness import paths
from harness.chaos.journal import Journal, journals
from harness.chaos.recover import revert_outstanding
from harness.errors import FaultError

__all__ = [
    "DEFAULT_IDLE_EXIT",
    "DEFAULT_INTERVAL",
    "LOG_NAME",
    "PID_NAME",
    "Watchdog",
    "ensure_running",
    "main",
    "running_pid",
]

log = logging.getLogger("harness.chaos.watchdog")

DEFAULT_INTERVAL = 0.5  # seconds between scans: a lapsed lease is reverted at most this late
DEFAULT_IDLE_EXIT = 30.0  # seconds with nothing leased outstanding before the watchdog exits
PID_NAME = "watchdog.pid"
LOG_NAME = "watchdog.log"
MODULE = "harness.chaos.watchdog"


def _try_lock(path: Path) -> int | None:
    """Open ``path`` and take its exclusive flock without waiting; the fd, or None if it is held."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def running_pid(journal_dir: str | Path) -> int | None:
    """The PID of the watchdog running for ``journal_dir``, or None if none holds its lock."""
    path = Path(journal_dir) / PID_NAME
    if not path.exists():
        return None
    fd = _try_lock(path)
    if fd is not None:
        os.close(fd)
        return None
    try:
        return int(path.read_text().strip() or "0") or None
    except (OSError, ValueError):
        return None


_started: list[int] = []  # watchdogs this process started, newest last


def _alive_watchdog(pid: int) -> bool:
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and MODULE in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def ensure_running(journal_dir: str | Path | None = None) -> int | None:
    """Start a watchdog for ``journal_dir`` unless one is running; returns the started PID, or None.

    Detached twice over: it is started through a shell that backgrounds it and exits, so it
    is nobody's child (Ray kills a worker's child processes when the worker exits), in its
    own session, stdin from /dev/null, stdout and stderr appended to ``DIR/watchdog.log``.
    Cheap when one runs (one non-blocking flock). One this process started moments ago and
    that has not taken the lock yet counts as running; two processes racing may still both
    start one, and the second exits at once because it cannot take the lock.
    """
    directory = Path(journal_dir) if journal_dir is not None else paths.journal_dir()
    fd = _try_lock(directory / PID_NAME)
    if fd is None:
        return None
    os.close(fd)
    if _started and _alive_watchdog(_started[-1]):
        return None  # still starting up (or leaving, after its last look at the journals)
    root = str(Path(__file__).resolve().parents[2])  # importable whatever the starter's cwd
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])),
        "HARNESS_WATCHDOG_LOG": str(directory / LOG_NAME),
    }
    command = [sys.executable, "-m", MODULE, "--journal-dir", str(directory)]
    shell = subprocess.run(
        ["/bin/sh", "-c", '"$@" >>"$HARNESS_WATCHDOG_LOG" 2>&1 </dev/null & echo $!', "sh", *command],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        start_new_session=True,
        env=env,
        cwd=str(directory),
        timeout=10,
        check=True,
    )
    pid = int(shell.stdout.strip())
    _started.append(pid)
    log.info("started watchdog %d for %s", pid, directory)
    return pid


class Watchdog:
    """Reverts lapsed leases in one journal directory; :meth:`scan` is one pass, :meth:`run` the loop."""

    def __init__(
        self, journal_dir: str | Path, interval: float = DEFAULT_INTERVAL, idle_exit: float = DEFAULT_IDLE_EXIT
    ):
        self.directory = Path(journal_dir)
        self.interval = interval
        self.idle_exit = idle_exit
        self._stop = False

    def scan(self, now: float | None = None) -> int:
        """Revert every leased outstanding fault whose lease lapsed; returns how many leased faults remain.

        A failed revert is logged and retried on the next pass (the fault stays journaled
        as ``revert_failed``). A journal is retired once nothing in it is outstanding and
        its run's lease lapsed (the run no longer renews: it ended or died).
        """
        remaining = 0
        for journal in journals(self.directory):
            for record in journal.outstanding():
                expiry = journal.lease_expiry(record)
                if expiry is None:
                    continue  # not leased: harness recover's job
                if expiry > (time.time() if now is None else now):
                    remaining += 1
                    continue
                # Read the lease once more right before acting: a renewal may just have landed.
                expiry = journal.lease_expiry(journal.latest(record.fault_name) or record)
                if expiry is not None and expiry > time.time():
                    remaining += 1
                    continue
                late = time.time() - (expiry or 0.0)
                try:
                    line = revert_outstanding(record, journal)
                except FaultError as exc:
                    remaining += 1
                    log.error("lease lapsed %.1fs ago, revert FAILED: %s", late, exc)
                    continue
                log.warning("lease lapsed %.1fs ago, reverted %s", late, line)
            self._maybe_retire(journal)
        return remaining

    def _maybe_retire(self, journal: Journal) -> None:
        renewed = journal.renewed_until()
        leased = any(r.lease_until is not None for r in journal.current().values())
        if leased and (renewed is None or renewed <= time.time()) and not journal.outstanding() and journal.retire():
            log.info("retired journal of run %s", journal.run_id)

    def run(self) -> int:
        """Loop until idle for ``idle_exit`` seconds or SIGTERM/SIGINT; returns the exit code (0)."""
        fd = _try_lock(self.directory / PID_NAME)
        if fd is None:
            log.info("another watchdog holds %s; exiting", self.directory / PID_NAME)
            return 0
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)
        with contextlib.suppress(OSError):  # own session whoever started us (EPERM: already a leader)
            os.setsid()
        log.info("watchdog %d watching %s (scan every %gs)", os.getpid(), self.directory, self.interval)
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            idle_since = time.monotonic()
            while not self._stop:
                try:
                    remaining = self.scan()
                except Exception:  # a bug or an I/O error must not end the watch
                    log.exception("scan failed")
                    remaining = 1
                if remaining:
                    idle_since = time.monotonic()
                elif time.monotonic() - idle_since >= self.idle_exit:
                    # Leave, then look once more: a fault journaled while we held the lock
                    # was not seen by its agent as unwatched (see the module docstring).
                    os.close(fd)
                    fd = -1
                    if not self.scan():
                        break
                    relocked = _try_lock(self.directory / PID_NAME)
                    if relocked is None:
                        break  # a new watchdog took over
                    fd = relocked
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                    idle_since = time.monotonic()
                time.sleep(self.interval)
        finally:
            if fd >= 0:
                os.close(fd)
        log.info("watchdog %d exiting", os.getpid())
        return 0

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop = True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__.splitlines()[0])
    parser.add_argument("--journal-dir", type=Path, default=None, help="journal directory (default: this node's)")
    parser.add_argument("--interval", type=float, default=DEFAULT_INTERVAL, help="seconds between scans")
    parser.add_argument(
        "--idle-exit",
        type=float,
        default=float(os.environ.get("HARNESS_WATCHDOG_IDLE_EXIT") or DEFAULT_IDLE_EXIT),
        help="exit after this many seconds with nothing leased (default: $HARNESS_WATCHDOG_IDLE_EXIT or 30)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s watchdog[%(process)d] %(levelname)s %(message)s")
    directory = args.journal_dir if args.journal_dir is not None else paths.journal_dir()
    with contextlib.suppress(KeyboardInterrupt):
        return Watchdog(directory, args.interval, args.idle_exit).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
