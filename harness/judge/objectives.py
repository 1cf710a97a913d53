"""The objectives table: every metric an SLO or a guard judges, each defined once.

A row (:class:`Metric`) says what users write (the name and its aliases; the units a threshold
takes and how they are normalised, its :class:`Quantity`), how a value is shown, how the value is
measured from a window's merged statistics (:class:`Evidence`), whether a guard can judge it one
second at a time and why, and which extra keys of an SLO or a guard it needs or takes
(:data:`EXTRA_KEYS`: ``errors``, ``recovery``, ``budget``).

Everyone reads the table: the scenario grammar (:mod:`harness.scenario.expressions`) parses
objectives and guard conditions with it and the scenario's checks hold the extra keys to it; the
SLO book (:mod:`.slo`) and the guard watch (:mod:`.guards`) measure with it; the terminal, the
report and JUnit show values with it. No other module keeps a list of metric names. Adding a
metric is one row of :data:`METRICS` and its case in ``tests/test_objectives.py``, which runs every
row through an SLO and, when it can be one, a guard.

Pure, and imports nothing of harness but its units (:mod:`.units`) when it loads: the scenario
package imports it.
"""

# long: the table is one module on purpose (every metric is a row here and nowhere else); with the
# system-side rows (heal_time, probe) and their readings it passed 500 lines.
from __future__ import annotations

import math
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, NamedTuple, Protocol

from harness.judge.units import FACTOR, MILLISECONDS, NUMBER, PER_SECOND, SECONDS, SHARE, Quantity, format_duration

if TYPE_CHECKING:  # only its attributes are read: loading measure here would load it for every scenario
    from harness.measure.heal import HealTime
    from harness.measure.windows import EndpointStats

__all__ = [
    "EXTRA_KEYS",
    "METRICS",
    "PROBE_PREFIX",
    "Budget",
    "Evidence",
    "ExtraKey",
    "Metric",
    "ProbeWindow",
    "Reading",
    "Recovery",
    "Second",
    "SloStatus",
    "Where",
    "WindowRule",
    "failure_matches",
    "format_duration",
    "format_metric",
    "key_problems",
    "lookup",
    "probe_name",
    "recovery_seconds",
]


# ---------------------------------------------------------------- what a metric is measured from


class Budget(Protocol):
    """An error budget (the scenario's ``budget`` key): ``1 - availability`` of requests may fail
    over ``period`` seconds."""

    @property
    def availability(self) -> float: ...

    @property
    def period(self) -> float: ...


class Second(NamedTuple):
    """One second of a window as the recovery rule sees it; NaN p99 when it had no requests."""

    requests: int
    failed: int
    p99_ms: float


@dataclass(frozen=True)
class Recovery:
    """A recovery_time objective's rule, resolved: the fault it follows and what a good second is."""

    fault: str
    ended: float  # epoch seconds: the fault's end, where the recovery time starts
    within: float  # seconds the window lasts after the fault's end
    p99_ms: float
    error_rate: float
    stable_for: int


@dataclass(frozen=True)
class ProbeWindow:
    """A probe's values polled in a window, its failed polls, and which end is worst (high for ``<``)."""

    name: str
    values: tuple[float, ...]
    failed: int = 0
    worst_high: bool = True


@dataclass(frozen=True)
class Evidence:
    """What an objective is measured from: the statistics of its window's seconds merged, how many
    seconds that was, and what the SLO or guard adds (its extra keys; the window's seconds one by
    one for a metric whose row says ``by_second``). A guard's evidence is one second."""

    stats: EndpointStats
    seconds: int
    errors: tuple[str, ...] = ()
    budget: Budget | None = None
    recovery: Recovery | None = None
    by_second: Mapping[int, Second] = field(default_factory=dict)
    probe: ProbeWindow | None = None
    heal: HealTime | None = None


@dataclass(frozen=True)
class Where:
    """The window (as written) and the endpoint (None: all) an SLO was judged over."""

    window: str
    endpoint: str | None = None

    @property
    def on(self) -> str:
        return f" on {self.endpoint}" if self.endpoint else ""

    def __str__(self) -> str:
        return self.window + self.on


class SloStatus(StrEnum):
    """How an SLO ended: JUnit skips NO_DATA and fails BREACHED and NEVER_RECOVERED."""

    MET = "met"
    BREACHED = "breached"
    NO_DATA = "no_data"
    NEVER_RECOVERED = "never_recovered"
    NEVER_HEALED = "never_healed"


@dataclass(frozen=True)
class Reading:
    """A measured value (NaN: no data) and the text that says what it was measured over.

    ``status`` set means the reading decides the SLO whatever the threshold, and ``detail`` is
    then its whole message (a recovery that never came)."""

    value: float
    detail: str
    status: SloStatus | None = None


def failure_matches(kind: str, selectors: Iterable[str]) -> bool:
    """Whether a recorded failure kind (``http_503``, ``ConnectionRefusedError``) is selected by
    an ``errors`` list: a status (503), a status class (5xx), or the kind itself."""
    status = kind[5:] if kind.startswith("http_") else ""
    for selector in selectors:
        if selector == kind or (status and selector == status):
            return True
        if status and len(selector) == 3 and selector.endswith("xx") and status[0] == selector[0]:
            return True
    return False


def recovery_seconds(
    seconds: Mapping[int, Second] | Mapping[int, tuple[int, int, float]],
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
        count, failed, p99 = seconds[second]
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


# ---------------------------------------------------------------- the rows


@dataclass(frozen=True)
class ExtraKey:
    """A key an SLO or a guard gives beside its objective; only the metrics whose row takes it may."""

    name: str
    verb: str  # as in "errors filters an error_rate SLO", "budget applies to a burn_rate guard"
    example: str  # shown when a metric needs the key and it is missing
    guard_example: str = ""  # ... on a guard, when that differs

    def shown(self, guard: bool) -> str:
        return (self.guard_example or self.example) if guard else self.example


EXTRA_KEYS = (
    ExtraKey("errors", "filters", "[5xx]"),
    ExtraKey("recovery", "applies to", "{p99: 500ms, error_rate: 1%, stable_for: 3s}"),
    ExtraKey("budget", "applies to", "{availability: 99.9%, period: 30d}", "{availability: 99.9%}"),
)


class WindowRule(NamedTuple):
    """The one window kind a metric is judged over, and why (the message when another is written)."""

    kind: str
    why: str


def _plain(metric: Metric, value: float, evidence: Evidence, where: Where) -> Reading:
    kinds = f" ({', '.join(evidence.errors)} only)" if evidence.errors else ""
    return Reading(value, f"{metric.name}{kinds} {metric.format(value)} over {where}")


@dataclass(frozen=True)
class Metric:
    """One row of the table: a metric an objective (``<metric> <op> <threshold>``) can name.

    ``measure`` gives the value from a window's evidence (NaN when there is nothing to judge);
    ``describe`` turns it into the start of the SLO's message. ``per_second`` says whether a
    guard can judge the metric from one second's statistics alone, and ``why`` says why (a
    guard on a metric that cannot is refused with it). ``needs`` are the extra keys it must be
    given, ``takes`` every extra key it may be given (``needs`` included). ``by_second``: the
    measure reads the window's seconds one by one, not only their merged total. ``window``:
    the one window kind it can be judged over. ``from_system``: measured from the system's side
    (heal_time, handed over as the evidence's ``heal``), not from requests: the window's fault
    must have a heal condition and the SLO takes no endpoint.
    """

    name: str
    quantity: Quantity
    measure: Callable[[Evidence], float]
    per_second: bool
    why: str
    aliases: tuple[str, ...] = ()
    needs: tuple[str, ...] = ()
    takes: tuple[str, ...] = ()
    by_second: bool = False
    window: WindowRule | None = None
    describe: Callable[[Metric, float, Evidence, Where], Reading] = _plain
    from_system: bool = False

    def __post_init__(self) -> None:
        known = {key.name for key in EXTRA_KEYS}
        if not set(self.needs) <= set(self.takes) <= known:
            raise ValueError(f"metric {self.name}: needs must be among takes, takes among {sorted(known)}")

    def threshold(self, number: float, unit: str, text: str) -> float:
        """A threshold written as ``number`` and ``unit`` in this metric's own unit."""
        return self.quantity.normalise(self.name, number, unit, text)

    def format(self, value: float) -> str:
        """A measured or threshold value in the unit users write it in."""
        return "n/a" if math.isnan(value) else self.quantity.show(value)

    def read(self, evidence: Evidence, where: Where) -> Reading:
        return self.describe(self, self.measure(evidence), evidence, where)


def _latency(key: str, failed: bool) -> Callable[[Evidence], float]:
    def measure(evidence: Evidence) -> float:
        if failed:  # the failed requests alone: NaN (no data) when none failed
            return evidence.stats.failed_ms()[key] if evidence.stats.failed else math.nan
        return evidence.stats.latency_ms()[key] if evidence.stats.count else math.nan

    return measure


def _error_rate(evidence: Evidence) -> float:
    stats = evidence.stats
    if not stats.count:
        return math.nan
    if not evidence.errors:
        return stats.failed / stats.count
    return sum(n for kind, n in stats.failures.items() if failure_matches(kind, evidence.errors)) / stats.count


def _rps(evidence: Evidence) -> float:
    return evidence.stats.count / evidence.seconds if evidence.seconds else math.nan


def _budget(evidence: Evidence) -> Budget:
    assert evidence.budget is not None  # the scenario's checks make sure: the row needs budget
    return evidence.budget


def _burn_rate(evidence: Evidence) -> float:
    """The window's error rate over the budget's allowed error rate (1x spends it over the period)."""
    budget = _budget(evidence)
    if not evidence.stats.count or not evidence.seconds:
        return math.nan
    error_rate = evidence.stats.error_rate
    allowed = 1.0 - budget.availability
    return error_rate / allowed if allowed > 0 else (math.inf if error_rate > 0 else 0.0)


def _budget_burn(evidence: Evidence) -> float:
    """The share of the period's budget the window used: burn rate x window / period."""
    return _burn_rate(evidence) * evidence.seconds / _budget(evidence).period


def _recovery_time(evidence: Evidence) -> float:
    """Seconds from the fault's end to the first stable streak; inf when none came."""
    rule = evidence.recovery
    assert rule is not None  # the SLO book resolves it for every row that takes recovery
    if not evidence.by_second:
        return math.nan
    found = recovery_seconds(evidence.by_second, rule.ended, rule.p99_ms, rule.error_rate, rule.stable_for)
    return math.inf if found is None else found


def _budget_text(evidence: Evidence) -> str:
    budget = _budget(evidence)
    allowed = 1.0 - budget.availability
    return f"a {SHARE.show(allowed)} budget ({budget.availability * 100:g}% availability)"


def _describe_burn_rate(metric: Metric, value: float, evidence: Evidence, where: Where) -> Reading:
    error_rate = SHARE.show(evidence.stats.error_rate)
    detail = f"burn_rate {metric.format(value)} over {where}: error rate {error_rate} against {_budget_text(evidence)}"
    return Reading(value, detail)


def _describe_budget_burn(metric: Metric, value: float, evidence: Evidence, where: Where) -> Reading:
    period = format_duration(_budget(evidence).period)
    detail = (
        f"budget_burn {metric.format(value)} of the {period} error budget used over {where} ({evidence.seconds}s "
        f"at error rate {SHARE.show(evidence.stats.error_rate)} against {_budget_text(evidence)})"
    )
    return Reading(value, detail)


def _describe_recovery_time(metric: Metric, value: float, evidence: Evidence, where: Where) -> Reading:
    rule = evidence.recovery
    assert rule is not None
    if math.isnan(value):
        return Reading(value, "")
    good = (
        f"per-second p99 <= {MILLISECONDS.show(rule.p99_ms)} and error rate <= {SHARE.show(rule.error_rate)} "
        f"for {rule.stable_for} consecutive seconds"
    )
    if math.isinf(value):
        never = (
            f"never recovered after {rule.fault}{where.on}: {good} did not hold within the "
            f"{format_duration(rule.within)} after the fault ended"
        )
        return Reading(value, never, SloStatus.NEVER_RECOVERED)
    return Reading(value, f"recovery_time {metric.format(value)} after {rule.fault}{where.on} ({good})")


def _probe(evidence: Evidence) -> float:
    """The worst sample of the window: the objective must hold for every value the probe saw."""
    probe = evidence.probe
    if probe is None or not probe.values:
        return math.nan
    return max(probe.values) if probe.worst_high else min(probe.values)


def _describe_probe(metric: Metric, value: float, evidence: Evidence, where: Where) -> Reading:
    probe = evidence.probe or ProbeWindow("?", ())
    failed = f", {probe.failed} polls failed" if probe.failed else ""
    if not probe.values:
        return Reading(math.nan, f"no samples of probe:{probe.name} over {where}{failed}")
    worst = "highest" if probe.worst_high else "lowest"
    return Reading(
        value, f"probe:{probe.name} {worst} {metric.format(value)} of {len(probe.values)} samples{failed} over {where}"
    )


def _heal_time(evidence: Evidence) -> float:
    """Seconds from the fault's end (a kill: the kill) until the system was seen whole; inf when it never was."""
    heal = evidence.heal
    if heal is None:
        return math.nan
    seconds = heal.seconds
    return math.inf if seconds is None else seconds


def _describe_heal_time(metric: Metric, value: float, evidence: Evidence, where: Where) -> Reading:
    heal = evidence.heal
    if heal is None:
        detail = f"no heal_time for {where.window}: the fault did not reach its end within the run, nothing to judge"
        return Reading(value, detail, SloStatus.NO_DATA)
    since = "the kill" if heal.from_start else "the fault's end"
    if math.isinf(value):
        last = f" (last poll: {heal.last_error})" if heal.last_error else ""
        never = (
            f"never healed within the run after {heal.fault}: {heal.check} did not hold in the "
            f"{format_duration(round(heal.watched, 1))} from {since} to the end of the run{last}"
        )
        return Reading(value, never, SloStatus.NEVER_HEALED)
    return Reading(value, f"heal_time {metric.format(value)} after {heal.fault}, from {since} until {heal.check}")


_LATENCY_WHY = "one second's merged latency histogram gives it"


def _latency_row(name: str, *aliases: str) -> Metric:
    """A latency row; ``failed_<p>`` is the latency ``<p>`` of the failed requests alone."""
    key, failed = name.removeprefix("failed_"), name.startswith("failed_")
    return Metric(name, MILLISECONDS, _latency(key, failed), per_second=True, why=_LATENCY_WHY, aliases=aliases)


#: The table. Its order is the order metrics are listed in to users.
METRICS: tuple[Metric, ...] = (
    _latency_row("p50", "median"),
    _latency_row("p75"),
    _latency_row("p90"),
    _latency_row("p95"),
    _latency_row("p99"),
    _latency_row("p999", "p99.9"),
    _latency_row("max"),
    _latency_row("mean", "avg"),
    Metric(
        "error_rate",
        SHARE,
        _error_rate,
        per_second=True,
        why="one second's failures over its requests",
        takes=("errors",),
    ),
    Metric("rps", PER_SECOND, _rps, per_second=True, why="one second's requests (a second without any has 0)"),
    _latency_row("failed_p50"),  # failing fast (an open breaker) or after a timeout
    _latency_row("failed_p99"),
    _latency_row("failed_max"),
    Metric(
        "recovery_time",
        SECONDS,
        _recovery_time,
        per_second=False,
        why=(
            "it is the time from a fault's end to the first run of stable seconds after it, a property of "
            "the sequence of seconds, not of any one; judge it with an SLO on window after:FAULT"
        ),
        takes=("recovery",),
        by_second=True,
        window=WindowRule("after", "is measured from a fault's end: use window after:FAULT"),
        describe=_describe_recovery_time,
    ),
    Metric(
        "heal_time",
        SECONDS,
        _heal_time,
        per_second=False,
        why="it is measured from the system's side (a health URL, a process, pods), once per fault, not from seconds",
        window=WindowRule("after", "is measured from a fault's end (a kill: from the kill): use window after:FAULT"),
        describe=_describe_heal_time,
        from_system=True,
    ),
    Metric(
        "burn_rate",
        FACTOR,
        _burn_rate,
        per_second=True,
        why="one second's error rate over the budget's allowed error rate (the budget period plays no part)",
        needs=("budget",),
        takes=("budget",),
        describe=_describe_burn_rate,
    ),
    Metric(
        "budget_burn",
        SHARE,
        _budget_burn,
        per_second=False,
        why=(
            "it is the share of a whole budget period's errors that a window used, which grows with the "
            "window's length; guard on burn_rate, the rate at which the budget burns"
        ),
        needs=("budget",),
        takes=("budget",),
        describe=_describe_budget_burn,
    ),
    Metric(
        "probe",
        NUMBER,
        _probe,
        per_second=True,
        why="a guard judges the probe's latest sample each second",
        describe=_describe_probe,
    ),
)

PROBE_PREFIX = "probe:"  # an objective on a probe: ``probe:<name> < 1``, a name of the scenario's ``probes``

_BY_NAME = {name: row for row in METRICS for name in (row.name, *row.aliases)}


def probe_name(metric: str) -> str | None:
    """The probe an objective's metric names (``probe:inflight`` -> ``inflight``), None for others."""
    return metric[len(PROBE_PREFIX) :] if metric.startswith(PROBE_PREFIX) else None


def lookup(name: str) -> Metric:
    """The row of a metric named by its name or an alias (``probe:NAME``: the probe row), else ValueError."""
    row = _BY_NAME.get("probe" if name.startswith(PROBE_PREFIX) else name)
    if row is None:
        known = ", ".join(row.name for row in METRICS if row.name != "probe")
        raise ValueError(f"unknown metric '{name}'; use one of {known}, or probe:NAME for one of the scenario's probes")
    return row


def format_metric(metric: str, value: float) -> str:
    """A measured or threshold value of ``metric`` in the unit users write it in; a name not in
    the table (a hand-edited summary) shows the bare number."""
    row = _BY_NAME.get("probe" if metric.startswith(PROBE_PREFIX) else metric)
    if row is None:
        return "n/a" if math.isnan(value) else f"{value:g}"
    return row.format(value)


def _listing(key: str, noun: str, guard: bool) -> str:
    """The metrics that take ``key`` (as a guard: those a guard can judge), for a message."""
    names = [row.name for row in METRICS if key in row.takes and (row.per_second or not guard)]
    if len(names) == 1:
        return f"{'an' if names[0][0] in 'aeiou' else 'a'} {names[0]} {noun}"
    return f"{', '.join(names[:-1])} and {names[-1]} {noun}s" if names else f"no {noun}"


def key_problems(metric: Metric, given: Collection[str], guard: bool = False) -> Iterator[tuple[str, str]]:
    """What is wrong with the extra keys an SLO (or a guard) on ``metric`` gives: ``(key, message)``
    for each key it gives that the metric does not take, then ``("", message)`` for each key the
    metric needs that it does not give (the objective or condition is at fault)."""
    noun = "guard" if guard else "SLO"
    for key in EXTRA_KEYS:
        if key.name in given and key.name not in metric.takes:
            yield key.name, f"{key.name} {key.verb} {_listing(key.name, noun, guard)}, not {metric.name}"
    for key in EXTRA_KEYS:
        if key.name in metric.needs and key.name not in given:
            yield "", f"{metric.name} needs {key.name}: {key.shown(guard)}"
