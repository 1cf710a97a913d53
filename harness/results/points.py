"""The InfluxDB schema of DESIGN.md, as pure functions from run data to points.

One place defines every measurement, tag and field, so Grafana dashboards, reports and
tests can rely on it. ``run_id`` is a tag on every point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from harness.judge.slo import SloResult
from harness.measure.windows import ClosedSecond, Endpoint, EndpointStats
from harness.results.lineproto import Point

__all__ = [
    "REQUESTS",
    "event_point",
    "load_point",
    "request_points",
    "run_point",
    "slo_points",
]

REQUESTS = "harness_requests"
LOAD = "harness_load"
EVENTS = "harness_events"
SLO = "harness_slo"
RUNS = "harness_runs"

_NS = 1_000_000_000


def request_points(run_id: str, scenario: str, closed: ClosedSecond, endpoints: Iterable[Endpoint]) -> Iterator[Point]:
    """One row per endpoint per second; endpoints seen earlier in the run get a zero row."""
    for method, name in endpoints:
        stats = closed.endpoints.get((method, name)) or EndpointStats()
        fields: dict[str, float | int] = {
            "count": stats.count,
            "failures": stats.failed,
            "rps": float(stats.count),
            "bytes": stats.bytes,
        }
        if stats.count:
            fields.update({k: round(v, 3) for k, v in stats.latency_ms().items() if not math.isnan(v)})
            service = stats.service_ms()  # open model: raw service time beside the corrected latency
            if service is not None:
                fields.update({f"service_{k}": round(v, 3) for k, v in service.items() if not math.isnan(v)})
        yield Point(
            REQUESTS,
            {"run_id": run_id, "scenario": scenario, "method": method, "name": name},
            fields,
            closed.second * _NS,
        )


def load_point(run_id: str, scenario: str, closed: ClosedSecond, generators: int, saturated: bool) -> Point:
    total = sum(s.count for s in closed.endpoints.values())
    return Point(
        LOAD,
        {"run_id": run_id, "scenario": scenario},
        {
            "users": closed.users,
            "target_rate": round(closed.target_rate, 3),
            "achieved_rate": float(total),
            "generators": generators,
            "saturated": saturated,
            # the busiest process: what a "generator health" panel plots beside the saturated flag
            "generator_cpu": round(max((h.demand for h in closed.health), default=0.0) * 100, 1),
            "generator_lag_ms": round(max((h.lag_ms for h in closed.health), default=0.0), 1),
        },
        closed.second * _NS,
    )


def event_point(
    run_id: str,
    kind: str,
    name: str,
    state: str,
    text: str,
    time_s: float,
    planned_offset: float | None = None,
    late_ms: float | None = None,
) -> Point:
    """A Grafana annotation: kind is run, phase, stage, fault or abort; state is start or end.

    Steps of the plan (stage changes, fault injections and reverts) also carry their planned
    offset from the run start (s) and how late they took effect (ms), so step timing can be
    checked from the events alone.
    """
    fields: dict[str, str | float] = {"text": text, "state": state}
    if planned_offset is not None:
        fields["planned_offset"] = round(planned_offset, 3)
    if late_ms is not None:
        fields["late_ms"] = round(late_ms, 1)
    return Point(EVENTS, {"run_id": run_id, "kind": kind, "name": name}, fields, int(time_s * _NS))


def slo_points(run_id: str, results: Iterable[SloResult], time_s: float) -> Iterator[Point]:
    for result in results:
        fields: dict[str, float | bool] = {"threshold": result.threshold, "passed": result.passed}
        if math.isfinite(result.measured):
            fields["value"] = result.measured
        yield Point(SLO, {"run_id": run_id, "slo": result.name}, fields, int(time_s * _NS))


def run_point(run_id: str, scenario: str, verdict: str, started: float, ended: float, text: str) -> Point:
    return Point(
        RUNS,
        {"run_id": run_id, "scenario": scenario, "verdict": verdict},
        {"started": started, "ended": ended, "text": text},
        int(started * _NS),
    )
