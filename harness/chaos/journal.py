"""The node-local fault journal: what was done to this machine, written down before doing it.

One append-only JSON-lines file per run, ``<journal_dir>/<run_id>.jsonl``. Each line is one
:class:`FaultRecord`; a fault's history is the sequence of its lines, and its current state is
its last line. The rules every writer follows, and what a reader may therefore rely on:

* A fault is journaled as ``injecting`` (flushed and fsynced) *before* anything is applied,
  with the PIDs it is about to act on, so a crash at any later point leaves enough on disk for
  ``harness recover`` to undo it.
* ``injected`` is written after the fault was applied, ``reverted`` after it was undone (or
  when there was nothing to undo), ``revert_failed`` when undoing it failed and it is still
  in effect.
* A fault whose last state is anything but ``reverted`` is *outstanding*.
* A line cut short by a crash mid-write is skipped on reading, and the next append starts on
  a fresh line, so one torn write never hides the records around it.
* When every fault of a run is reverted the file can be retired (:meth:`Journal.retire`): it
  is renamed to ``<run_id>.jsonl.done`` and no longer scanned, but kept for the record.

Appends take an exclusive ``flock`` on the file and write each line with a single
``write(2)`` on an ``O_APPEND`` descriptor, so an agent's threads, a watchdog and
``harness recover`` may append to the same journal at once.

**Leases.** A fault injected by a chaos agent carries ``lease_until`` (epoch seconds, this
node's clock) on its records, written with ``injecting``. The orchestrator's heartbeat then
extends the lease of the whole run by rewriting a side file, ``<run_id>.lease``, atomically
(write a temporary file, ``rename(2)`` it over the old one). A fault's lease is the later of
its records' ``lease_until`` and the side file's; once that is in the past, the node's
watchdog (:mod:`harness.chaos.watchdog`) reverts the fault. Renewals live in the side file,
not the journal, so that the journal stays a short history of state changes, each fsynced
line meaning something, instead of growing by a line a second per run; and a lost or torn
side file can only make a lease *shorter* (the reader falls back to the journal's own
``lease_until``), so its loss errs towards reverting, never towards leaving a fault behind.
The side file is not fsynced: after a machine crash every paused process is gone anyway.
A fault without ``lease_until`` (journaled by ``inject`` called directly, not by an agent)
has no lease; the watchdog leaves it to ``harness recover``.
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import json
import logging
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from harness import paths
from harness.errors import FaultError

__all__ = ["DONE_SUFFIX", "LEASE_SUFFIX", "FaultRecord", "FaultState", "Journal", "all_outstanding", "journals"]

log = logging.getLogger(__name__)

SUFFIX = ".jsonl"
DONE_SUFFIX = ".jsonl.done"
LEASE_SUFFIX = ".lease"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


class FaultState(enum.StrEnum):
    """Where a fault is in its life; only ``REVERTED`` means nothing is left to undo."""

    INJECTING = "injecting"
    INJECTED = "injected"
    REVERTED = "reverted"
    REVERT_FAILED = "revert_failed"


@dataclass(frozen=True)
class FaultRecord:
    """One journal line: the state a fault reached, on which processes, and when.

    ``pids`` are the processes the fault acts on, fixed when the fault is first journaled;
    ``details`` holds kind-specific facts (signal number and name, the target, each PID's
    start time as ``create_time.<pid>`` so a recycled PID is never signalled, and what a
    revert did). ``time`` is wall-clock seconds since the epoch.
    """

    run_id: str
    fault_name: str
    kind: str
    state: FaultState
    pids: list[int] = field(default_factory=list)
    details: dict[str, str | int] = field(default_factory=dict)
    time: float = field(default_factory=time.time)
    #: Epoch seconds until which the fault's lease runs without renewal; None: not leased.
    lease_until: float | None = None

    @property
    def outstanding(self) -> bool:
        """True while the fault may still be in effect (anything but ``reverted``)."""
        return self.state is not FaultState.REVERTED

    def advance(self, state: FaultState, **details: str | int) -> FaultRecord:
        """The next line of this fault's history: same fault and PIDs, new state, merged details, now."""
        return replace(self, state=state, details={**self.details, **details}, time=time.time())

    def create_time(self, pid: int) -> float | None:
        """The recorded start time of ``pid``, or None when it was not recorded."""
        value = self.details.get(f"create_time.{pid}")
        try:
            return float(value) if value is not None else None
        except ValueError:
            return None

    def to_json(self) -> str:
        data = {
            "run_id": self.run_id,
            "fault_name": self.fault_name,
            "kind": self.kind,
            "state": self.state.value,
            "pids": list(self.pids),
            "details": dict(self.details),
            "time": self.time,
        }
        if self.lease_until is not None:
            data["lease_until"] = self.lease_until
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, line: str) -> FaultRecord:
        """Parse one line; raises ``ValueError`` (or ``KeyError``/``TypeError``) on anything malformed."""
        data: Any = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("a journal line must be a JSON object")
        pids = data.get("pids", [])
        lease = data.get("lease_until")
        if lease is not None and (not isinstance(lease, int | float) or isinstance(lease, bool)):
            raise ValueError("lease_until must be a number")
        details = data.get("details", {})
        if not isinstance(pids, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in pids):
            raise ValueError("pids must be a list of integers")
        if not isinstance(details, dict) or not all(
            isinstance(v, str | int) and not isinstance(v, bool) for v in details.values()
        ):
            raise ValueError("details must map names to strings or integers")
        return cls(
            run_id=str(data["run_id"]),
            fault_name=str(data["fault_name"]),
            kind=str(data["kind"]),
            state=FaultState(data["state"]),
            pids=pids,
            details={str(k): v for k, v in details.items()},
            time=float(data["time"]),
            lease_until=float(lease) if lease is not None else None,
        )


class Journal:
    """The journal of one run on this node.

    Creating a ``Journal`` touches nothing on disk; the file appears with the first
    :meth:`append`. Instances are cheap and stateless apart from a lock, so several may
    point at the same file (every read goes to disk).
    """

    def __init__(self, run_id: str, directory: str | Path | None = None) -> None:
        if not _RUN_ID.match(run_id):
            raise ValueError(f"run id {run_id!r} cannot name a journal file (letters, digits, '_', '.', '-')")
        self.run_id = run_id
        self.directory = Path(directory) if directory is not None else paths.journal_dir()
        self.path = self.directory / f"{run_id}{SUFFIX}"
        self.lease_path = self.directory / f"{run_id}{LEASE_SUFFIX}"
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"Journal({self.run_id!r}, {str(self.directory)!r})"

    # ------------------------------------------------------------ writing

    @contextlib.contextmanager
    def _locked(self, create: bool) -> Iterator[int | None]:
        """The live file, opened and exclusively ``flock``-ed; None if absent and not ``create``.

        The lock is taken on the file, so a retire (rename) that happened while this call
        waited for it is detected (the path no longer names the locked inode) and the open
        is retried on the path's new file: no record is ever appended to a retired journal.
        """
        flags = (os.O_RDWR | os.O_APPEND | os.O_CREAT) if create else os.O_RDONLY
        while True:
            try:
                fd = os.open(self.path, flags, 0o644)
            except FileNotFoundError:
                if create:
                    raise
                yield None
                return
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                try:
                    same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
                except FileNotFoundError:
                    same = False
                if not same:
                    continue  # retired while we waited: the finally closes fd, then retry
                yield fd
                return
            finally:
                os.close(fd)  # closing releases the flock

    def append(self, record: FaultRecord) -> None:
        """Write one record durably (flushed and fsynced) before returning.

        Callers rely on this ordering: ``append(injecting)`` returns only once the line is on
        disk, and only then is the fault applied.
        """
        if record.run_id != self.run_id:
            raise ValueError(f"record of run {record.run_id!r} does not belong in journal {self.run_id!r}")
        line = record.to_json().encode("utf-8") + b"\n"
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            created = not self.path.exists()
            with self._locked(create=True) as fd:
                assert fd is not None
                if not _ends_with_newline(fd):
                    line = b"\n" + line  # the last write was torn; start a fresh line
                _write_all(fd, line)
                os.fsync(fd)
            if created:
                _fsync_dir(self.directory)

    def retire(self) -> bool:
        """Rename the file to ``<run_id>.jsonl.done`` if nothing in it is outstanding.

        Returns True when the journal was retired (or there was no file), False when a fault
        is still outstanding and the journal must stay where ``recover`` finds it. Holds the
        file's lock throughout, so no append can slip in between the check and the rename.
        """
        with self._lock, self._locked(create=False) as fd:
            if fd is None:
                return True
            if self.outstanding():
                return False
            done = self.directory / f"{self.run_id}{DONE_SUFFIX}"
            if done.exists():  # same run id retired before: keep both histories in one file
                with done.open("ab") as out:
                    out.write(self.path.read_bytes())
                    out.flush()
                    os.fsync(out.fileno())
                self.path.unlink()
            else:
                os.replace(self.path, done)
            with contextlib.suppress(FileNotFoundError):
                self.lease_path.unlink()  # nothing is outstanding: no lease to keep
            _fsync_dir(self.directory)
            return True

    def renew(self, until: float) -> None:
        """Extend the lease of every fault of this run to ``until`` (epoch seconds); idempotent.

        Rewrites ``<run_id>.lease`` atomically, so a reader sees the old or the new expiry,
        never a torn one. Never shortens a lease a fault's records already carry: the reader
        takes the later of the two. Cheap enough to call every second (no fsync).
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        temporary = self.directory / f".{self.run_id}{LEASE_SUFFIX}.{os.getpid()}.{threading.get_ident()}"
        temporary.write_text(json.dumps({"run_id": self.run_id, "lease_until": until}), encoding="utf-8")
        os.replace(temporary, self.lease_path)

    def renewed_until(self) -> float | None:
        """The run's lease from its side file, or None if there is none (or it is unreadable)."""
        try:
            data: Any = json.loads(self.lease_path.read_text(encoding="utf-8"))
            value = data["lease_until"]
            return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("%s: unreadable lease file, ignored (%s)", self.lease_path, exc)
            return None

    def lease_expiry(self, record: FaultRecord) -> float | None:
        """When ``record``'s fault lease lapses (epoch seconds); None when the fault is not leased.

        The later of the fault's own ``lease_until`` and the run's renewal; a renewal alone
        does not lease a fault that was journaled without one.
        """
        if record.lease_until is None:
            return None
        renewed = self.renewed_until()
        return record.lease_until if renewed is None else max(record.lease_until, renewed)

    # ------------------------------------------------------------ reading

    def records(self) -> list[FaultRecord]:
        """Every readable record in the order written; torn or malformed lines are skipped with a warning."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return []
        out: list[FaultRecord] = []
        for number, line in enumerate(raw.split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                out.append(FaultRecord.from_json(line.decode("utf-8")))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s:%d: skipping unreadable journal line (%s)", self.path, number, exc)
        return out

    def latest(self, fault_name: str) -> FaultRecord | None:
        """The last record of ``fault_name`` in this run, or None if it was never journaled."""
        found = None
        for record in self.records():
            if record.fault_name == fault_name:
                found = record
        return found

    def previous_inject(self, run_id: str, fault_name: str, kind: str) -> tuple[FaultRecord | None, bool]:
        """What an inject of ``fault_name`` finds in this journal: ``(record, settled)``.

        Every fault family's inject starts here, which is what makes inject idempotent:
        ``settled`` means the fault was already injected (or reverted) in this run, so the
        caller returns ``record`` and changes nothing; otherwise ``record`` is an
        ``injecting`` line left by an attempt that died mid-way (to be completed from what
        it recorded), or None. Raises ``FaultError`` when the name was journaled as another
        kind, and ``ValueError`` when this is another run's journal.
        """
        if run_id != self.run_id:
            raise ValueError(f"journal of run {self.run_id!r} given for run {run_id!r}")
        previous = self.latest(fault_name)
        if previous is None or previous.state is FaultState.INJECTING:
            return previous, False
        if previous.kind != kind:
            raise FaultError(f"fault '{fault_name}': already journaled in run {run_id} as {previous.kind}")
        return previous, True

    def begin(
        self,
        fault_name: str,
        kind: str,
        details: dict[str, str | int],
        lease_until: float | None,
        pids: list[int] | None = None,
    ) -> FaultRecord:
        """Journal (fsynced) that ``fault_name`` is being injected, with everything its revert
        needs, and return that record: every fault family calls this before it changes anything."""
        record = FaultRecord(
            run_id=self.run_id,
            fault_name=fault_name,
            kind=kind,
            state=FaultState.INJECTING,
            pids=list(pids or []),
            details=details,
            lease_until=lease_until,
        )
        self.append(record)
        return record

    def current(self) -> dict[str, FaultRecord]:
        """The last record of every fault of this run, by fault name, in first-journaled order."""
        out: dict[str, FaultRecord] = {}
        for record in self.records():
            if record.run_id == self.run_id:
                out[record.fault_name] = record
        return out

    def outstanding(self) -> list[FaultRecord]:
        """Faults of this run whose last state is not ``reverted``: what ``recover`` would undo."""
        return [r for r in self.current().values() if r.outstanding]


def journals(directory: str | Path | None = None) -> Iterator[Journal]:
    """The journals of every run with a live (not retired) file in ``directory``, oldest first."""
    base = Path(directory) if directory is not None else paths.journal_dir()
    if not base.is_dir():
        return
    files = sorted(base.glob(f"*{SUFFIX}"), key=lambda p: (_mtime(p), p.name))
    for path in files:
        run_id = path.name[: -len(SUFFIX)]
        try:
            yield Journal(run_id, base)
        except ValueError:
            log.warning("%s: not a journal file name, ignored", path)


def all_outstanding(directory: str | Path | None = None) -> list[FaultRecord]:
    """Outstanding faults of every run journaled in ``directory`` (default: this node's journal)."""
    out: list[FaultRecord] = []
    for journal in journals(directory):
        out.extend(journal.outstanding())
    return out


# ---------------------------------------------------------------- helpers


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _ends_with_newline(fd: int) -> bool:
    """True if the open file is empty or its last byte is a newline (read without moving appends)."""
    size = os.fstat(fd).st_size
    return size == 0 or os.pread(fd, 1, size - 1) == b"\n"


def _fsync_dir(directory: Path) -> None:
    """Make a created or renamed file's directory entry durable too (best effort)."""
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0
