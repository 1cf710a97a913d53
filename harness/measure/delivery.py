"""Was the configured load delivered? Generator saturation, open-model shortfall, lost generators.

Pure: no clocks, no Ray. A load tool that cannot keep up must not report the target's
latency as if the target were slow, so a run whose load was not delivered is *invalid*
(exit 5), not passed or failed. The orchestrator feeds every process window's health here
(including windows that arrived after their second closed) and reports lost generators
and dead processes; :meth:`DeliveryWatch.findings` says what went wrong, with figures.

The rules (seconds are epoch seconds, offsets are from the run start):

* A generator process is **saturated** in a second when its CPU demand (the share of a
  core it used plus the share it spent runnable, waiting for one) is above
  ``SATURATED_CPU`` or its event-loop lag above ``SATURATED_LAG_MS``. A process saturated for
  ``SUSTAINED_SECONDS`` consecutive seconds makes the run invalid. A second without a
  window from that process breaks the streak (nothing is known about it).
* In the open model the run is **short** in a second when the iterations started by all
  processes add up to less than ``SHORT_SHARE`` of the stage's arrival rate. The first and
  last second of each stage and seconds whose target is 0 are not judged (a rate change
  takes effect within a second). ``SUSTAINED_SECONDS`` consecutive short seconds make the run
  invalid; a second that is not judged breaks the streak.
* A **lost generator** or a **dead load process** makes the run invalid at once. Its share
  is moved to the live processes (the orchestrator's redistribution policy), but the run
  cannot be judged exactly: the requests of the windows it had not handed over yet (up to
  a second of a process, more for a hung generator) are missing from the results, and its
  share was missing from the load until the move took effect. The finding for a dead
  process says how it ended and when its share ran again (:meth:`DeliveryWatch.moved`), or
  that no process was left to take it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from harness.measure.windows import ClosedSecond, ProcessHealth
from harness.plan import Plan, StepKind
from harness.scenario import RateStage

__all__ = [
    "SATURATED_CPU",
    "SATURATED_LAG_MS",
    "SHORT_SHARE",
    "SUSTAINED_SECONDS",
    "Condition",
    "DeliveryWatch",
    "Finding",
    "format_clock",
    "is_saturated",
]

SATURATED_CPU = 0.9
SATURATED_LAG_MS = 100.0
SHORT_SHARE = 0.9
SUSTAINED_SECONDS = 5


class Condition(StrEnum):
    """Why load was not delivered, in the order the verdict's reason lists them."""

    LOST = "generator lost"
    DIED = "load process died"
    SATURATED = "generator saturated"
    SHORT = "arrival rate short"


_ORDER = {Condition.LOST: 0, Condition.DIED: 1, Condition.SATURATED: 2, Condition.SHORT: 3}


def is_saturated(health: ProcessHealth) -> bool:
    """The per-second rule: CPU demand above 90% of a core or event-loop lag above 100 ms."""
    return health.demand > SATURATED_CPU or health.lag_ms > SATURATED_LAG_MS


def format_clock(offset: float) -> str:
    """A run offset as ``mm:ss`` (``h:mm:ss`` past an hour), the way the progress line counts."""
    total = max(0, int(offset))
    hours, rest = divmod(total, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


@dataclass(frozen=True)
class Finding:
    """One reason the load was not delivered; ``text`` is what the verdict says."""

    condition: Condition
    subject: str  # a process id, a generator id, or "run"
    offset: float  # from the run start: when it began
    seconds: int  # how long it lasted (0 for a loss: it lasts to the end)
    text: str

    def to_dict(self) -> dict[str, object]:
        return {
            "condition": self.condition.value,
            "subject": self.subject,
            "offset": round(self.offset, 3),
            "seconds": self.seconds,
            "text": self.text,
        }


@dataclass(frozen=True)
class _RateSpan:
    start: float
    end: float
    rate: float


@dataclass
class DeliveryWatch:
    """Collects per-second health of every process and judges delivery at the end of a run.

    Feed it with :meth:`observe` (a closed second) or :meth:`observe_health` (one process's
    window, e.g. one that arrived after its second closed); feeding the same window twice
    counts it twice for the arrival rate, so each window goes in exactly once.
    """

    plan: Plan
    start_epoch: float
    sustained: int = SUSTAINED_SECONDS
    # process -> second -> (cpu, wait, lag_ms) for saturated seconds only
    _hot: dict[str, dict[int, tuple[float, float, float]]] = field(default_factory=lambda: defaultdict(dict))
    _started: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    _first: int | None = None
    _last: int | None = None
    _losses: list[Finding] = field(default_factory=list)
    _deaths: list[Finding] = field(default_factory=list)
    _moved: dict[str, str] = field(default_factory=dict)  # dead process -> where its share went, in words

    def __post_init__(self) -> None:
        self._spans: list[_RateSpan] = []
        if self.plan.scenario.open_model:
            for step in self.plan.steps:
                if step.kind is StepKind.STAGE and isinstance(step.stage, RateStage):
                    stage = step.stage
                    self._spans.append(_RateSpan(step.offset, step.offset + stage.duration, stage.arrival_rate))

    # ------------------------------------------------------------------ input

    def observe(self, closed: ClosedSecond) -> bool:
        """Record a closed second; True when some process was saturated in it."""
        hot = False
        for health in closed.health:
            hot = self.observe_health(closed.second, health) or hot
        self._seen(closed.second)
        return hot

    def observe_health(self, second: int, health: ProcessHealth) -> bool:
        """Record one process's window health; True when that process was saturated."""
        self._seen(second)
        self._started[second] += health.started
        if is_saturated(health):
            self._hot[health.process][second] = (health.cpu, health.wait, health.lag_ms)
            return True
        return False

    def lost(self, generator: str, at: float, why: str) -> Finding:
        """A generator was declared lost at epoch time ``at``; its load is gone for the rest of the run."""
        offset = at - self.start_epoch
        finding = Finding(
            Condition.LOST,
            generator,
            offset,
            0,
            f"load not delivered: generator {generator} lost at {format_clock(offset)} ({why})",
        )
        self._losses.append(finding)
        return finding

    def died(self, process: str, at: float, how: str = "") -> Finding:
        """A load process exited during the run without being asked to (``how``: e.g. "killed by SIGKILL")."""
        offset = at - self.start_epoch
        finding = Finding(
            Condition.DIED,
            process,
            offset,
            0,
            f"load not delivered: load process {process} died at {format_clock(offset)}" + (f" ({how})" if how else ""),
        )
        self._deaths.append(finding)
        return finding

    def moved(self, subject: str, after_s: float, processes: int) -> None:
        """The share of ``subject`` (a dead process) ran again on ``processes`` others ``after_s`` after the loss."""
        others = "1 other process" if processes == 1 else f"{processes} other processes"
        self._moved[subject] = f"its share ran on {others} {after_s:.2f} s later"

    def not_moved(self, subject: str) -> None:
        """No live process was left to take the share of ``subject``."""
        self._moved[subject] = "no process was left to take its share"

    def _with_move(self, finding: Finding) -> Finding:
        """A death's finding, with where its share went when that is known."""
        moved = self._moved.get(finding.subject)
        if not moved:
            return finding
        text = finding.text[:-1] + f"; {moved})" if finding.text.endswith(")") else f"{finding.text} ({moved})"
        return Finding(finding.condition, finding.subject, finding.offset, finding.seconds, text)

    def _seen(self, second: int) -> None:
        self._first = second if self._first is None else min(self._first, second)
        self._last = second if self._last is None else max(self._last, second)

    # ------------------------------------------------------------------ judgement

    def target_rate(self, second: int) -> float | None:
        """The arrival rate judged in ``second``, or None when that second is not judged."""
        begin = second - self.start_epoch
        end = begin + 1
        for span in self._spans:
            if span.start + 1 <= begin and end <= span.end - 1 and span.rate > 0:
                return span.rate
        return None

    def findings(self) -> list[Finding]:
        """Every reason the load was not delivered, worst first within each condition."""
        out = [*self._losses, *(self._with_move(f) for f in self._deaths)]
        saturated = [self._saturation(process, seconds) for process, seconds in sorted(self._hot.items())]
        worst = sorted((f for f in saturated if f is not None), key=lambda f: (-f.seconds, f.offset, f.subject))
        out += worst
        short = self._shortfall()
        if short is not None:
            out.append(short)
        return sorted(out, key=lambda f: _ORDER[f.condition])

    def reason(self) -> str:
        """The verdict's reason: the first finding of each condition, joined; empty when delivered."""
        shown: dict[Condition, Finding] = {}
        for finding in self.findings():
            shown.setdefault(finding.condition, finding)
        return "; ".join(f.text for f in shown.values())

    def saturated_seconds(self) -> int:
        """Seconds in which at least one process was saturated."""
        return len({second for seconds in self._hot.values() for second in seconds})

    def short_seconds(self) -> int:
        """Judged seconds in which the open-model arrival rate was short."""
        return sum(1 for second, _, _ in self._judged() if self.is_short(second))

    def _saturation(self, process: str, seconds: dict[int, tuple[float, float, float]]) -> Finding | None:
        best: list[int] = []
        for run in _consecutive(sorted(seconds)):
            if len(run) > len(best):
                best = run
        if len(best) < self.sustained:
            return None
        cpus = [seconds[s][0] for s in best]
        waits = [seconds[s][1] for s in best]
        lags = [seconds[s][2] for s in best]
        figures = []
        if any(c + w > SATURATED_CPU for c, w in zip(cpus, waits, strict=True)):
            cpu, wait = sum(cpus) / len(cpus) * 100, sum(waits) / len(waits) * 100
            figures.append(f"CPU {cpu:.0f}%" + (f" + {wait:.0f}% waiting for a core" if round(wait) >= 1 else ""))
        if any(lag > SATURATED_LAG_MS for lag in lags):
            figures.append(f"event-loop lag up to {max(lags):.0f} ms")
        offset = best[0] - self.start_epoch
        text = (
            f"generator saturated: process {process} {', '.join(figures)} "
            f"for {len(best)} s (from {format_clock(offset)})"
        )
        return Finding(Condition.SATURATED, process, max(0.0, offset), len(best), text)

    def _judged(self) -> Iterable[tuple[int, float, int]]:
        """(second, target, started) for every judged second the run reached."""
        if self._first is None or self._last is None or not self._spans:
            return
        for second in range(self._first, self._last + 1):
            target = self.target_rate(second)
            if target is not None:
                yield second, target, self._started.get(second, 0)

    def is_short(self, second: int) -> bool:
        """True when ``second`` is judged and fewer iterations started than 90% of its target."""
        target = self.target_rate(second)
        return target is not None and self._started.get(second, 0) < SHORT_SHARE * target

    def _shortfall(self) -> Finding | None:
        best: list[tuple[int, float, int]] = []
        run: list[tuple[int, float, int]] = []
        for item in self._judged():
            second, target, started = item
            if started < SHORT_SHARE * target and (not run or run[-1][0] == second - 1):
                run.append(item)
            elif started < SHORT_SHARE * target:
                run = [item]
            else:
                run = []
            if len(run) > len(best):
                best = list(run)
        if len(best) < self.sustained:
            return None
        started_mean = sum(s for _, _, s in best) / len(best)
        target_mean = sum(t for _, t, _ in best) / len(best)
        share = started_mean / target_mean if target_mean else math.nan
        offset = best[0][0] - self.start_epoch
        text = (
            f"arrival rate not delivered: {started_mean:.0f}/s started of {target_mean:.0f}/s asked "
            f"({share * 100:.0f}%) for {len(best)} s (from {format_clock(offset)})"
        )
        return Finding(Condition.SHORT, "run", max(0.0, offset), len(best), text)


def _consecutive(seconds: list[int]) -> Iterable[list[int]]:
    run: list[int] = []
    for second in seconds:
        if run and second != run[-1] + 1:
            yield run
            run = []
        run.append(second)
    if run:
        yield run
