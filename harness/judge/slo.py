"""SLOs judged over windows of a run.

Pure: fed closed seconds by the orchestrator (live) or by a replay (tests, reports).
Each SLO keeps its own merged statistics for exactly the seconds its window covers, so a
percentile over a window is computed from every sample in it. An SLO whose metric reads the
window second by second (recovery_time: the objectives table's ``by_second``) also keeps its
window's per-second figures, because recovery is a property of the sequence of seconds, not of
their merged total. What each metric is and how it is measured is the objectives table's
(:mod:`harness.judge.objectives`); this module only collects the seconds and words the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.judge.guards import GuardTrip, GuardWatch  # re-exported until the run package imports .guards
from harness.judge.objectives import Evidence, ProbeWindow, Recovery, Second, SloStatus, Where, lookup, probe_name
from harness.judge.probe_samples import ProbeSample
from harness.measure.heal import HealTime
from harness.measure.windows import ClosedSecond, EndpointStats, WindowTotals
from harness.plan import Plan
from harness.scenario import Slo, steady_thresholds
from harness.scenario.expressions import WindowKind

__all__ = ["GuardTrip", "GuardWatch", "SloBook", "SloResult", "SloStatus"]

# Seconds of a by-second window kept whole, so a late window can still be merged into them.
_KEEP_WHOLE = 15


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
    status: SloStatus = SloStatus.MET

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["measured"] = None if not math.isfinite(self.measured) else self.measured
        return data


@dataclass
class _SecondsTrack:
    """Per-second figures of one SLO's window; the last few kept whole for late windows."""

    whole: dict[int, EndpointStats] = field(default_factory=dict)
    final: dict[int, Second] = field(default_factory=dict)

    def add(self, second: int, stats: EndpointStats) -> None:
        mine = self.whole.get(second)
        if mine is None:
            if second in self.final:
                return  # a late window for a second long settled: too old to change recovery
            self.whole[second] = mine = EndpointStats()
        mine.merge(stats)
        while len(self.whole) > _KEEP_WHOLE:
            oldest = min(self.whole)
            self.final[oldest] = _settle(self.whole.pop(oldest))

    def seconds(self) -> dict[int, Second]:
        return {**self.final, **{second: _settle(stats) for second, stats in self.whole.items()}}


def _settle(stats: EndpointStats) -> Second:
    p99 = stats.latency_ms()["p99"] if stats.count else math.nan
    return Second(stats.count, stats.failed, p99)


@dataclass
class SloBook:
    """Collects, per SLO, the seconds its window covers; ``results()`` judges them."""

    plan: Plan
    start_epoch: float
    _totals: dict[str, WindowTotals] = field(default_factory=dict)
    _tracks: dict[str, _SecondsTrack] = field(default_factory=dict)
    _slos: list[Slo] = field(default_factory=list)
    _probes: dict[str, list[ProbeSample]] = field(default_factory=dict)  # SLO -> its window's samples

    def __post_init__(self) -> None:
        # An SLO judged per step of a ladder is judged by the ladder's book (harness.judge.ladder).
        self._slos = slos = [slo for slo in self.plan.scenario.slos if not self.plan.per_step(slo.name)]
        self._totals = {slo.name: WindowTotals() for slo in slos}
        self._tracks = {slo.name: _SecondsTrack() for slo in slos if lookup(slo.objective.metric).by_second}
        self._probes = {slo.name: [] for slo in slos if probe_name(slo.objective.metric) is not None}

    def retime(self, plan: Plan) -> None:
        """A fault that waited for a steady state started: judge the seconds from now by ``plan``,
        where its windows moved with it (the seconds before lie outside them either way)."""
        self.plan = plan

    def offset(self, second: int) -> float:
        """Offset of a second's midpoint from the run start."""
        return second + 0.5 - self.start_epoch

    def observe(self, closed: ClosedSecond) -> None:
        offset = self.offset(closed.second)
        for slo in self._slos:
            # The run window takes every second of the run, a partial last one included, as
            # the run ledger's does: an SLO over the run judges the figures summary.json shows.
            if slo.window.kind is WindowKind.RUN or any(span.contains(offset) for span in self.plan.windows[slo.name]):
                self._totals[slo.name].add(closed)
                track = self._tracks.get(slo.name)
                if track is not None:
                    track.add(closed.second, closed.total(slo.endpoint))

    def observe_probe(self, sample: ProbeSample) -> None:
        """A probe was polled: the SLOs on it whose window holds the poll's instant keep it."""
        offset = sample.at - self.start_epoch
        for slo in self._slos:
            if probe_name(slo.objective.metric) != sample.name:
                continue
            if slo.window.kind is WindowKind.RUN or any(span.contains(offset) for span in self.plan.windows[slo.name]):
                self._probes[slo.name].append(sample)

    def results(self, heals: Mapping[str, HealTime] | None = None) -> list[SloResult]:
        """Every SLO judged; ``heals`` are the heal times the run measured, by fault name (heal_time)."""
        return [self._judge(slo, self._totals[slo.name], heals or {}) for slo in self._slos]

    def _judge(self, slo: Slo, totals: WindowTotals, heals: Mapping[str, HealTime]) -> SloResult:
        metric = lookup(slo.objective.metric)
        stats = totals.total(slo.endpoint)
        track = self._tracks.get(slo.name)
        evidence = Evidence(
            stats=stats,
            seconds=totals.seconds,
            errors=tuple(slo.errors),
            budget=slo.budget,
            recovery=self._recovery(slo) if "recovery" in metric.takes else None,
            by_second=track.seconds() if track is not None else {},
            probe=self._probe_window(slo),
            heal=heals.get(slo.window.ref) if metric.from_system else None,
        )
        where = Where(str(slo.window), slo.endpoint)
        reading = metric.read(evidence, where)
        objective, value = slo.objective, reading.value
        passed = objective.holds(value)
        if evidence.probe is not None:
            status, message, passed = _probe_verdict(evidence.probe, reading.detail, value, passed, metric.format, slo)
        elif reading.status is not None:
            status, message = reading.status, reading.detail
        elif math.isnan(value):
            status, message = SloStatus.NO_DATA, f"no requests in window {where}: nothing to judge"
        else:
            status = SloStatus.MET if passed else SloStatus.BREACHED
            verb = "met" if passed else "breached"
            counted = "" if metric.from_system else f" ({stats.count} requests)"
            message = f"{reading.detail}{counted}: {verb} {objective.op} {metric.format(objective.value)}"
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
            status=status,
        )

    def _probe_window(self, slo: Slo) -> ProbeWindow | None:
        name = probe_name(slo.objective.metric)
        if name is None:
            return None
        samples = self._probes[slo.name]
        values = tuple(s.value for s in samples if not s.failed and not math.isnan(s.value))
        failed = sum(1 for s in samples if s.failed)
        return ProbeWindow(name, values, failed, worst_high=slo.objective.op in ("<", "<="))

    def _recovery(self, slo: Slo) -> Recovery:
        """The SLO's recovery rule with its defaults (the steady SLOs' thresholds) filled in."""
        rule = slo.recovery
        steady_p99, steady_errors = steady_thresholds(self.plan.scenario.slos)
        p99 = rule.p99 if rule is not None and rule.p99 is not None else steady_p99
        errors = rule.error_rate if rule is not None and rule.error_rate is not None else steady_errors
        assert p99 is not None and errors is not None  # the scenario's cross-checks make sure
        span = self.plan.windows[slo.name][0]
        return Recovery(
            fault=slo.window.ref,
            ended=self.start_epoch + span.start,
            within=span.end - span.start,
            p99_ms=p99,
            error_rate=errors,
            stable_for=rule.stable_for if rule is not None else 3,
        )


def _probe_verdict(
    probe: ProbeWindow, detail: str, value: float, passed: bool, show: Callable[[float], str], slo: Slo
) -> tuple[SloStatus, str, bool]:
    """A probe SLO is met only when every poll in its window answered and every value held: a poll
    that failed may have hidden a breach, so the SLO then has no data (not a pass); a value seen
    breaching is a breach whatever else failed."""
    objective = slo.objective
    if math.isnan(value):
        return SloStatus.NO_DATA, f"{detail}: nothing to judge", False
    if not passed:
        return SloStatus.BREACHED, f"{detail}: breached {objective.op} {show(objective.value)}", False
    if probe.failed:
        return SloStatus.NO_DATA, f"{detail}: not judged, a poll that failed may have missed a breach", False
    return SloStatus.MET, f"{detail}: met {objective.op} {show(objective.value)}", True
