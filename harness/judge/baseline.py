"""Baseline regression: compare a run with an earlier one, per phase and per endpoint.

``harness run --baseline RUN_ID`` (or ``last-pass``) loads the baseline's per-second samples
(from ``runs/<run_id>/results.lp`` or from InfluxDB), loads this run's, and :func:`compare`
judges p99, error rate and rps of every (phase, endpoint) present in both.

A change counts as a regression only when it is both larger than the scenario's tolerance
(``Scenario.baseline``) and statistically significant: a one-sided Mann-Whitney U test over the
per-second samples at the scenario's confidence, Holm-adjusted over all comparisons of the
report because a run pair yields dozens of them.  The tolerance alone would fail identical
runs on noise in short phases; the test alone would fail long runs on changes too small to
matter.  The test assumes independent seconds; real per-second latencies drift, which makes it
somewhat too eager, and the tolerance is what absorbs that.  The price of the adjustment: with
a few dozen comparisons, a phase needs 8 whole seconds on each side before any change in it
can be significant (min_seconds is a floor, not enough).

Pure apart from reading files and the query object it is given: no server client is imported
here, so the CLI can pass any object with ``.query(str) -> list[dict]`` (an ``InfluxQuery``).
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from harness.errors import ConfigError, ResultsError
from harness.run.summary import RunSummary
from harness.scenario import Baseline

__all__ = [
    "ALL_ENDPOINTS",
    "LAST_PASS",
    "BaselineReport",
    "BaselineRun",
    "Comparison",
    "Metric",
    "Query",
    "RunSamples",
    "Sample",
    "compare",
    "find_baseline",
    "parse_lineproto",
    "samples_from_influx",
    "samples_from_records",
    "samples_from_run_dir",
]

LAST_PASS = "last-pass"
# The endpoint label of the per-phase aggregate; real endpoints are "METHOD name", with a space.
ALL_ENDPOINTS = "all"

_NS = 1_000_000_000
_REQUESTS = "harness_requests"
_EVENTS = "harness_events"
_RUNS = "harness_runs"


class Query(Protocol):
    """What the InfluxDB path needs: ``InfluxQuery.query`` (InfluxQL in, rows with ``time`` in ns out)."""

    def query(self, q: str) -> list[dict[str, Any]]: ...


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


# ---------------------------------------------------------------- line protocol


# What lineproto.encode writes (see its docstring): in names a backslash escapes , = and space
# and is otherwise literal; string fields are quoted with \" and \\ escaped and may hold
# newlines, so a record can span several physical lines.
_RECORD = re.compile(
    r"""
    (?P<key>(?:[^\s\\]|\\.)+)[ ]
    (?P<fields>(?:[^=\s\\,]|\\.)+=(?:"(?:[^"\\]|\\.)*"|[^,\s"]+)
        (?:,(?:[^=\s\\,]|\\.)+=(?:"(?:[^"\\]|\\.)*"|[^,\s"]+))*)
    (?:[ ](?P<time>-?\d+))?[ \t\r]*(?:\n|\Z)
    """,
    re.VERBOSE,
)
_FIELD = re.compile(r'((?:[^=\s\\,]|\\.)+)=("(?:[^"\\]|\\.)*"|[^,\s"]+)')
_UNESCAPED_COMMA = re.compile(r"(?<!\\),")
_UNESCAPED_EQUALS = re.compile(r"(?<!\\)=")
_NAME_ESCAPE = re.compile(r"\\([,= ])")
_STRING_ESCAPE = re.compile(r'\\(["\\])')
_SKIP = re.compile(r"(?:[ \t\r]*\n|#[^\n]*(?:\n|\Z))*")

FieldValue = float | int | str | bool
Record = tuple[str, dict[str, str], dict[str, FieldValue], int]


def _field_value(raw: str) -> FieldValue:
    if raw.startswith('"'):
        return _STRING_ESCAPE.sub(r"\1", raw[1:-1])
    if raw in ("t", "T", "true", "True", "TRUE"):
        return True
    if raw in ("f", "F", "false", "False", "FALSE"):
        return False
    if raw.endswith(("i", "u")):
        return int(raw[:-1])
    return float(raw)


def parse_lineproto(text: str) -> Iterator[Record]:
    """The points of line protocol as :func:`harness.results.lineproto.encode` writes them.

    Yields (measurement, tags, fields, time_ns) in file order; blank and ``#`` comment lines
    are skipped; a point without a timestamp gets 0.  Raises ValueError naming the line of
    the first record that is not line protocol (a results.lp cut mid-write, say).
    """
    pos = 0
    while True:
        skipped = _SKIP.match(text, pos)
        pos = skipped.end() if skipped else pos
        if pos >= len(text):
            return
        match = _RECORD.match(text, pos)
        if match is None:
            line = text.count("\n", 0, pos) + 1
            raise ValueError(f"line {line}: not line protocol: {text[pos : pos + 200].splitlines()[0]!r}")
        pos = match.end()
        head = [_NAME_ESCAPE.sub(r"\1", part) for part in _UNESCAPED_COMMA.split(match["key"])]
        tags: dict[str, str] = {}
        for pair in _UNESCAPED_COMMA.split(match["key"])[1:]:
            name, value = _UNESCAPED_EQUALS.split(pair, maxsplit=1)
            tags[_NAME_ESCAPE.sub(r"\1", name)] = _NAME_ESCAPE.sub(r"\1", value)
        fields = {_NAME_ESCAPE.sub(r"\1", k): _field_value(v) for k, v in _FIELD.findall(match["fields"])}
        yield head[0], tags, fields, int(match["time"] or 0)


# ---------------------------------------------------------------- loading samples


@dataclass(frozen=True, slots=True)
class _Row:
    """One harness_requests point: endpoint, epoch second and the fields we judge."""

    endpoint: str
    second: int
    count: int
    failures: int
    p99_ms: float | None


def _phase_spans(events: Iterable[tuple[int, str, str]], run_end_ns: int | None) -> list[tuple[str, int, int]]:
    """(name, start_ns, end_ns) of every phase from its start/end events.

    A phase without an end event (an aborted run) ends where the next one starts, else at the
    run's end.
    """
    ordered = sorted(events)
    starts = [(t, name) for t, name, state in ordered if state == "start"]
    spans = []
    for index, (start, name) in enumerate(starts):
        end = next((t for t, n, s in ordered if s == "end" and n == name and t >= start), None)
        if end is None:
            end = starts[index + 1][0] if index + 1 < len(starts) else run_end_ns
        if end is not None:
            spans.append((name, start, end))
    return spans


def _build(
    run_id: str, scenario: str, rows: Iterable[_Row], spans: list[tuple[str, int, int]], where: str
) -> RunSamples:
    if not spans:
        raise ResultsError(f"{where}: no phase events (harness_events kind=phase) for run {run_id}")
    # The last row of a (series, second) wins, as in InfluxDB: a late window rewrites its second.
    latest: dict[tuple[str, int], _Row] = {}
    for row in rows:
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


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _request_row(tags: Mapping[str, Any], fields: Mapping[str, Any], time_ns: int) -> _Row:
    count = int(_number(fields.get("count")) or 0)
    p99 = _number(fields.get("p99")) if count else None
    return _Row(
        f"{tags.get('method', '')} {tags.get('name', '')}",
        time_ns // _NS,
        count,
        int(_number(fields.get("failures")) or 0),
        p99,
    )


def samples_from_run_dir(run_dir: Path) -> RunSamples:
    """Read ``run_dir/results.lp`` (and summary.json for the run id and scenario name).

    Raises ResultsError when results.lp is missing, unparsable or has no phase events.
    """
    path = run_dir / "results.lp"
    rows: list[_Row] = []
    events: list[tuple[int, str, str]] = []
    run_end: int | None = None
    scenario = ""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"cannot read {path}: {getattr(err, 'strerror', None) or err}") from None
    try:
        for measurement, tags, fields, time_ns in parse_lineproto(text):
            if measurement == _REQUESTS:
                rows.append(_request_row(tags, fields, time_ns))
                scenario = scenario or tags.get("scenario", "")
            elif measurement == _EVENTS and tags.get("kind") == "phase":
                events.append((time_ns, tags.get("name", ""), str(fields.get("state", ""))))
            elif measurement == _EVENTS and tags.get("kind") == "run" and fields.get("state") == "end":
                run_end = time_ns
    except ValueError as err:
        raise ResultsError(f"{path}: {err}") from None
    summary = RunSummary.read(run_dir) or RunSummary()  # none: an interrupted run
    run_id = summary.run_id or run_dir.name
    scenario = summary.scenario or scenario
    if run_end is None and rows:
        run_end = (max(r.second for r in rows) + 1) * _NS
    return _build(run_id, scenario, rows, _phase_spans(events, run_end), str(path))


class _PointLike(Protocol):
    @property
    def measurement(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def fields(self) -> Mapping[str, FieldValue]: ...
    @property
    def time_ns(self) -> int: ...


def samples_from_records(run_id: str, scenario: str, records: Iterable[_PointLike]) -> RunSamples:
    """A run's samples from its points as written (``lineproto.Point``): how a run judges itself
    before its results.lp is complete on disk."""
    rows: list[_Row] = []
    events: list[tuple[int, str, str]] = []
    run_end: int | None = None
    for point in records:
        if point.measurement == _REQUESTS:
            rows.append(_request_row(point.tags, point.fields, point.time_ns))
        elif point.measurement == _EVENTS and point.tags.get("kind") == "phase":
            events.append((point.time_ns, point.tags.get("name", ""), str(point.fields.get("state", ""))))
        elif point.measurement == _EVENTS and point.tags.get("kind") == "run" and point.fields.get("state") == "end":
            run_end = point.time_ns
    if run_end is None and rows:
        run_end = (max(r.second for r in rows) + 1) * _NS
    return _build(run_id, scenario, rows, _phase_spans(events, run_end), f"run {run_id}")


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
        return measurement == _REQUESTS or (measurement == _EVENTS and tags.get("kind") in ("phase", "run"))

    def judge(self, run_id: str, scenario: str, records: Iterable[_PointLike]) -> BaselineReport:
        return compare(samples_from_records(run_id, scenario, records), self.samples, self.tolerances)

    def describe(self, report: BaselineReport) -> dict[str, Any]:
        """summary.json's ``baseline``: the ref as given, the baseline run id and every comparison."""
        return {**report.to_dict(), "ref": self.ref, "run_id": self.run_id}


def _quote(text: str) -> str:
    """An InfluxQL string literal."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _load_influx(query: Query, run_id: str) -> RunSamples | None:
    """The run's samples from InfluxDB, or None when InfluxDB has no request points of it."""
    where = f"WHERE run_id = {_quote(run_id)}"
    request_rows = query.query(
        f'SELECT "count", "failures", "p99", "method", "name", "scenario" FROM {_REQUESTS} {where}'
    )
    if not request_rows:
        return None
    event_rows = query.query(
        f'SELECT "kind", "name", "state" FROM {_EVENTS} {where} AND ("kind" = \'phase\' OR "kind" = \'run\')'
    )
    rows = [_request_row(r, r, int(r["time"])) for r in request_rows]
    phase_events = [(int(r["time"]), str(r["name"]), str(r["state"])) for r in event_rows if r.get("kind") == "phase"]
    ends = [int(r["time"]) for r in event_rows if r.get("kind") == "run" and r.get("state") == "end"]
    run_end = max(ends) if ends else (max(r.second for r in rows) + 1) * _NS
    scenario = str(request_rows[0].get("scenario") or "")
    return _build(run_id, scenario, rows, _phase_spans(phase_events, run_end), f"InfluxDB run {run_id}")


def samples_from_influx(query: Query, run_id: str) -> RunSamples:
    """Read a run's harness_requests and phase events from InfluxDB.

    Raises ResultsError when InfluxDB has no request points of ``run_id`` (or cannot be read).
    """
    samples = _load_influx(query, run_id)
    if samples is None:
        raise ResultsError(f"InfluxDB has no {_REQUESTS} points with run_id {run_id!r}")
    return samples


# ---------------------------------------------------------------- finding the baseline


def _passing_runs_on_disk(runs_dir: Path, scenario_name: str, current_run_id: str) -> list[tuple[float, str]]:
    """(started, run_id) of every passed run of the scenario in ``runs_dir`` that has results."""
    found = []
    try:
        children = list(runs_dir.iterdir()) if runs_dir.is_dir() else []
    except OSError:
        children = []
    for child in children:
        summary = RunSummary.read(child) or RunSummary()
        run_id = summary.run_id or child.name
        if (
            summary.scenario != scenario_name
            or summary.verdict != "passed"
            or current_run_id in (run_id, child.name)
            or not (child / "results.lp").is_file()
        ):
            continue
        found.append((summary.started or summary.ended or 0.0, child.name))
    return found


def _passing_runs_in_influx(query: Query, scenario_name: str, current_run_id: str) -> list[tuple[float, str]]:
    rows = query.query(
        f'SELECT "started", "ended", "run_id" FROM {_RUNS} '
        f'WHERE "scenario" = {_quote(scenario_name)} AND "verdict" = \'passed\''
    )
    found = []
    for row in rows:
        run_id = str(row.get("run_id") or "")
        if run_id and run_id != current_run_id:
            when = _number(row.get("started")) or _number(row.get("ended")) or (_number(row.get("time")) or 0) / _NS
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
    if ref == current_run_id:
        raise ConfigError(f"--baseline {ref}: a run cannot be its own baseline")
    samples: RunSamples | None = None
    if (runs_dir / ref / "results.lp").is_file():
        samples = samples_from_run_dir(runs_dir / ref)
    elif query is not None:
        samples = _load_influx(query, ref)
    if samples is None:
        looked = f"no {runs_dir / ref / 'results.lp'}"
        looked += f" and no {_REQUESTS} points with run_id {ref!r} in InfluxDB" if query is not None else ""
        raise ConfigError(f"--baseline {ref}: baseline run not found ({looked})")
    if samples.scenario and samples.scenario != scenario_name:
        raise ConfigError(
            f"--baseline {ref}: that run is of scenario {samples.scenario!r}, this one is {scenario_name!r}"
        )
    return samples.run_id, samples


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

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "endpoint": self.endpoint,
            "metric": self.metric.value,
            "baseline": _json_number(self.baseline),
            "current": _json_number(self.current),
            "change": _json_number(self.change),
            "tolerance": self.tolerance,
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
    if min(len(cur), len(base)) < tolerances.min_seconds:
        return f"{where}: {len(base)} s in the baseline, {len(cur)} s now (min_seconds {tolerances.min_seconds})"
    if metric is Metric.P99:
        before, after = statistics.median(base), statistics.median(cur)
        change, tolerance = _relative(before, after), tolerances.p99
        p = _mann_whitney(cur, base, "greater")
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
    return Comparison(phase, endpoint, metric, before, after, change, tolerance, p, False, "")


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
    return replace(c, p_value=p, regressed=beyond and p < alpha, message=text)


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
