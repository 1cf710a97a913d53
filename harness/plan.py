"""Compile a scenario into a frozen plan: timed steps on offsets from one start.

Pure: no clocks, no I/O. Every offset is seconds from the run start; the orchestrator adds
them to its one start instant, so a slow step never shifts the ones after it. SLO windows
are resolved here to spans of offsets, which the SLO code tests each per-second window
against (a second belongs to a span when its midpoint falls inside it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from harness.errors import Problem
from harness.scenario import RateStage, Scenario, UsersStage, scenario_total_seconds
from harness.scenario.expressions import WindowKind, WindowRef, format_duration
from harness.scenario.radius import step_hold
from harness.scenario.redact import Loaded
from harness.scenario.source import dotted
from harness.scenario.start import SteadyStart

__all__ = [
    "JSON_VERSION",
    "Ladder",
    "Plan",
    "Rung",
    "Span",
    "Step",
    "StepKind",
    "compile_plan",
    "plan_document",
    "problems_document",
    "validation_document",
]


class StepKind(StrEnum):
    RUN_START = "run start"
    PHASE_START = "phase start"
    STAGE = "load"
    FAULT_START = "fault start"
    FAULT_WIDEN = "fault widen"  # a ladder's next step: judge the last one, then widen or stop
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
    StepKind.FAULT_WIDEN: 5,
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
    rung: int | None = None  # a ladder's step (1-based) this step starts: FAULT_START and FAULT_WIDEN
    instant: bool = False  # the end of a zero-length fault: it follows its own start
    #: A FAULT_START that waits for a steady state: at its offset (the deadline) the fault has
    #: not started, so the run ends "never steady" (:meth:`Plan.waiting`, :meth:`Plan.started_at`).
    waits: bool = False

    def sort_key(self) -> tuple[float, float, str]:
        order = _ORDER[StepKind.FAULT_START] + 0.5 if self.instant else _ORDER[self.kind]
        return (self.offset, order, self.name)


@dataclass(frozen=True)
class Rung:
    """One step of a ladder: its radius as written and the seconds it is held."""

    index: int  # 1-based
    radius: str
    span: Span

    @property
    def label(self) -> str:
        return f"step {self.index} (radius {self.radius})"


@dataclass(frozen=True)
class Ladder:
    """A fault whose radius grows: its steps and the SLOs judged over each step's window.

    ``slos`` are the scenario's SLOs whose window is ``during:<fault>``: they are judged per step
    (:mod:`harness.judge.ladder`), not over the whole fault window.
    """

    fault: str
    fault_index: int
    rungs: tuple[Rung, ...]
    slos: tuple[str, ...]
    must_hold: str | None = None

    def must_hold_index(self) -> int:
        """How many steps, from the first, must hold (0 without ``must_hold``)."""
        radii = [r.radius for r in self.rungs]
        return radii.index(self.must_hold) + 1 if self.must_hold in radii else 0


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
    ladders: dict[str, Ladder] = field(default_factory=dict)
    #: Faults that waited for a steady state and started, by name: the offset they started at.
    started: dict[str, float] = field(default_factory=dict)

    def started_at(self, name: str, offset: float) -> Plan:
        """This plan with fault ``name``, which waited for a steady state, started at ``offset``:
        its steps, its windows, its ladder and the steady window moved with it."""
        return compile_plan(self.scenario, {**self.started, name: offset})

    def waiting(self) -> dict[str, float]:
        """The faults still waiting for a steady state: name -> their deadline's offset."""
        return {s.name: s.offset for s in self.steps if s.waits}

    def per_step(self, slo_name: str) -> bool:
        """Whether the SLO is judged per step of a ladder (and not over its window as a whole)."""
        return any(slo_name in ladder.slos for ladder in self.ladders.values())

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


def compile_plan(scenario: Scenario, started: Mapping[str, float] | None = None) -> Plan:
    """The whole timeline of a validated scenario; applies nothing.

    A fault that waits for a steady state is placed at its deadline, the latest it can start,
    unless ``started`` says when it did (:meth:`Plan.started_at`)."""
    started = dict(started or {})
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
    ladders: dict[str, Ladder] = {}
    for index, fault in enumerate(scenario.faults):
        start = started.get(fault.name, fault.start)
        span = Span(start, start + fault.duration)
        faults[fault.name] = span
        excluded.append(Span(span.start, min(duration, span.end + fault.recovery)))
        ladder = _ladder(scenario, index, start) if fault.radius is not None else None
        first = f" at {ladder.rungs[0].label}" if ladder is not None else ""
        rung = 1 if ladder is not None else None
        waits = fault.waits_for is not None and fault.name not in started
        when = f" {fault.waits_for.describe()}" if waits and fault.waits_for is not None else ""
        steps.append(
            Step(
                span.start,
                StepKind.FAULT_START,
                fault.name,
                fault.kind + first + when,
                fault_index=index,
                rung=rung,
                waits=waits,
            )
        )
        if ladder is not None:
            ladders[fault.name] = ladder
            steps += [
                Step(r.span.start, StepKind.FAULT_WIDEN, fault.name, r.label, fault_index=index, rung=r.index)
                for r in ladder.rungs[1:]
            ]
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
        ladders=ladders,
        started=started,
    )
    windows = {slo.name: plan.spans(slo.window) for slo in scenario.slos}
    return Plan(**{**plan.__dict__, "windows": windows})


def _ladder(scenario: Scenario, index: int, start: float) -> Ladder:
    """Fault ``index``'s ladder: one rung per radius step, back to back from the fault's start."""
    fault = scenario.faults[index]
    assert fault.radius is not None
    hold = step_hold(fault.radius, fault.duration)
    rungs = tuple(
        Rung(i + 1, radius, Span(start + i * hold, start + (i + 1) * hold))
        for i, radius in enumerate(fault.radius.steps)
    )
    judged = tuple(s.name for s in scenario.slos if s.window.kind is WindowKind.DURING and s.window.ref == fault.name)
    return Ladder(fault.name, index, rungs, judged, fault.radius.must_hold)


def phase_name(name: str | None, index: int) -> str:
    """A stage's phase name: its own, or ``stage-N`` (1-based) when it has none."""
    return name or f"stage-{index + 1}"


def split_evenly(total: int, parts: int) -> list[int]:
    """Split an integer (users) among ``parts`` so that shares differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


# ---------------------------------------------------------------- JSON (harness validate/plan --json)

#: The version of the JSON documents below; it changes only when a field is removed or changes
#: meaning (fields may be added). docs/environments.md lists the fields.
JSON_VERSION = 1


def _variables(loaded: Loaded) -> list[dict[str, Any]]:
    return [
        {
            "name": use.name,
            "value": use.value,
            "secret": use.secret,
            "from": use.origin,
            "key": dotted(use.path),
            "line": use.line,
            "column": use.column,
        }
        for use in loaded.variables
    ]


def _settings(loaded: Loaded) -> list[dict[str, Any]]:
    return [{"flag": s.flag, "key": dotted(s.path), "value": s.value} for s in loaded.settings]


def problems_document(problems: list[Problem]) -> list[dict[str, Any]]:
    """Problems as JSON objects: where (file, line, column; or the flag), key path and message."""
    return [
        {
            "file": None if p.flag else p.file,
            "line": p.line or None,  # 0: not a place in the file (a flag, or the command as a whole)
            "column": p.column or None,
            "flag": p.flag or None,
            "key": p.path,
            "message": p.message,
        }
        for p in problems
    ]


def validation_document(
    file: str, loaded: Loaded | None, problems: list[Problem], warnings: list[str] | None = None
) -> dict[str, Any]:
    """``harness validate --json``: whether the file is valid, what it holds, or every problem;
    ``warnings`` are what a valid scenario may want a look at (e.g. a locustfile reading something
    harness does not give it)."""
    plan = compile_plan(loaded.scenario) if loaded is not None else None
    scenario = loaded.scenario if loaded is not None else None
    document = {
        "version": JSON_VERSION,
        "file": file,
        "valid": loaded is not None,
        "scenario": scenario.name if scenario is not None else None,
        "duration_s": plan.duration if plan is not None else None,
        "counts": None,
        "variables": _variables(loaded) if loaded is not None else [],
        "overrides": _settings(loaded) if loaded is not None else [],
        "problems": problems_document(problems),
        "warnings": list(warnings or []),
    }
    if scenario is not None and plan is not None:
        counts = {"stages": len(plan.phases), "faults": len(scenario.faults), "slos": len(scenario.slos)}
        document["counts"] = {**counts, "guards": len(scenario.guards)}
    return _redacted(document, loaded)


def plan_document(
    file: str,
    loaded: Loaded,
    targets: dict[str, str],
    placement: list[tuple[str, str]],
    warnings: list[str] | None = None,
) -> dict[str, Any]:
    """``harness plan --json``: the compiled timeline and what it acts on, as ``harness plan`` prints it."""
    scenario = loaded.scenario
    plan = compile_plan(scenario)
    load, results = scenario.load, scenario.results
    document = {
        "version": JSON_VERSION,
        "file": file,
        "valid": True,
        "scenario": {
            "name": scenario.name,
            "description": scenario.description,
            "base_url": scenario.target.base_url,
            "allowed_hosts": list(scenario.target.allowed_hosts),
            "locustfile": str(scenario.locustfile_path),
            "load_model": "open" if scenario.open_model else "closed",
            "generators": load.generators,
            "processes": load.processes,
        },
        "duration_s": plan.duration,
        "variables": _variables(loaded),
        "overrides": _settings(loaded),
        "stages": [_stage(name, plan.phases[name], stage) for name, stage in _named_stages(scenario)],
        "faults": [
            {
                "name": fault.name,
                "kind": fault.kind,
                "start_s": plan.faults[fault.name].start,
                "end_s": plan.faults[fault.name].end,
                "recovery_s": fault.recovery,
                "waits_for": _waits_document(fault.waits_for),
                "target": targets.get(fault.name),
                "description": fault.description,
            }
            for fault in scenario.faults
        ],
        "steps": [{"offset_s": s.offset, "step": s.kind.value, "name": s.name, "detail": s.detail} for s in plan.steps],
        "slos": [
            {
                "name": slo.name,
                "objective": slo.objective.text,
                "window": str(slo.window),
                "endpoint": slo.endpoint,
                "covers": [{"start_s": span.start, "end_s": span.end} for span in plan.windows[slo.name]],
            }
            for slo in scenario.slos
        ],
        "guards": [{"name": g.name, "condition": g.condition.text} for g in scenario.guards],
        "ladders": [_ladder_document(ladder) for ladder in plan.ladders.values()],
        "placement": [{"actor": actor, "node": node} for actor, node in placement],
        "results": {"url": results.url, "api": results.write_api(), "database": results.database}
        | {"bucket": results.bucket, "org": results.org, "token_env": results.token_env},
        "problems": [],
        "warnings": list(warnings or []),
    }
    return _redacted(document, loaded)


def _waits_document(waits: SteadyStart | None) -> dict[str, Any] | None:
    if waits is None:
        return None
    steady = [c.text for c in waits.steady]
    return {"steady": steady, "for_s": waits.seconds, "after_s": waits.after, "deadline_s": waits.deadline}


def _ladder_document(ladder: Ladder) -> dict[str, Any]:
    steps = [{"step": r.index, "radius": r.radius, "start_s": r.span.start, "end_s": r.span.end} for r in ladder.rungs]
    return {"fault": ladder.fault, "steps": steps, "judged_by": list(ladder.slos), "must_hold": ladder.must_hold}


def _named_stages(scenario: Scenario) -> list[tuple[str, UsersStage | RateStage]]:
    return [(phase_name(stage.name, i), stage) for i, stage in enumerate(scenario.load.stages)]


def _stage(name: str, span: Span, stage: UsersStage | RateStage) -> dict[str, Any]:
    closed = stage if isinstance(stage, UsersStage) else None
    opened = stage if isinstance(stage, RateStage) else None
    return {
        "name": name,
        "start_s": span.start,
        "end_s": span.end,
        "users": closed.users if closed else None,
        "spawn_rate": closed.spawn_rate if closed else None,
        "arrival_rate": opened.arrival_rate if opened else None,
        "max_users": opened.max_users if opened else None,
    }


def _redacted(document: Any, loaded: Loaded | None) -> Any:
    """Every string in ``document`` with the scenario's secret values replaced by ``***``."""
    if loaded is None or not loaded.secrets:
        return document
    if isinstance(document, str):
        return loaded.redact(document)
    if isinstance(document, dict):
        return {k: _redacted(v, loaded) for k, v in document.items()}
    if isinstance(document, list):
        return [_redacted(v, loaded) for v in document]
    return document
