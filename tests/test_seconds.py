"""The per-second pipeline of a run, from process windows to points, guards and the live display.

Real parts: the aggregator, the delivery rules, the SLO book, the run ledger and the guards
of a real compiled scenario, with a recorder whose results writer is a list (the edge where
InfluxDB would be). The run itself (Ray, Locust, the clock) is in tests/test_e2e.py and
tests/test_control_loop.py.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.judge.guards import GuardWatch
from harness.judge.slo import SloBook
from harness.judge.verdict import RunLedger
from harness.measure.aggregator import Aggregator
from harness.measure.delivery import DeliveryWatch
from harness.measure.windows import EndpointStats, ProcessHealth, ProcessWindow
from harness.plan import Plan, compile_plan
from harness.results.lineproto import Point
from harness.run.recorder import Recorder
from harness.run.seconds import (
    DeliveryObserver,
    DisplayObserver,
    GuardObserver,
    LiveStatus,
    Seconds,
    TallyObserver,
    Timeline,
    VerdictObserver,
    WindowFiguresObserver,
    WriterObserver,
)
from harness.scenario import load_scenario

START = 1000.25  # the run's start epoch: second s has its midpoint at offset s + 0.5 - START
PROCESSES = ("g0.0", "g0.1")
GET = ("GET", "/api/products")
POST = ("POST", "/api/checkout")


class ListWriter:
    """The results writer's edge: keeps what it is given."""

    def __init__(self) -> None:
        self.points: list[Point] = []

    def write(self, points: list[Point]) -> None:
        self.points.extend(points)


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    (tmp_path / "locust.py").write_text("from locust import User\n\n\nclass U(User):\n    pass\n")
    path = tmp_path / "scenario.yaml"
    path.write_text(
        "name: seconds\ntarget: {base_url: 'http://127.0.0.1:1'}\n"
        "load:\n  locustfile: locust.py\n  user_classes: [{class: U}]\n"
        "  stages:\n    - {name: main, duration: 30s, users: 10}\n"
        "slos:\n  - {name: fast, objective: 'p99 < 100ms', window: run}\n"
        "guards:\n  - {name: meltdown, condition: 'error_rate > 50% for 2s'}\n"
    )
    return compile_plan(load_scenario(path))


def window(process: str, second: int, endpoint: tuple[str, str], n: int, failing: bool = False) -> ProcessWindow:
    stats = EndpointStats()
    for _ in range(n):
        stats.record(5_000, 100, "HTTPError 503" if failing else None)
    hot = process == "g0.1" and failing  # saturated while the service fails: a busy process
    health = ProcessHealth(process, cpu=0.99 if hot else 0.3, lag_ms=300.0 if hot else 1.0, users=5, target_rate=0.0)
    return ProcessWindow(process, second, health, {endpoint: stats})


@contextlib.contextmanager
def no_pace() -> Iterator[None]:
    yield


class Pipeline:
    """The observers of a run in their order, as the orchestrator builds them."""

    def __init__(self, plan: Plan) -> None:
        self.writer = ListWriter()
        self.notes: list[str] = []
        self.shown: list[LiveStatus] = []
        self.recorder = Recorder("r1", self.writer, note=self.notes.append)
        self.recorder.start_epoch = START
        self.delivery = DeliveryWatch(plan, START)
        self.book, self.ledger = SloBook(plan, START), RunLedger(plan, START)
        self.tally = TallyObserver(invoked_at=START - 5)
        self.written = WriterObserver(self.recorder, "seconds", lambda: 1)
        self.guard = GuardObserver(GuardWatch(list(plan.scenario.guards)), self.recorder)
        display = DisplayObserver(self.shown.append, Timeline.of(plan), 0.0, lambda: "main", lambda: ["kill"], list)
        self.seconds = Seconds(
            Aggregator(PROCESSES),
            [
                DeliveryObserver(self.delivery),
                VerdictObserver(self.book, self.ledger),
                self.tally,
                self.written,
                self.guard,
                display,
            ],
        )

    def feed(self, *windows: ProcessWindow, final: bool = False) -> None:
        for w in windows:
            self.seconds.add(w)
        self.seconds.settle(no_pace, final=final)


def test_each_second_goes_through_every_observer_in_order(plan: Plan) -> None:
    run = Pipeline(plan)
    first = 1001
    for second in range(first, first + 4):
        failing = second >= first + 2
        run.feed(window("g0.0", second, GET, 10, failing), window("g0.1", second, POST, 5, failing))
        if second == first:  # a second closes once both processes reported it
            run.feed()
    run.feed(final=True)
    # Writer: per second, one row per endpoint seen so far and the load row, in second order.
    rows = [(p.measurement, p.tags.get("name"), p.time_ns // 10**9) for p in run.writer.points]
    requests = [r for r in rows if r[0] == "harness_requests"]
    assert [r[2] for r in requests] == [s for s in range(first, first + 4) for _ in (GET, POST)]
    loads = [p for p in run.writer.points if p.measurement == "harness_load"]
    # The delivery observer marks the second before the writer and the display read it.
    assert [p.fields["saturated"] for p in loads] == [False, False, True, True]
    assert [s.saturated for s in run.shown] == [False, False, True, True]
    assert [s.rps for s in run.shown] == [15.0] * 4 and run.shown[0].active_faults == ("kill",)
    assert [s.error_rate for s in run.shown] == [0.0, 0.0, 1.0, 1.0]
    assert [s.errors for s in run.shown] == [0, 0, 15, 15]
    # Guards: two failing seconds trip the guard once, as an abort event and a note.
    assert run.guard.trip is not None and run.guard.trip.guard == "meltdown" and run.guard.trip.second == first + 3
    [abort] = [e for e in run.recorder.events if e.kind == "abort"]
    assert abort.name == "meltdown" and run.guard.trip.message in run.notes
    assert any(p.measurement == "harness_events" and p.tags["kind"] == "abort" for p in run.writer.points)
    # Verdict inputs and tallies.
    assert run.ledger.windows["run"].total().count == 60
    assert run.tally.first_request_by_s == first + 1 - (START - 5) and run.tally.late_seconds == 0
    [fast] = run.book.results()
    assert fast.requests == 60 and fast.passed


def test_a_late_window_is_counted_and_its_second_written_again(plan: Plan) -> None:
    run = Pipeline(plan)
    run.feed(window("g0.0", 1001, GET, 10), final=True)  # g0.1 did not report 1001 before it closed
    written = len(run.writer.points)
    run.feed(window("g0.1", 1001, GET, 4))  # ... and now it does
    again = run.writer.points[written:]
    assert [(p.measurement, p.fields["count"]) for p in again] == [("harness_requests", 14), ("harness_totals", 14)]
    assert run.ledger.windows["run"].total().count == 14 and run.written.late_requests_unwritten == 0
    assert [s.rps for s in run.shown] == [10.0]  # the display shows each second once


def test_window_figures_are_written_as_each_window_closes(tmp_path: Path) -> None:
    """harness_windows (and harness_endpoints) are written every 5 s and as soon as a window's
    last second closed: a fault from 3 s to 6 s is final in the point written when the second
    whose midpoint lies at 6.x closes, with the figures summary.json will have for it."""
    (tmp_path / "locust.py").write_text("from locust import User\n\n\nclass U(User):\n    pass\n")
    path = tmp_path / "scenario.yaml"
    path.write_text(
        "name: seconds\ntarget: {base_url: 'http://127.0.0.1:1'}\n"
        "load:\n  locustfile: locust.py\n  user_classes: [{class: U}]\n"
        "  stages:\n    - {name: main, duration: 12s, users: 10}\n"
        "faults:\n  - {name: kill, kind: process.kill, at: 3s, duration: 3s, target: {pid_file: /nonexistent}}\n"
    )
    plan = compile_plan(load_scenario(path))
    writer = ListWriter()
    recorder = Recorder("r1", writer)
    ledger = RunLedger(plan, START)
    seconds = Seconds(Aggregator(("g0.0",)), [VerdictObserver(SloBook(plan, START), ledger)])
    seconds.observers.append(WindowFiguresObserver(ledger, recorder, START))
    assert ledger.window_ends() == [3.0, 6.0, 12.0]  # steady and during:kill end at 3 s and 6 s
    written_after: dict[int, dict[str, int]] = {}
    first = int(START)  # midpoint at offset 0.25: the run's first second
    for second in range(first, first + 9):
        writer.points.clear()
        seconds.add(window("g0.0", second, GET, second - first + 1))
        seconds.settle(no_pace, final=True)
        windows = {p.tags["window"]: p.fields["count"] for p in writer.points if p.measurement == "harness_windows"}
        if windows:
            written_after[second - first] = windows
            assert {p.measurement for p in writer.points} == {"harness_windows", "harness_endpoints"}
    # Offsets 0.25 .. 8.25: the window ends at 3 and 6 are passed by the seconds at 3.25 and
    # 6.25; the fifth second (4.25) is the every-5-seconds write.
    assert sorted(written_after) == [3, 4, 6]
    during = ledger.window_table()["during:kill"]["requests"]
    assert during == 4 + 5 + 6 and written_after[6]["during:kill"] == during


def test_the_display_is_told_each_active_fault_and_the_time_to_its_planned_end(plan: Plan) -> None:
    timeline = Timeline(60.0, (("ramp", 0.0, 10.0), ("steady", 10.0, 60.0)), (("kill", 20.0, 30.0),))
    shown: list[LiveStatus] = []
    lock = threading.Lock()  # the recorder's: no fault line is told while a second is read and shown

    def show(status: LiveStatus) -> None:
        assert lock.locked()
        shown.append(status)

    started = time.monotonic() - 23.0  # the load clock started 23 s ago: kill has 7 s to go
    display = DisplayObserver(show, timeline, started, lambda: "steady", lambda: ["kill", "odd"], list, lock=lock)
    run = Seconds(Aggregator(PROCESSES), [display])
    run.add(window("g0.0", 1001, GET, 4, failing=True))
    run.add(window("g0.1", 1001, GET, 6))
    run.settle(no_pace)
    [status] = shown
    assert status.timeline is timeline and status.total == 60.0 and status.phase == "steady"
    [kill, odd] = status.faults
    assert kill.name == "kill" and kill.left_s is not None and 6.0 <= kill.left_s <= 7.0
    assert odd.left_s is None  # a fault the plan does not know has no planned end
    assert (status.rps, status.errors, status.error_rate) == (10.0, 4, 0.4)
    assert not lock.locked()
