"""The Ray driver: runs a plan on one clock and always leaves the system as it found it.

``Orchestrator.run()`` starts (or joins) Ray, starts the load generators and the chaos
agent, walks the plan's steps at their offsets from one monotonic start, merges the
per-second windows as they arrive, writes them out, checks guards every second, and in a
``finally`` reverts every fault, stops the load, flushes results and judges the run.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import resource
import secrets
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray

from harness.chaos.agent import LEASE_TTL, RENEW_INTERVAL, ChaosAgent
from harness.errors import ConfigError, FaultError, HarnessError, LoadError
from harness.judge.slo import GuardTrip, GuardWatch, SloBook, SloResult
from harness.judge.verdict import RunLedger, Verdict, decide
from harness.load.generator import GeneratorSpec, LoadGenerator
from harness.load.protocol import Command, SetRate, SetUsers
from harness.measure.clocks import ClockOffset, measure
from harness.measure.delivery import SUSTAINED_SECONDS, DeliveryWatch
from harness.measure.steptiming import StepLog, StepRecord, parse_applied
from harness.measure.windows import Aggregator, ClosedSecond, Endpoint, LateWindow, parse_window
from harness.plan import Plan, Step, StepKind, split_evenly
from harness.results.lineproto import Point
from harness.results.points import event_point, load_point, request_points, run_point, slo_points
from harness.results.samples import BaselineRun
from harness.run.nodes import FaultPlacement, Node, generator_nodes, place_faults
from harness.run.placement import Placement, driver_node_id, live_nodes, place_generators
from harness.scenario import RateStage
from harness.scenario.expressions import format_duration

__all__ = ["LiveStatus", "Orchestrator", "RunOptions", "RunOutcome", "new_run_id"]

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.25  # how often the poll thread takes in windows (s)
CLOCK_CHECK = 0.1  # the clock thread looks at guards and poll failures at least this often (s)
SWITCH_INTERVAL = 0.001  # GIL hand-over during a run (s): bounds how long a step waits for the poll thread
STEP_MARGIN = 0.05  # the poll thread starts no work that may run into a step due within 2 x its cost + this (s)
STEP_GUARD_MAX = 1.0  # ... but never holds a piece of work back for longer than this (s)
CLOCK_NICE = -10  # the clock thread's niceness during a run, so that it wakes on time on a busy node
STEP_OVERDUE = 1.0  # ... unless that step is this overdue: the clock thread is busy with a slow step (s)
POLL_JOIN_TIMEOUT = 10.0  # how long the end of a run waits for a poll in progress (s)
LOST_AFTER = 3.0  # a generator whose drain is unanswered this long is lost (s)
#: A share moved to the surviving processes in the open model starts this long after the
#: loss was noticed, on one common instant for all of them (their slots stay interleaved).
REDISTRIBUTE_LEAD = 0.25
FINAL_DRAIN_TIMEOUT = 5.0  # at teardown, how long to wait for drains still in flight (s)
#: Open-model stages are sent this long before their planned offset (s): each process keeps
#: the new schedule until its start, so the change lands on time in intended time even when a
#: saturated process reads its commands a few hundred ms late.
RATE_STAGE_LEAD = 0.5
STEP_KINDS_TIMED = (StepKind.STAGE.value, StepKind.FAULT_START.value, StepKind.FAULT_END.value)


def new_run_id(scenario: str) -> str:
    return f"{scenario}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"


@dataclass(frozen=True)
class RunOptions:
    run_id: str
    run_dir: Path
    ray_address: str | None = None
    processes: int | None = None  # overrides the scenario's per-generator process count
    extra_env: dict[str, str] = field(default_factory=dict)
    invoked_at: float = field(default_factory=time.time)
    baseline: BaselineRun | None = None  # compare with this run before the verdict (--baseline)


@dataclass(frozen=True)
class LiveStatus:
    """What the progress display shows each second."""

    elapsed: float
    total: float
    phase: str
    users: int
    target_rate: float
    rps: float
    p99_ms: float
    error_rate: float
    active_faults: tuple[str, ...]
    saturated: bool
    short: bool = False  # open model: fewer iterations started than 90% of the target rate
    lost: tuple[str, ...] = ()  # generators lost so far


@dataclass(frozen=True)
class _PendingCommand:
    """A stage command sent to one generator whose answer has not been collected yet."""

    ref: ray.ObjectRef
    generator: int
    stage: str
    sent: float


@dataclass
class RunOutcome:
    run_id: str
    verdict: Verdict
    reason: str
    slos: list[SloResult]
    summary: dict[str, Any]


class Orchestrator:
    """Runs one plan. Not reusable: create one per run."""

    def __init__(
        self,
        plan: Plan,
        options: RunOptions,
        writer: Any,
        on_status: Callable[[LiveStatus], None] | None = None,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        self.plan = plan
        self.scenario = plan.scenario
        self.options = options
        self.writer = writer
        self.on_status = on_status
        self.on_event = on_event
        self.run_id = options.run_id
        self.generators: list[LoadGenerator] = []
        self.placement: Placement | None = None
        self.placement_report: list[dict[str, Any]] = []
        self.agents: dict[str, ChaosAgent] = {}  # node id -> the run's chaos agent there
        self.fault_nodes: FaultPlacement | None = None
        self.agents_report: list[dict[str, Any]] = []
        self.process_ids: list[str] = []
        self.aggregator: Aggregator | None = None
        self.endpoints: list[Endpoint] = []
        self._kept_points: list[Point] = []  # for --baseline: request and phase points as written
        self.active_faults: dict[str, float] = {}
        self.events: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}
        self.dead_processes: set[str] = set()
        self.trip: GuardTrip | None = None
        self.phase = ""
        self.started_ray = False
        self.start_epoch = 0.0
        self.start_mono = 0.0
        self.late_seconds = 0
        self.steps: StepLog | None = None
        self.delivery: DeliveryWatch | None = None
        self.lost: dict[str, str] = {}  # generator id -> why it was declared lost
        self.lost_report: list[dict[str, Any]] = []
        # One entry per loss (a process died, a generator was lost): when, and when and where
        # its share of the load was running again (the redistribution policy, see ``_redistribute``).
        self.load_gaps: list[dict[str, Any]] = []
        self._gap_records: dict[int, dict[str, Any]] = {}  # id(redistribution StepRecord) -> its gap
        self._current_stage: Step | None = None  # the stage whose shares the processes run now
        # generator index -> epoch time its last answered drain was sent: its windows are in up to then
        self._last_answer: dict[int, float] = {}
        self._drains: dict[int, tuple[ray.ObjectRef, float]] = {}  # generator index -> (ref, monotonic time sent)
        self._commands: list[_PendingCommand] = []
        self._stage_events: dict[int, tuple[StepRecord, dict[str, Any]]] = {}
        self.late_requests_unwritten = 0
        # The clock thread and the poll thread share the step log, pending commands, stage
        # events, the event list and the active faults; each holds this lock only briefly.
        self._lock = threading.RLock()
        self._poller: threading.Thread | None = None
        self._heartbeat: threading.Thread | None = None
        self._stop_heartbeat = threading.Event()
        self._stop_poll = threading.Event()
        self._run_started = threading.Event()
        self._poll_failure: BaseException | None = None
        self._clock = threading.Condition()  # the clock thread announces its next step here
        self._next_due = 0.0  # monotonic time of the next step
        self._work_cost = 0.05  # recent worst duration of one piece of poll work (s)
        self.book: SloBook | None = None
        self.ledger: RunLedger | None = None
        self.guards = GuardWatch(list(self.scenario.guards))

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> RunOutcome:
        error = ""
        interrupted = False
        try:
            self._start_ray()
            _terminate_as_interrupt()  # again: ray.init installs its own SIGTERM handler in the driver
            self._place()
            self._start_generators()
            self._start_agents()
            self._loop()
        except ConfigError:  # a node selector this cluster cannot meet: nothing started, exit 2
            raise
        except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (the CLI raises the same for it)
            interrupted = True
            self._note("interrupted: reverting faults and stopping load (interrupt again to exit at once)")
        except HarnessError as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._note(f"error: {exc}")
        finally:
            with _deferred_interrupts(interrupted, self._exit_at_once, self._note):
                self._teardown()
        return self._judge(error=error, interrupted=interrupted)

    def _exit_at_once(self) -> None:
        """A second interrupt: leave now, without reverting or stopping anything.

        What the driver leaves is covered the same way as when it is killed: every fault is
        a lease that lapses within ``LEASE_TTL`` and the node's watchdog reverts it; the
        generators stop their load when the driver is gone (Ray ends with a driver that
        started it; an actor cut off from its driver stops its processes); the run is
        listed as aborted by ``harness runs``.
        """
        from harness.review.runs import note_driver_exit

        faults = ", ".join(self.active_faults) or "none"
        note_driver_exit(self.options.run_dir, "interrupted twice: the driver exited at once")
        with contextlib.suppress(Exception):
            sys.stderr.write(
                f"\ninterrupted twice: exiting now; active faults ({faults}) are reverted by the fault "
                f"watchdog when their lease lapses (within {LEASE_TTL:g} s); `harness recover` says whether "
                "anything is left\n"
            )
            sys.stderr.flush()
        os._exit(130)

    def _start_ray(self) -> None:
        began = time.monotonic()
        if ray.is_initialized():
            return
        kwargs: dict[str, Any] = {
            "log_to_driver": False,
            "logging_level": logging.WARNING,
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "configure_logging": False,
        }
        if self.options.ray_address:
            from harness.chaos.preflight import check_ray_address

            check_ray_address(self.options.ray_address)  # never connect without a token (docs/security.md)
            ray.init(address=self.options.ray_address, **kwargs)
        else:
            # "local": never join a cluster that `ray start` left recorded in /tmp/ray. Token
            # authentication stays on (Ray's default for a new local cluster unless RAY_AUTH_MODE
            # says otherwise), and every port binds to 127.0.0.1: Ray binds its servers to the node
            # IP, and turns 127.0.0.1 into this host's LAN address unless clusters are disabled,
            # which is what RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 does (read at import, hence both).
            from ray._private import ray_constants

            if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
                os.environ.pop("RAY_AUTH_MODE")
            saved = (ray_constants.ENABLE_RAY_CLUSTER, os.environ.get(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR))
            ray_constants.ENABLE_RAY_CLUSTER = False
            os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = "0"  # for the processes ray.init starts
            try:
                ray.init(address="local", num_cpus=os.cpu_count() or 1, _node_ip_address="127.0.0.1", **kwargs)
            finally:
                ray_constants.ENABLE_RAY_CLUSTER = saved[0]
                if saved[1] is None:
                    os.environ.pop(ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR, None)
                else:
                    os.environ[ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR] = saved[1]
            self.started_ray = True
        self.timings["ray_init_s"] = round(time.monotonic() - began, 3)

    def _place(self) -> None:
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
        self.fault_nodes = place_faults(self.scenario, nodes, driver)

    def _start_generators(self) -> None:
        """Place one generator per placement-group bundle (spread across nodes) and start them.

        Where each generator landed is kept in ``self.placement_report`` for the summary.
        """
        load = self.scenario.load
        processes = self.options.processes or (None if load.processes == "auto" else load.processes)
        env = {"HARNESS_RUN_ID": self.run_id, **self.options.extra_env}
        began = time.monotonic()
        self.placement = place_generators(load.generators, name=f"harness-{self.run_id}", node=load.node)
        self.timings["placement_s"] = round(time.monotonic() - began, 3)
        for index in range(load.generators):
            spec = GeneratorSpec(
                generator_id=f"g{index}",
                locustfile=str(self.scenario.locustfile_path),
                classes={u.class_name: u.weight for u in load.user_classes},
                host=self.scenario.target.base_url,
                processes=processes,
                open_model=self.scenario.open_model,
                log_dir=str(self.options.run_dir / "logs"),
                env=env,
            )
            options = {"name": f"harness-{self.run_id}-{spec.generator_id}", **self.placement.actor_options(index)}
            self.generators.append(LoadGenerator(spec, options))
        began = time.monotonic()
        # Each start waits for its Locust processes to import the locustfile (seconds); on
        # many nodes they do that in parallel, so start-up does not grow with the node count.
        with ThreadPoolExecutor(max_workers=len(self.generators), thread_name_prefix="harness-start") as pool:
            infos = list(pool.map(lambda generator: generator.start(), self.generators))
        for generator, info in zip(self.generators, infos, strict=True):
            self.process_ids += generator.process_ids
            self.placement_report.append(_placement_entry(generator.spec.generator_id, info, generator.clock))
        self.timings["generators_start_s"] = round(time.monotonic() - began, 3)
        self.aggregator = Aggregator(self.process_ids)

    def _release_placement(self) -> None:
        """Give the generators' placement group back to the cluster (after they are stopped)."""
        if self.placement is not None:
            self.placement.remove()

    def _start_agents(self) -> None:
        """One chaos agent on each node a fault acts on, pinned there, its clock measured.

        Agents start in parallel (each waits for its node's fault families to load and its
        watchdog to come up); any that fails stops the run before the load starts.
        """
        if not self.scenario.faults or self.fault_nodes is None:
            return
        placement = self.fault_nodes
        kinds: dict[str, set[str]] = {}
        for fault in self.scenario.faults:
            kinds.setdefault(placement.node_of(fault.name).node_id, set()).add(fault.kind)
        contexts = tuple(self.scenario.safety.allowed_contexts)

        def start(node: Node) -> ChaosAgent:
            agent = ChaosAgent.start(self.run_id, node_id=node.node_id, allowed_contexts=contexts)
            agent.warm_up(sorted(kinds[node.node_id]))
            agent.clock = measure(agent.ping)
            return agent

        nodes = placement.nodes()
        with ThreadPoolExecutor(max_workers=len(nodes), thread_name_prefix="harness-agent") as pool:
            futures = [pool.submit(start, node) for node in nodes]
            errors = []
            for node, future in zip(nodes, futures, strict=True):
                try:
                    self.agents[node.node_id] = future.result()
                except HarnessError as exc:
                    errors.append(exc)
        for node in nodes:
            agent = self.agents.get(node.node_id)
            if agent is not None:
                faults = sorted(f.name for f in self.scenario.faults if placement.node_of(f.name) is node)
                self.agents_report.append(
                    {"node": node.node_id, "node_ip": node.ip, "hostname": node.hostname, "faults": faults}
                    | agent.clock.to_json()
                )
        if errors:
            raise errors[0]
        self._heartbeat = threading.Thread(target=self._renew_leases, name="harness-lease", daemon=True)
        self._heartbeat.start()

    def _agent_of(self, fault_name: str) -> ChaosAgent | None:
        if self.fault_nodes is None:
            return None
        return self.agents.get(self.fault_nodes.node_of(fault_name).node_id)

    def _renew_leases(self) -> None:
        """The heartbeat thread: renew the run's fault leases every ``RENEW_INTERVAL`` seconds.

        Its own thread, so neither the clock thread nor the poll thread ever waits on the
        agent for it. A failed renewal is logged and the run goes on: if renewals keep
        failing, the node's watchdog reverts the faults when their lease lapses, which is
        the point of a lease.
        """
        agents = list(self.agents.values())

        def renew(agent: ChaosAgent) -> None:
            try:
                agent.renew(timeout=RENEW_INTERVAL)
            except FaultError as exc:
                if not self._stop_heartbeat.is_set():  # not the agent being stopped at teardown
                    log.warning("lease renewal failed on %s: %s", agent.node_id[:8], exc)

        # One node's agent slow to answer must not hold up the renewals of the others.
        with ThreadPoolExecutor(max_workers=len(agents), thread_name_prefix="harness-renew") as pool:
            while not self._stop_heartbeat.wait(RENEW_INTERVAL):
                list(pool.map(renew, agents))

    def _stop_renewing(self) -> None:
        self._stop_heartbeat.set()
        if self._heartbeat is not None:
            self._heartbeat.join(RENEW_INTERVAL * 3)
            self._heartbeat = None

    # ------------------------------------------------------------------ the clock

    def _loop(self) -> None:
        """Walk the plan on one clock; steps start on time whatever the actors are doing.

        Two threads. This one (the main thread, where Ctrl-C lands) only executes steps: it
        sleeps until the next offset, acts, and never waits on a load generator (stage
        commands are fire-and-forget). The poll thread (``_poll_forever``) takes in windows
        and acknowledgements and does the per-second work (merging histograms, percentiles,
        SLOs, guards, results), which can cost tens to hundreds of milliseconds a second;
        done here it would make steps late. The poll thread starts no piece of work that
        could run into the next step (``_before_work``), and the GIL is handed over every
        ``SWITCH_INTERVAL`` should a piece overrun, so a step waits for nothing but the CPU.
        """
        # Starting a thread takes tens of milliseconds here: start it before the clock does.
        self._poller = threading.Thread(target=self._poll_forever, name="harness-poll", daemon=True)
        self._poller.start()
        switch = sys.getswitchinterval()
        sys.setswitchinterval(SWITCH_INTERVAL)
        niceness = _set_thread_niceness(CLOCK_NICE)
        clock_cpu, process_cpu = time.thread_time(), time.process_time()
        try:
            self.start_mono = time.monotonic()
            self.start_epoch = time.time()
            self.book = SloBook(self.plan, self.start_epoch)
            self.ledger = RunLedger(self.plan, self.start_epoch)
            self.steps = StepLog(self.start_epoch)
            self.delivery = DeliveryWatch(self.plan, self.start_epoch)
            self.timings["load_start_s"] = round(self.start_epoch - self.options.invoked_at, 3)
            pending = list(self.plan.steps)
            self._announce(pending)
            self._run_started.set()
            while pending:
                self._raise_poll_failure()
                elapsed = time.monotonic() - self.start_mono
                while pending and _send_at(pending[0]) <= elapsed:
                    self._execute(pending.pop(0))
                # An open-model stage is sent ahead, possibly before steps planned earlier
                # than itself; their order within the plan is unchanged otherwise.
                for step in [s for s in pending if _send_at(s) <= elapsed]:
                    pending.remove(step)
                    self._execute(step)
                self._announce(pending)
                if not pending or self.trip is not None:
                    break
                wait = self.start_mono + min(_send_at(s) for s in pending) - time.monotonic()
                time.sleep(max(0.0, min(wait, CLOCK_CHECK)))
        finally:
            _set_thread_niceness(niceness)
            self._stop_polling()
            sys.setswitchinterval(switch)
            # What the harness cost while the load ran (the writer's own share is in "results").
            self.timings["clock_thread_cpu_s"] = round(time.thread_time() - clock_cpu, 3)
            self.timings["driver_cpu_s"] = round(time.process_time() - process_cpu, 3)
            self.timings["load_window_s"] = round(time.monotonic() - self.start_mono, 3)
        self._raise_poll_failure()

    def _announce(self, pending: list[Step]) -> None:
        """Tell the poll thread when the next step is due (it holds back work that would overlap)."""
        with self._clock:
            self._next_due = self.start_mono + min(_send_at(s) for s in pending) if pending else math.inf
            self._clock.notify_all()

    def _before_work(self) -> None:
        """Poll thread, before one piece of work: let a step that falls due meanwhile go first.

        The GIL alone would hand over within ``SWITCH_INTERVAL``, but on a saturated machine
        the poll thread can be descheduled while it holds the GIL, and the step would wait
        for the CPU scheduler; so work that may overlap a step waits until the step is done.
        """
        guard = min(2 * self._work_cost + STEP_MARGIN, STEP_GUARD_MAX)
        give_up = time.monotonic() + STEP_GUARD_MAX  # however dense the steps, the work gets done
        with self._clock:
            while not self._stop_poll.is_set():
                now = time.monotonic()
                ahead = self._next_due - now
                if ahead > guard or ahead < -STEP_OVERDUE or now >= give_up:
                    return
                self._clock.wait(max(0.001, min(ahead + STEP_OVERDUE, give_up - now)))

    def _work(self, began: float) -> None:
        """Poll thread, after one piece of work: keep the estimate of what one costs (decaying max)."""
        spent = time.monotonic() - began
        self._work_cost = max(spent, self._work_cost * 0.95, 0.005)
        self.timings["max_poll_work_ms"] = round(max(self.timings.get("max_poll_work_ms", 0.0), spent * 1000), 1)

    def _poll_forever(self) -> None:
        """The poll thread: ``_poll`` every ``POLL_INTERVAL`` until told to stop.

        A failure (a stage command the actor rejected, or a bug) is handed to the clock
        thread, which raises it there; the run then ends the way it would have on the
        main thread.
        """
        self._run_started.wait()
        cpu = time.thread_time()
        try:
            self._poll_until_stopped()
        finally:
            self.timings["poll_thread_cpu_s"] = round(time.thread_time() - cpu, 3)

    def _poll_until_stopped(self) -> None:
        while not self._stop_poll.is_set():
            began = time.monotonic()
            try:
                self._poll()
            except BaseException as exc:  # re-raised by the clock thread
                self._poll_failure = exc
                return
            self._stop_poll.wait(max(0.0, POLL_INTERVAL - (time.monotonic() - began)))

    def _stop_polling(self) -> None:
        self._stop_poll.set()
        self._run_started.set()
        with self._clock:
            self._clock.notify_all()
        if self._poller is not None:
            self._poller.join(POLL_JOIN_TIMEOUT)
            if self._poller.is_alive():
                log.warning("poll thread still busy after %.0f s", POLL_JOIN_TIMEOUT)
            self._poller = None

    def _raise_poll_failure(self) -> None:
        failure, self._poll_failure = self._poll_failure, None
        if failure is not None:
            raise failure

    def _execute(self, step: Step) -> None:
        assert self.steps is not None
        now = time.time()
        with self._lock:
            record = self.steps.executed(step.kind.value, step.name, step.offset, now)
            record.lead_s = step.offset - _send_at(step)
        if step.kind is StepKind.RUN_START:
            self._event("run", self.scenario.name, "start", f"run {self.run_id} started", now)
        elif step.kind is StepKind.RUN_END:
            self._event("run", self.scenario.name, "end", f"run {self.run_id} ended", now)
        elif step.kind is StepKind.PHASE_START:
            self.phase = step.name
            self._event("phase", step.name, "start", f"phase {step.name} started", now)
        elif step.kind is StepKind.PHASE_END:
            self._event("phase", step.name, "end", f"phase {step.name} ended", now)
        elif step.kind is StepKind.STAGE and step.stage is not None:
            self._apply_stage(step, record)
        elif step.kind is StepKind.FAULT_START and step.fault_index is not None:
            self._inject(step.fault_index, record)
        elif step.kind is StepKind.FAULT_END:
            self._revert(step.name, record)

    def _apply_stage(self, step: Step, record: StepRecord) -> None:
        """Send every live process its share of the stage; do not wait for the answers.

        Shares are computed over the processes still alive (a dead process's or a lost
        generator's share is carried by the others, see ``_redistribute``). The actors'
        answers are collected by ``_poll`` (an error there ends the run); the processes'
        ``applied`` reports complete the step's timing and its ``stage`` event.
        """
        assert self.steps is not None
        executed = self.start_epoch + record.executed_s
        # A stage sent ahead starts at its planned instant: that is where its annotation goes.
        when = max(executed, self.start_epoch + step.offset)
        event = self._event("stage", step.name, "start", f"stage {step.name}: {step.detail}", when, step.offset)
        # Computed and sent under the lock, so that a redistribution by the poll thread can
        # never reach a process after (and so undo) the next stage's command.
        with self._lock:
            self._current_stage = step
            live = self._live_processes()
            # Every acknowledgement is expected before the first command goes out: the poll
            # thread may file one as soon as a command is sent.
            self.steps.expect(record, live)
            self._stage_events[id(record)] = (record, event)
            self._send_shares(step, live, self.start_epoch + step.offset, step.name)
            if record.complete:  # no process to wait for
                self._finish_stage_event(record)

    def _live_processes(self) -> list[str]:
        """Processes that carry load now: not dead, and not of a lost generator (in run order)."""
        return [
            p
            for g in self.generators
            if g.spec.generator_id not in self.lost
            for p in g.process_ids
            if p not in self.dead_processes
        ]

    def _send_shares(self, step: Step, live: list[str], start: float, label: str) -> None:
        """Split ``step``'s stage evenly over ``live`` and send each generator its processes' shares.

        Open model: one schedule of the stage's arrival rate starting at epoch ``start``,
        interleaved across the processes. Closed model: users (and spawn rate) split evenly.
        Called with ``self._lock`` held; never waits for an answer.
        """
        stage = step.stage
        assert stage is not None
        count = len(live)
        if not count:
            return
        commands: dict[str, Command] = {}
        if isinstance(stage, RateStage):
            users = split_evenly(stage.max_users, count)
            for index, (pid, share) in enumerate(zip(live, users, strict=True)):
                commands[pid] = SetRate(
                    rate=stage.arrival_rate / count,
                    users=max(1, share),
                    start=start,
                    phase=index / count,
                )
        else:
            users = split_evenly(stage.users, count)
            for pid, share in zip(live, users, strict=True):
                rate = stage.spawn_rate * share / stage.users if stage.users else stage.spawn_rate
                commands[pid] = SetUsers(users=share, spawn_rate=max(rate, 0.01))
        for index, generator in enumerate(self.generators):
            mine = {p: commands[p] for p in generator.process_ids if p in commands}
            if mine:
                ref = generator.command_async(mine)
                self._commands.append(_PendingCommand(ref, index, label, time.monotonic()))

    def _inject(self, index: int, record: StepRecord | None = None) -> None:
        fault = self.scenario.faults[index]
        agent = self._agent_of(fault.name)
        assert agent is not None
        with self._lock:
            self.active_faults[fault.name] = time.time()
        try:
            info = agent.inject(fault)
        except FaultError:
            with self._lock:
                self.active_faults.pop(fault.name, None)
            raise
        what = str(info.get("what") or "applied")  # as the fault's family says it
        text = f"{fault.kind} {what}" + (f": {fault.description}" if fault.description else "")
        if self.fault_nodes is not None and agent.node_id != self.fault_nodes.default.node_id:
            text += f" (on {self.fault_nodes.node_of(fault.name).name})"
        done = float(info["time"]) - agent.clock.offset_s if info.get("time") else time.time()
        planned = late = None
        if record is not None and self.steps is not None:
            with self._lock:
                self.steps.done(record, done)
            planned, late = record.planned_s, record.late_ms
        self._event("fault", fault.name, "start", text, done, planned, late)

    def _revert(self, name: str, record: StepRecord | None = None) -> None:
        agent = self._agent_of(name)
        if name not in self.active_faults or agent is None:
            return
        info = agent.revert(name)
        with self._lock:
            self.active_faults.pop(name, None)
        done = float(info["time"]) - agent.clock.offset_s if info.get("time") else time.time()
        planned = late = None
        if record is not None and self.steps is not None:
            with self._lock:
                self.steps.done(record, done)
            planned, late = record.planned_s, record.late_ms
        self._event("fault", name, "end", f"fault {name} reverted", done, planned, late)

    def _finish_stage_event(self, record: StepRecord) -> None:
        """Write a stage's event once every process acknowledged it (or at teardown).

        Called with ``self._lock`` held.
        """
        gap = self._gap_records.pop(id(record), None)
        if gap is not None:
            self._restored(record, gap)
            return
        entry = self._stage_events.pop(id(record), None)
        if entry is None:
            return
        _, event = entry
        expected = record.acknowledged + len(record.awaiting)
        if record.done_s is None:
            how = "no process acknowledged it"
        elif record.awaiting:
            how = f"applied by {record.acknowledged} of {expected} processes by +{record.done_s:.3f} s"
        else:
            how = f"applied by all {expected} processes by +{record.done_s:.3f} s"
        event["text"] = (
            f"{event['text']}; planned at +{record.planned_s:.3f} s, sent at +{record.executed_s:.3f} s, "
            f"{how} ({record.late_ms:.0f} ms late)"
        )
        event["late_ms"] = round(record.late_ms, 1)
        event["done_offset"] = None if record.done_s is None else round(record.done_s, 4)
        self._write(
            [
                event_point(
                    self.run_id,
                    "stage",
                    record.name,
                    "start",
                    event["text"],
                    event["time"],
                    planned_offset=record.planned_s,
                    late_ms=record.late_ms,
                )
            ]
        )

    # ------------------------------------------------------------------ windows

    def _poll(self) -> None:
        """Take in whatever the actors have answered by now; never waits for one."""
        self._collect_commands()
        for batch in self._collect_drains():
            self._before_work()
            began_batch = time.monotonic()
            self._take(batch)
            self._work(began_batch)
        self._settle()

    def _collect_commands(self) -> None:
        """Answers of stage commands: an actor error ends the run, a dead actor is a lost generator."""
        with self._lock:
            commands = list(self._commands)
        if not commands:
            return
        refs = [c.ref for c in commands]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        done = set(ready)
        for command in commands:
            if command.ref not in done:
                continue
            generator = self.generators[command.generator]
            try:
                ray.get(command.ref, timeout=0)
            except ray.exceptions.RayActorError as exc:
                self._lose(command.generator, f"its actor died ({type(exc).__name__})")
            except ray.exceptions.RayTaskError as exc:
                raise LoadError(
                    f"could not change load to stage {command.stage} on generator "
                    f"{generator.spec.generator_id}: {exc.as_instanceof_cause()}"
                ) from None
        lost = self._lost_indexes()
        with self._lock:
            self._commands = [c for c in self._commands if c.ref not in done and c.generator not in lost]

    def _collect_drains(self) -> list[dict[str, Any]]:
        """Batches from drains that came back; one drain in flight per generator at most.

        A generator whose actor died, or whose drain has gone unanswered for
        ``LOST_AFTER`` seconds, is declared lost (see ``_lose``).
        """
        now = time.monotonic()
        for index, generator in enumerate(self.generators):
            if index not in self._drains and generator.spec.generator_id not in self.lost:
                self._drains[index] = (generator.drain_async(), now)
        if not self._drains:
            return []
        refs = [ref for ref, _ in self._drains.values()]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        done = set(ready)
        batches = []
        for index, (ref, issued) in list(self._drains.items()):
            if ref in done:
                del self._drains[index]
                try:
                    batch = ray.get(ref, timeout=0)
                except ray.exceptions.RayActorError as exc:
                    self._lose(index, f"its actor died ({type(exc).__name__})")
                    continue
                except ray.exceptions.RayError as exc:
                    raise LoadError(f"generator {self.generators[index].spec.generator_id}: {exc}") from None
                self._last_answer[index] = time.time() - (time.monotonic() - issued)
                batches.append(batch)
                cut_off = batch.get("cut_off")
                if cut_off:  # it stopped its own load: the driver was silent too long (or it failed)
                    why = cut_off.get("error") or f"no drain from the driver for {cut_off.get('silent_s', 0):.1f} s"
                    self._lose(index, f"it stopped its load itself ({why})")
            elif now - issued > LOST_AFTER:
                self._lose(index, f"no answer from its actor for {LOST_AFTER:g} s")
        return batches

    def _lost_indexes(self) -> set[int]:
        return {i for i, g in enumerate(self.generators) if g.spec.generator_id in self.lost}

    def _lose(self, index: int, why: str) -> None:
        """Declare a generator lost: record it, stop waiting for it, move its load to the others.

        Its actor is killed first, so that a merely unresponsive generator cannot keep
        sending load nobody counts (its Locust processes die with the actor, and stop by
        themselves once they hear nothing from it). Its processes leave the aggregator
        (later seconds close without them), its stage acknowledgements are no longer
        awaited, and its share goes to the live processes of the other generators
        (``_redistribute``). The run goes on to its end and is judged invalid: the windows
        it had not yet handed over are missing from the results.
        """
        assert self.aggregator is not None and self.delivery is not None and self.steps is not None
        generator = self.generators[index]
        gid = generator.spec.generator_id
        if gid in self.lost:
            return
        at = time.time()
        generator.kill()
        processes = generator.process_ids
        with self._lock:
            self.lost[gid] = why
            for record in self.steps.forget(processes):
                self._finish_stage_event(record)
        self._drains.pop(index, None)
        self.aggregator.processes.difference_update(processes)
        finding = self.delivery.lost(gid, at, why)
        self.lost_report.append(
            {
                "id": gid,
                "offset": round(finding.offset, 3),
                "time": at,
                "why": why,
                "actor_pid": generator.info.get("actor_pid"),
                "processes": processes,
            }
        )
        text = f"generator {gid} lost: {why}; its processes ({', '.join(processes)}) are no longer waited for"
        self._event("run", gid, "end", text, at)
        # Its windows were taken in up to its last answered drain (sent then): the gap starts there.
        last = self._last_answer.get(index, at)
        live = [p for p in processes if p not in self.dead_processes]
        moved = self._redistribute(gid, live, min(last, at), at, f"generator {gid} lost ({why})")
        self.lost_report[-1]["load"] = moved
        gtext = f"generator {gid} lost ({why}), last heard from {max(0.0, at - last):.2f} s before; {moved}"
        self._event("generator", gid, "end", gtext, at)
        self._note(f"[{format_duration(round(finding.offset, 1))}] {gtext}")

    def _take(self, batch: dict[str, Any]) -> None:
        """File one drain's windows, acknowledgements, error reports and process deaths."""
        assert self.aggregator is not None and self.steps is not None and self.delivery is not None
        for line in batch.get("windows", []):
            window = parse_window(line)
            if window is not None:
                self.aggregator.add(window)
        for line in batch.get("applied", []):
            ack = parse_applied(line)
            if ack is not None:
                with self._lock:
                    record = self.steps.applied(ack)
                    if record is not None:
                        self._finish_stage_event(record)
        for text in batch.get("events", []):
            self._note(f"load process reported: {text}")
        died = batch.get("died") or {}
        for process in batch.get("dead", []):
            if process not in self.dead_processes:
                self._process_died(process, died.get(process) or {})

    def _process_died(self, process: str, info: dict[str, Any]) -> None:
        """A Locust process exited without being asked to: record it and move its share.

        ``info`` is what its actor saw: ``at`` (epoch time of the exit) and ``code`` (exit
        code; negative: killed by that signal).
        """
        assert self.aggregator is not None and self.delivery is not None and self.steps is not None
        detected = time.time()
        exited = float(info.get("at") or detected)
        how = _exit_text(info.get("code"))
        with self._lock:
            self.dead_processes.add(process)
            for record in self.steps.forget([process]):
                self._finish_stage_event(record)
        self.aggregator.processes.discard(process)
        self.delivery.died(process, exited, how)
        moved = self._redistribute(process, [process], exited, detected, f"load process {process} died ({how})")
        text = f"load process {process} died ({how}), noticed {max(0.0, detected - exited):.2f} s later; {moved}"
        self._event("generator", process, "end", text, detected)
        self._note(f"[{format_duration(round(detected - self.start_epoch, 1))}] {text}")

    def _redistribute(self, subject: str, gone: list[str], lost_at: float, detected: float, cause: str) -> str:
        """The loss policy: move the share of ``gone`` processes to every live process of the run.

        Not restarted: a new process would need seconds to import the locustfile (the gap
        would last that long), and what killed it may kill it again. The current stage is
        split again, evenly, over the processes still alive on every generator (the most
        even spread, so the fewest extra users or arrivals per process); later stages are
        split over them too. In the open model the new schedule starts on one instant
        ``REDISTRIBUTE_LEAD`` after the loss was noticed. The gap (from ``lost_at`` until
        the last live process applied its new share) is kept in ``load_gaps`` and closed by
        a ``generator`` event (state ``start``) when the last acknowledgement arrives.
        Returns what was done, in words, for the loss event.
        """
        assert self.steps is not None and self.delivery is not None
        gap: dict[str, Any] = {
            "subject": subject,
            "processes": list(gone),
            "cause": cause,
            "lost_at": lost_at,
            "lost_offset": round(lost_at - self.start_epoch, 3),
            "detected_at": detected,
            "detected_after_s": round(max(0.0, detected - lost_at), 3),
            "moved_to": [],
            "restored_at": None,
            "gap_s": None,
        }
        with self._lock:
            self.load_gaps.append(gap)
            step = self._current_stage
            live = self._live_processes()
            if self._stop_poll.is_set():
                gap["note"] = "lost after the load ended: nothing to move"
                return "the load had already ended"
            if not live:
                gap["note"] = "no load process left to take its share"
                self.delivery.not_moved(subject)
                return "no load process is left to take its share"
            gap["moved_to"] = live
            if step is None or step.stage is None:
                gap["note"] = "lost before the first stage: every stage is split over the live processes"
                return f"every stage is split over the live {_processes(len(live))}"
            now = time.time()
            record = self.steps.executed("redistribute", step.name, now - self.start_epoch, now)
            self.steps.expect(record, live)
            self._gap_records[id(record)] = gap
            start = max(now + REDISTRIBUTE_LEAD, self.start_epoch + step.offset + 0.001)
            self._send_shares(step, live, start, f"{step.name} (redistributed)")
        return f"its share of stage {step.name} moves to {_processes(len(live))} ({', '.join(live)})"

    def _restored(self, record: StepRecord, gap: dict[str, Any]) -> None:
        """Every live process applied its new share (or teardown came first): close the gap.

        Called with ``self._lock`` held.
        """
        assert self.delivery is not None
        subject = gap["subject"]
        if record.done_s is None or record.awaiting:
            gap["note"] = f"the new shares were not all acknowledged ({len(record.awaiting)} missing)"
            return
        restored = self.start_epoch + record.done_s
        gap["restored_at"] = restored
        gap["gap_s"] = round(max(0.0, restored - gap["lost_at"]), 3)
        self.delivery.moved(subject, gap["gap_s"], len(gap["moved_to"]))
        text = (
            f"load of {subject} running again on {_processes(len(gap['moved_to']))} "
            f"({', '.join(gap['moved_to'])}): applied by all by +{record.done_s:.3f} s, "
            f"{gap['gap_s']:.2f} s after it was lost"
        )
        self._event("generator", subject, "start", text, restored)
        self._note(f"[{format_duration(round(record.done_s, 1))}] {text}")

    def _settle(self, final: bool = False) -> None:
        """Close the seconds that are complete (all of them when ``final``) and act on each."""
        assert self.aggregator is not None and self.delivery is not None
        closed = self.aggregator.close_all() if final else self.aggregator.close_ready(time.time())
        for second in closed:
            self._before_work()
            began = time.monotonic()
            self._on_second(second)
            self._work(began)
        for late in self.aggregator.take_late():
            self._on_late(late)

    def _on_late(self, late: LateWindow) -> None:
        """A window that came after its second closed: nothing of it is lost.

        Its requests join the run's totals and SLO windows (without counting the second
        twice) and its health the delivery rules. When the aggregator still keeps that
        second, the second's rows are written again, merged, over the earlier ones (same
        series and time: InfluxDB keeps the last), so InfluxDB and summary.json agree;
        otherwise its requests are counted in ``late_requests_unwritten``.
        """
        assert self.book is not None and self.ledger is not None and self.delivery is not None
        delta = late.delta
        for health in delta.health:
            self.delivery.observe_health(delta.second, health)
        self.book.observe(delta)
        self.ledger.observe(delta)
        if late.revised is not None:
            self._write(list(request_points(self.run_id, self.scenario.name, late.revised, self.endpoints)))
        else:
            self.late_requests_unwritten += delta.total().count

    def _on_second(self, closed: ClosedSecond) -> None:
        assert self.book is not None and self.ledger is not None and self.delivery is not None
        for key in closed.endpoints:
            if key not in self.endpoints:
                self.endpoints.append(key)
        if closed.late:
            self.late_seconds += 1
        saturated = self.delivery.observe(closed)
        short = self.delivery.is_short(closed.second)
        self.book.observe(closed)
        self.ledger.observe(closed)
        total = closed.total()
        if total.count and "first_request_by_s" not in self.timings:
            # Upper bound: the first request completed before the end of its window.
            self.timings["first_request_by_s"] = round(closed.second + 1 - self.options.invoked_at, 3)
        points = list(request_points(self.run_id, self.scenario.name, closed, self.endpoints))
        live = len(self.generators) - len(self.lost)  # generators carrying load in this second
        points.append(load_point(self.run_id, self.scenario.name, closed, live, saturated))
        self._write(points)
        if self.trip is None and self.guards.guards:
            trip = self.guards.observe(closed)
            if trip is not None:
                self.trip = trip
                self._note(trip.message)
                self._event("abort", trip.guard, "start", trip.message, time.time())
        if self.on_status is not None:
            with self._lock:
                faults = tuple(self.active_faults)
            latency = total.latency_ms()
            status = LiveStatus(
                elapsed=time.monotonic() - self.start_mono,
                total=self.plan.duration,
                phase=self.phase,
                users=closed.users,
                target_rate=closed.target_rate,
                rps=float(total.count),
                p99_ms=latency["p99"],
                error_rate=total.error_rate,
                active_faults=faults,
                saturated=saturated,
                short=short,
                lost=tuple(self.lost),
            )
            try:
                self.on_status(status)
            except Exception:  # a display problem must never break a run
                log.exception("progress display failed")

    # ------------------------------------------------------------------ teardown

    def _teardown(self) -> None:
        if self.agents:
            try:
                for name in list(self.active_faults):
                    try:
                        self._revert(name)
                    except HarnessError as exc:  # the others are still reverted one by one
                        self._note(f"revert of {name} failed, its agent reverts everything it holds: {exc}")
            finally:
                try:
                    self._stop_agents()
                finally:
                    self._stop_renewing()
                for name in list(self.active_faults):
                    self.active_faults.pop(name)
                    self._event("fault", name, "end", f"fault {name} reverted at teardown", time.time())
        finals = self._stop_generators()
        self._release_placement()
        if self.aggregator is not None and self.book is not None and self.steps is not None:
            with contextlib.suppress(HarnessError):
                for batch in finals:
                    self._take(batch)
                self._settle(final=True)
            with self._lock:
                for record, _ in list(self._stage_events.values()):
                    self._finish_stage_event(record)
                for record in [r for r in self.steps.records if id(r) in self._gap_records]:
                    self._finish_stage_event(record)
        self.timings["load_stopped_at"] = time.time()
        if self.started_ray:
            ray.shutdown()

    def _stop_agents(self) -> None:
        """Stop every agent (each reverts what it still holds), all of them even if one fails."""
        failures: list[HarnessError] = []
        with ThreadPoolExecutor(max_workers=len(self.agents), thread_name_prefix="harness-agent-stop") as pool:
            for future in [pool.submit(agent.stop) for agent in self.agents.values()]:
                try:
                    future.result()
                except HarnessError as exc:
                    failures.append(exc)
        if failures:
            raise failures[0]

    def _stop_generators(self) -> list[dict[str, Any]]:
        """Stop every generator and return what they still held, drains in flight included.

        A drain in flight has already taken its windows out of the actor, so it is awaited
        (up to ``FINAL_DRAIN_TIMEOUT``) before the actors are stopped; lost generators are
        only killed.
        """
        batches: list[dict[str, Any]] = []
        if self._drains:
            refs = [ref for ref, _ in self._drains.values()]
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=FINAL_DRAIN_TIMEOUT)
            for ref in ready:
                with contextlib.suppress(ray.exceptions.RayError):
                    batches.append(ray.get(ref, timeout=0))
            self._drains.clear()
        for generator in self.generators:
            if generator.spec.generator_id in self.lost:
                generator.kill()
            else:
                batches.append(generator.stop())
        return batches

    def _judge(self, error: str, interrupted: bool) -> RunOutcome:
        ended = time.time()
        slos = self.book.results() if self.book is not None else []
        invalid = self.delivery.reason() if self.delivery is not None else ""
        if not invalid and self.ledger is not None and not self.ledger.windows["run"].total().count:
            invalid = "no requests were completed: check the target and the locustfile"
        if self.steps is not None:
            self.timings["max_step_late_ms"] = self.steps.max_late_ms(STEP_KINDS_TIMED)
            self.timings["max_step_exec_late_ms"] = round(
                max((r.exec_late_ms for r in self.steps.records), default=0.0), 1
            )
        baseline = self._compare_with_baseline() if not error else None
        verdict, reason = decide(
            slos,
            error=error,
            interrupted=interrupted,
            aborted=self.trip.message if self.trip else "",
            invalid=invalid,
            regression="" if baseline is None or baseline["passed"] else baseline["summary_line"],
        )
        started = self.start_epoch or self.options.invoked_at
        self._write(list(slo_points(self.run_id, slos, ended)))
        self._write([run_point(self.run_id, self.scenario.name, verdict.value, started, ended, reason)])
        summary = {
            "run_id": self.run_id,
            "scenario": self.scenario.name,
            "scenario_file": self.scenario.source,
            "verdict": verdict.value,
            "exit_code": verdict.exit_code,
            "reason": reason,
            "started": started,
            "ended": ended,
            "planned_duration_s": self.plan.duration,
            "processes": self.process_ids,
            "generators": self.placement_report,
            "chaos_agents": self.agents_report,
            "dead_processes": sorted(self.dead_processes),
            "seconds": {
                "saturated": self.delivery.saturated_seconds() if self.delivery else 0,
                "short": self.delivery.short_seconds() if self.delivery else 0,
                "late": self.late_seconds,
            },
            "late_windows": self.aggregator.late_count if self.aggregator else 0,
            "late_requests_unwritten": self.late_requests_unwritten,
            "lost_generators": self.lost_report,
            "load_gaps": self.load_gaps,
            "delivery": {
                "sustained_seconds": SUSTAINED_SECONDS,
                "findings": [f.to_dict() for f in self.delivery.findings()] if self.delivery else [],
            },
            "step_timing": self.steps.to_list() if self.steps else [],
            "totals": self.ledger.window_table()["run"] if self.ledger else {},
            "endpoints": self.ledger.endpoint_table() if self.ledger else [],
            "windows": self.ledger.window_table() if self.ledger else {},
            "slos": [r.to_dict() for r in slos],
            "guard": None if self.trip is None else self.trip.__dict__,
            "baseline": baseline,
            "events": self.events,
            "timings": self.timings,
            "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        return RunOutcome(self.run_id, verdict, reason, slos, summary)

    def _compare_with_baseline(self) -> dict[str, Any] | None:
        """This run against ``--baseline``, from the points it wrote (results.lp may lag)."""
        against = self.options.baseline
        if against is None:
            return None
        report = against.judge(self.run_id, self.scenario.name, self._kept_points)
        self._note(report.summary_line())
        return {**against.describe(report), "summary_line": report.summary_line()}

    # ------------------------------------------------------------------ helpers

    def _event(
        self,
        kind: str,
        name: str,
        state: str,
        text: str,
        at: float,
        planned: float | None = None,
        late_ms: float | None = None,
    ) -> dict[str, Any]:
        """Record an event in the summary and write it as an annotation; returns the summary entry.

        Stage events are written by ``_finish_stage_event`` once the processes acknowledged
        the change, so that the annotation carries how late it took effect.
        """
        offset = at - self.start_epoch if self.start_epoch else 0.0
        event: dict[str, Any] = {
            "time": at,
            "offset": round(offset, 3),
            "kind": kind,
            "name": name,
            "state": state,
            "text": text,
        }
        if planned is not None:
            event["planned_offset"] = round(planned, 3)
        if late_ms is not None:
            event["late_ms"] = round(late_ms, 1)
        with self._lock:
            self.events.append(event)
        if kind != "stage":
            self._write([event_point(self.run_id, kind, name, state, text, at, planned, late_ms)])
        if kind in ("fault", "abort"):
            self._note(f"[{format_duration(round(offset, 1))}] {text}")
        return event

    def _write(self, points: list[Point]) -> None:
        if self.options.baseline is not None:
            # What the baseline comparison reads back: the same points results.lp receives.
            self._kept_points.extend(p for p in points if self.options.baseline.wants(p.measurement, p.tags))
        try:
            self.writer.write(points)
        except Exception:  # results problems are counted by the writer; never break the run
            log.exception("results writer failed")

    def _note(self, text: str) -> None:
        if self.on_event is not None:
            with contextlib.suppress(Exception):
                self.on_event(text)


def _placement_entry(generator_id: str, info: dict[str, Any], clock: ClockOffset) -> dict[str, Any]:
    """One generator's line in summary.json's ``generators``: where it ran, what it ran, its clock."""
    return {
        "id": generator_id,
        "node": info.get("node", ""),
        "node_ip": info.get("node_ip", ""),
        "hostname": info.get("hostname", ""),
        "processes": info.get("processes", []),
    } | clock.to_json()


def _processes(count: int) -> str:
    return f"{count} process" if count == 1 else f"{count} processes"


def _exit_text(code: Any) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    if not isinstance(code, int):
        return "exit status unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"


def _send_at(step: Step) -> float:
    """When the clock thread acts on ``step`` (offset in s): open-model stages a little early."""
    if step.kind is StepKind.STAGE and isinstance(step.stage, RateStage) and step.offset >= RATE_STAGE_LEAD:
        return step.offset - RATE_STAGE_LEAD
    return step.offset


def _set_thread_niceness(value: int) -> int:
    """Set the calling thread's niceness (Linux: niceness is per thread); returns the previous one.

    The clock thread sleeps nearly all the time, so raising its priority costs the load
    nothing, while on a node saturated by Locust processes it is what makes it wake on time.
    Without CAP_SYS_NICE nothing changes.
    """
    tid = threading.get_native_id()
    previous = os.getpriority(os.PRIO_PROCESS, tid)
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, tid, value)
    return previous


def _terminate_as_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt in the main thread, as Ctrl-C does (no-op elsewhere)."""
    with contextlib.suppress(ValueError):  # not the main thread
        signal.signal(signal.SIGTERM, signal.default_int_handler)


@contextlib.contextmanager
def _deferred_interrupts(interrupted: bool, exit_now: Callable[[], None], note: Callable[[str], None]) -> Any:
    """Teardown under a first interrupt; a second one (SIGINT or SIGTERM) calls ``exit_now``.

    ``interrupted``: the run was already interrupted once (that was the first). When it was
    not, the first signal during teardown is only noted and teardown goes on, so that a
    user's one Ctrl-C never leaves faults to the watchdog; the next one exits.
    """
    received: list[int] = [1] if interrupted else []

    def on_signal(signum: int, frame: Any) -> None:
        if received:
            exit_now()
        received.append(signum)
        note("interrupted: still reverting faults and stopping load (interrupt again to exit at once)")

    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in watched}
    try:
        for signum in watched:
            signal.signal(signum, on_signal)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
