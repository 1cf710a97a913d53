"""Compile a scenario into a frozen plan: timed steps on offsets from one start.

Pure: no clocks, no I/O. Every offset is seconds from the run start; the orchestrator adds
them to its one start instant, so a slow step never shifts the ones after it. SLO windows
are resolved here to spans of offsets, which the SLO code tests each per-second window
against (a second belongs to a span when its midpoint falls inside it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from harness.scenario import RateStage, Scenario, UsersStage, scenario_total_seconds
from harness.scenario.expressions import WindowKind, WindowRef, format_duration

__all__ = ["Plan", "Span", "Step", "StepKind", "compile_plan"]


class StepKind(StrEnum):
    RUN_START = "run start"
    PHASE_START = "phase start"
    STAGE = "load"
    FAULT_START = "fault start"
    FAULT_END = "fault end"
    PHASE_END = "phase end"
    RUN_END = "run end"


# At one offset: a fault ends before the next begins, load changes before faults start.
_ORDER = {
    StepKind.RUN_START: 0,
    StepKind.PHASE_END: 1,
    StepKind.FAULT_END: 2,
    StepKind.PHASE_START: 3,
    StepKind.STAGE: 4,
    StepKind.FAULT_START: 5,
    StepKind.RUN_END: 6,
}


@dataclass(frozen=True)
class Span:
    """Half-open interval of offsets [start, end) in seconds."""

    start: float
    end: float

    def contains(self, offset: float) -> bool:
        return self.start <= offset < self.end

    @property
    def length(self) -> float:
        return max(0.0, self.end - self.start)


@dataclass(frozen=True)
class Step:
    offset: float
    kind: StepKind
    name: str
    detail: str
    stage: UsersStage | RateStage | None = None
    fault_index: int | None = None
    instant: bool = False  # the end of a zero-length fault: it follows its own start

    def sort_key(self) -> tuple[float, float, str]:
        order = _ORDER[StepKind.FAULT_START] + 0.5 if self.instant else _ORDER[self.kind]
        return (self.offset, order, self.name)


@dataclass(frozen=True)
class Plan:
    """Everything the orchestrator does, when, and which seconds each SLO window covers."""

    scenario: Scenario
    duration: float
    steps: tuple[Step, ...]
    phases: dict[str, Span]
    faults: dict[str, Span]
    excluded_from_steady: tuple[Span, ...]
    windows: dict[str, tuple[Span, ...]] = field(default_factory=dict)

    def spans(self, window: WindowRef) -> tuple[Span, ...]:
        """Offsets covered by an SLO window (possibly several spans for ``steady``)."""
        run = Span(0.0, self.duration)
        if window.kind is WindowKind.RUN:
            return (run,)
        if window.kind is WindowKind.PHASE:
            return (self.phases[window.ref],)
        if window.kind is WindowKind.DURING:
            return (self.faults[window.ref],)
        if window.kind is WindowKind.AFTER:
            end = self.faults[window.ref].end
            length = window.seconds or (self.duration - end)
            return (Span(end, min(self.duration, end + length)),)
        if window.kind is WindowKind.LAST:
            return (Span(max(0.0, self.duration - window.seconds), self.duration),)
        return _subtract(run, self.excluded_from_steady)

    def contains(self, window: WindowRef, offset: float) -> bool:
        return any(span.contains(offset) for span in self.spans(window))


def _subtract(run: Span, holes: tuple[Span, ...]) -> tuple[Span, ...]:
    pieces = [run]
    for hole in sorted(holes, key=lambda s: s.start):
        next_pieces = []
        for piece in pieces:
            if hole.end <= piece.start or hole.start >= piece.end:
                next_pieces.append(piece)
                continue
            if hole.start > piece.start:
                next_pieces.append(Span(piece.start, hole.start))
            if hole.end < piece.end:
                next_pieces.append(Span(hole.end, piece.end))
        pieces = next_pieces
    return tuple(p for p in pieces if p.length > 0)


def _stage_detail(stage: UsersStage | RateStage) -> str:
    if isinstance(stage, RateStage):
        users = f"up to {stage.max_users} users"
        return f"arrival rate {stage.arrival_rate:g}/s ({users}) for {format_duration(stage.duration)}"
    return f"{stage.users} users at {stage.spawn_rate:g}/s for {format_duration(stage.duration)}"


def compile_plan(scenario: Scenario) -> Plan:
    """The whole timeline of a validated scenario; applies nothing."""
    steps: list[Step] = []
    phases: dict[str, Span] = {}
    end = 0.0
    for index, stage in enumerate(scenario.load.stages):
        start = end if stage.at is None else stage.at
        stop = start + stage.duration
        name = phase_name(stage.name, index)
        phases[name] = Span(start, stop)
        steps.append(Step(start, StepKind.PHASE_START, name, ""))
        steps.append(Step(start, StepKind.STAGE, name, _stage_detail(stage), stage=stage))
        steps.append(Step(stop, StepKind.PHASE_END, name, ""))
        end = stop
    duration = scenario_total_seconds(scenario)

    faults: dict[str, Span] = {}
    excluded: list[Span] = []
    for index, fault in enumerate(scenario.faults):
        span = Span(fault.at, fault.at + fault.duration)
        faults[fault.name] = span
        excluded.append(Span(span.start, min(duration, span.end + fault.recovery)))
        steps.append(Step(span.start, StepKind.FAULT_START, fault.name, fault.kind, fault_index=index))
        steps.append(
            Step(span.end, StepKind.FAULT_END, fault.name, fault.kind, fault_index=index, instant=span.length == 0)
        )
    steps.append(Step(0.0, StepKind.RUN_START, scenario.name, f"{format_duration(duration)} in all"))
    steps.append(Step(duration, StepKind.RUN_END, scenario.name, ""))

    plan = Plan(
        scenario=scenario,
        duration=duration,
        steps=tuple(sorted(steps, key=Step.sort_key)),
        phases=phases,
        faults=faults,
        excluded_from_steady=tuple(excluded),
    )
    windows = {slo.name: plan.spans(slo.window) for slo in scenario.slos}
    return Plan(**{**plan.__dict__, "windows": windows})


def phase_name(name: str | None, index: int) -> str:
    """A stage's phase name: its own, or ``stage-N`` (1-based) when it has none."""
    return name or f"stage-{index + 1}"


def split_evenly(total: int, parts: int) -> list[int]:
    """Split an integer (users) among ``parts`` so that shares differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]
