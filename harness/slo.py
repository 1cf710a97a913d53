"""SLOs judged over windows of a run, and guards checked every second.

Pure: fed closed seconds by the orchestrator (live) or by a replay (tests, reports).
Each SLO keeps its own merged statistics for exactly the seconds its window covers, so a
percentile over a window is computed from every sample in it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.expressions import format_metric
from harness.metrics import ClosedSecond, EndpointStats, WindowTotals
from harness.scenario import Guard, Slo
from harness.timeline import Plan

__all__ = ["GuardTrip", "GuardWatch", "SloBook", "SloResult", "measure"]


def measure(metric: str, stats: EndpointStats, seconds: int) -> float:
    """The value of ``metric`` for merged statistics over ``seconds`` seconds (NaN if no data)."""
    if metric == "rps":
        return stats.count / seconds if seconds else math.nan
    if stats.count == 0:
        return math.nan
    if metric == "error_rate":
        return stats.error_rate
    return stats.latency_ms()[metric]


@dataclass(frozen=True)
class SloResult:
    name: str
    objective: str
    window: str
    endpoint: str
    metric: str
    measured: float
    threshold: float
    passed: bool
    requests: int
    seconds: int
    message: str

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["measured"] = None if math.isnan(self.measured) else self.measured
        return data


@dataclass
class SloBook:
    """Collects, per SLO, the seconds its window covers; ``results()`` judges them."""

    plan: Plan
    start_epoch: float
    _totals: dict[str, WindowTotals] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._totals = {slo.name: WindowTotals() for slo in self.plan.scenario.slos}

    def offset(self, second: int) -> float:
        """Offset of a second's midpoint from the run start."""
        return second + 0.5 - self.start_epoch

    def observe(self, closed: ClosedSecond) -> None:
        offset = self.offset(closed.second)
        for slo in self.plan.scenario.slos:
            if any(span.contains(offset) for span in self.plan.windows[slo.name]):
                self._totals[slo.name].add(closed)

    def results(self) -> list[SloResult]:
        return [self._judge(slo, self._totals[slo.name]) for slo in self.plan.scenario.slos]

    def _judge(self, slo: Slo, totals: WindowTotals) -> SloResult:
        stats = totals.total(slo.endpoint)
        objective = slo.objective
        value = measure(objective.metric, stats, totals.seconds)
        passed = objective.holds(value)
        where = f"{slo.window}" + (f" on {slo.endpoint}" if slo.endpoint else "")
        if math.isnan(value):
            message = f"no requests in window {where}: nothing to judge"
        else:
            shown = format_metric(objective.metric, value)
            limit = format_metric(objective.metric, objective.value)
            verb = "met" if passed else "breached"
            message = f"{objective.metric} {shown} over {where} ({stats.count} requests): {verb} {objective.op} {limit}"
        return SloResult(
            name=slo.name,
            objective=objective.text,
            window=str(slo.window),
            endpoint=slo.endpoint or "all",
            metric=objective.metric,
            measured=value,
            threshold=objective.value,
            passed=passed,
            requests=stats.count,
            seconds=totals.seconds,
            message=message,
        )


@dataclass(frozen=True)
class GuardTrip:
    guard: str
    condition: str
    value: float
    second: int
    message: str


@dataclass
class GuardWatch:
    """Counts consecutive breaching seconds per guard; trips when a streak is long enough."""

    guards: list[Guard]
    _streaks: dict[str, int] = field(default_factory=dict)

    def observe(self, closed: ClosedSecond) -> GuardTrip | None:
        total = closed.total()
        for guard in self.guards:
            breach = guard.condition.breach
            value = measure(breach.metric, total, 1)
            streak = self._streaks.get(guard.name, 0) + 1 if breach.holds(value) else 0
            self._streaks[guard.name] = streak
            if streak >= guard.condition.for_seconds:
                shown = format_metric(breach.metric, value)
                return GuardTrip(
                    guard=guard.name,
                    condition=guard.condition.text,
                    value=value,
                    second=closed.second,
                    message=f"guard '{guard.name}' tripped: {breach.metric} was {shown} ({guard.condition.text})",
                )
        return None
