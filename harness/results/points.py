"""A run's data as InfluxDB points, in the schema of :mod:`harness.results.schema`: pure functions.

Every measurement, tag and field name comes from the schema module, so Grafana dashboards,
reports and baselines read what is written here. ``run_id`` is a tag on every point.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from harness.judge.slo import SloResult
from harness.judge.summary import HealEntry
from harness.measure.windows import ClosedSecond, Endpoint, EndpointStats
from harness.results import schema
from harness.results.lineproto import Point

__all__ = [
    "endpoint_points",
    "event_point",
    "failure_points",
    "fault_end_point",
    "load_point",
    "probe_point",
    "request_points",
    "run_point",
    "running_point",
    "slo_points",
    "totals_point",
    "window_points",
]

_NS = schema.NS_PER_S


def request_points(run_id: str, scenario: str, closed: ClosedSecond, endpoints: Iterable[Endpoint]) -> Iterator[Point]:
    """One row per endpoint per second; endpoints seen earlier in the run get a zero row."""
    for method, name in endpoints:
        stats = closed.endpoints.get((method, name)) or EndpointStats()
        fields: dict[str, float | int] = {
            schema.COUNT: stats.count,
            schema.FAILURES: stats.failed,
            schema.RPS: float(stats.count),
            schema.BYTES: stats.bytes,
        }
        if stats.count:
            fields.update(_latency_fields(stats.latency_ms(), schema.LATENCY_FIELDS))
            service = stats.service_ms()  # open model: raw service time beside the corrected latency
            if service is not None:
                fields.update(_latency_fields(service, schema.SERVICE_FIELDS))
        yield Point(
            schema.REQUESTS.name,
            {schema.RUN_ID: run_id, schema.SCENARIO: scenario, schema.METHOD: method, schema.NAME: name},
            fields,
            closed.second * _NS,
        )


def totals_point(run_id: str, scenario: str, second: int, stats: EndpointStats) -> Point:
    """The second over all endpoints, exact: percentiles of the merged histogram, and that
    histogram itself (encoded as HdrHistogram interval logs encode it) to recompute any window.

    ``stats`` is the second's endpoints merged (``ClosedSecond.total()``), which the caller has
    already merged once for every reader of the second: merging again here would double that work."""
    fields: dict[str, float | int | str] = {
        schema.COUNT: stats.count,
        schema.FAILURES: stats.failed,
        schema.RPS: float(stats.count),
        schema.BYTES: stats.bytes,
    }
    if stats.count:
        fields.update(_latency_fields(stats.latency_ms(), schema.LATENCY_FIELDS))
        fields[schema.HISTOGRAM] = stats.hist.encode().decode("ascii")
    return Point(schema.TOTALS.name, {schema.RUN_ID: run_id, schema.SCENARIO: scenario}, fields, second * _NS)


def failure_points(run_id: str, scenario: str, closed: ClosedSecond) -> Iterator[Point]:
    """Failed requests of the second by endpoint and kind; none for a kind that did not happen."""
    for (method, name), stats in closed.endpoints.items():
        for kind, count in stats.failures.items():
            if count:
                tags = {
                    schema.RUN_ID: run_id,
                    schema.SCENARIO: scenario,
                    schema.METHOD: method,
                    schema.NAME: name,
                    schema.FAILURE_KIND: kind,
                }
                yield Point(schema.FAILURE_KINDS.name, tags, {schema.COUNT: count}, closed.second * _NS)


#: harness_windows' fields from the keys of a window's row in summary.json (``stats_dict``).
_WINDOW_FIELDS = {
    "requests": schema.COUNT,
    "failures": schema.FAILURES,
    "error_rate": schema.ERROR_RATE,
    "rps": schema.RPS,
    "seconds": schema.SECONDS,
    **{f"{name}_ms": name for name in schema.LATENCY_FIELDS},
}


#: harness_endpoints' fields from the keys of an endpoint's row in summary.json's ``endpoints``.
_ENDPOINT_FIELDS = {**_WINDOW_FIELDS, "bytes": schema.BYTES}


def _figures(row: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, float | int]:
    """The numeric figures of a summary row under their InfluxDB field names (none for a null)."""
    return {
        name: row[key]
        for key, name in names.items()
        if isinstance(row.get(key), int | float) and not isinstance(row.get(key), bool)
    }


def window_points(run_id: str, windows: Mapping[str, Mapping[str, Any]], started: float) -> Iterator[Point]:
    """Each SLO window's figures (a row of summary.json's ``windows``, as the judge computed
    them), at the run's start: every write replaces the window's point, so-far, then final."""
    for window, row in windows.items():
        fields = _figures(row, _WINDOW_FIELDS)
        if fields:
            tags = {schema.RUN_ID: run_id, schema.WINDOW: window}
            yield Point(schema.WINDOWS.name, tags, fields, int(started * _NS))


def endpoint_points(run_id: str, endpoints: Iterable[Mapping[str, Any]], started: float) -> Iterator[Point]:
    """Each endpoint's figures over the run (a row of summary.json's ``endpoints``: ``method``,
    ``name`` and the exact figures of its merged histogram), at the run's start, rewritten as
    :func:`window_points` are."""
    for row in endpoints:
        fields = _figures(row, _ENDPOINT_FIELDS)
        if fields:
            tags = {schema.RUN_ID: run_id, schema.METHOD: str(row["method"]), schema.NAME: str(row["name"])}
            yield Point(schema.ENDPOINTS.name, tags, fields, int(started * _NS))


def _latency_fields(figures: dict[str, float], names: tuple[str, ...]) -> dict[str, float]:
    """The schema's latency fields (``names``, in LATENCY_FIELDS order) from ``latency_ms()``'s figures."""
    values = (figures[key] for key in schema.LATENCY_FIELDS)
    return {name: round(value, 3) for name, value in zip(names, values, strict=True) if not math.isnan(value)}


def load_point(run_id: str, scenario: str, closed: ClosedSecond, generators: int, saturated: bool) -> Point:
    total = sum(stats.count for stats in closed.endpoints.values())
    return Point(
        schema.LOAD.name,
        {schema.RUN_ID: run_id, schema.SCENARIO: scenario},
        {
            schema.USERS: closed.users,
            schema.TARGET_RATE: round(closed.target_rate, 3),
            schema.ACHIEVED_RATE: float(total),
            schema.GENERATORS: generators,
            schema.SATURATED: saturated,
            # the busiest process: what a "generator health" panel plots beside the saturated flag
            schema.GENERATOR_CPU: round(max((h.demand for h in closed.health), default=0.0) * 100, 1),
            schema.GENERATOR_LAG_MS: round(max((h.lag_ms for h in closed.health), default=0.0), 1),
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
    until: float | None = None,
) -> Point:
    """A Grafana annotation: kind is an :class:`~harness.results.schema.EventKind`; state is start or end.

    Steps of the plan (stage changes, fault injections and reverts) also carry their planned
    offset from the run start (s) and how late they took effect (ms), so step timing can be
    checked from the events alone. ``until`` (epoch s) is a fault start's planned end, its
    region's end while it is active (:func:`fault_end_point` replaces it with the real one).
    """
    fields: dict[str, str | float] = {schema.TEXT: text, schema.STATE: state}
    if planned_offset is not None:
        fields[schema.PLANNED_OFFSET] = round(planned_offset, 3)
    if late_ms is not None:
        fields[schema.LATE_MS] = round(late_ms, 1)
    if until is not None:
        fields[schema.END_MS] = _epoch_ms(until)
    return Point(
        schema.EVENTS.name, {schema.RUN_ID: run_id, schema.KIND: kind, schema.NAME: name}, fields, int(time_s * _NS)
    )


def fault_end_point(run_id: str, name: str, started: float, ended: float) -> Point:
    """The fault's start event again, now with its real end: the same series and timestamp, so
    InfluxDB merges it into the start event's point and Grafana's region ends where the fault did."""
    tags = {schema.RUN_ID: run_id, schema.KIND: schema.EventKind.FAULT.value, schema.NAME: name}
    return Point(schema.EVENTS.name, tags, {schema.END_MS: _epoch_ms(ended)}, int(started * _NS))


def _epoch_ms(epoch_s: float) -> float:
    return round(epoch_s * 1000, 1)


def probe_point(run_id: str, scenario: str, name: str, at: float, value: float) -> Point:
    """One probe's value at the instant it was polled (harness_probes)."""
    tags = {schema.RUN_ID: run_id, schema.SCENARIO: scenario, schema.PROBE: name}
    return Point(schema.PROBES.name, tags, {schema.VALUE: float(value)}, int(at * _NS))


def slo_points(run_id: str, results: Iterable[SloResult], time_s: float) -> Iterator[Point]:
    for result in results:
        fields: dict[str, float | bool] = {schema.THRESHOLD: result.threshold, schema.PASSED: result.passed}
        if math.isfinite(result.measured):
            fields[schema.VALUE] = result.measured
        yield Point(schema.SLO.name, {schema.RUN_ID: run_id, schema.SLO_NAME: result.name}, fields, int(time_s * _NS))


def heal_points(run_id: str, heals: Iterable[HealEntry], time_s: float) -> Iterator[Point]:
    """Each watched fault's heal_time, written once the run is judged (``summary.json``'s ``heals``)."""
    for heal in heals:
        fields: dict[str, str | float | int] = {
            schema.CHECK: heal.check,
            schema.SINCE: heal.since,
            schema.BEGAN: heal.began,
            schema.POLLS: heal.polls,
            schema.LAST_ERROR: heal.last_error,
        }
        if heal.healed is not None and heal.heal_time_s is not None:
            fields |= {schema.HEALED: heal.healed, schema.HEAL_TIME: heal.heal_time_s}
        yield Point(schema.HEALS.name, {schema.RUN_ID: run_id, schema.FAULT: heal.fault}, fields, int(time_s * _NS))


def run_point(
    run_id: str,
    scenario: str,
    verdict: str,
    started: float,
    ended: float,
    text: str,
    planned_end: float | None = None,
) -> Point:
    """The run's row in harness_runs: written as ``running`` when the load clock starts
    (:func:`running_point`) and again, onto the same point, with the verdict when it ends."""
    fields: dict[str, str | float] = {
        schema.VERDICT: verdict,
        schema.STARTED: started,
        schema.ENDED: ended,
        schema.TEXT: text,
    }
    if planned_end is not None:
        fields[schema.PLANNED_END] = planned_end
    return Point(schema.RUNS.name, {schema.RUN_ID: run_id, schema.SCENARIO: scenario}, fields, int(started * _NS))


def running_point(run_id: str, scenario: str, started: float, planned_end: float) -> Point:
    """The run's row while it runs: ``ended`` is its planned end until the run really ends."""
    return run_point(run_id, scenario, schema.RUNNING, started, planned_end, "running", planned_end)
