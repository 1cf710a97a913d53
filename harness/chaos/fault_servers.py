"""A server process a fault starts for its window (the transparent fault proxy, a DNS responder in
a namespace, the io family's FUSE server): started tagged, waited for until its control API
answers (the FUSE server: until its mount is on top), found again by its tag, and stopped so that
only it is ever signalled.

The process runs in its own session at nice 0 (whatever the agent runs at), with the environment
tag ``<TAG>=<run>/<fault>``: a crash between starting it and journaling its PID leaves nothing
unfindable, since :meth:`FaultServer.tagged` finds it by the tag. A stop signals the journaled
PID only while its start time still matches (never a recycled PID), and every process carrying
the fault's tag: SIGTERM, then SIGKILL after ``grace`` seconds.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

import harness
from harness.chaos import nft, processes
from harness.chaos.control_client import ControlClient
from harness.chaos.family import Leftover
from harness.chaos.processes import normal_niceness, start_ticks
from harness.errors import FaultError

__all__ = ["FaultServer", "reap", "redirect_leftovers", "remove_redirect_leftover"]

# Servers started by this process, so they are reaped (no zombies in a long-lived agent).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def reap() -> None:
    """Collect the exit status of every server this process started that has ended."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


def _alive(pid: int, ticks: int) -> bool:
    """True while ``pid`` is the process started at ``ticks`` and not a zombie."""
    reap()
    if start_ticks(pid) != ticks:
        return False
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    return False


@dataclass(frozen=True)
class FaultServer:
    """One kind of fault server: its module (run as ``python -m``), its environment tag, the noun
    messages call it by, and its control API if it has one."""

    module: str
    tag: str
    noun: str
    client: ControlClient | None = None  # None: a server without a control API (the io family's)
    grace: float = 5.0
    start_timeout: float = 15.0

    def spawn(self, cmd: list[str], *, log_path: str, tag_value: str) -> subprocess.Popen[bytes]:
        """Run ``cmd`` (which runs :attr:`module`, maybe behind ``ip netns exec`` or ``nsenter``) tagged,
        in its own session at nice 0, its output appended to ``log_path``; reaped by :func:`reap`."""
        # The package harness came from, whatever the caller's working directory (a Ray worker's is not ours).
        source = str(Path(harness.__file__).resolve().parents[1])
        path = os.pathsep.join(p for p in (source, os.environ.get("PYTHONPATH", "")) if p)
        with open(log_path, "ab") as out:
            child = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**os.environ, "PYTHONPATH": path, self.tag: tag_value},
                start_new_session=True,  # it outlives an agent that dies: the watchdog reverts its fault
                preexec_fn=normal_niceness,
            )
        _CHILDREN[child.pid] = child
        return child

    def start(self, cmd: list[str], *, log_path: str, tag_value: str, control: str) -> tuple[int, int, dict[str, Any]]:
        """:meth:`spawn`, then (pid, start ticks, health answer) once its control API at ``control``
        answers; ``FaultError`` if it does not."""
        if self.client is None:
            raise TypeError(f"{self.noun} has no control API: use spawn and wait for its own sign of life")
        child = self.spawn(cmd, log_path=log_path, tag_value=tag_value)
        deadline = time.monotonic() + self.start_timeout
        while True:
            if child.poll() is not None:
                why = Path(log_path).read_text(errors="replace").strip()[-400:]
                raise FaultError(f"the {self.noun} exited at once with status {child.returncode}: {why}")
            with contextlib.suppress(FaultError):
                status, answer = self.client.health(control, timeout=1.0)
                if status == 200 and isinstance(answer, dict):
                    break
            if time.monotonic() > deadline:
                raise FaultError(f"the {self.noun} did not answer on {control} within {self.start_timeout:g}s")
            time.sleep(0.05)
        ticks = start_ticks(child.pid)
        if ticks is None:
            raise FaultError(f"the {self.noun} vanished right after it started")
        return child.pid, ticks, answer

    def tagged(self, value: str | None = None) -> dict[int, int]:
        """Live servers of this kind carrying the tag (``value``, or any), as {pid: start ticks}."""
        found: dict[int, int] = {}
        for proc in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error):
                if self.module not in (proc.info["cmdline"] or []) or proc.pid == os.getpid():
                    continue
                tag = proc.environ().get(self.tag)
                if tag is not None and (value is None or tag == value) and proc.status() != psutil.STATUS_ZOMBIE:
                    ticks = start_ticks(proc.pid)
                    if ticks is not None:
                        found[proc.pid] = ticks
        return found

    def stop(self, pid: object, ticks: object, tag_value: str) -> str:
        """Stop the journaled process (if still the same one) and every one tagged ``tag_value``."""
        victims: dict[int, int] = {}
        if isinstance(pid, int) and isinstance(ticks, int) and pid > 0 and _alive(pid, ticks):
            victims[pid] = ticks
        if tag_value:
            victims.update(self.tagged(tag_value))
        if not victims:
            reap()
            return f"{self.noun} not running"
        for sig, wait in ((signal.SIGTERM, self.grace), (signal.SIGKILL, 5.0)):
            for victim, start in victims.items():
                if _alive(victim, start):  # checked right before each signal: never a recycled PID
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(victim, sig)
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(_alive(p, t) for p, t in victims.items()):
                time.sleep(0.02)
            if not any(_alive(p, t) for p, t in victims.items()):
                return f"stopped {self.noun} {','.join(map(str, victims))} with {sig.name}"
        raise FaultError(f"{self.noun} process(es) {','.join(map(str, victims))} still alive after SIGKILL")


def redirect_leftovers(family: str, prefix: str, nft_families: tuple[str, ...], tag: str) -> list[Leftover]:
    """What ``recover --sweep`` finds of a family that redirects traffic to a fault server: its
    nftables tables (names starting with ``prefix``) in every namespace, and tagged servers."""
    out: list[Leftover] = []
    for netns in nft.namespaces():
        with contextlib.suppress(FaultError):  # no nft here: no tables of ours either
            out += [
                Leftover(netns, "nft table", f"{table_family} {name}", (table_family, name), family, order=3)
                for table_family, name in nft.tables(netns)
                if table_family in nft_families and name.startswith(prefix)
            ]
    return out + [
        Leftover("", "process", f"pid {proc.pid} ({value})", (proc.pid, proc.create_time()), family, order=5)
        for proc, value in processes.tagged([tag])
    ]


def remove_redirect_leftover(leftover: Leftover) -> None:
    """Remove one thing :func:`redirect_leftovers` found."""
    if leftover.kind == "process":
        processes.kill_if_same(*leftover.key)
    else:
        table_family, name = leftover.key
        nft.run(leftover.netns, ["delete", "table", table_family, name])
