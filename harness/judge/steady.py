"""When the system is steady: the conditions of the faults that wait for it, judged each second.

Pure: the run feeds each closed second (:meth:`SteadyWatch.observe`) and each probe sample
(:meth:`SteadyWatch.observe_probe`); a fault's conditions (:class:`~harness.scenario.start.SteadyStart`)
are measured on that second alone, all endpoints merged, with the objectives table, as a guard's
are. A second that is not whole (the run's first, which starts mid-second), lies before the
fault's ``after``, or gives no value (a latency or an error rate without requests, a probe
without a fresh sample) breaks the streak; a second without requests has an ``rps`` of 0.
When every condition has held for ``for`` seconds in a row, the fault is due: the run starts it
(:mod:`harness.run.steady`) and no longer asks about it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from harness.judge.objectives import Evidence, ProbeWindow, lookup, probe_name
from harness.judge.probe_samples import LatestProbes, ProbeSample
from harness.measure.windows import ClosedSecond, EndpointStats
from harness.scenario.start import SteadyStart

__all__ = ["SteadyHeld", "SteadyWatch"]


@dataclass(frozen=True)
class SteadyHeld:
    """A fault's steady state held: with the whole epoch second ``second``, which ended at ``at``."""

    fault: str
    second: int
    at: float
    text: str  # the condition and what the last second measured, for the run's event


class SteadyWatch:
    """The streak of each waiting fault's conditions; a fault is reported once, when it is due."""

    def __init__(self, waiting: Mapping[str, SteadyStart], start_epoch: float, stale_after: float = 5.0) -> None:
        self.waiting = dict(waiting)
        self.start_epoch = start_epoch
        self._probes = LatestProbes(stale_after)
        self._streaks: dict[str, int] = {}

    def observe_probe(self, sample: ProbeSample) -> None:
        self._probes.observe(sample)

    def observe(self, closed: ClosedSecond) -> list[SteadyHeld]:
        """The faults whose steady state held with this second (removed from the waiting)."""
        if closed.revision or not self.waiting:
            return []
        total = closed.total()
        held = []
        for name, start in list(self.waiting.items()):
            counts = closed.second >= self.start_epoch + start.after
            readings = [self._measure(c.metric, total, closed.second) for c in start.steady] if counts else []
            steady = counts and all(c.holds(v) for c, v in zip(start.steady, readings, strict=True))
            streak = self._streaks[name] = self._streaks.get(name, 0) + 1 if steady else 0
            if streak >= start.seconds:
                del self.waiting[name]
                shown = ", ".join(
                    f"{c.metric} {lookup(c.metric).format(v)}" for c, v in zip(start.steady, readings, strict=True)
                )
                text = f"steady: {start.text()} (last second: {shown})"
                held.append(SteadyHeld(name, closed.second, closed.second + 1.0, text))
        return held

    def _measure(self, metric: str, total: EndpointStats, second: int) -> float:
        probe = probe_name(metric)
        window = None
        if probe is not None:
            value = self._probes.value(probe, second)
            window = ProbeWindow(probe, () if math.isnan(value) else (value,))
        return lookup(metric).measure(Evidence(total, 1, (), None, probe=window))
