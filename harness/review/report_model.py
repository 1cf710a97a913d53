"""What a run's HTML report shows, as plain data: filled by :mod:`harness.review.report_data`,
drawn by :mod:`harness.review.report` and :mod:`harness.review.plots`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.judge.summary import EndpointTraces

if TYPE_CHECKING:
    from harness.judge.ladder import LadderResult

__all__ = [
    "Comparison",
    "EndpointRow",
    "EndpointSecond",
    "Event",
    "FailureRow",
    "GuardRow",
    "HealRow",
    "ProbeLine",
    "ReportData",
    "Second",
    "SloRow",
    "Totals",
    "WindowRow",
]


@dataclass(frozen=True)
class Second:
    """One epoch second of the run over all endpoints (latency None when nothing completed)."""

    second: int
    requests: int
    failures: int
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    target_rate: float | None = None  # open model: arrivals per second asked for
    p999_ms: float | None = None
    max_ms: float | None = None
    users: int | None = None  # harness_load: users running at the end of the second
    achieved_rate: float | None = None  # open model: arrivals per second the generators managed
    failure_kinds: tuple[tuple[str, int], ...] = ()  # (kind, failed requests) over all endpoints

    @property
    def error_rate(self) -> float | None:
        return self.failures / self.requests if self.requests else None


@dataclass(frozen=True)
class Event:
    """A harness_events point: kind is run, phase, stage, fault or abort; state start or end."""

    time: float  # epoch seconds
    kind: str
    name: str
    state: str
    text: str = ""


@dataclass(frozen=True)
class SloRow:
    name: str
    objective: str
    window: str
    endpoint: str
    metric: str
    measured: float | None
    threshold: float | None
    passed: bool
    status: str = ""  # met, breached, no_data, never_recovered ('' when unknown)
    message: str = ""


@dataclass(frozen=True)
class GuardRow:
    name: str
    condition: str
    tripped: bool
    message: str = ""


@dataclass(frozen=True)
class HealRow:
    """A fault's heal_time as summary.json's ``heals`` holds it (seconds None: never healed in the run)."""

    fault: str
    since: str  # end (the fault's end) or kill
    check: str
    seconds: float | None
    last_error: str = ""


@dataclass(frozen=True)
class Comparison:
    """One baseline comparison as summary.json's ``baseline.comparisons`` holds it."""

    phase: str
    endpoint: str
    metric: str
    regressed: bool
    message: str


@dataclass(frozen=True)
class Totals:
    requests: int
    failures: int
    rps: float
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    p90_ms: float | None = None
    p999_ms: float | None = None
    mean_ms: float | None = None

    @property
    def error_rate(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True, kw_only=True)
class EndpointRow(Totals):
    """One endpoint's totals: the same figures as the run's, with the endpoint they are for."""

    method: str
    name: str


@dataclass(frozen=True)
class EndpointSecond:
    """One endpoint's second, for the per-endpoint plots (latency None when nothing completed)."""

    method: str
    name: str
    second: int
    requests: int
    failures: int
    p50_ms: float | None
    p99_ms: float | None


@dataclass(frozen=True)
class FailureRow:
    """Failed requests of one kind (an HTTP status such as ``http_503``, an exception name) at one endpoint."""

    method: str
    name: str
    kind: str
    count: int


@dataclass(frozen=True)
class WindowRow:
    """An SLO window's exact figures (summary.json's ``windows``, or harness_windows)."""

    window: str
    totals: Totals


@dataclass(frozen=True)
class ProbeLine:
    """A scenario probe's values over the run: (epoch s when polled, value), in time order."""

    name: str
    values: tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class ReportData:
    """Everything :func:`render` shows. Times are epoch seconds; latencies milliseconds.

    ``estimated`` says the endpoint table and totals were computed from per-second rows (the
    InfluxDB path) rather than taken from the run's merged histograms (summary.json).
    """

    run_id: str
    scenario: str
    verdict: str
    reason: str
    started: float | None
    ended: float | None
    planned_duration_s: float | None = None
    totals: Totals | None = None
    slos: tuple[SloRow, ...] = ()
    guards: tuple[GuardRow, ...] = ()
    heals: tuple[HealRow, ...] = ()
    baseline_ref: str | None = None
    baseline_run: str | None = None
    comparisons: tuple[Comparison, ...] = ()
    endpoints: tuple[EndpointRow, ...] = ()
    seconds: tuple[Second, ...] = ()
    endpoint_seconds: tuple[EndpointSecond, ...] = ()
    failures: tuple[FailureRow, ...] = ()
    windows: tuple[WindowRow, ...] = ()
    events: tuple[Event, ...] = ()
    probes: tuple[ProbeLine, ...] = ()
    scenario_yaml: str | None = None
    source: str = ""
    estimated: bool = False
    notes: tuple[str, ...] = field(default=())
    ladders: tuple[LadderResult, ...] = ()  # faults whose radius grew (summary.json only)
    traces: tuple[EndpointTraces, ...] = ()  # example trace ids per endpoint (summary.json's trace_examples)
