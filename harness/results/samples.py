"""A run's per-second samples read back from its points, for the baseline comparison.

``harness run --baseline RUN_ID`` (or ``last-pass``) and ``harness compare`` judge a run against
an earlier one with :func:`harness.judge.baseline.compare`, which takes each run's
:class:`~harness.judge.baseline.RunSamples`. This module reads them: from
``runs/<run_id>/results.lp`` (:func:`samples_from_run_dir`), from InfluxDB
(:func:`samples_from_influx`), or from the points a run just wrote (:func:`samples_from_records`,
before its results.lp is complete on disk); :func:`find_baseline` resolves ``--baseline REF``.

Only whole seconds inside a phase become samples: seconds outside every phase, and the partial
first and last second of each phase, would make rps look lower than the load was.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, ResultsError
from harness.judge.baseline import BaselineReport, RunSamples, Sample, compare
from harness.results import schema
from harness.results.influxql import Query, quote_identifier, quote_string, run_filter
from harness.results.lineproto import Point, parse
from harness.scenario import Baseline

__all__ = [
    "LAST_PASS",
    "BaselineRun",
    "find_baseline",
    "samples_from_influx",
    "samples_from_records",
    "samples_from_run_dir",
]

LAST_PASS = "last-pass"

_NS = schema.NS_PER_S


@dataclass(frozen=True, slots=True)
class _Row:
    """One harness_requests point: endpoint, epoch second and the fields we judge."""

    endpoint: str
    second: int
    count: int
    failures: int
    p99_ms: float | None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


@dataclass
class _Reading:
    """The points of one run that the samples are made of, as they are read."""

    rows: list[_Row] = field(default_factory=list)
    phase_events: list[tuple[int, str, str]] = field(default_factory=list)  # (time_ns, name, state)
    run_end: int | None = None
    scenario: str = ""

    def add(self, measurement: str, tags: Mapping[str, Any], fields: Mapping[str, Any], time_ns: int) -> None:
        if measurement == schema.REQUESTS.name:
            count = int(_number(fields.get(schema.COUNT)) or 0)
            endpoint = f"{tags.get(schema.METHOD, '')} {tags.get(schema.NAME, '')}"
            failures = int(_number(fields.get(schema.FAILURES)) or 0)
            p99 = _number(fields.get(schema.P99)) if count else None
            self.rows.append(_Row(endpoint, time_ns // _NS, count, failures, p99))
            self.scenario = self.scenario or str(tags.get(schema.SCENARIO) or "")
        elif measurement == schema.EVENTS.name and tags.get(schema.KIND) == schema.EventKind.PHASE:
            self.phase_events.append((time_ns, str(tags.get(schema.NAME, "")), str(fields.get(schema.STATE, ""))))
        elif measurement == schema.EVENTS.name and tags.get(schema.KIND) == schema.EventKind.RUN:
            self.run_end = time_ns if fields.get(schema.STATE) == schema.EventState.END else self.run_end

    def samples(self, run_id: str, scenario: str, where: str) -> RunSamples:
        """The whole seconds of every phase; raises ResultsError when there is no phase at all."""
        run_end = self.run_end
        if run_end is None and self.rows:
            run_end = (max(r.second for r in self.rows) + 1) * _NS
        spans = _phase_spans(self.phase_events, run_end)
        if not spans:
            kind = f"{schema.KIND}={schema.EventKind.PHASE}"
            raise ResultsError(f"{where}: no phase events ({schema.EVENTS.name} {kind}) for run {run_id}")
        # The last row of a (series, second) wins, as in InfluxDB: a late window rewrites its second.
        latest: dict[tuple[str, int], _Row] = {}
        for row in self.rows:
            latest[(row.endpoint, row.second)] = row
        series: dict[tuple[str, str], list[Sample]] = defaultdict(list)
        for (endpoint, second), row in sorted(latest.items(), key=lambda item: (item[0][1], item[0][0])):
            begin, finish = second * _NS, (second + 1) * _NS
            for phase, start, end in spans:
                # Whole seconds only: a second cut by a phase boundary holds part of its requests.
                if start <= begin and finish <= end:
                    series[(phase, endpoint)].append(Sample(second, row.count, row.failures, row.p99_ms))
                    break
        phases = tuple(dict.fromkeys(name for name, _, _ in spans))
        return RunSamples(run_id, scenario, dict(series), phases)


def _phase_spans(events: Iterable[tuple[int, str, str]], run_end_ns: int | None) -> list[tuple[str, int, int]]:
    """(name, start_ns, end_ns) of every phase from its start/end events.

    A phase without an end event (an aborted run) ends where the next one starts, else at the
    run's end.
    """
    ordered = sorted(events)
    starts = [(t, name) for t, name, state in ordered if state == schema.EventState.START]
    spans = []
    for index, (start, name) in enumerate(starts):
        end = next((t for t, n, st in ordered if st == schema.EventState.END and n == name and t >= start), None)
        if end is None:
            end = starts[index + 1][0] if index + 1 < len(starts) else run_end_ns
        if end is not None:
            spans.append((name, start, end))
    return spans


# ---------------------------------------------------------------- the three sources


def samples_from_run_dir(run_dir: Path) -> RunSamples:
    """Read ``run_dir/results.lp`` (and summary.json for the run id and scenario name).

    Raises ResultsError when results.lp is missing, unparsable or has no phase events.
    """
    path = run_dir / "results.lp"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    reading = _Reading()
    try:
        for point in parse(text):
            reading.add(*point)
    except ValueError as err:
        raise ResultsError(f"{path}: {err}") from None
    summary = _read_summary(run_dir)
    run_id = str(summary.get("run_id") or run_dir.name)
    scenario = str(summary.get("scenario") or reading.scenario)
    return reading.samples(run_id, scenario, str(path))


def samples_from_records(run_id: str, scenario: str, records: Iterable[Point]) -> RunSamples:
    """A run's samples from its points as written: how a run judges itself before its results.lp
    is complete on disk."""
    reading = _Reading()
    for point in records:
        reading.add(*point)
    return reading.samples(run_id, scenario, f"run {run_id}")


def _load_influx(query: Query, run_id: str) -> RunSamples | None:
    """The run's samples from InfluxDB, or None when InfluxDB has no request points of it."""
    where = f"WHERE {run_filter(run_id)}"
    columns = ", ".join(
        quote_identifier(c)
        for c in (schema.COUNT, schema.FAILURES, schema.P99, schema.METHOD, schema.NAME, schema.SCENARIO)
    )
    request_rows = query.query(f"SELECT {columns} FROM {schema.REQUESTS.name} {where}")
    if not request_rows:
        return None
    kind = quote_identifier(schema.KIND)
    phase_or_run = f"({kind} = {quote_string(schema.EventKind.PHASE)} OR {kind} = {quote_string(schema.EventKind.RUN)})"
    columns = ", ".join(quote_identifier(c) for c in (schema.KIND, schema.NAME, schema.STATE))
    event_rows = query.query(f"SELECT {columns} FROM {schema.EVENTS.name} {where} AND {phase_or_run}")
    reading = _Reading()
    for measurement, rows in ((schema.REQUESTS, request_rows), (schema.EVENTS, event_rows)):
        for row in rows:
            reading.add(measurement.name, row, row, int(row["time"]))
    return reading.samples(run_id, reading.scenario, f"InfluxDB run {run_id}")


def samples_from_influx(query: Query, run_id: str) -> RunSamples:
    """Read a run's harness_requests and phase events from InfluxDB.

    Raises ResultsError when InfluxDB has no request points of ``run_id`` (or cannot be read).
    """
    samples = _load_influx(query, run_id)
    if samples is None:
        raise ResultsError(f"InfluxDB has no {schema.REQUESTS.name} points with run_id {run_id!r}")
    return samples


# ---------------------------------------------------------------- the baseline of a run


@dataclass(frozen=True)
class BaselineRun:
    """A baseline resolved before the run starts (``--baseline REF``), and how the run is judged against it."""

    ref: str
    run_id: str
    samples: RunSamples
    tolerances: Baseline

    @staticmethod
    def wants(measurement: str, tags: Mapping[str, str]) -> bool:
        """The points :meth:`judge` needs: per-second requests and the phase and run events."""
        if measurement == schema.REQUESTS.name:
            return True
        return measurement == schema.EVENTS.name and tags.get(schema.KIND) in (
            schema.EventKind.PHASE,
            schema.EventKind.RUN,
        )

    def judge(self, run_id: str, scenario: str, records: Iterable[Point]) -> BaselineReport:
        return compare(samples_from_records(run_id, scenario, records), self.samples, self.tolerances)

    def describe(self, report: BaselineReport) -> dict[str, Any]:
        """summary.json's ``baseline``: the ref as given, the baseline run id and every comparison."""
        return {**report.to_dict(), "ref": self.ref, "run_id": self.run_id}


def _read_summary(run_dir: Path) -> dict[str, Any]:
    """summary.json as a dict; {} when it is missing or unreadable (an interrupted run)."""
    try:
        data = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _passing_runs_on_disk(runs_dir: Path, scenario_name: str, current_run_id: str) -> list[tuple[float, str]]:
    """(started, run_id) of every passed run of the scenario in ``runs_dir`` that has results."""
    found = []
    try:
        children = list(runs_dir.iterdir()) if runs_dir.is_dir() else []
    except OSError:
        children = []
    for child in children:
        summary = _read_summary(child)
        run_id = str(summary.get("run_id") or child.name)
        if (
            summary.get("scenario") != scenario_name
            or summary.get("verdict") != "passed"
            or current_run_id in (run_id, child.name)
            or not (child / "results.lp").is_file()
        ):
            continue
        found.append((_timestamp(summary.get("started")) or _timestamp(summary.get("ended")) or 0.0, child.name))
    return found


def _timestamp(value: Any) -> float | None:
    """Epoch seconds from a number or an ISO 8601 string; None when it is neither."""
    number = _number(value)
    if number is not None or not isinstance(value, str):
        return number
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        return None


def _passing_runs_in_influx(query: Query, scenario_name: str, current_run_id: str) -> list[tuple[float, str]]:
    columns = ", ".join(quote_identifier(c) for c in (schema.STARTED, schema.ENDED, schema.RUN_ID))
    scenario = f"{quote_identifier(schema.SCENARIO)} = {quote_string(scenario_name)}"
    passed = f"{quote_identifier(schema.VERDICT)} = {quote_string('passed')}"
    rows = query.query(f"SELECT {columns} FROM {schema.RUNS.name} WHERE {scenario} AND {passed}")
    found = []
    for row in rows:
        run_id = str(row.get(schema.RUN_ID) or "")
        if run_id and run_id != current_run_id:
            when = (
                _number(row.get(schema.STARTED))
                or _number(row.get(schema.ENDED))
                or (_number(row.get("time")) or 0) / _NS
            )
            found.append((when, run_id))
    return found


def find_baseline(
    ref: str, scenario_name: str, runs_dir: Path, current_run_id: str, query: Query | None = None
) -> tuple[str, RunSamples] | None:
    """Resolve ``--baseline REF`` to (baseline run id, its samples).

    ``ref`` is a run id, looked up in ``runs_dir/<ref>/results.lp`` and then in InfluxDB when
    ``query`` is given; or ``"last-pass"``: the newest run (by summary.json ``started``) of
    ``scenario_name`` whose verdict is ``passed``, other than ``current_run_id``, in
    ``runs_dir``, else in InfluxDB's harness_runs.  Returns None only for ``last-pass`` when
    no passing run exists yet: the caller skips the comparison and says so.

    Raises ConfigError (exit 2) for a run id that is found nowhere, that is the current run,
    or whose scenario is another one; ResultsError when a found run cannot be read.
    """
    if ref == LAST_PASS:
        return _last_pass(scenario_name, runs_dir, current_run_id, query)
    if ref == current_run_id:
        raise ConfigError(f"--baseline {ref}: a run cannot be its own baseline")
    samples: RunSamples | None = None
    if (runs_dir / ref / "results.lp").is_file():
        samples = samples_from_run_dir(runs_dir / ref)
    elif query is not None:
        samples = _load_influx(query, ref)
    if samples is None:
        looked = f"no {runs_dir / ref / 'results.lp'}"
        looked += f" and no {schema.REQUESTS.name} points with run_id {ref!r} in InfluxDB" if query is not None else ""
        raise ConfigError(f"--baseline {ref}: baseline run not found ({looked})")
    if samples.scenario and samples.scenario != scenario_name:
        raise ConfigError(
            f"--baseline {ref}: that run is of scenario {samples.scenario!r}, this one is {scenario_name!r}"
        )
    return samples.run_id, samples


def _last_pass(
    scenario_name: str, runs_dir: Path, current_run_id: str, query: Query | None
) -> tuple[str, RunSamples] | None:
    on_disk = _passing_runs_on_disk(runs_dir, scenario_name, current_run_id)
    if on_disk:
        _, name = max(on_disk)
        latest = samples_from_run_dir(runs_dir / name)
        return latest.run_id, latest
    if query is not None:
        for _, run_id in sorted(_passing_runs_in_influx(query, scenario_name, current_run_id), reverse=True):
            found = _load_influx(query, run_id)
            if found is not None:
                return run_id, found
    return None
