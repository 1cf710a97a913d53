"""The per-second pipeline: every closed second goes through a list of observers, in order.

The aggregator merges the processes' windows (exactly, by HDR histogram) and closes a second
once every live process reported it; :class:`Seconds` hands each closed second, as a
:class:`Second`, to its observers, each behind one interface (:class:`SecondObserver`):

* :class:`DeliveryObserver` judges the second's load delivery (saturated, short) and marks it;
* :class:`VerdictObserver` feeds the SLO book and the run ledger (the verdict's inputs);
* :class:`TallyObserver` counts late seconds and notes when the first request completed;
* :class:`WriterObserver` writes the second's request points (per endpoint, and the exact
  all-endpoints row with its merged histogram), failures by kind, and its load point;
* :class:`WindowFiguresObserver` writes every SLO window's and every endpoint's exact figures so
  far, every few seconds and as soon as a window closes;
* :class:`GuardObserver` checks the guards and trips the run's abort;
* :class:`DisplayObserver` shows the live status.

A window that arrives after its second closed is a :class:`~harness.measure.windows.LateWindow`:
nothing of it is lost, each observer that counts requests takes it in (``on_late``).

This is the driver's hot path (about one percent of a core at 15K requests/s): observers do
their own work only, and the display never breaks a run.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol

from harness.judge.guards import GuardTrip, GuardWatch
from harness.judge.ladder import LadderBook
from harness.judge.slo import SloBook
from harness.judge.verdict import RunLedger
from harness.measure.aggregator import Aggregator, LateWindow
from harness.measure.delivery import DeliveryWatch
from harness.measure.windows import ClosedSecond, Endpoint, EndpointStats, ProcessWindow
from harness.plan import Plan
from harness.results.lineproto import Point
from harness.results.points import (
    endpoint_points,
    failure_points,
    load_point,
    request_points,
    totals_point,
    window_points,
)
from harness.run.recorder import Recorder

__all__ = [
    "DeliveryObserver",
    "DisplayObserver",
    "FaultNow",
    "GuardObserver",
    "LiveStatus",
    "Second",
    "SecondObserver",
    "Seconds",
    "TallyObserver",
    "Timeline",
    "VerdictObserver",
    "WindowFiguresObserver",
    "WriterObserver",
    "figures_points",
]

log = logging.getLogger(__name__)


@dataclass
class Second:
    """A closed second on its way through the pipeline; the delivery observer marks it first."""

    closed: ClosedSecond
    saturated: bool = False  # a generator process was saturated in this second
    short: bool = False  # open model: fewer iterations started than 90% of the target rate
    _total: EndpointStats | None = field(default=None, repr=False)

    def total(self) -> EndpointStats:
        """All endpoints merged (histograms too: computed once, for every observer that asks)."""
        if self._total is None:
            self._total = self.closed.total()
        return self._total

    def requests(self) -> int:
        return sum(stats.count for stats in self.closed.endpoints.values())


class SecondObserver(Protocol):
    """One stage of the per-second pipeline."""

    def on_second(self, second: Second) -> None:
        """A second closed (all live processes reported, or its grace ran out)."""

    def on_late(self, late: LateWindow) -> None:
        """A window arrived after its second closed."""


@dataclass(frozen=True)
class Timeline:
    """The run's plan as the progress display draws it: offsets in seconds from the load start.

    Made once per run (:meth:`of`); every :class:`LiveStatus` of the run carries the same one.
    """

    duration: float
    phases: tuple[tuple[str, float, float], ...] = ()  # (name, start, end), in plan order
    faults: tuple[tuple[str, float, float], ...] = ()  # (name, planned start, planned end)

    @classmethod
    def of(cls, plan: Plan) -> Timeline:
        phases = tuple((name, span.start, span.end) for name, span in plan.phases.items())
        faults = tuple((name, span.start, span.end) for name, span in plan.faults.items())
        return cls(plan.duration, phases, faults)

    def fault_end(self, name: str) -> float | None:
        """The planned end of fault ``name`` (its revert is due then), None for a name not planned."""
        return next((end for fault, _, end in self.faults if fault == name), None)


@dataclass(frozen=True)
class FaultNow:
    """A fault active now, and how long until its planned end (s; 0 once due, None: not planned)."""

    name: str
    left_s: float | None


@dataclass(frozen=True)
class LiveStatus:
    """What the progress display shows each second: the second that just closed, and the run around it."""

    elapsed: float  # seconds since the load clock started
    timeline: Timeline
    phase: str
    users: int
    target_rate: float
    rps: float  # requests completed in the second
    p99_ms: float  # the second's p99 over all endpoints (NaN: no request completed)
    error_rate: float
    errors: int  # failed requests in the second
    faults: tuple[FaultNow, ...]  # active now, in injection order
    saturated: bool
    short: bool = False  # open model: fewer iterations started than 90% of the target rate
    lost: tuple[str, ...] = ()  # generators lost so far

    @property
    def total(self) -> float:
        """The planned duration of the run (s)."""
        return self.timeline.duration

    @property
    def active_faults(self) -> tuple[str, ...]:
        return tuple(fault.name for fault in self.faults)


class Seconds:
    """The aggregator and the observers every closed second goes through, in list order.

    ``pace`` wraps each piece of work (a second, a batch of windows): the poll thread uses it
    to let a step of the plan that falls due go first.
    """

    def __init__(self, aggregator: Aggregator, observers: Sequence[SecondObserver]) -> None:
        self.aggregator = aggregator
        self.observers = list(observers)

    def add(self, window: ProcessWindow) -> None:
        self.aggregator.add(window)

    def settle(self, pace: Callable[[], AbstractContextManager[object]], final: bool = False) -> None:
        """Close the seconds that are complete (all of them when ``final``) and pass each on."""
        closed = self.aggregator.close_all() if final else self.aggregator.close_ready(time.time())
        for second in closed:
            with pace():
                self._on_second(second)
        for late in self.aggregator.take_late():
            for observer in self.observers:
                observer.on_late(late)

    def _on_second(self, closed: ClosedSecond) -> None:
        second = Second(closed)
        for observer in self.observers:
            observer.on_second(second)


class DeliveryObserver:
    """Load delivery: a saturated process or a short arrival rate, per second and over the run."""

    def __init__(self, delivery: DeliveryWatch) -> None:
        self.delivery = delivery

    def on_second(self, second: Second) -> None:
        second.saturated = self.delivery.observe(second.closed)
        second.short = self.delivery.is_short(second.closed.second)

    def on_late(self, late: LateWindow) -> None:
        for health in late.delta.health:
            self.delivery.observe_health(late.delta.second, health)


class VerdictObserver:
    """The SLO book and the run ledger: what the verdict and the summary's tables are made of.

    A late window's requests join them too, without counting its second twice.
    """

    def __init__(self, book: SloBook, ledger: RunLedger, ladders: LadderBook | None = None) -> None:
        self.book = book
        self.ledger = ledger
        self.ladders = ladders

    def on_second(self, second: Second) -> None:
        self.book.observe(second.closed)
        self.ledger.observe(second.closed)
        if self.ladders is not None:
            self.ladders.observe(second.closed)

    def on_late(self, late: LateWindow) -> None:
        self.book.observe(late.delta)
        self.ledger.observe(late.delta)
        if self.ladders is not None:
            self.ladders.observe(late.delta)


class TallyObserver:
    """Seconds closed without every process (``late``), and when the first request completed."""

    def __init__(self, invoked_at: float) -> None:
        self.invoked_at = invoked_at
        self.late_seconds = 0
        self.first_request_by_s: float | None = None

    def on_second(self, second: Second) -> None:
        if second.closed.late:
            self.late_seconds += 1
        if self.first_request_by_s is None and second.requests():
            # Upper bound: the first request completed before the end of its window.
            self.first_request_by_s = round(second.closed.second + 1 - self.invoked_at, 3)

    def on_late(self, late: LateWindow) -> None:
        pass


class WriterObserver:
    """Each second's request points (per endpoint) and load point, to the results writer.

    A late window whose second the aggregator still keeps rewrites that second's rows, merged,
    over the earlier ones (same series and time: InfluxDB keeps the last), so InfluxDB and
    summary.json agree; otherwise its requests are counted in ``late_requests_unwritten``.
    """

    def __init__(self, recorder: Recorder, scenario: str, live_generators: Callable[[], int]) -> None:
        self.recorder = recorder
        self.scenario = scenario
        self.live_generators = live_generators  # generators carrying load in this second
        self.endpoints: list[Endpoint] = []
        self.late_requests_unwritten = 0

    def on_second(self, second: Second) -> None:
        closed = second.closed
        for key in closed.endpoints:
            if key not in self.endpoints:
                self.endpoints.append(key)
        points = self._requests(closed, second.total())
        points.append(load_point(self.recorder.run_id, self.scenario, closed, self.live_generators(), second.saturated))
        self.recorder.write(points)

    def _requests(self, closed: ClosedSecond, total: EndpointStats) -> list[Point]:
        run_id = self.recorder.run_id
        points = list(request_points(run_id, self.scenario, closed, self.endpoints))
        points.append(totals_point(run_id, self.scenario, closed.second, total))
        points.extend(failure_points(run_id, self.scenario, closed))
        return points

    def on_late(self, late: LateWindow) -> None:
        if late.revised is not None:
            self.recorder.write(self._requests(late.revised, late.revised.total()))
        else:
            self.late_requests_unwritten += late.delta.total().count


def figures_points(ledger: RunLedger, run_id: str, started: float) -> list[Point]:
    """Every SLO window's and every endpoint's exact figures so far (harness_windows and
    harness_endpoints): the ledger's, the same summary.json's ``windows`` and ``endpoints`` are."""
    return [
        *window_points(run_id, ledger.window_table(), started),
        *endpoint_points(run_id, ledger.endpoint_table(), started),
    ]


class WindowFiguresObserver:
    """Every SLO window's and endpoint's exact figures so far (the run, steady, phases, fault
    windows), for Grafana's stat panels and tables: every ``every`` seconds, and at once when a
    window closed (the first second past its end closed), so a fault window's final figures are
    in InfluxDB a second or two after its planned end rather than up to ``every`` seconds later.
    The final ones are written with the verdict."""

    def __init__(self, ledger: RunLedger, recorder: Recorder, started: float, every: int = 5) -> None:
        self.ledger = ledger
        self.recorder = recorder
        self.started = started
        self.every = every
        self._seen = 0
        self._ends = ledger.window_ends()  # offsets still ahead at which a window closes

    def on_second(self, second: Second) -> None:
        self._seen += 1
        closed = False
        offset = second.closed.second + 0.5 - self.started  # a second is in a window by its midpoint
        while self._ends and offset >= self._ends[0]:
            self._ends.pop(0)
            closed = True
        if closed or self._seen % self.every == 0:
            self.write()

    def on_late(self, late: LateWindow) -> None:
        pass  # the ledger took it in; the next write carries it

    def write(self) -> None:
        self.recorder.write(figures_points(self.ledger, self.recorder.run_id, self.started))


class GuardObserver:
    """The guards (abort conditions), every second: the first one to trip aborts the run."""

    def __init__(self, guards: GuardWatch, recorder: Recorder) -> None:
        self.guards = guards
        self.recorder = recorder
        self.trip: GuardTrip | None = None

    def on_second(self, second: Second) -> None:
        if self.trip is None and self.guards.guards:
            trip = self.guards.observe(second.closed)
            if trip is not None:
                self.trip = trip
                self.recorder.note(trip.message)
                self.recorder.event("abort", trip.guard, "start", trip.message, time.time())

    def on_late(self, late: LateWindow) -> None:
        pass


class DisplayObserver:
    """The live status for the progress display; a display problem never breaks a run.

    ``lock``: held while the active faults are read and the second is shown; the recorder holds
    it while it tells a fault's start or end (:attr:`~harness.run.recorder.Recorder.showing`), so
    the progress and those lines never contradict each other.
    """

    def __init__(
        self,
        show: Callable[[LiveStatus], None],
        timeline: Timeline,
        start_mono: float,
        phase: Callable[[], str],
        active_faults: Callable[[], list[str]],
        lost: Callable[[], list[str]],
        lock: AbstractContextManager[object] | None = None,
    ) -> None:
        self.show = show
        self.timeline = timeline
        self.start_mono = start_mono
        self.phase = phase
        self.active_faults = active_faults
        self.lost = lost
        self.lock = lock or contextlib.nullcontext()

    def retime(self, plan: Plan) -> None:
        """A fault that waited for a steady state started: draw it where it is."""
        self.timeline = Timeline.of(plan)

    def on_second(self, second: Second) -> None:
        closed = second.closed
        total = second.total()
        p99_ms = total.latency_ms()["p99"]
        with self.lock:
            elapsed = time.monotonic() - self.start_mono
            faults = []
            for name in self.active_faults():
                end = self.timeline.fault_end(name)
                faults.append(FaultNow(name, None if end is None else max(0.0, end - elapsed)))
            status = LiveStatus(
                elapsed=elapsed,
                timeline=self.timeline,
                phase=self.phase(),
                users=closed.users,
                target_rate=closed.target_rate,
                rps=float(total.count),
                p99_ms=p99_ms,
                error_rate=total.error_rate,
                errors=total.failed,
                faults=tuple(faults),
                saturated=second.saturated,
                short=second.short,
                lost=tuple(self.lost()),
            )
            try:
                self.show(status)
            except Exception:  # a display problem must never break a run
                log.exception("progress display failed")

    def on_late(self, late: LateWindow) -> None:
        pass
