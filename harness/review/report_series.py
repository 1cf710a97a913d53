"""The report's per-endpoint seconds, failures by kind and SLO windows, from a run's points or summary.

:mod:`harness.review.report_data` reads the points (results.lp or InfluxDB) and summary.json;
these functions turn the parts it collected into the rows :mod:`harness.review.report_model`
defines. Pure: mappings in, tuples out, sorted so the same run always gives the same page.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from harness.judge.summary import EndpointTotals, RunSummary, Stats
from harness.results import schema
from harness.review.report_model import EndpointSecond, FailureRow, ProbeLine, Totals, WindowRow

__all__ = [
    "endpoint_seconds",
    "failure_rows",
    "failure_rows_from_summary",
    "failures_by_second",
    "number",
    "probe_lines",
    "totals_from_fields",
    "totals_from_stats",
    "window_rows",
]

#: harness_failures as read: (method, name, failure kind, epoch second) -> failed requests
FailureCounts = Mapping[tuple[str, str, str, int], int]


def number(value: Any) -> float | None:
    """A finite number of a point or of summary.json, else None (booleans are not numbers)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


def endpoint_seconds(requests: Mapping[tuple[str, str, int], Mapping[str, Any]]) -> tuple[EndpointSecond, ...]:
    """Every harness_requests row as an endpoint's second, by endpoint then second."""
    rows = [
        EndpointSecond(
            method,
            name,
            second,
            int(number(fields.get(schema.COUNT)) or 0),
            int(number(fields.get(schema.FAILURES)) or 0),
            number(fields.get(schema.P50)),
            number(fields.get(schema.P99)),
        )
        for (method, name, second), fields in requests.items()
    ]
    return tuple(sorted(rows, key=lambda r: (r.name, r.method, r.second)))


def failures_by_second(failures: FailureCounts) -> dict[int, tuple[tuple[str, int], ...]]:
    """Failed requests per second by kind over all endpoints, kinds sorted by name."""
    seconds: dict[int, Counter[str]] = defaultdict(Counter)
    for (_, _, kind, second), count in failures.items():
        seconds[second][kind] += count
    return {second: tuple(sorted(kinds.items())) for second, kinds in seconds.items()}


def failure_rows(failures: FailureCounts) -> tuple[FailureRow, ...]:
    """harness_failures summed over the run: one row per endpoint and kind, most failures first."""
    totals: Counter[tuple[str, str, str]] = Counter()
    for (method, name, kind, _), count in failures.items():
        totals[(method, name, kind)] += count
    return _sorted(FailureRow(m, n, k, c) for (m, n, k), c in totals.items() if c)


def failure_rows_from_summary(endpoints: Iterable[EndpointTotals]) -> tuple[FailureRow, ...]:
    """summary.json's failure kinds per endpoint (exact over the whole run)."""
    return _sorted(
        FailureRow(e.method, e.name, kind, count) for e in endpoints for kind, count in e.stats.failure_kinds.items()
    )


def _sorted(rows: Iterable[FailureRow]) -> tuple[FailureRow, ...]:
    return tuple(sorted(rows, key=lambda r: (-r.count, r.name, r.method, r.kind)))


def totals_from_stats(stats: Stats) -> Totals:
    """A Stats of summary.json as the report's figures (None where there is none, NaN included)."""
    latency = stats.latency
    return Totals(
        requests=stats.requests,
        failures=stats.failures,
        rps=number(stats.rps) or 0.0,
        p50_ms=number(latency.p50_ms),
        p95_ms=number(latency.p95_ms),
        p99_ms=number(latency.p99_ms),
        max_ms=number(latency.max_ms),
        p90_ms=number(latency.p90_ms),
        p999_ms=number(latency.p999_ms),
        mean_ms=number(latency.mean_ms),
    )


def totals_from_fields(fields: Mapping[str, Any]) -> Totals:
    """A harness_windows point's figures (the same as summary.json's window row)."""
    return Totals(
        requests=int(number(fields.get(schema.COUNT)) or 0),
        failures=int(number(fields.get(schema.FAILURES)) or 0),
        rps=number(fields.get(schema.RPS)) or 0.0,
        p50_ms=number(fields.get(schema.P50)),
        p95_ms=number(fields.get(schema.P95)),
        p99_ms=number(fields.get(schema.P99)),
        max_ms=number(fields.get(schema.MAX)),
        p90_ms=number(fields.get(schema.P90)),
        p999_ms=number(fields.get(schema.P999)),
        mean_ms=number(fields.get(schema.MEAN)),
    )


def window_rows(
    from_summary: Mapping[str, Stats], from_points: Mapping[str, Mapping[str, Any]]
) -> tuple[WindowRow, ...]:
    """Each SLO window's figures: summary.json's when it has them, else harness_windows'; run first."""
    rows = {name: totals_from_stats(stats) for name, stats in from_summary.items()} or {
        name: totals_from_fields(fields) for name, fields in from_points.items()
    }
    order = sorted(rows, key=lambda name: (name != "run", name))
    return tuple(WindowRow(name, rows[name]) for name in order)


def probe_lines(summary: RunSummary, started: float | None) -> tuple[ProbeLine, ...]:
    """summary.json's probe values (offsets from the run start) as lines in epoch seconds."""
    if started is None:
        return ()
    lines = (
        ProbeLine(p.name, tuple((started + v.offset, v.value) for v in p.values if v.value is not None))
        for p in summary.probes
    )
    return tuple(line for line in lines if line.values)
