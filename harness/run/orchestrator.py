"""The run's clock and its teardown: the plan walked on one clock, the system left as it was found.

:meth:`Orchestrator.run` starts (or joins) Ray, places the generators and the chaos agents,
walks the plan's steps at their offsets from one monotonic start while the poll thread
(:mod:`harness.run.poller`) takes in the windows and does the per-second work, and in a
``finally`` reverts every fault, stops the load, flushes what is left and judges the run.
It composes the parts of a run; each part lives in its own module: the generators in
:mod:`~harness.run.fleet`, stage shares in :mod:`~harness.run.stages`, losses in
:mod:`~harness.run.losses`, the chaos agents in :mod:`~harness.run.faults`, the per-second
observers in :mod:`~harness.run.seconds`, events and points in :mod:`~harness.run.recorder`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import socket
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.errors import ConfigError, HarnessError
from harness.judge.guards import GuardWatch
from harness.judge.ladder import LadderBook
from harness.judge.slo import SloBook
from harness.judge.summary import (
    BaselineOutcome,
    HealEntry,
    RunSummary,
    from_json,
)
from harness.judge.verdict import RunLedger, decide
from harness.measure.aggregator import Aggregator
from harness.measure.delivery import DeliveryWatch
from harness.measure.heal import HealTime
from harness.measure.steptiming import StepRecord
from harness.plan import Plan, Step, StepKind
from harness.priority import set_thread_niceness
from harness.results.points import heal_points, run_point, running_point, slo_points
from harness.run.baggage import Baggage
from harness.run.cluster import RayStart, driver_node_id, live_nodes, start_ray, stop_ray
from harness.run.faults import FaultAgents, choose_pods
from harness.run.fleet import Fleet, FleetOptions
from harness.run.heal import HealWatch
from harness.run.ladders import LadderControl
from harness.run.losses import Losses
from harness.run.nodes import FaultPlacement, Node, generator_nodes, place_faults
from harness.run.options import RunOptions, new_run_id
from harness.run.poller import Poller
from harness.run.probes import ProbeObserver, ProbePoller
from harness.run.recorder import PointWriter, Recorder
from harness.run.seconds import (
    DeliveryObserver,
    DisplayObserver,
    GuardObserver,
    LiveStatus,
    SecondObserver,
    Seconds,
    TallyObserver,
    Timeline,
    VerdictObserver,
    WindowFiguresObserver,
    WriterObserver,
    figures_points,
)
from harness.run.signals import deferred_interrupts, exit_at_once, terminate_as_interrupt
from harness.run.stages import Stages, send_at
from harness.run.steady import Retimed, SteadyStarts, never_steady, retimed_steps
from harness.run.summarize import run_summary

__all__ = ["LiveStatus", "Orchestrator", "RunOptions", "new_run_id"]

CLOCK_CHECK = 0.1  # the clock thread looks at guards and poll failures at least this often (s)
SWITCH_INTERVAL = 0.001  # GIL hand-over during a run (s): bounds how long a step waits for the poll thread
CLOCK_NICE = -10  # the clock thread's niceness during a run, so that it wakes on time on a busy node
STEP_KINDS_TIMED = tuple(
    k.value for k in (StepKind.STAGE, StepKind.FAULT_START, StepKind.FAULT_WIDEN, StepKind.FAULT_END)
)


@dataclass
class _Live:
    """The parts of a run that exist once its load clock started."""

    start_epoch: float
    start_mono: float
    stages: Stages
    losses: Losses
    delivery: DeliveryWatch
    book: SloBook
    ledger: RunLedger
    seconds: Seconds
    tally: TallyObserver
    writer: WriterObserver
    guard: GuardObserver
    ladders: LadderBook
    steady: SteadyStarts | None  # the faults that wait for a steady state (None: none does)
    retimed: tuple[Retimed, ...]  # told when such a fault starts and its windows move


class Orchestrator:
    """Runs one plan. Not reusable: create one per run."""

    def __init__(
        self,
        plan: Plan,
        options: RunOptions,
        writer: PointWriter,
        on_status: Callable[[LiveStatus], None] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.scenario = plan.scenario
        self.options = options
        self.run_id = options.run_id
        self.on_status = on_status
        baseline = options.baseline
        keep = baseline.wants if baseline else None
        self.recorder = Recorder(self.run_id, writer, note=on_event, keep=keep, hide=options.hide)
        fleet_options = FleetOptions(options.run_id, options.run_dir, options.processes, options.extra_env)
        self.fleet = Fleet(self.scenario, fleet_options)
        self.poller = Poller(self.fleet, self.recorder)
        self.baggage = Baggage(self.fleet, self.scenario.load.trace is not None)
        self.faults: FaultAgents | None = None
        self.probes: ProbeObserver | None = None  # the scenario's probes, polled from the load start
        self.heals: HealWatch | None = None
        self.heal_times: dict[str, HealTime] = {}  # fault name -> its heal, once the load stopped
        self.live: _Live | None = None
        self._ladders: LadderControl | None = None
        self.ray: RayStart | None = None
        self.timings: dict[str, float] = {}
        self.load_stopped_at: float | None = None  # when teardown finished (the verdict's time is from here)
        self.never_steady = ""  # why the run ended at a fault's deadline: it never became steady
        self._actions: dict[StepKind, Callable[[Step, StepRecord, float], None]] = {
            StepKind.RUN_START: self._run_start,
            StepKind.RUN_END: self._run_end,
            StepKind.PHASE_START: self._phase_start,
            StepKind.PHASE_END: self._phase_end,
            StepKind.STAGE: self._stage,
            StepKind.FAULT_START: self._fault_start,
            StepKind.FAULT_WIDEN: self._fault_widen,
            StepKind.FAULT_END: self._fault_end,
        }

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> RunSummary:
        error = ""
        interrupted = False
        try:
            self.ray = start_ray(self.options.ray_address)
            if self.ray.init_s is not None:
                self.timings["ray_init_s"] = self.ray.init_s
            terminate_as_interrupt()  # again: ray.init installs its own SIGTERM handler in the driver
            placement = self._place()
            self.fleet.start()
            self.faults = FaultAgents(self.scenario, self.run_id, placement, self.recorder)
            self.faults.start()
            self.heals = HealWatch(self.scenario, self.recorder, self.faults.agent_of)
            self.heals.start()
            self._loop()
        except ConfigError:  # a node selector this cluster cannot meet: nothing started, exit 2
            raise
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the same, see harness.run.signals)
            interrupted = True
            self.recorder.note("interrupted: reverting faults and stopping load (interrupt again to exit at once)")
        except HarnessError as exc:
            error = f"{type(exc).__name__}: {exc}"
            self.recorder.note(f"error: {exc}")
        finally:
            with deferred_interrupts(interrupted, self._exit_at_once, self.recorder.note):
                self._teardown()
        return self._judge(error=error, interrupted=interrupted)

    def _exit_at_once(self) -> None:
        exit_at_once(self.options.run_dir, self.faults.active() if self.faults else [])

    def _place(self) -> FaultPlacement:
        """Match every node selector against the live cluster before anything starts.

        A selector that matches no node (or a fault's that matches several) is a scenario
        written for another cluster: ``ConfigError``, exit 2, nothing started.
        """
        nodes = live_nodes()
        driver_id = driver_node_id()
        driver = next((n for n in nodes if n.node_id == driver_id), None)
        if driver is None:  # not listed yet: the driver's own node is alive by definition
            driver = Node(node_id=driver_id, ip="", hostname=socket.gethostname())
        generator_nodes(self.scenario, nodes)
        return place_faults(self.scenario, nodes, driver, choose_pods(self.scenario, self.recorder))

    # ------------------------------------------------------------------ the clock

    def _begin(self) -> _Live:
        """The load clock starts now: the run's parts that count from its first instant."""
        start_mono, start_epoch = time.monotonic(), time.time()
        self.recorder.start_epoch = start_epoch
        delivery = DeliveryWatch(self.plan, start_epoch)
        aggregator = Aggregator(self.fleet.process_ids, since=math.floor(start_epoch))
        stages = Stages(start_epoch, self.fleet, self.recorder, delivery, lambda: self.poller.running)
        book, ledger = SloBook(self.plan, start_epoch), RunLedger(self.plan, start_epoch)
        tally = TallyObserver(self.options.invoked_at)
        writer = WriterObserver(self.recorder, self.scenario.name, self.fleet.live_generators)
        every = self.scenario.probes.every if self.scenario.probes else 0.0
        watch = GuardWatch(list(self.scenario.guards), stale_after=every + 2.0)
        guard = GuardObserver(watch, self.recorder)
        ladders = LadderBook(self.plan, start_epoch)
        observers: list[SecondObserver] = [DeliveryObserver(delivery), VerdictObserver(book, ledger, ladders), tally]
        steady = SteadyStarts(self.plan, start_epoch, self.recorder, every + 2.0) if self.plan.waiting() else None
        if steady is not None:  # early: a fault that is due starts after this observer, not after all
            observers.insert(0, steady)
        if self.scenario.probes is not None:  # first: SLOs and guards judge a second with the probes known by then
            sinks = (book, ladders, watch, *((steady,) if steady is not None else ()))
            self.probes = ProbeObserver(ProbePoller(self.scenario.probes, self.recorder, self.scenario.name), sinks)
            observers.insert(0, self.probes)
            self.probes.poller.start(start_epoch)
        retimed: list[Retimed] = [book, ledger, ladders]
        observers += [writer, WindowFiguresObserver(ledger, self.recorder, start_epoch), guard]
        if self.on_status is not None:
            display = DisplayObserver(
                self.on_status,
                Timeline.of(self.plan),
                start_mono,
                self.recorder.shown_phase,  # in step with the phase and fault lines the user reads
                self.recorder.shown_faults,
                lambda: [*self.fleet.lost],
                lock=self.recorder.showing,
            )
            observers.append(display)
            retimed.append(display)
        seconds = Seconds(aggregator, observers)
        losses = Losses(self.fleet, stages, aggregator, delivery, self.recorder)
        self.timings["load_start_s"] = round(start_epoch - self.options.invoked_at, 3)
        # Registered as running now, so Grafana lists the run and draws it while it goes.
        planned_end = start_epoch + self.plan.duration
        self.recorder.write([running_point(self.run_id, self.scenario.name, start_epoch, planned_end)])
        parts = (stages, losses, delivery, book, ledger, seconds, tally, writer, guard, ladders, steady, tuple(retimed))
        return _Live(start_epoch, start_mono, *parts)

    def _loop(self) -> None:
        """Walk the plan on one clock; steps start on time whatever the actors are doing.

        Two threads. This one (the main thread, where Ctrl-C lands) only executes steps: it
        sleeps until the next offset, acts, and never waits on a load generator (stage
        commands are fire-and-forget). The poll thread takes in windows and acknowledgements
        and does the per-second work, which can cost tens to hundreds of milliseconds a
        second; done here it would make steps late. The poll thread starts no piece of work
        that could run into the next step, and the GIL is handed over every
        ``SWITCH_INTERVAL`` should a piece overrun, so a step waits for nothing but the CPU.
        """
        self.poller.start()  # starting a thread takes tens of milliseconds: before the clock does
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        niceness = set_thread_niceness(CLOCK_NICE)
        clock_cpu, process_cpu = time.thread_time(), time.process_time()
        try:
            live = self.live = self._begin()
            pending = list(self.plan.steps)
            self._announce(pending)
            self.poller.begin(live.stages, live.losses, live.seconds)
            while pending:
                self.poller.raise_failure()
                pending = self._steady_starts(pending)
                elapsed = time.monotonic() - live.start_mono
                while pending and send_at(pending[0]) <= elapsed:
                    self._execute(pending.pop(0))
                # An open-model stage is sent ahead, possibly before steps planned earlier
                # than itself; their order within the plan is unchanged otherwise.
                for step in [s for s in pending if send_at(s) <= elapsed]:
                    pending.remove(step)
                    self._execute(step)
                self._announce(pending)
                if not pending or live.guard.trip is not None or self.never_steady:
                    break
                wait = live.start_mono + min(send_at(s) for s in pending) - time.monotonic()
                pause = max(0.0, min(wait, CLOCK_CHECK))
                if live.steady is None:
                    time.sleep(pause)
                else:  # woken at once when a fault that waits is due
                    live.steady.due.wait(pause)
        finally:
            set_thread_niceness(niceness)
            self.poller.stop()
            sys.setswitchinterval(switch)
            # What the harness cost while the load ran (the writer's own share is in "results").
            self.timings["clock_thread_cpu_s"] = round(time.thread_time() - clock_cpu, 3)
            self.timings["driver_cpu_s"] = round(time.process_time() - process_cpu, 3)
            if self.live is not None:
                self.timings["load_window_s"] = round(time.monotonic() - self.live.start_mono, 3)
        self.poller.raise_failure()

    def _steady_starts(self, pending: list[Step]) -> list[Step]:
        """The faults found steady since the last look start now: the plan moves each to this
        instant (its windows, its ladder and the steady window with it), then its start is due."""
        live = self.live
        assert live is not None
        for held in live.steady.take() if live.steady is not None else []:
            deadline = self.plan.waiting().get(held.fault)
            if deadline is None or self.never_steady:  # not waiting, or the run is ending "never steady"
                continue
            # Due just before its deadline yet taken just after: it starts late, as a step can, not later.
            offset = min(time.monotonic() - live.start_mono, deadline)
            index = next(i for i, f in enumerate(self.scenario.faults) if f.name == held.fault)
            self.plan = self.plan.started_at(held.fault, offset)
            for part in live.retimed:
                part.retime(self.plan)
            pending = retimed_steps(pending, self.plan, index)
            self.recorder.event("steady", held.fault, "start", held.text, held.at)
        return pending

    def _announce(self, pending: list[Step]) -> None:
        """Tell the poll thread when the next step is due (it holds back work that would overlap)."""
        assert self.live is not None
        self.poller.announce(self.live.start_mono + min(send_at(s) for s in pending) if pending else math.inf)

    def _execute(self, step: Step) -> None:
        assert self.live is not None
        now = time.time()
        record = self.live.stages.executed(step, now)
        self._actions[step.kind](step, record, now)

    def _run_start(self, step: Step, record: StepRecord, now: float) -> None:
        self.recorder.event("run", self.scenario.name, "start", f"run {self.run_id} started", now)

    def _run_end(self, step: Step, record: StepRecord, now: float) -> None:
        self.recorder.event("run", self.scenario.name, "end", f"run {self.run_id} ended", now)

    def _phase_start(self, step: Step, record: StepRecord, now: float) -> None:
        self.recorder.event("phase", step.name, "start", f"phase {step.name} started", now)
        self.baggage.phase_started(step.name)

    def _phase_end(self, step: Step, record: StepRecord, now: float) -> None:
        self.recorder.event("phase", step.name, "end", f"phase {step.name} ended", now)
        self.baggage.phase_ended(step.name)

    def _stage(self, step: Step, record: StepRecord, now: float) -> None:
        if step.stage is not None and self.live is not None:
            self.live.stages.apply(step, record)

    def _fault_start(self, step: Step, record: StepRecord, now: float) -> None:
        if step.fault_index is None or self.faults is None or self.live is None:
            return
        if step.waits:  # its deadline, and the system was never steady: the run ends, invalid
            self.never_steady = never_steady(self.plan, step)
            self.recorder.note(self.never_steady)
            self.recorder.event("abort", step.name, "start", self.never_steady, now)
            return
        injected = self.faults.inject(step.fault_index, step.rung)
        if self.heals is not None:
            self.heals.fault_started(injected.name, injected.at)
        planned, late = self.live.stages.done(record, injected.at)
        until = self.live.start_epoch + planned + self.scenario.faults[step.fault_index].duration
        self.recorder.event("fault", injected.name, "start", injected.text, injected.at, planned, late, until)
        self.baggage.fault_started(injected.name)

    def _fault_widen(self, step: Step, record: StepRecord, now: float) -> None:
        """A ladder's step boundary: judge the step that ends, then widen the fault or stop it."""
        if step.rung is None or self.faults is None or self.live is None:
            return
        injected = self._ladder_control().widen(step.name, step.rung)
        stopped = self._ladder_control().stopped_at.pop(step.name, None)
        if stopped is not None:  # the escalation stopped: the fault ended now
            self.baggage.fault_ended(step.name)
            if self.heals is not None:
                self.heals.fault_ended(step.name, stopped)
        if injected is not None:
            planned, late = self.live.stages.done(record, injected.at)
            self.recorder.event("ladder", step.name, "widen", injected.text, injected.at, planned, late)

    def _ladder_control(self) -> LadderControl:
        assert self.faults is not None and self.live is not None
        if self._ladders is None:
            self._ladders = LadderControl(self.plan, self.faults, self.live.ladders, self.recorder)
        return self._ladders

    def _fault_end(self, step: Step, record: StepRecord, now: float) -> None:
        if step.name in self.plan.ladders and self.faults is not None and self.live is not None:
            self._ladder_control().end(step.name)
        at = self.faults.revert(step.name) if self.faults is not None else None
        self.baggage.fault_ended(step.name)
        if at is None or self.live is None:
            return
        if self.heals is not None:
            self.heals.fault_ended(step.name, at)
        planned, late = self.live.stages.done(record, at)
        self.recorder.event("fault", step.name, "end", f"fault {step.name} reverted", at, planned, late)

    # ------------------------------------------------------------------ teardown and verdict

    def _teardown(self) -> None:
        if self.heals is not None:  # heal is watched until the run's end, not through the teardown's reverts
            self.heal_times = self.heals.stop()
        self.baggage.stop()
        if self.faults is not None:
            self.faults.teardown()
        finals = self.fleet.stop()
        if self.probes is not None:
            self.probes.poller.stop()
        if self.live is not None:
            with contextlib.suppress(HarnessError):
                self.poller.finish(finals)
            self.live.stages.finish_all()
        self.load_stopped_at = time.time()
        if self.ray is not None and self.ray.owned:
            stop_ray()

    def _judge(self, error: str, interrupted: bool) -> RunSummary:
        ended = time.time()
        live = self.live
        if self.probes is not None:
            self.probes.flush()  # the last polls, taken after the last second closed
        slos = live.book.results(self.heal_times) if live is not None else []
        invalid = self.never_steady or (live.delivery.reason() if live is not None else "")
        if not invalid and live is not None and not live.ledger.windows["run"].total().count:
            invalid = "no requests were completed: check the target and the locustfile"
        if live is not None:
            self.timings["max_step_late_ms"] = live.stages.log.max_late_ms(STEP_KINDS_TIMED)
            self.timings["max_step_exec_late_ms"] = round(
                max((r.exec_late_ms for r in live.stages.log.records), default=0.0), 1
            )
        baseline = self._compare_with_baseline() if not error else None
        trip = live.guard.trip if live is not None else None
        ladders = live.ladders.results() if live is not None else []
        verdict, reason = decide(
            slos,
            error=error,
            interrupted=interrupted,
            aborted=trip.message if trip else "",
            invalid=invalid,
            regression="" if baseline is None or baseline.passed else baseline.summary_line,
            ladders=ladders,
        )
        started = live.start_epoch if live is not None else self.options.invoked_at
        self.recorder.write(list(slo_points(self.run_id, slos, ended)))
        self.recorder.write(list(heal_points(self.run_id, map(HealEntry.of, self.heal_times.values()), ended)))
        if live is not None:  # the final figures of every window and endpoint, as summary.json has them
            self.recorder.write(figures_points(live.ledger, self.run_id, live.start_epoch))
        planned_end = started + self.plan.duration
        self.recorder.write(
            [run_point(self.run_id, self.scenario.name, verdict.value, started, ended, reason, planned_end)]
        )
        return dataclasses.replace(run_summary(self, verdict, reason, started, ended, slos, baseline), ladders=ladders)

    def _compare_with_baseline(self) -> BaselineOutcome | None:
        """This run against ``--baseline``, from the points it wrote (results.lp may lag)."""
        against = self.options.baseline
        if against is None:
            return None
        report = against.judge(self.run_id, self.scenario.name, self.recorder.kept)
        self.recorder.note(report.summary_line())
        return from_json(BaselineOutcome, {**against.describe(report), "summary_line": report.summary_line()})
