"""The SLOs of a growing blast radius, judged step by step, and what the ladder's verdict says.

Pure. A fault with a ``radius`` is a ladder of steps (:class:`harness.plan.Ladder`); the SLOs whose
window is ``during:<fault>`` are judged over each step's window instead of the whole fault window,
each by an :class:`~harness.judge.slo.SloBook` of its own. The run asks :meth:`LadderBook.judge` at
the end of each step (from the clock thread, while the poll thread feeds seconds in): a step
whose SLOs all hold lets the fault widen; the first that breaks stops it (the run reverts the
fault and :meth:`LadderBook.skip` marks the steps left). A step is judged on the seconds that had
closed when it ended (normally all but the last one or two: windows arrive about a second late)
and its result is frozen then, so the verdict says what the run acted on.

The verdict of a ladder names the largest radius that held and the first that broke. By itself a
broken step does not fail the run: finding where the system breaks is what a ladder is for. A
ladder's ``must_hold`` makes it a gate: the run fails (exit 1) unless every step up to and
including that radius held.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass, field
from enum import StrEnum

from harness.judge.probe_samples import ProbeSample
from harness.judge.slo import SloBook, SloResult
from harness.measure.windows import ClosedSecond
from harness.plan import Ladder, Plan, Rung, Span

__all__ = ["LadderBook", "LadderResult", "StepResult", "StepState", "ladder_failures"]


class StepState(StrEnum):
    HELD = "held"
    BROKE = "broke"
    SKIPPED = "skipped"  # an earlier step broke: never injected
    NOT_REACHED = "not reached"  # the run ended (aborted, interrupted, failed) before its end


@dataclass(frozen=True)
class StepResult:
    """One step of a ladder: its radius, what it acted on, and its SLOs over its window."""

    step: int = 0
    radius: str = ""
    state: StepState = StepState.NOT_REACHED
    start_s: float = 0.0  # planned offsets of the step's window
    end_s: float = 0.0
    instances: int | None = None  # how many instances the step acted on
    found: int | None = None  # of how many the target selected when the ladder started
    slos: list[SloResult] = field(default_factory=list)
    reason: str = ""


@dataclass(frozen=True)
class LadderResult:
    """A fault's ladder: every step, the largest radius that held and the first that broke."""

    fault: str = ""
    steps: list[StepResult] = field(default_factory=list)
    largest_held: str | None = None
    first_broken: str | None = None
    must_hold: str | None = None
    passed: bool = True  # False only when must_hold was not met
    message: str = ""


def _verdict(ladder: Ladder, steps: list[StepResult]) -> LadderResult:
    held = [s for s in steps if s.state is StepState.HELD]
    broke = next((s for s in steps if s.state is StepState.BROKE), None)
    largest = held[-1].radius if held else None
    parts = [f"held up to radius {largest}" if largest else "no step held"]
    if broke is not None:
        parts.append(f"broke at radius {broke.radius}")
    elif held and len(held) == len(steps):
        parts.append("every step held")
    passed = True
    if ladder.must_hold is not None:
        needed = steps[: ladder.must_hold_index()]
        passed = all(s.state is StepState.HELD for s in needed)
        parts.append(f"radius {ladder.must_hold} {'held' if passed else 'had to hold'}")
    message = f"ladder {ladder.fault}: " + ", ".join(parts)
    first = broke.radius if broke is not None else None
    return LadderResult(ladder.fault, steps, largest, first, ladder.must_hold, passed, message)


def ladder_failures(ladders: list[LadderResult]) -> list[str]:
    """The messages of the ladders whose ``must_hold`` was not met (they fail the run)."""
    return [ladder.message for ladder in ladders if not ladder.passed]


@dataclass
class _Step:
    rung: Rung
    book: SloBook
    result: StepResult


class LadderBook:
    """Per step of every ladder of a plan: the seconds its window covers, and its frozen result.

    Thread-safe: the poll thread calls :meth:`observe`, the clock thread :meth:`judge` and
    :meth:`skip`.
    """

    def __init__(self, plan: Plan, start_epoch: float) -> None:
        self.plan = plan
        self.start_epoch = start_epoch
        self._lock = threading.Lock()
        self._steps: dict[str, list[_Step]] = {name: self._books(ladder) for name, ladder in plan.ladders.items()}

    def _books(self, ladder: Ladder) -> list[_Step]:
        """One SLO book per step of ``ladder``, its SLOs' windows the step's span."""
        plan = self.plan
        slos = [s for s in plan.scenario.slos if s.name in ladder.slos]
        scenario = plan.scenario.model_copy(update={"slos": slos})
        steps = []
        for rung in ladder.rungs:
            windows: dict[str, tuple[Span, ...]] = {slo.name: (rung.span,) for slo in slos}
            step_plan = dataclasses.replace(plan, scenario=scenario, windows=windows, ladders={})
            result = StepResult(rung.index, rung.radius, StepState.NOT_REACHED, rung.span.start, rung.span.end)
            steps.append(_Step(rung, SloBook(step_plan, self.start_epoch), result))
        return steps

    def retime(self, plan: Plan) -> None:
        """A fault that waited for a steady state started: a ladder of it starts now, each step
        moved with it (no step of it was reached before, so none has seen a second)."""
        with self._lock:
            moved = {name for name, ladder in plan.ladders.items() if ladder != self.plan.ladders.get(name)}
            self.plan = plan
            for name in moved:
                self._steps[name] = self._books(plan.ladders[name])

    def observe(self, closed: ClosedSecond) -> None:
        with self._lock:
            for steps in self._steps.values():
                for step in steps:
                    if step.result.state is StepState.NOT_REACHED:  # a judged step's result is frozen
                        step.book.observe(closed)

    def observe_probe(self, sample: ProbeSample) -> None:
        """A probe was polled: every step not judged yet keeps it for its probe SLOs."""
        with self._lock:
            for steps in self._steps.values():
                for step in steps:
                    if step.result.state is StepState.NOT_REACHED:
                        step.book.observe_probe(sample)

    def judge(self, fault: str, index: int, instances: int | None = None, found: int | None = None) -> StepResult:
        """Judge step ``index`` (1-based) of ``fault``'s ladder now, on the seconds in so far; frozen."""
        with self._lock:
            step = self._steps[fault][index - 1]
            window = f"during:{fault} {step.rung.label}"
            slos = [dataclasses.replace(r, window=window) for r in step.book.results()]
            broken = [r for r in slos if not r.passed]
            state = StepState.BROKE if broken else StepState.HELD
            reason = "; ".join(f"{r.name}: {r.message}" for r in (broken or slos)) or "no SLO to judge"
            step.result = StepResult(
                index, step.rung.radius, state, step.rung.span.start, step.rung.span.end, instances, found, slos, reason
            )
            return step.result

    def skip(self, fault: str, index: int, reason: str) -> StepResult:
        """Mark step ``index`` of ``fault``'s ladder as skipped (never injected), saying why."""
        with self._lock:
            step = self._steps[fault][index - 1]
            step.result = dataclasses.replace(step.result, state=StepState.SKIPPED, reason=reason)
            return step.result

    def results(self) -> list[LadderResult]:
        with self._lock:
            return [_verdict(self.plan.ladders[name], [s.result for s in steps]) for name, steps in self._steps.items()]
