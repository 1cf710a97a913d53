"""Percentiles over several endpoints from each endpoint's own per-second percentiles.

InfluxDB holds, per endpoint and second, a handful of percentiles (p50 ... max), not the
histograms. The report's all-endpoints latency of a second is the percentile of the
request-count-weighted mixture of the endpoints' distributions, each read as the
piecewise-linear CDF through its percentiles (:func:`cdf`); :func:`mixture_quantiles` finds the
mixture's quantiles exactly. Pure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from itertools import pairwise
from typing import Any

from harness.results import schema

__all__ = ["cdf", "mixture_quantiles"]

# The per-second percentiles harness writes, with the share of requests at or under each.
_KNOTS = (
    (schema.P50, 0.5),
    (schema.P75, 0.75),
    (schema.P90, 0.9),
    (schema.P95, 0.95),
    (schema.P99, 0.99),
    (schema.P999, 0.999),
    (schema.MAX, 1.0),
)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def cdf(fields: Mapping[str, Any]) -> list[tuple[float, float]]:
    """(latency ms, share of requests at or under it) through the row's percentiles, from (0, 0).

    Below p50 nothing is known; the straight line from zero is the assumption.
    """
    points = [(0.0, 0.0)]
    for key, share in _KNOTS:
        value = _number(fields.get(key))
        if value is not None and math.isfinite(value):
            points.append((max(value, points[-1][0]), share))
    return points if len(points) > 1 else []


def mixture_quantiles(
    parts: Iterable[tuple[float, Sequence[tuple[float, float]]]], quantiles: Sequence[float]
) -> list[float | None]:
    """Quantiles of a mixture of piecewise-linear distributions, each weighted (request counts).

    ``parts`` are (weight, [(value, cumulative share), ...]) with shares rising to 1. The mixed
    CDF is piecewise linear too, so its quantiles are found exactly by one sweep over every
    part's breakpoints: O(n log n) in the breakpoints. A quantile lies between the lowest and
    highest of the parts' own quantiles and equals a part's own when it is the only one.
    Returns None for each quantile when no part has weight.
    """
    changes: list[tuple[float, float, float]] = []  # (value, slope change, jump)
    total = 0.0
    for weight, points in parts:
        if weight <= 0 or len(points) < 2:
            continue
        total += weight
        for (x0, f0), (x1, f1) in pairwise(points):
            mass = (f1 - f0) * weight
            if mass <= 0:
                continue
            if x1 <= x0:
                changes.append((x0, 0.0, mass))
            else:
                slope = mass / (x1 - x0)
                changes.append((x0, slope, 0.0))
                changes.append((x1, -slope, 0.0))
        tail = (1.0 - points[-1][1]) * weight  # a row without max: its rest sits at its last value
        if tail > 0:
            changes.append((points[-1][0], 0.0, tail))
    if total <= 0:
        return [None] * len(quantiles)
    changes.sort()
    order = sorted(range(len(quantiles)), key=lambda i: quantiles[i])
    found: list[float | None] = [None] * len(quantiles)
    pending = [(quantiles[i] * total, i) for i in order]
    eps = total * 1e-9
    mass, slope, previous = 0.0, 0.0, changes[0][0]
    for x, slope_change, jump in changes:
        reached = mass + slope * (x - previous)
        while pending and pending[0][0] <= reached + eps:
            target, index = pending.pop(0)
            value = previous + (target - mass) / slope if slope > 0 and target > mass else previous
            found[index] = min(max(value, previous), x)
        mass = reached + jump
        while pending and pending[0][0] <= mass + eps:
            found[pending.pop(0)[1]] = x
        slope = max(slope + slope_change, 0.0)
        previous = x
    for _, index in pending:  # rounding left a hair of mass short: the largest value
        found[index] = previous
    return [None if v is None else round(v, 3) for v in found]
