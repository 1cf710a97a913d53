"""What a run leaves behind for CI and reviewers: one typed :class:`RunSummary`, ``summary.json`` on disk.

The session builds the summary once, at the end of a run, and writes it; the JUnit report,
the HTML report, the baseline lookup and ``harness runs`` read it back with
:meth:`RunSummary.read`. Nobody edits a dict afterwards: the parts known only after the
load stopped (the results writer's counts, the time the verdict took) are passed in when the
summary is finished (:meth:`RunSummary.finished`).

The JSON keeps the keys and meaning ``summary.json`` always had (users and CI scripts read
it). Reading is forgiving, as it must be for files written by older versions, cut short, or
written by hand in tests: a missing key takes its default, a value of the wrong type is
replaced by the default too, and a non-finite number is written as ``null``
(:mod:`harness.judge.codec`).

Pure: dataclasses and the standard library; no runtime, no terminal.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.judge.codec import OMIT_NONE, decode_fields, fields_to_json, from_json, to_json
from harness.judge.guards import GuardTrip
from harness.judge.ladder import LadderResult
from harness.judge.slo import SloResult
from harness.judge.summary_entries import (
    AgentEntry,
    ComparisonEntry,
    DeliverySummary,
    EndpointTraces,
    FindingEntry,
    GeneratorEntry,
    HealEntry,
    LoadGap,
    LostGenerator,
    ProbeSeries,
    ProbeValue,
    RunEvent,
    SecondCounts,
    StepTiming,
    TraceExample,
)

__all__ = [
    "SUMMARY_FILE",
    "AgentEntry",
    "BaselineOutcome",
    "ComparisonEntry",
    "DeliverySummary",
    "EndpointTotals",
    "EndpointTraces",
    "FindingEntry",
    "GeneratorEntry",
    "HealEntry",
    "Latency",
    "LoadGap",
    "LostGenerator",
    "ProbeSeries",
    "ProbeValue",
    "ResultsSummary",
    "RunEvent",
    "RunSummary",
    "SecondCounts",
    "Stats",
    "StepTiming",
    "Timings",
    "TraceExample",
    "from_json",
    "to_json",
]

SUMMARY_FILE = "summary.json"


def _epoch(text: str) -> float | None:
    """Epoch seconds of an ISO 8601 time; None when it is not one."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return None


# ---------------------------------------------------------------- request statistics


@dataclass(frozen=True)
class Latency:
    """Latency percentiles in milliseconds; None when there were no requests."""

    p50_ms: float | None = None
    p75_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None


@dataclass(frozen=True)
class Stats:
    """Requests over a window (the run, a phase, a fault window) or of one endpoint over the run.

    ``service`` is the raw service time (open model only), written as ``service_p50_ms`` and so on.
    """

    requests: int = 0
    failures: int = 0
    failure_kinds: dict[str, int] = field(default_factory=dict)
    error_rate: float = 0.0
    bytes: int = 0
    rps: float = 0.0
    seconds: int = 0
    latency: Latency = field(default_factory=Latency)
    service: Latency | None = None

    def to_json(self) -> dict[str, Any]:
        out = {f.name: to_json(getattr(self, f.name)) for f in dataclasses.fields(self)[:7]}
        out.update(to_json(self.latency))
        if self.service is not None:
            out.update({f"service_{key}": value for key, value in to_json(self.service).items()})
        return out

    @classmethod
    def from_json(cls, data: Any) -> Stats:
        data = data if isinstance(data, Mapping) else {}
        service = {key[len("service_") :]: v for key, v in data.items() if str(key).startswith("service_")}
        return dataclasses.replace(
            decode_fields(cls, {k: v for k, v in data.items() if k not in ("latency", "service")}),
            latency=from_json(Latency, data),
            service=from_json(Latency, service) if service else None,
        )


@dataclass(frozen=True)
class EndpointTotals:
    """One endpoint's requests over the whole run (``method``, ``name`` then its :class:`Stats`)."""

    method: str = ""
    name: str = ""
    stats: Stats = field(default_factory=Stats)

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "name": self.name, **self.stats.to_json()}

    @classmethod
    def from_json(cls, data: Any) -> EndpointTotals:
        data = data if isinstance(data, Mapping) else {}
        return cls(str(data.get("method") or ""), str(data.get("name") or ""), Stats.from_json(data))


@dataclass(frozen=True)
class BaselineOutcome:
    """The comparison with ``--baseline``: the ref as given, the baseline run and every comparison."""

    ref: str = ""
    run_id: str = ""
    passed: bool = True
    comparisons: list[ComparisonEntry] = field(default_factory=list)
    summary_line: str = ""


@dataclass(frozen=True)
class Timings:
    """How long the parts of a run took (s) and what the driver cost; a key is absent when not measured."""

    ray_init_s: float | None = field(default=None, metadata=OMIT_NONE)
    placement_s: float | None = field(default=None, metadata=OMIT_NONE)
    generators_start_s: float | None = field(default=None, metadata=OMIT_NONE)
    load_start_s: float | None = field(default=None, metadata=OMIT_NONE)
    first_request_by_s: float | None = field(default=None, metadata=OMIT_NONE)
    max_poll_work_ms: float | None = field(default=None, metadata=OMIT_NONE)
    poll_thread_cpu_s: float | None = field(default=None, metadata=OMIT_NONE)
    clock_thread_cpu_s: float | None = field(default=None, metadata=OMIT_NONE)
    driver_cpu_s: float | None = field(default=None, metadata=OMIT_NONE)
    load_window_s: float | None = field(default=None, metadata=OMIT_NONE)
    max_step_late_ms: float | None = field(default=None, metadata=OMIT_NONE)
    max_step_exec_late_ms: float | None = field(default=None, metadata=OMIT_NONE)
    verdict_s: float | None = field(default=None, metadata=OMIT_NONE)


@dataclass(frozen=True)
class ResultsSummary:
    """Where the results went (the sink) and what the writer did with them (its counts)."""

    url: str | None = None
    api: str = ""
    database: str = ""
    line_protocol_file: str = ""
    embedded_influxdb: bool = False
    points_total: int = 0
    points_written: int = 0
    points_spooled: int = 0
    points_replayed: int = 0
    points_rejected: int = 0
    points_dropped: int = 0
    points_pending: int = 0
    points_inherited: int = 0
    queue_peak_points: int = 0
    queue_max_points: int = 0
    transport: str = ""
    lp_path: str = ""
    spool_path: str = ""
    last_error: str | None = None
    cpu_s: float = 0.0
    close_s: float = 0.0


# ---------------------------------------------------------------- the summary


@dataclass(frozen=True)
class RunSummary:
    """Everything ``summary.json`` holds about one run, in the order it is written."""

    run_id: str = ""
    scenario: str = ""
    scenario_file: str = ""
    verdict: str = ""
    exit_code: int = 0
    reason: str = ""
    started: float | None = None
    ended: float | None = None
    planned_duration_s: float | None = None
    processes: list[str] = field(default_factory=list)
    generators: list[GeneratorEntry] = field(default_factory=list)
    chaos_agents: list[AgentEntry] = field(default_factory=list)
    dead_processes: list[str] = field(default_factory=list)
    seconds: SecondCounts = field(default_factory=SecondCounts)
    late_windows: int = 0
    late_requests_unwritten: int = 0
    lost_generators: list[LostGenerator] = field(default_factory=list)
    load_gaps: list[LoadGap] = field(default_factory=list)
    delivery: DeliverySummary = field(default_factory=DeliverySummary)
    step_timing: list[StepTiming] = field(default_factory=list)
    totals: Stats | None = None  # None: no request was taken in (written as {})
    endpoints: list[EndpointTotals] = field(default_factory=list)
    trace_examples: list[EndpointTraces] = field(default_factory=list)  # empty when load.trace is off
    windows: dict[str, Stats] = field(default_factory=dict)
    slos: list[SloResult] | None = None  # None: a summary without SLO results (the key is absent)
    ladders: list[LadderResult] = field(default_factory=list)  # faults whose radius grew, step by step
    guard: GuardTrip | None = None
    heals: list[HealEntry] | None = field(default=None, metadata=OMIT_NONE)  # None: no fault's heal was watched
    baseline: BaselineOutcome | None = None
    probes: list[ProbeSeries] = field(default_factory=list)
    events: list[RunEvent] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    driver_peak_rss_mb: float | None = None
    results: ResultsSummary | None = field(default=None, metadata=OMIT_NONE)

    def to_json(self) -> dict[str, Any]:
        out = fields_to_json(self)
        out["totals"] = {} if self.totals is None else self.totals.to_json()
        if self.slos is None:
            del out["slos"]
        if not self.ladders:  # only a run with a fault whose radius grew has the key
            del out["ladders"]
        return out

    @classmethod
    def from_json(cls, data: Any) -> RunSummary:
        data = dict(data) if isinstance(data, Mapping) else {}
        for key in ("started", "ended"):  # hand-written summaries may give ISO 8601 times
            if isinstance(data.get(key), str):
                data[key] = _epoch(data[key])
        totals = data.get("totals")
        return dataclasses.replace(decode_fields(cls, data), totals=Stats.from_json(totals) if totals else None)

    def finished(self, results: ResultsSummary, verdict_s: float) -> RunSummary:
        """This summary with what is known once the results writer closed."""
        return dataclasses.replace(
            self, results=results, timings=dataclasses.replace(self.timings, verdict_s=verdict_s)
        )

    @property
    def duration_s(self) -> float | None:
        return self.ended - self.started if self.started is not None and self.ended is not None else None

    def slo_results(self) -> list[SloResult]:
        return list(self.slos or [])

    def write(self, run_dir: Path) -> Path:
        path = run_dir / SUMMARY_FILE
        path.write_text(json.dumps(self.to_json(), indent=2, default=str) + "\n")
        return path

    @classmethod
    def read(cls, run_dir: Path) -> RunSummary | None:
        """The summary of the run in ``run_dir``; None when it has none, or none that parses as an object."""
        try:
            data = json.loads((run_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return cls.from_json(data) if isinstance(data, dict) else None
