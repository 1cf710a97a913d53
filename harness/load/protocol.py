"""The line protocol between a LoadGenerator actor and its Locust subprocesses, as typed messages.

Commands go to the subprocess's stdin, one JSON object per line named by ``cmd``
(:func:`encode_command`, :func:`decode_command`):

* :class:`SetUsers` ``{"cmd": "set_users", "users": N, "spawn_rate": R}`` -- closed model: reach N
  users at R/s
* :class:`SetRate` ``{"cmd": "set_rate", "rate": R, "users": N, "start": T, "phase": F}`` -- open
  model: this process starts R task iterations/s, served by up to N users; its k-th iteration
  of the stage is due at epoch ``T + (k + F) / R`` (T = 0: from when the command arrives).
  Giving each of n processes the phase i/n interleaves their slots into one schedule of n*R
  arrivals/s.
* :class:`Stop` ``{"cmd": "stop"}`` -- stop all users, flush the last windows, exit 0
* :class:`SetContext` ``{"cmd": "context", "phase": P, "faults": [F, ...]}`` -- the run's phase and
  the faults active now, for the W3C ``baggage`` of every request (sent when either changes; no
  acknowledgement)
* :class:`Keepalive` ``{"cmd": "keepalive"}`` -- the actor is there and hears from the driver;
  sent every ``KEEPALIVE_INTERVAL`` seconds. A process that reads no line at all for
  ``ACTOR_SILENCE`` seconds (its actor hangs, or stopped forwarding keepalives because the
  driver went silent) stops its users and exits: a process cut off from the run sends no load.

Reports come back on a dedicated pipe (not stdout, which user code may print to), one JSON
object per line named by ``t`` (:meth:`Report.encode`, :func:`decode_report`):

* :class:`Ready` ``{"t": "ready", "p": ID}`` once the locustfile is imported and the runner waits
* :class:`Window` ``{"t": "window", "p": ID, "s": SECOND, ...}`` every second: the process's
  health and its per-endpoint statistics of that second (see
  :class:`harness.measure.windows.WindowRecorder`, which fills it)
* :class:`Applied` ``{"t": "applied", "p": ID, "cmd": CMD, "at": EPOCH}`` after each
  set_users/set_rate took effect
* :class:`Examples` ``{"t": "examples", "p": ID, "x": [[METHOD, NAME, TRACE_ID, MS, SECOND, FAILURE], ...]}``
  requests newly among an endpoint's slowest or first failed ones (when traced), with the window
* :class:`Stopped` ``{"t": "stopped", "p": ID}`` after the final window
* :class:`Error` ``{"t": "error", "p": ID, "message": TEXT}`` on a fatal problem (the process
  then exits 1)

Each message type is found by its name through a table, so a new one is one class and one
table entry. Nothing here runs per request: a process encodes one window a second.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

__all__ = [
    "ACTOR_SILENCE",
    "EXAMPLES_PREFIX",
    "KEEPALIVE_INTERVAL",
    "Applied",
    "Command",
    "Error",
    "Examples",
    "Health",
    "Keepalive",
    "Ready",
    "Report",
    "SetContext",
    "SetRate",
    "SetUsers",
    "Stop",
    "Stopped",
    "Window",
    "decode_as",
    "decode_command",
    "decode_report",
    "encode_command",
]

KEEPALIVE_INTERVAL = 1.0  # the actor sends each process a keepalive this often (s)
ACTOR_SILENCE = 5.0  # a process that reads nothing from its actor this long stops (s)

_COMPACT = (",", ":")

# ---------------------------------------------------------------- commands (actor -> process)


@dataclass(frozen=True, slots=True)
class SetUsers:
    """Closed model: reach ``users`` users, starting ``spawn_rate`` per second."""

    name: ClassVar[str] = "set_users"
    users: int
    spawn_rate: float

    def payload(self) -> dict[str, Any]:
        return {"users": self.users, "spawn_rate": self.spawn_rate}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> SetUsers:
        return cls(int(data.get("users", 0)), float(data.get("spawn_rate", 0.0)))


@dataclass(frozen=True, slots=True)
class SetRate:
    """Open model: ``rate`` iterations/s from epoch ``start`` at ``phase``, by up to ``users`` users."""

    name: ClassVar[str] = "set_rate"
    rate: float
    users: int
    start: float = 0.0
    phase: float = 0.0

    def payload(self) -> dict[str, Any]:
        return {"rate": self.rate, "users": self.users, "start": self.start, "phase": self.phase}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> SetRate:
        return cls(
            float(data.get("rate", 0.0)),
            int(data.get("users", 0)),
            float(data.get("start", 0.0)),
            float(data.get("phase", 0.0)),
        )


@dataclass(frozen=True, slots=True)
class Stop:
    """Stop every user, send the last windows, exit."""

    name: ClassVar[str] = "stop"

    def payload(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Stop:
        return cls()


@dataclass(frozen=True, slots=True)
class Keepalive:
    """The actor is there (and hears from the driver): nothing to apply."""

    name: ClassVar[str] = "keepalive"

    def payload(self) -> dict[str, Any]:
        return {}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> Keepalive:
        return cls()


@dataclass(frozen=True, slots=True)
class SetContext:
    """The run's phase and active faults changed: what the requests' ``baggage`` says from now on."""

    name: ClassVar[str] = "context"
    phase: str
    faults: tuple[str, ...] = ()

    def payload(self) -> dict[str, Any]:
        return {"phase": self.phase, "faults": list(self.faults)}

    @classmethod
    def from_payload(cls, data: Mapping[str, Any]) -> SetContext:
        return cls(str(data.get("phase", "")), tuple(str(f) for f in data.get("faults", [])))


Command = SetUsers | SetRate | Stop | Keepalive | SetContext
_COMMANDS: dict[str, type[Command]] = {cls.name: cls for cls in (SetUsers, SetRate, Stop, Keepalive, SetContext)}


def encode_command(command: Command) -> bytes:
    """One line for the process's stdin."""
    return (json.dumps({"cmd": command.name, **command.payload()}, separators=_COMPACT) + "\n").encode()


def decode_command(line: bytes | str) -> Command:
    """Raises ValueError for a line that is not a known command."""
    data = _object(line)
    kind = _COMMANDS.get(str(data.get("cmd")))
    if kind is None:
        raise ValueError(f"unknown command {data.get('cmd')!r}")
    return _built(kind.from_payload, data)


# ---------------------------------------------------------------- reports (process -> actor)


@dataclass(frozen=True, slots=True)
class Health:
    """How a process did in the second a window reports: what it takes to judge a generator."""

    cpu: float = 0.0  # share of a core the process used (1.0 = a whole core)
    wait: float = 0.0  # share of the second its event loop was runnable but waiting for a core
    users: int = 0
    rate: float = 0.0  # this process's target arrival rate (open model), else 0
    lag_ms: float = 0.0  # how late the once-a-second tick woke: event-loop lag


class Report:
    """A report line: each subclass has a ``name`` (the ``t`` of its line), ``encode`` and ``decode``."""

    name: ClassVar[str]
    process: str

    def fields(self) -> dict[str, Any]:
        raise NotImplementedError

    def encode(self) -> str:
        """One line (without its newline) for the report pipe."""
        return json.dumps({"t": self.name, "p": self.process, **self.fields()}, separators=_COMPACT)

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Report:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Ready(Report):
    name: ClassVar[str] = "ready"
    process: str

    def fields(self) -> dict[str, Any]:
        return {}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Ready:
        return cls(str(data["p"]))


@dataclass(frozen=True, slots=True)
class Stopped(Report):
    name: ClassVar[str] = "stopped"
    process: str

    def fields(self) -> dict[str, Any]:
        return {}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Stopped:
        return cls(str(data["p"]))


@dataclass(frozen=True, slots=True)
class Error(Report):
    name: ClassVar[str] = "error"
    process: str
    message: str

    def fields(self) -> dict[str, Any]:
        return {"message": self.message}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Error:
        return cls(str(data["p"]), str(data.get("message", "")))


@dataclass(frozen=True, slots=True)
class Applied(Report):
    """A process applied a command (``cmd``: its name) at epoch time ``at`` (the driver's clock)."""

    name: ClassVar[str] = "applied"
    process: str
    cmd: str
    at: float

    def fields(self) -> dict[str, Any]:
        return {"cmd": self.cmd, "at": self.at}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Applied:
        return cls(str(data["p"]), str(data.get("cmd", "")), float(data["at"]))


@dataclass(frozen=True, slots=True)
class Window(Report):
    """One process's second: its health, the open-model iterations it started (``started``) and
    each endpoint's statistics in their wire form (``EndpointStats.to_wire``: counts, failures,
    bytes and the encoded HDR histograms, which the driver decodes and merges)."""

    name: ClassVar[str] = "window"
    process: str
    second: int
    health: Health
    started: int
    endpoints: list[dict[str, Any]]

    def fields(self) -> dict[str, Any]:
        h = self.health
        return {
            "s": self.second,
            "cpu": h.cpu,
            "w": h.wait,
            "u": h.users,
            "r": h.rate,
            "lag": h.lag_ms,
            "a": self.started,
            "e": self.endpoints,
        }

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Window:
        health = Health(
            cpu=float(data.get("cpu", 0.0)),
            wait=float(data.get("w", 0.0)),
            users=int(data.get("u", 0)),
            rate=float(data.get("r", 0.0)),
            lag_ms=float(data.get("lag", 0.0)),
        )
        return cls(str(data["p"]), int(data["s"]), health, int(data.get("a", 0)), list(data.get("e", [])))


@dataclass(frozen=True, slots=True)
class Examples(Report):
    """Requests that became one of their endpoint's example traces (slowest, or first failed) since
    the last report: ``(method, name, trace_id, latency_ms, epoch_second, failure_kind or "")``."""

    name: ClassVar[str] = "examples"
    process: str
    entries: list[tuple[str, str, str, float, int, str]]

    def fields(self) -> dict[str, Any]:
        return {"x": self.entries}

    @classmethod
    def decode(cls, data: Mapping[str, Any]) -> Examples:
        entries = [(str(m), str(n), str(t), float(ms), int(s), str(f)) for m, n, t, ms, s, f in data.get("x", [])]
        return cls(str(data["p"]), entries)


#: How an examples report line starts (``Report.encode`` writes ``t`` first): the driver picks
#: them out of the window lines without decoding every line twice.
EXAMPLES_PREFIX = '{"t":"examples"'

R = TypeVar("R", bound=Report)

_REPORTS: dict[str, type[Report]] = {cls.name: cls for cls in (Ready, Window, Applied, Stopped, Error, Examples)}


def decode_report(line: bytes | str) -> Report:
    """The typed report of one line; raises ValueError for a line that is not a known report."""
    data = _object(line)
    kind = _REPORTS.get(str(data.get("t")))
    if kind is None:
        raise ValueError(f"unknown report {data.get('t')!r}")
    report: Report = _built(kind.decode, data)
    return report


def decode_as(line: bytes | str, kind: type[R]) -> R | None:
    """The report in ``line`` if it is a ``kind``, else None (other reports are not decoded).

    Raises ValueError for a line that is not JSON, or a ``kind`` with a missing or bad field.
    """
    data = _object(line)
    if data.get("t") != kind.name:
        return None
    report: R = _built(kind.decode, data)
    return report


# ---------------------------------------------------------------- helpers


def _object(line: bytes | str) -> dict[str, Any]:
    data = json.loads(line)
    if not isinstance(data, dict):
        raise ValueError(f"not a JSON object: {line!r:.200}")
    return data


def _built(build: Any, data: Mapping[str, Any]) -> Any:
    """``build(data)``, with a missing or mistyped field reported as ValueError like bad JSON."""
    try:
        return build(data)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed message {dict(data)!r:.200}: {type(exc).__name__}: {exc}") from None
