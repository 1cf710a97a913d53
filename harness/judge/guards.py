"""Guards: abort conditions judged on every closed second of a run.

Pure: the orchestrator feeds each closed second to :meth:`GuardWatch.observe`, which measures each
guard's metric on that second alone (all endpoints merged) with the objectives table
(:mod:`harness.judge.objectives`) and trips when the condition has held for the guard's
``for`` seconds in a row. Only metrics the table marks ``per_second`` can be guards; the scenario
refuses the others when it is loaded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from harness.judge.objectives import Evidence, lookup
from harness.measure.windows import ClosedSecond
from harness.scenario import Guard

__all__ = ["GuardTrip", "GuardWatch"]


@dataclass(frozen=True)
class GuardTrip:
    guard: str
    condition: str
    value: float
    second: int
    message: str


@dataclass
class GuardWatch:
    """Counts consecutive breaching seconds per guard; trips when a streak is long enough.

    A second whose value is unknown (NaN: no requests, for most metrics) breaks a streak.
    """

    guards: list[Guard]
    _streaks: dict[str, int] = field(default_factory=dict)

    def observe(self, closed: ClosedSecond) -> GuardTrip | None:
        total = closed.total()
        for guard in self.guards:
            breach = guard.condition.breach
            metric = lookup(breach.metric)
            value = metric.measure(Evidence(total, 1, tuple(guard.errors), guard.budget))
            streak = self._streaks.get(guard.name, 0) + 1 if breach.holds(value) else 0
            self._streaks[guard.name] = streak
            if streak >= guard.condition.for_seconds:
                return GuardTrip(
                    guard=guard.name,
                    condition=guard.condition.text,
                    value=value,
                    second=closed.second,
                    message=f"guard '{guard.name}' tripped: {metric.name} was {metric.format(value)} "
                    f"({guard.condition.text})",
                )
        return None
