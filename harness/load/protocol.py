"""The line protocol between a LoadGenerator actor and its Locust subprocesses.

Commands go to the subprocess's stdin, one JSON object per line:

* ``{"cmd": "set_users", "users": N, "spawn_rate": R}`` -- closed model: reach N users at R/s
* ``{"cmd": "set_rate", "rate": R, "users": N, "start": T, "phase": F}`` -- open model: this process
  starts R task iterations/s, served by up to N users; its k-th iteration of the stage is due at
  epoch ``T + (k + F) / R`` (T = 0: from when the command arrives). Giving each of n processes
  the phase i/n interleaves their slots into one schedule of n*R arrivals/s.
* ``{"cmd": "stop"}`` -- stop all users, flush the last windows, exit 0
* ``{"cmd": "keepalive"}`` -- the actor is there and hears from the driver; sent every
  ``KEEPALIVE_INTERVAL`` seconds. A process that reads no line at all for ``ACTOR_SILENCE``
  seconds (its actor hangs, or stopped forwarding keepalives because the driver went
  silent) stops its users and exits: a process cut off from the run sends no load.

Reports come back on a dedicated pipe (not stdout, which user code may print to), one JSON
object per line with a type ``t``:

* ``{"t": "ready", "p": ID}`` once the locustfile is imported and the runner waits for work
* ``{"t": "window", ...}`` every second, see :class:`harness.measure.windows.WindowRecorder`
* ``{"t": "applied", "p": ID, "cmd": CMD, "at": EPOCH}`` after each set_users/set_rate took effect
* ``{"t": "stopped", "p": ID}`` after the final window
* ``{"t": "error", "p": ID, "message": TEXT}`` on a fatal problem (the process then exits 1)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = ["ACTOR_SILENCE", "KEEPALIVE_INTERVAL", "Command", "decode_command", "encode_command", "report"]

KEEPALIVE_INTERVAL = 1.0  # the actor sends each process a keepalive this often (s)
ACTOR_SILENCE = 5.0  # a process that reads nothing from its actor this long stops (s)


@dataclass(frozen=True)
class Command:
    cmd: str
    users: int = 0
    spawn_rate: float = 0.0
    rate: float = 0.0
    start: float = 0.0
    phase: float = 0.0


def encode_command(command: Command) -> bytes:
    payload: dict[str, Any] = {"cmd": command.cmd}
    if command.cmd == "set_users":
        payload.update(users=command.users, spawn_rate=command.spawn_rate)
    elif command.cmd == "set_rate":
        payload.update(rate=command.rate, users=command.users, start=command.start, phase=command.phase)
    return (json.dumps(payload) + "\n").encode()


def decode_command(line: bytes | str) -> Command:
    data = json.loads(line)
    cmd = str(data["cmd"])
    if cmd not in ("set_users", "set_rate", "stop", "keepalive"):
        raise ValueError(f"unknown command {cmd!r}")
    return Command(
        cmd=cmd,
        users=int(data.get("users", 0)),
        spawn_rate=float(data.get("spawn_rate", 0.0)),
        rate=float(data.get("rate", 0.0)),
        start=float(data.get("start", 0.0)),
        phase=float(data.get("phase", 0.0)),
    )


def report(kind: str, process: str, **fields: Any) -> str:
    return json.dumps({"t": kind, "p": process, **fields}, separators=(",", ":"))
