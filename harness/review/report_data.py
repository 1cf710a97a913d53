"""Load what a run's HTML report shows: from ``runs/<run_id>/`` or from InfluxDB.

Both paths read the same points (the schema of :mod:`harness.results.schema`): requests per
endpoint per second, load, events, SLOs and the run's own point. From a run directory,
``summary.json`` adds what InfluxDB does not hold:
SLO objectives and windows, the guard that tripped and the baseline comparisons;
``scenario.yaml`` is the scenario as run. From InfluxDB the totals and the endpoint table are
the exact figures harness wrote there (``harness_windows``' run window, ``harness_endpoints``),
the same summary.json has; only a run written before those measurements existed has them
estimated from per-second rows (``ReportData.estimated``). SLO objectives come from the
scenario file when the caller has it.

Per-second latency over all endpoints is harness_totals' (each second's merged histogram);
only for runs written before it existed is it the percentile of the request-count-weighted
mixture of the endpoints' per-second distributions (:func:`mixture_quantiles`).
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.errors import ResultsError, RunNotFound
from harness.judge.guards import GuardTrip
from harness.judge.slo import SloResult
from harness.judge.summary import EndpointTotals, RunEvent, RunSummary
from harness.results import schema
from harness.results.influxql import Query, run_filter
from harness.results.lineproto import parse
from harness.review.mixture import cdf, mixture_quantiles
from harness.review.report import render
from harness.review.report_model import (
    Comparison,
    EndpointRow,
    Event,
    GuardRow,
    HealRow,
    ProbeLine,
    ReportData,
    Second,
    SloRow,
    Totals,
)
from harness.review.report_series import (
    endpoint_seconds,
    failure_rows,
    failure_rows_from_summary,
    failures_by_second,
    probe_lines,
    totals_from_fields,
    totals_from_stats,
    window_rows,
)
from harness.review.runs import UNFINISHED
from harness.scenario.expressions import parse_objective

__all__ = ["RunNotFound", "from_influx", "from_run_dir", "mixture_quantiles", "write_report"]

_NS = schema.NS_PER_S
_REPORTED = (0.5, 0.95, 0.99)
_KINDS_IN_ORDER = (
    schema.EventKind.RUN,
    schema.EventKind.PHASE,
    schema.EventKind.STAGE,
    schema.EventKind.FAULT,
    schema.EventKind.ABORT,
)
_KIND_ORDER: dict[str, int] = {
    kind: rank for rank, kind in enumerate(_KINDS_IN_ORDER)
}  # for events at the same instant
_NO_VERDICT = "no verdict was written: the run was killed or its machine lost"


# ---------------------------------------------------------------- points of one run


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _finite(value: float | None) -> float | None:
    """A figure of the summary as the report shows it: None when there is none (NaN included)."""
    return value if value is not None and math.isfinite(value) else None


@dataclass
class _Points:
    """A run's points as read, keyed as InfluxDB keys them (the last write of a series and time wins)."""

    requests: dict[tuple[str, str, int], Mapping[str, Any]] = field(default_factory=dict)
    load: dict[int, Mapping[str, Any]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    slos: dict[str, Mapping[str, Any]] = field(default_factory=dict)
    exact: dict[int, Mapping[str, Any]] = field(default_factory=dict)  # harness_totals by second
    windows: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # harness_windows by window
    failures: dict[tuple[str, str, str, int], int] = field(default_factory=dict)  # harness_failures
    exact_endpoints: dict[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)  # harness_endpoints
    probes: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # harness_probes by probe
    heals: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # harness_heals by fault
    run: Mapping[str, Any] | None = None
    scenario: str = ""

    def add(self, measurement: str, tags: Mapping[str, Any], fields: Mapping[str, Any], time_ns: int) -> None:
        if measurement == schema.REQUESTS.name:
            key = (str(tags.get(schema.METHOD, "")), str(tags.get(schema.NAME, "")), time_ns // _NS)
            self.requests[key] = fields
            self.scenario = self.scenario or str(tags.get(schema.SCENARIO) or "")
        elif measurement == schema.TOTALS.name:
            self.exact[time_ns // _NS] = fields
        elif measurement == schema.FAILURE_KINDS.name:
            method, name = str(tags.get(schema.METHOD, "")), str(tags.get(schema.NAME, ""))
            failure = (method, name, str(tags.get(schema.FAILURE_KIND, "")), time_ns // _NS)
            self.failures[failure] = int(_number(fields.get(schema.COUNT)) or 0)
        elif measurement == schema.WINDOWS.name:
            self.windows[str(tags.get(schema.WINDOW, ""))] = fields
        elif measurement == schema.ENDPOINTS.name:
            self.exact_endpoints[(str(tags.get(schema.METHOD, "")), str(tags.get(schema.NAME, "")))] = fields
        elif measurement == schema.LOAD.name:
            self.load[time_ns // _NS] = fields
        elif measurement == schema.EVENTS.name and schema.STATE in fields:  # not a fault's end_ms update
            self.events.append(
                Event(
                    time_ns / _NS,
                    str(tags.get(schema.KIND, "")),
                    str(tags.get(schema.NAME, "")),
                    str(fields.get(schema.STATE, "")),
                    str(fields.get(schema.TEXT) or ""),
                )
            )
        elif measurement == schema.PROBES.name and _number(fields.get(schema.VALUE)) is not None:
            line = self.probes.setdefault(str(tags.get(schema.PROBE, "")), [])
            line.append((time_ns / _NS, float(fields[schema.VALUE])))
        elif measurement == schema.SLO.name:
            self.slos[str(tags.get(schema.SLO_NAME, ""))] = fields
        elif measurement == schema.HEALS.name:
            self.heals[str(tags.get(schema.FAULT, ""))] = fields
        elif measurement == schema.RUNS.name:
            self.run = {**tags, **fields}

    def empty(self) -> bool:
        return not (self.requests or self.events or self.run)

    def seconds(self) -> tuple[Second, ...]:
        rows: dict[int, list[Mapping[str, Any]]] = defaultdict(list)
        for (_, _, second), fields in self.requests.items():
            rows[second].append(fields)
        out = []
        kinds = failures_by_second(self.failures)
        for second in sorted(rows):
            fields_list = rows[second]
            counts = [int(_number(f.get(schema.COUNT)) or 0) for f in fields_list]
            exact = self.exact.get(second)
            if exact is not None:  # the second over all endpoints from its merged histogram
                p50, p95, p99 = (_number(exact.get(name)) for name in (schema.P50, schema.P95, schema.P99))
            else:  # written before harness_totals existed: estimated from the endpoints' figures
                p50, p95, p99 = mixture_quantiles(
                    ((c, cdf(f)) for c, f in zip(counts, fields_list, strict=True) if c), _REPORTED
                )
            load = self.load.get(second, {})
            users = _number(load.get(schema.USERS))
            out.append(
                Second(
                    second,
                    sum(counts),
                    sum(int(_number(f.get(schema.FAILURES)) or 0) for f in fields_list),
                    p50,
                    p95,
                    p99,
                    _number(load.get(schema.TARGET_RATE)),
                    _number((exact or {}).get(schema.P999)),
                    max((v for f in fields_list if (v := _number(f.get(schema.MAX))) is not None), default=None),
                    None if users is None else int(users),
                    _number(load.get(schema.ACHIEVED_RATE)),
                    kinds.get(second, ()),
                )
            )
        return tuple(out)

    def endpoints(self) -> tuple[EndpointRow, ...]:
        """Per-endpoint rows: each endpoint's exact whole-run figures (harness_endpoints), or,
        for a run written before those existed, estimated from its per-second rows."""
        if self.exact_endpoints:
            ordered = sorted(self.exact_endpoints.items(), key=lambda item: (item[0][1], item[0][0]))
            return tuple(
                EndpointRow(**vars(totals_from_fields(fields)), method=method, name=name)
                for (method, name), fields in ordered
            )
        groups: dict[tuple[str, str], list[Mapping[str, Any]]] = defaultdict(list)
        for (method, name, _), fields in self.requests.items():
            groups[(method, name)].append(fields)
        seconds = max(len({second for _, _, second in self.requests}), 1)
        rows = []
        for (method, name), fields_list in sorted(groups.items(), key=lambda item: (item[0][1], item[0][0])):
            requests, failures, p50, p95, p99, top = _aggregate(fields_list)
            row = Totals(requests, failures, requests / seconds, p50, p95, p99, top, mean_ms=_mean(fields_list))
            rows.append(EndpointRow(**vars(row), method=method, name=name))
        return tuple(rows)

    def totals(self) -> Totals | None:
        run = self.windows.get("run")
        if run is not None:  # the run's exact figures, as summary.json has them
            return totals_from_fields(run)
        if not self.requests:
            return None
        seconds = max(len({second for _, _, second in self.requests}), 1)
        requests, failures, p50, p95, p99, top = _aggregate(list(self.requests.values()))
        return Totals(requests, failures, requests / seconds, p50, p95, p99, top, mean_ms=_mean(self.requests.values()))


def _mean(fields_list: Iterable[Mapping[str, Any]]) -> float | None:
    """The mean latency of several rows: their means weighted by request counts (exact)."""
    pairs = [(c, m) for f in fields_list if (c := _number(f.get(schema.COUNT))) and (m := _number(f.get(schema.MEAN)))]
    count = sum(c for c, _ in pairs)
    return round(sum(c * m for c, m in pairs) / count, 3) if count else None


def _planned(run: Mapping[str, Any]) -> float | None:
    """The run's planned duration from its harness_runs row (planned end - start), when it has one."""
    started, planned_end = _number(run.get(schema.STARTED)), _number(run.get(schema.PLANNED_END))
    return round(planned_end - started, 3) if started is not None and planned_end is not None else None


def _aggregate(
    fields_list: Sequence[Mapping[str, Any]],
) -> tuple[int, int, float | None, float | None, float | None, float | None]:
    counts = [int(_number(f.get(schema.COUNT)) or 0) for f in fields_list]
    p50, p95, p99 = mixture_quantiles(((c, cdf(f)) for c, f in zip(counts, fields_list, strict=True) if c), _REPORTED)
    maxima = [
        v for f, c in zip(fields_list, counts, strict=True) if c and (v := _number(f.get(schema.MAX))) is not None
    ]
    failures = sum(int(_number(f.get(schema.FAILURES)) or 0) for f in fields_list)
    return sum(counts), failures, p50, p95, p99, max(maxima) if maxima else None


# ---------------------------------------------------------------- summary.json and scenario.yaml


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _scenario_blocks(scenario_yaml: str | None) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str]]]:
    """SLOs by name and guards (name, condition) from the scenario file; empty when it cannot be read."""
    try:
        document = yaml.safe_load(scenario_yaml) if scenario_yaml else None
    except yaml.YAMLError:
        return {}, []
    if not isinstance(document, dict):
        return {}, []
    slos = {
        str(s.get("name")): s for s in document.get("slos") or [] if isinstance(s, dict) and s.get("name") is not None
    }
    guards = [
        (str(g.get("name")), str(g.get("condition", "")))
        for g in document.get("guards") or []
        if isinstance(g, dict) and g.get("name") is not None
    ]
    return slos, guards


def _metric(objective: str) -> str:
    try:
        return parse_objective(objective).metric
    except ValueError:
        return ""


def _slo_rows_from_summary(slos: Iterable[SloResult]) -> tuple[SloRow, ...]:
    return tuple(
        SloRow(
            name=s.name,
            objective=s.objective,
            window=s.window,
            endpoint=s.endpoint,
            metric=s.metric,
            measured=_finite(s.measured),
            threshold=_finite(s.threshold),
            passed=s.passed,
            status=s.status.value,
            message=s.message,
        )
        for s in slos
    )


def _slo_rows_from_points(points: _Points, declared: Mapping[str, Mapping[str, Any]]) -> tuple[SloRow, ...]:
    rows = []
    for name, fields in points.slos.items():
        spec = declared.get(name, {})
        objective = str(spec.get("objective", ""))
        measured = _number(fields.get(schema.VALUE))
        passed = fields.get(schema.PASSED) is True
        rows.append(
            SloRow(
                name=name,
                objective=objective,
                window=str(spec.get("window", "run")) if spec else "",
                endpoint=str(spec.get("endpoint", "all")) if spec else "",
                metric=_metric(objective),
                measured=measured,
                threshold=_number(fields.get(schema.THRESHOLD)),
                passed=passed,
                status="met" if passed else "no_data" if measured is None else "breached",
            )
        )
    order = list(declared)
    rows.sort(key=lambda r: order.index(r.name) if r.name in order else len(order))
    return tuple(rows)


def _guard_rows(guards: list[tuple[str, str]], trip: GuardTrip | None, events: Sequence[Event]) -> tuple[GuardRow, ...]:
    """Every guard of the scenario, held or tripped; a tripped guard the scenario file lacks is added."""
    tripped, condition, message = (trip.guard, trip.condition, trip.message) if trip else (None, "", "")
    if trip is None:  # InfluxDB has the abort event, not summary.json's guard
        abort = next((e for e in events if e.kind == schema.EventKind.ABORT), None)
        tripped, message = (abort.name, abort.text) if abort is not None else (None, "")
    rows = [GuardRow(name, cond, name == tripped, message if name == tripped else "") for name, cond in guards]
    if tripped is not None and tripped not in {name for name, _ in guards}:
        rows.append(GuardRow(tripped or "?", condition, True, message))
    return tuple(rows)


def _endpoints_from_summary(endpoints: Iterable[EndpointTotals]) -> tuple[EndpointRow, ...]:
    return tuple(EndpointRow(**vars(totals_from_stats(e.stats)), method=e.method, name=e.name) for e in endpoints)


def _heal_rows(given: RunSummary, points: _Points) -> tuple[HealRow, ...]:
    """Each watched fault's heal, from summary.json, else from harness_heals."""
    if given.heals is not None:
        return tuple(HealRow(h.fault, h.since, h.check, h.heal_time_s, h.last_error) for h in given.heals)
    return tuple(
        HealRow(
            fault,
            str(f.get(schema.SINCE) or ""),
            str(f.get(schema.CHECK) or ""),
            _number(f.get(schema.HEAL_TIME)),
            str(f.get(schema.LAST_ERROR) or ""),
        )
        for fault, f in points.heals.items()
    )


def _events_from_summary(events: Iterable[RunEvent]) -> list[Event]:
    return [Event(e.time, e.kind, e.name, e.state, e.text) for e in events]


def _assemble(
    run_id: str, points: _Points, summary: RunSummary | None, scenario_yaml: str | None, source: str
) -> ReportData:
    """One ReportData from the points, with summary.json's exact figures wherever it has them.

    ``summary`` is None when the run has none (killed before its verdict, or read from InfluxDB).
    """
    declared, guards = _scenario_blocks(scenario_yaml)
    run = points.run or {}
    given = summary or RunSummary()
    events = points.events or _events_from_summary(given.events)
    events.sort(key=lambda e: (e.time, _KIND_ORDER.get(e.kind, len(_KIND_ORDER)), e.name, e.state))
    seconds = points.seconds()
    starts = [e.time for e in events if e.kind == schema.EventKind.RUN and e.state == schema.EventState.START]
    ends = [e.time for e in events if e.kind == schema.EventKind.RUN and e.state == schema.EventState.END]
    started = _number(given.started) or _number(run.get(schema.STARTED)) or (min(starts) if starts else None)
    ended = _number(given.ended) or _number(run.get(schema.ENDED)) or (max(ends) if ends else None)
    if started is None and seconds:
        started = float(seconds[0].second)
    if ended is None and seconds:
        ended = float(seconds[-1].second + 1)
    verdict = str(given.verdict or run.get(schema.VERDICT) or UNFINISHED)
    reason = str(given.reason or run.get(schema.TEXT) or (_NO_VERDICT if verdict == UNFINISHED else ""))
    from_summary = bool(given.endpoints) or given.totals is not None
    baseline = given.baseline
    comparisons = tuple(
        Comparison(c.phase, c.endpoint, c.metric, c.regressed, c.message)
        for c in (baseline.comparisons if baseline else [])
    )
    return ReportData(
        run_id=run_id,
        scenario=str(given.scenario or run.get(schema.SCENARIO) or points.scenario),
        verdict=verdict,
        reason=reason,
        started=started,
        ended=ended,
        planned_duration_s=_number(given.planned_duration_s) or _planned(run),
        totals=totals_from_stats(given.totals) if given.totals is not None else points.totals(),
        slos=_slo_rows_from_summary(given.slos) if given.slos is not None else _slo_rows_from_points(points, declared),
        guards=_guard_rows(guards, given.guard, events),
        heals=_heal_rows(given, points),
        baseline_ref=baseline.ref if baseline and baseline.ref else None,
        baseline_run=baseline.run_id if baseline and baseline.run_id else None,
        comparisons=comparisons,
        endpoints=_endpoints_from_summary(given.endpoints) if given.endpoints else points.endpoints(),
        seconds=seconds,
        endpoint_seconds=endpoint_seconds(points.requests),
        failures=failure_rows_from_summary(given.endpoints) or failure_rows(points.failures),
        windows=window_rows(given.windows, points.windows),
        events=tuple(events),
        probes=probe_lines(given, started) or tuple(ProbeLine(n, tuple(sorted(v))) for n, v in points.probes.items()),
        scenario_yaml=scenario_yaml,
        traces=tuple(given.trace_examples),
        source=source,
        ladders=tuple(given.ladders),
        estimated=not from_summary
        and bool(points.requests)
        and not ("run" in points.windows and points.exact_endpoints),
    )


# ---------------------------------------------------------------- the two sources


def from_run_dir(run_dir: Path) -> ReportData:
    """A run's report data from its directory: summary.json, results.lp and scenario.yaml.

    Any of them may be missing (a run killed before its verdict has no summary.json), but not
    both summary.json and results.lp: that is RunNotFound. A results.lp cut mid-write is read
    up to the broken line, which the report names. Reads only; raises nothing else.
    """
    summary_path, lp_path = run_dir / "summary.json", run_dir / "results.lp"
    if not summary_path.is_file() and not lp_path.is_file():
        raise RunNotFound(f"run {run_dir.name}: no summary.json or results.lp in {run_dir}")
    summary = RunSummary.read(run_dir)
    points = _Points()
    notes: list[str] = []
    text = _read_text(lp_path)
    if text is not None:
        try:
            for point in parse(text):
                points.add(*point)
        except ValueError as err:
            notes.append(f"{lp_path}: read up to a broken record: {err}")
    data = _assemble(
        (summary.run_id if summary else "") or run_dir.name,
        points,
        summary,
        _read_text(run_dir / "scenario.yaml"),
        f"{run_dir}/ (summary.json, results.lp, scenario.yaml)",
    )
    return data if not notes else _with_notes(data, notes)


def _with_notes(data: ReportData, notes: list[str]) -> ReportData:
    from dataclasses import replace

    return replace(data, notes=(*data.notes, *notes))


def from_influx(query: Query, run_id: str, scenario_yaml: str | None = None) -> ReportData:
    """A run's report data from InfluxDB (InfluxQL): every point tagged ``run_id``.

    ``scenario_yaml`` (the scenario as run, when the caller has it) is shown and gives the
    SLOs' objectives and windows, which InfluxDB does not hold. Raises RunNotFound when
    InfluxDB has no point of the run, ResultsError when it cannot be asked.
    """
    where = f"WHERE {run_filter(run_id)}"
    points = _Points()
    for measurement in schema.MEASUREMENTS:
        for row in query.query(f"SELECT * FROM {measurement.name} {where}"):
            try:
                time_ns = int(row["time"])
            except (KeyError, TypeError, ValueError):
                raise ResultsError(f"InfluxDB: {measurement.name} row without an integer time: {row!r}") from None
            points.add(measurement.name, row, row, time_ns)
        if measurement is schema.EVENTS and points.empty():
            break  # neither a verdict nor an event: InfluxDB does not know this run
    if points.empty():
        raise RunNotFound(f"run {run_id}: InfluxDB has no points with run_id {run_id!r}")
    url, database = getattr(query, "url", "?"), getattr(query, "database", "?")
    return _assemble(run_id, points, None, scenario_yaml, f"InfluxDB {url}, database {database}")


def write_report(run_dir: Path, output: Path | None = None, data: ReportData | None = None) -> Path:
    """Render the run's report to ``output`` (default ``run_dir/report.html``); returns the path.

    The file is replaced atomically: a reader never sees half a report.
    """
    target = output or run_dir / "report.html"
    page = render(data if data is not None else from_run_dir(run_dir))
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    partial.write_text(page, encoding="utf-8")
    os.replace(partial, target)
    return target
