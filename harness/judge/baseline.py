"""Baseline regression: judge a run against an earlier one, per phase and per endpoint.

:func:`compare` judges p99, error rate and rps of every (phase, endpoint) present in both runs'
per-second samples (:class:`RunSamples`). Reading those samples from a run's points
(``runs/<run_id>/results.lp``, InfluxDB, or the points a run just wrote) is the results room's
job (:mod:`harness.results.samples`); the caller passes them in.

A change counts as a regression only when it is larger than the scenario's tolerance
(``Scenario.baseline``), when it is statistically significant (a one-sided Mann-Whitney U test
over the per-second samples at the scenario's confidence, Holm-adjusted over all comparisons of
the report because a run pair yields dozens of them) and, for p99, when the rise exceeds
``p99_min_rise`` in milliseconds (a fast endpoint's p99 moves by tens of percent on a scheduler
hiccup).  The tolerance alone would fail identical
runs on noise in short phases; the test alone would fail long runs on changes too small to
matter.  The test assumes independent seconds; real per-second latencies drift, which makes it
somewhat too eager, and the tolerance is what absorbs that.  The price of the adjustment: with
a few dozen comparisons, a phase needs 8 whole seconds on each side before any change in it
can be significant (min_seconds is a floor, not enough).

Pure: no file, server or clock is read here.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from harness.scenario import Baseline

__all__ = [
    "ALL_ENDPOINTS",
    "BaselineReport",
    "Comparison",
    "Metric",
    "RunSamples",
    "Sample",
    "compare",
]

# The endpoint label of the per-phase aggregate; real endpoints are "METHOD name", with a space.
ALL_ENDPOINTS = "all"


class Metric(StrEnum):
    P99 = "p99"
    ERROR_RATE = "error_rate"
    RPS = "rps"


@dataclass(frozen=True, slots=True)
class Sample:
    """One endpoint (or the phase total) in one whole second of a phase.

    ``second`` is the epoch second (any increasing integer in synthetic data); ``p99_ms`` is
    None when no request completed in that second.
    """

    second: int
    count: int
    failures: int
    p99_ms: float | None = None

    @property
    def rps(self) -> float:
        return float(self.count)

    @property
    def error_rate(self) -> float | None:
        """Failures / requests in this second; None without requests."""
        return self.failures / self.count if self.count else None


@dataclass(frozen=True)
class RunSamples:
    """A run's per-second samples by (phase, endpoint "METHOD name"), each in time order.

    Only whole seconds inside a phase are kept: seconds outside every phase, and the partial
    first and last second of each phase, would make rps look lower than the load was.
    """

    run_id: str
    scenario: str
    series: Mapping[tuple[str, str], Sequence[Sample]]
    phases: tuple[str, ...] = ()  # in run order; phases without samples included

    def endpoints(self, phase: str) -> list[str]:
        return sorted(endpoint for p, endpoint in self.series if p == phase)

    def phase_names(self) -> list[str]:
        """Phases in run order, then any that only appear in ``series``."""
        seen = list(self.phases)
        seen.extend(sorted({p for p, _ in self.series} - set(seen)))
        return seen

    def total(self, phase: str) -> list[Sample]:
        """All endpoints of ``phase`` summed per second (no p99: percentiles do not add up)."""
        counts: dict[int, list[int]] = defaultdict(lambda: [0, 0])
        for (p, _), samples in self.series.items():
            if p != phase:
                continue
            for sample in samples:
                counts[sample.second][0] += sample.count
                counts[sample.second][1] += sample.failures
        return [Sample(second, c, f) for second, (c, f) in sorted(counts.items())]


# ---------------------------------------------------------------- comparing


@dataclass(frozen=True)
class Comparison:
    """One metric of one endpoint (or ``all``) in one phase, baseline against this run.

    ``change`` is relative for p99 and rps (0.25 = +25%) and absolute for error_rate
    (0.02 = +2 percentage points); ``tolerance`` is in the same unit and signed in the
    direction that hurts (rps: -0.10).  ``baseline``/``current`` are medians of per-second
    values for p99 (ms) and rps, and the phase's failures / requests for error_rate.
    ``p_value`` is the one-sided Mann-Whitney U p-value, Holm-adjusted over the report
    (1.0 when the samples cannot differ, e.g. no failures on either side; never NaN).
    ``floor`` is the smallest absolute change that can count (p99: ``p99_min_rise`` in ms; 0
    for the others).
    """

    phase: str
    endpoint: str
    metric: Metric
    baseline: float
    current: float
    change: float
    tolerance: float
    p_value: float
    regressed: bool
    message: str
    floor: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "endpoint": self.endpoint,
            "metric": self.metric.value,
            "baseline": _json_number(self.baseline),
            "current": _json_number(self.current),
            "change": _json_number(self.change),
            "tolerance": self.tolerance,
            "floor": self.floor,
            "p_value": _json_number(self.p_value),
            "regressed": self.regressed,
            "message": self.message,
        }


def _json_number(value: float) -> float | None:
    """JSON has no infinities (a change from a zero baseline): those become null."""
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class BaselineReport:
    """Every comparison made, in phase then endpoint order.

    ``skipped`` says, for humans, what could not be compared (too few seconds, a phase or an
    endpoint missing on one side); it is not part of :meth:`to_dict`.
    """

    ref: str
    run_id: str
    comparisons: tuple[Comparison, ...]
    skipped: tuple[str, ...] = field(default=())

    @property
    def regressions(self) -> list[Comparison]:
        return [c for c in self.comparisons if c.regressed]

    @property
    def passed(self) -> bool:
        return not self.regressions

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "run_id": self.run_id,
            "passed": self.passed,
            "comparisons": [c.to_dict() for c in self.comparisons],
        }

    def summary_line(self) -> str:
        """One line for the terminal: what regressed, naming metric, endpoint and phase."""
        if not self.comparisons:
            return f"baseline {self.ref}: nothing to compare ({len(self.skipped)} skipped)"
        if self.passed:
            phases = len({c.phase for c in self.comparisons})
            return f"baseline {self.ref}: no regression ({len(self.comparisons)} comparisons in {phases} phases)"
        items = [
            f"{c.metric.value} of {_endpoint_text(c.endpoint)} in phase {c.phase} ({_change_text(c.metric, c.change)})"
            for c in self.regressions
        ]
        count = len(items)
        return f"baseline {self.ref}: {count} regression{'s' if count > 1 else ''}: " + "; ".join(items)


def _endpoint_text(endpoint: str) -> str:
    return "all endpoints" if endpoint == ALL_ENDPOINTS else endpoint


def _change_text(metric: Metric, change: float) -> str:
    if metric is Metric.ERROR_RATE:
        return f"{change * 100:+.2f} points"
    return "+inf%" if math.isinf(change) else f"{change * 100:+.0f}%"


def _value_text(metric: Metric, value: float) -> str:
    if metric is Metric.P99:
        return f"{value:.1f} ms"
    if metric is Metric.ERROR_RATE:
        return f"{value * 100:.2f}%"
    return f"{value:.1f}/s"


def _p_text(p: float) -> str:
    if p < 1e-99:  # scipy's normal approximation underflows to 0 for huge effects
        return "p<1e-99"
    return f"p={p:.3g}" if p >= 0.001 else f"p={p:.1e}"


def _mann_whitney(current: Sequence[float], baseline: Sequence[float], alternative: str) -> float:
    """One-sided p-value that ``current`` is greater/less than ``baseline``.

    1.0 when every value on both sides is equal (all-zero error rates): scipy would answer NaN
    (no variance), and "no evidence of a change" is what that means here.
    """
    values = set(current) | set(baseline)
    if len(values) <= 1:
        return 1.0
    # Imported here: scipy takes a noticeable part of a second to import, and only a run
    # with --baseline needs it.
    from scipy.stats import mannwhitneyu

    p = float(mannwhitneyu(current, baseline, alternative=alternative).pvalue)
    return 1.0 if math.isnan(p) else p


def _relative(baseline: float, current: float) -> float:
    if baseline > 0:
        return current / baseline - 1
    return 0.0 if current == baseline else math.inf


def _compare_one(
    phase: str,
    endpoint: str,
    metric: Metric,
    current: Sequence[Sample],
    baseline: Sequence[Sample],
    tolerances: Baseline,
) -> Comparison | str:
    """One comparison with its raw p-value (not judged yet), or why it was skipped."""
    if metric is Metric.P99:
        cur = [s.p99_ms for s in current if s.p99_ms is not None]
        base = [s.p99_ms for s in baseline if s.p99_ms is not None]
    elif metric is Metric.ERROR_RATE:
        cur = [s.error_rate for s in current if s.error_rate is not None]
        base = [s.error_rate for s in baseline if s.error_rate is not None]
    else:
        cur = [s.rps for s in current]
        base = [s.rps for s in baseline]
    where = f"{metric.value} of {_endpoint_text(endpoint)} in phase {phase}"
    floor = 0.0
    if min(len(cur), len(base)) < tolerances.min_seconds:
        return f"{where}: {len(base)} s in the baseline, {len(cur)} s now (min_seconds {tolerances.min_seconds})"
    if metric is Metric.P99:
        before, after = statistics.median(base), statistics.median(cur)
        change, tolerance = _relative(before, after), tolerances.p99
        p = _mann_whitney(cur, base, "greater")
        floor = tolerances.p99_min_rise * 1000
    elif metric is Metric.ERROR_RATE:
        # The phase's error rate (failures / requests), not a median of seconds: it is what an
        # error_rate SLO judges, and a median of mostly-zero seconds would hide a rise.
        before = sum(s.failures for s in baseline) / max(1, sum(s.count for s in baseline))
        after = sum(s.failures for s in current) / max(1, sum(s.count for s in current))
        change, tolerance = after - before, tolerances.error_rate
        p = _mann_whitney(cur, base, "greater")
    else:
        before, after = statistics.median(base), statistics.median(cur)
        change, tolerance = _relative(before, after), -tolerances.rps
        p = _mann_whitney(cur, base, "less")
    return Comparison(phase, endpoint, metric, before, after, change, tolerance, p, False, "", floor)


def _holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    A run pair yields dozens of comparisons; tested one by one at 1% each, about one pair of
    identical runs in ten would fail somewhere (measured in tests/test_baseline.py).  Adjusted,
    ``confidence`` holds for the report as a whole.
    """
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def _judged(comparison: Comparison, p: float, alpha: float) -> Comparison:
    """The comparison with its adjusted p-value, its verdict and its message."""
    c = comparison
    beyond = c.change < c.tolerance if c.metric is Metric.RPS else c.change > c.tolerance
    small = c.metric is Metric.P99 and c.current - c.baseline < c.floor
    where = f"{c.metric.value} of {_endpoint_text(c.endpoint)} in phase {c.phase}"
    tolerance = _change_text(c.metric, c.tolerance)
    if c.current == c.baseline:
        text = f"{where} unchanged at {_value_text(c.metric, c.current)} (tolerance {tolerance}, {_p_text(p)})"
    else:
        verb = "rose" if c.current > c.baseline else "fell"
        text = (
            f"{where} {verb} {_value_text(c.metric, c.baseline)} -> {_value_text(c.metric, c.current)}"
            f" ({_change_text(c.metric, c.change)}, tolerance {tolerance}, {_p_text(p)})"
        )
        if small and beyond:
            text += f", under the {c.floor:g} ms floor"
    return replace(c, p_value=p, regressed=beyond and not small and p < alpha, message=text)


def compare(current: RunSamples, baseline: RunSamples, tolerances: Baseline) -> BaselineReport:
    """Judge ``current`` against ``baseline``, per phase and endpoint, on p99, error rate and rps.

    Every (phase, endpoint) present in both runs with at least ``tolerances.min_seconds``
    samples on each side is compared; per phase, error rate and rps are also compared over
    all endpoints together (endpoint ``all``).  A comparison regresses when its change exceeds
    the tolerance and its one-sided Mann-Whitney U test is significant at
    ``tolerances.confidence`` after Holm-Bonferroni adjustment over all comparisons of the
    report (``p_value`` is the adjusted one), so two identical runs fail each other at most
    ``1 - confidence`` of the time however many endpoints and phases there are.
    Pure: same inputs, same report.
    """
    comparisons: list[Comparison] = []
    skipped: list[str] = []

    def judge(
        phase: str, endpoint: str, metrics: Iterable[Metric], cur: Sequence[Sample], base: Sequence[Sample]
    ) -> None:
        for metric in metrics:
            outcome = _compare_one(phase, endpoint, metric, cur, base, tolerances)
            if isinstance(outcome, Comparison):
                comparisons.append(outcome)
            else:
                skipped.append(outcome)

    baseline_phases = set(baseline.phase_names())
    for phase in current.phase_names():
        if phase not in baseline_phases:
            skipped.append(f"phase {phase}: not in baseline {baseline.run_id}")
            continue
        before, after = set(baseline.endpoints(phase)), set(current.endpoints(phase))
        for endpoint in sorted(before | after):
            if endpoint not in after:
                skipped.append(f"{endpoint} in phase {phase}: no requests in this run")
            elif endpoint not in before:
                skipped.append(f"{endpoint} in phase {phase}: not in baseline {baseline.run_id}")
            else:
                judge(phase, endpoint, Metric, current.series[(phase, endpoint)], baseline.series[(phase, endpoint)])
        if len(before | after) > 1:
            judge(phase, ALL_ENDPOINTS, (Metric.ERROR_RATE, Metric.RPS), current.total(phase), baseline.total(phase))
    for phase in baseline.phase_names():
        if phase not in set(current.phase_names()):
            skipped.append(f"phase {phase}: not in this run")
    alpha = 1 - tolerances.confidence
    adjusted = _holm([c.p_value for c in comparisons])
    judged = tuple(_judged(c, p, alpha) for c, p in zip(comparisons, adjusted, strict=True))
    return BaselineReport(baseline.run_id, current.run_id, judged, tuple(skipped))
