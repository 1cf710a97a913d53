"""The parts of a run's summary that each say one thing about the run: the generators and agents,
losses and gaps, findings, events, step timings, comparisons, heals and example traces.

Kept apart from :mod:`harness.judge.summary` (which assembles them into the :class:`RunSummary`
and re-exports every name here) so each module stays small. Pure: dataclasses and the standard
library.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from harness.judge.codec import OMIT_NONE, decode_fields
from harness.measure.heal import HealTime

__all__ = [
    "AgentEntry",
    "ComparisonEntry",
    "DeliverySummary",
    "EndpointTraces",
    "FindingEntry",
    "GeneratorEntry",
    "HealEntry",
    "LoadGap",
    "LostGenerator",
    "ProbeSeries",
    "ProbeValue",
    "RunEvent",
    "SecondCounts",
    "StepTiming",
    "TraceExample",
]


@dataclass(frozen=True)
class TraceExample:
    """One request a reviewer can open in a tracing tool by its W3C trace id."""

    trace_id: str = ""
    latency_ms: float = 0.0  # Locust's response time (service time, not from an intended start)
    second: int = 0  # epoch second the request completed in
    failure: str = ""  # its failure kind, "" when it succeeded


@dataclass(frozen=True)
class EndpointTraces:
    """One endpoint's example traces: its slowest requests (slowest first) and its first failed ones."""

    method: str = ""
    name: str = ""
    slowest: list[TraceExample] = field(default_factory=list)
    failed: list[TraceExample] = field(default_factory=list)


# ---------------------------------------------------------------- where things ran


@dataclass(frozen=True)
class GeneratorEntry:
    """Where one load generator ran, what it ran, and its node's clock against the driver's."""

    id: str = ""
    node: str = ""
    node_ip: str = ""
    hostname: str = ""
    processes: list[str] = field(default_factory=list)
    offset_ms: float = 0.0
    uncertainty_ms: float = 0.0


@dataclass(frozen=True)
class AgentEntry:
    """Where one chaos agent ran, the faults it applied, and its node's clock."""

    node: str = ""
    node_ip: str = ""
    hostname: str = ""
    faults: list[str] = field(default_factory=list)
    offset_ms: float = 0.0
    uncertainty_ms: float = 0.0


# ---------------------------------------------------------------- how the load went


@dataclass(frozen=True)
class SecondCounts:
    """Seconds in which a generator was saturated, the arrival rate fell short, or windows came late."""

    saturated: int = 0
    short: int = 0
    late: int = 0


@dataclass
class LostGenerator:
    """A generator declared lost: when (offset from the run start, and epoch time), why, what it ran."""

    id: str = ""
    offset: float = 0.0
    time: float = 0.0
    why: str = ""
    actor_pid: int | None = None
    processes: list[str] = field(default_factory=list)
    load: str | None = field(default=None, metadata=OMIT_NONE)  # what became of its share, in words


@dataclass
class LoadGap:
    """One loss (a process died, a generator was lost) and when its share ran again elsewhere.

    Filled in as the run goes: ``moved_to`` when the share is sent to the live processes,
    ``restored_at`` and ``gap_s`` once every one of them applied it; ``note`` says why not.
    """

    subject: str
    processes: list[str]
    cause: str
    lost_at: float
    lost_offset: float
    detected_at: float
    detected_after_s: float
    moved_to: list[str] = field(default_factory=list)
    restored_at: float | None = None
    gap_s: float | None = None
    note: str | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class FindingEntry:
    """A load-delivery finding (saturated, short, lost, died) that can make a run invalid."""

    condition: str = ""
    subject: str = ""
    offset: float = 0.0
    seconds: int = 0
    text: str = ""


@dataclass(frozen=True)
class DeliverySummary:
    sustained_seconds: int = 0
    findings: list[FindingEntry] = field(default_factory=list)


@dataclass(frozen=True)
class StepTiming:
    """One step of the plan: planned, sent and done offsets (s) and how late it took effect."""

    step: str = ""
    name: str = ""
    planned_s: float = 0.0
    executed_s: float = 0.0
    done_s: float | None = None
    late_ms: float = 0.0
    lead_s: float | None = field(default=None, metadata=OMIT_NONE)
    acknowledged: int | None = field(default=None, metadata=OMIT_NONE)
    unacknowledged: list[str] | None = field(default=None, metadata=OMIT_NONE)


@dataclass
class RunEvent:
    """An event of the run (run, phase, stage, fault, abort, generator), as annotated in Grafana.

    ``done_offset`` is set on a stage event once the processes acknowledged the stage (None
    when none did); it is written only for such events.
    """

    time: float = 0.0
    offset: float = 0.0  # from the run start (s)
    kind: str = ""
    name: str = ""
    state: str = ""  # start or end
    text: str = ""
    planned_offset: float | None = None
    late_ms: float | None = None
    done_offset: float | None = None
    finished: bool = False  # a stage event whose acknowledgements were counted (writes done_offset)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": self.time,
            "offset": self.offset,
            "kind": self.kind,
            "name": self.name,
            "state": self.state,
            "text": self.text,
        }
        if self.planned_offset is not None:
            out["planned_offset"] = self.planned_offset
        if self.late_ms is not None:
            out["late_ms"] = self.late_ms
        if self.finished:
            out["done_offset"] = self.done_offset
        return out

    @classmethod
    def from_json(cls, data: Any) -> RunEvent:
        event = decode_fields(cls, data)
        event.finished = isinstance(data, Mapping) and "done_offset" in data
        return event


# ---------------------------------------------------------------- the verdict's inputs


@dataclass(frozen=True)
class ComparisonEntry:
    """One baseline comparison (a metric of an endpoint in a phase); None where JSON has no number."""

    phase: str = ""
    endpoint: str = ""
    metric: str = ""
    baseline: float | None = None
    current: float | None = None
    change: float | None = None
    tolerance: float = 0.0
    floor: float = 0.0
    p_value: float | None = None
    regressed: bool = False
    message: str = ""


@dataclass(frozen=True)
class HealEntry:
    """How long the system took to heal after a fault, measured from its side (heal_time).

    ``began`` is the fault's end, or the kill for a kind with nothing to revert (``since``:
    ``end`` or ``kill``); ``healed`` when the first poll found ``check`` holding, None (and
    ``heal_time_s`` None) when none did before the run ended. Epoch seconds, driver's clock.
    """

    fault: str = ""
    check: str = ""
    since: str = "end"
    began: float = 0.0
    healed: float | None = None
    heal_time_s: float | None = None
    polls: int = 0
    last_error: str = ""

    @classmethod
    def of(cls, heal: HealTime) -> HealEntry:
        seconds = heal.seconds
        return cls(
            fault=heal.fault,
            check=heal.check,
            since="kill" if heal.from_start else "end",
            began=round(heal.began, 3),
            healed=None if heal.healed is None else round(heal.healed, 3),
            heal_time_s=None if seconds is None else round(seconds, 3),
            polls=heal.polls,
            last_error=heal.last_error,
        )


@dataclass
class ProbeValue:
    """One poll of a probe: its offset from the run start (s) and the value (None: no value)."""

    offset: float
    value: float | None


@dataclass
class ProbeSeries:
    """A probe's query and every value it gave during the run; ``failures`` polls failed (each one
    is an event of kind probe with the reason)."""

    name: str
    language: str  # promql or influxql
    query: str
    values: list[ProbeValue] = field(default_factory=list)
    failures: int = 0
