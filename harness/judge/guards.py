"""Guards: abort conditions judged on every closed second of a run.

Pure: the orchestrator feeds each closed second to :meth:`GuardWatch.observe`, which measures each
guard's metric on that second alone (all endpoints merged) with the objectives table
(:mod:`harness.judge.objectives`) and trips when the condition has held for the guard's
``for`` seconds in a row. Only metrics the table marks ``per_second`` can be guards; the scenario
refuses the others when it is loaded.

A guard on a probe (``probe:errors > 0 for 3s``) judges, each second, the probe's latest
sample (:meth:`GuardWatch.observe_probe`); a failed poll, or a sample older than ``stale_after``
seconds, is no value, which breaks a streak like a second without requests.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from harness.judge.objectives import Evidence, ProbeWindow, lookup, probe_name
from harness.judge.probe_samples import LatestProbes, ProbeSample
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
    stale_after: float = 5.0  # seconds after which a probe's latest sample no longer counts
    _streaks: dict[str, int] = field(default_factory=dict)
    _probes: LatestProbes = field(init=False)

    def __post_init__(self) -> None:
        self._probes = LatestProbes(self.stale_after)

    def observe_probe(self, sample: ProbeSample) -> None:
        """A probe was polled: from now on guards on it judge this sample."""
        self._probes.observe(sample)

    def _probe(self, metric: str, second: int) -> ProbeWindow | None:
        name = probe_name(metric)
        if name is None:
            return None
        value = self._probes.value(name, second)
        return ProbeWindow(name, () if math.isnan(value) else (value,))

    def observe(self, closed: ClosedSecond) -> GuardTrip | None:
        total = closed.total()
        for guard in self.guards:
            breach = guard.condition.breach
            metric = lookup(breach.metric)
            probe = self._probe(breach.metric, closed.second)
            value = metric.measure(Evidence(total, 1, tuple(guard.errors), guard.budget, probe=probe))
            streak = self._streaks.get(guard.name, 0) + 1 if breach.holds(value) else 0
            self._streaks[guard.name] = streak
            if streak >= guard.condition.for_seconds:
                return GuardTrip(
                    guard=guard.name,
                    condition=guard.condition.text,
                    value=value,
                    second=closed.second,
                    message=f"guard '{guard.name}' tripped: {breach.metric} was {metric.format(value)} "
                    f"({guard.condition.text})",
                )
        return None
