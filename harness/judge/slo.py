"""SLOs judged over windows of a run, and guards checked every second.

Pure: fed closed seconds by the orchestrator (live) or by a replay (tests, reports).
Each SLO keeps its own merged statistics for exactly the seconds its window covers, so a
percentile over a window is computed from every sample in it. A recovery_time SLO also keeps
its window's per-second p99 and error rate, because recovery is a property of the sequence of
seconds, not of their merged total.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from harness.measure.windows import ClosedSecond, EndpointStats, WindowTotals
from harness.plan import Plan
from harness.scenario import Guard, Slo, steady_thresholds
from harness.scenario.expressions import format_duration, format_metric

__all__ = [
    "GuardTrip",
    "GuardWatch",
    "SloBook",
    "SloResult",
    "SloStatus",
    "failure_matches",
    "measure",
    "recovery_seconds",
]

# Seconds of a recovery window kept whole, so a late window can still be merged into them.
_KEEP_WHOLE = 15


def failure_matches(kind: str, selectors: Iterable[str]) -> bool:
    """Whether a recorded failure kind (``http_503``, ``ConnectionRefusedError``) is selected by
    an SLO's ``errors`` list: a status (503), a status class (5xx), or the kind itself."""
    status = kind[5:] if kind.startswith("http_") else ""
    for selector in selectors:
        if selector == kind or (status and selector == status):
            return True
        if status and len(selector) == 3 and selector.endswith("xx") and status[0] == selector[0]:
            return True
    return False


def _failed(stats: EndpointStats, errors: Iterable[str] = ()) -> int:
    selected = tuple(errors)
    if not selected:
        return stats.failed
    return sum(n for kind, n in stats.failures.items() if failure_matches(kind, selected))


def measure(metric: str, stats: EndpointStats, seconds: int, errors: Iterable[str] = ()) -> float:
    """The value of ``metric`` for merged statistics over ``seconds`` seconds (NaN if no data).

    Only the metrics that follow from merged statistics alone: latency percentiles,
    error_rate (optionally just the ``errors`` kinds) and rps.
    """
    if metric == "rps":
        return stats.count / seconds if seconds else math.nan
    if stats.count == 0:
        return math.nan
    if metric == "error_rate":
        return _failed(stats, errors) / stats.count
    return stats.latency_ms()[metric]


class SloStatus(StrEnum):
    """How an SLO ended: JUnit skips NO_DATA and fails BREACHED and NEVER_RECOVERED."""

    MET = "met"
    BREACHED = "breached"
    NO_DATA = "no_data"
    NEVER_RECOVERED = "never_recovered"


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


@dataclass(frozen=True)
class _Second:
    """One second of a recovery window, as the recovery rule sees it."""

    count: int
    failed: int
    p99_ms: float


def recovery_seconds(
    seconds: Mapping[int, _Second] | Mapping[int, tuple[int, int, float]],
    fault_end_epoch: float,
    p99_ms: float,
    error_rate: float,
    stable_for: int,
) -> float | None:
    """Seconds from the fault's end to the start of the first run of ``stable_for`` good seconds.

    A second is good when it had requests, its p99 is at or under ``p99_ms`` and its error
    rate at or under ``error_rate``; a second without requests breaks a streak (nothing shows
    the service is back). None when no such run exists: never recovered.
    """
    streak_start: int | None = None
    streak = 0
    previous: int | None = None
    for second in sorted(seconds):
        value = seconds[second]
        count, failed, p99 = (value.count, value.failed, value.p99_ms) if isinstance(value, _Second) else value
        good = count > 0 and p99 <= p99_ms and failed / count <= error_rate
        if good and streak and previous == second - 1:
            streak += 1
        elif good:
            streak_start, streak = second, 1
        else:
            streak = 0
        previous = second
        if streak >= stable_for and streak_start is not None:
            return max(0.0, streak_start - fault_end_epoch)
    return None


@dataclass
class _RecoveryTrack:
    """Per-second figures of one recovery_time SLO's window; the last few kept whole for late windows."""

    whole: dict[int, EndpointStats] = field(default_factory=dict)
    final: dict[int, _Second] = field(default_factory=dict)

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

    def seconds(self) -> dict[int, _Second]:
        return {**self.final, **{second: _settle(stats) for second, stats in self.whole.items()}}


def _settle(stats: EndpointStats) -> _Second:
    p99 = stats.latency_ms()["p99"] if stats.count else math.nan
    return _Second(stats.count, stats.failed, p99)


@dataclass
class SloBook:
    """Collects, per SLO, the seconds its window covers; ``results()`` judges them."""

    plan: Plan
    start_epoch: float
    _totals: dict[str, WindowTotals] = field(default_factory=dict)
    _recovery: dict[str, _RecoveryTrack] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._totals = {slo.name: WindowTotals() for slo in self.plan.scenario.slos}
        self._recovery = {
            slo.name: _RecoveryTrack() for slo in self.plan.scenario.slos if slo.objective.metric == "recovery_time"
        }

    def offset(self, second: int) -> float:
        """Offset of a second's midpoint from the run start."""
        return second + 0.5 - self.start_epoch

    def observe(self, closed: ClosedSecond) -> None:
        offset = self.offset(closed.second)
        for slo in self.plan.scenario.slos:
            if any(span.contains(offset) for span in self.plan.windows[slo.name]):
                self._totals[slo.name].add(closed)
                track = self._recovery.get(slo.name)
                if track is not None:
                    track.add(closed.second, closed.total(slo.endpoint))

    def results(self) -> list[SloResult]:
        return [self._judge(slo, self._totals[slo.name]) for slo in self.plan.scenario.slos]

    def _judge(self, slo: Slo, totals: WindowTotals) -> SloResult:
        stats = totals.total(slo.endpoint)
        objective = slo.objective
        where = f"{slo.window}" + (f" on {slo.endpoint}" if slo.endpoint else "")
        status = SloStatus.MET
        if objective.metric == "recovery_time":
            value, detail, status = self._recovery_time(slo)
        elif objective.metric in ("burn_rate", "budget_burn"):
            value, detail = self._burn(slo, stats, totals.seconds)
        else:
            value = measure(objective.metric, stats, totals.seconds, slo.errors)
            kinds = f" ({', '.join(slo.errors)} only)" if slo.errors else ""
            detail = f"{objective.metric}{kinds} {format_metric(objective.metric, value)} over {where}"
        passed = objective.holds(value)
        limit = format_metric(objective.metric, objective.value)
        if status == SloStatus.NEVER_RECOVERED:
            message = detail
        elif math.isnan(value):
            status = SloStatus.NO_DATA
            message = f"no requests in window {where}: nothing to judge"
        else:
            status = SloStatus.MET if passed else SloStatus.BREACHED
            verb = "met" if passed else "breached"
            message = f"{detail} ({stats.count} requests): {verb} {objective.op} {limit}"
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

    def _recovery_time(self, slo: Slo) -> tuple[float, str, SloStatus]:
        rule = slo.recovery
        steady_p99, steady_errors = steady_thresholds(self.plan.scenario.slos)
        p99 = rule.p99 if rule is not None and rule.p99 is not None else steady_p99
        errors = rule.error_rate if rule is not None and rule.error_rate is not None else steady_errors
        stable_for = rule.stable_for if rule is not None else 3
        assert p99 is not None and errors is not None  # the scenario's cross-checks make sure
        fault = slo.window.ref
        span = self.plan.windows[slo.name][0]
        seconds = self._recovery[slo.name].seconds()
        rule_text = (
            f"per-second p99 <= {format_metric('p99', p99)} and error rate <= {format_metric('error_rate', errors)} "
            f"for {stable_for} consecutive seconds"
        )
        on = f" on {slo.endpoint}" if slo.endpoint else ""
        if not seconds:
            return math.nan, "", SloStatus.NO_DATA
        recovered = recovery_seconds(seconds, self.start_epoch + span.start, p99, errors, stable_for)
        if recovered is None:
            message = (
                f"never recovered after {fault}{on}: {rule_text} did not hold within the "
                f"{format_duration(span.end - span.start)} after the fault ended"
            )
            return math.inf, message, SloStatus.NEVER_RECOVERED
        detail = f"recovery_time {format_metric('recovery_time', recovered)} after {fault}{on} ({rule_text})"
        return recovered, detail, SloStatus.MET

    def _burn(self, slo: Slo, stats: EndpointStats, seconds: int) -> tuple[float, str]:
        budget = slo.budget
        assert budget is not None  # the scenario's cross-checks make sure
        where = f"{slo.window}" + (f" on {slo.endpoint}" if slo.endpoint else "")
        if stats.count == 0 or not seconds:
            return math.nan, ""
        error_rate = stats.error_rate
        allowed = 1.0 - budget.availability
        burn_rate = error_rate / allowed if allowed > 0 else (math.inf if error_rate > 0 else 0.0)
        used = burn_rate * seconds / budget.period
        shown_rate = format_metric("error_rate", error_rate)
        budget_text = f"a {format_metric('error_rate', allowed)} budget ({budget.availability * 100:g}% availability)"
        if slo.objective.metric == "burn_rate":
            shown = format_metric("burn_rate", burn_rate)
            return burn_rate, f"burn_rate {shown} over {where}: error rate {shown_rate} against {budget_text}"
        detail = (
            f"budget_burn {format_metric('budget_burn', used)} of the {format_duration(budget.period)} error budget "
            f"used over {where} ({seconds}s at error rate {shown_rate} against {budget_text})"
        )
        return used, detail


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
