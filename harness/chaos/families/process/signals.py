"""Signals to the processes a fault record names, never to a PID the kernel has since reused."""

from __future__ import annotations

import signal
from collections.abc import Iterable

import psutil

from harness.chaos.journal import FaultRecord
from harness.chaos.processes import CREATE_TIME_TOLERANCE, start_ticks

__all__ = ["Sent", "pid_list", "same_process", "send", "signal_name", "still_running"]


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


class Sent:
    """What one round of signals did: which PIDs got it, which were skipped and why."""

    def __init__(self) -> None:
        self.signalled: list[int] = []
        self.gone: list[int] = []  # exited (or a zombie) since the fault was recorded
        self.reused: list[int] = []  # alive, but no longer the recorded process: PID recycled
        self.errors: dict[int, str] = {}

    def details(self, signalled_key: str) -> dict[str, str | int]:
        """Journal details; every key is always present so a step's outcome replaces the last one's."""
        return {
            signalled_key: pid_list(self.signalled),
            "gone": pid_list(self.gone),
            "pid_reused": pid_list(self.reused),
            "errors": self.error_text(),
        }

    def error_text(self) -> str:
        return "; ".join(f"pid {pid}: {why}" for pid, why in self.errors.items())


def same_process(proc: psutil.Process, record: FaultRecord) -> bool:
    """Is ``proc`` the process ``record`` resolved under its PID? Boot-relative ticks first."""
    ticks = record.details.get(f"start_ticks.{proc.pid}")
    if isinstance(ticks, int):
        now = start_ticks(proc.pid)
        if now is not None:
            return now == ticks
    recorded = record.create_time(proc.pid)
    return recorded is not None and abs(proc.create_time() - recorded) <= CREATE_TIME_TOLERANCE


def send(record: FaultRecord, number: int, only: Iterable[int] | None = None) -> Sent:
    """Send ``number`` to every recorded PID (or those in ``only``) that is still the recorded process.

    A PID is signalled only if it is alive, not a zombie, and its start time matches the one
    recorded; a missing start time counts as a mismatch. Never raises for one process.
    """
    sent = Sent()
    for pid in record.pids if only is None else list(only):
        try:
            proc = psutil.Process(pid)
            if not same_process(proc, record):
                sent.reused.append(pid)
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                sent.gone.append(pid)
                continue
            proc.send_signal(number)
            sent.signalled.append(pid)
        except psutil.NoSuchProcess:
            sent.gone.append(pid)
        except psutil.AccessDenied:
            sent.errors[pid] = "permission denied"
        except OSError as exc:
            sent.errors[pid] = exc.strerror or str(exc)
    return sent


def pid_list(pids: Iterable[int]) -> str:
    return ",".join(str(p) for p in pids)


def still_running(record: FaultRecord) -> list[int]:
    """Recorded targets that are still the recorded process and alive: the kill did not end them."""
    alive: list[int] = []
    for pid in record.pids:
        try:
            proc = psutil.Process(pid)
            if same_process(proc, record) and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.Error:
            continue
    return alive
