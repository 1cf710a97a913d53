"""The Ray driver: runs a plan on one clock and always leaves the system as it found it.

``Orchestrator.run()`` starts (or joins) Ray, starts the load generators and the chaos
agent, walks the plan's steps at their offsets from one monotonic start, merges the
per-second windows as they arrive, writes them out, checks guards every second, and in a
``finally`` reverts every fault, stops the load, flushes results and judges the run.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ray

from harness.chaos.agent import ChaosAgent
from harness.errors import FaultError, HarnessError, LoadError
from harness.expressions import format_duration
from harness.load.generator import GeneratorSpec, LoadGenerator
from harness.load.placement import Placement, place_generators
from harness.load.protocol import Command
from harness.metrics import Aggregator, ClosedSecond, Endpoint, parse_window
from harness.points import event_point, load_point, request_points, run_point, slo_points
from harness.results.lineproto import Point
from harness.scenario import RateStage, UsersStage
from harness.slo import GuardTrip, GuardWatch, SloBook, SloResult
from harness.timeline import Plan, Step, StepKind, split_evenly
from harness.verdict import RunLedger, Verdict, decide

__all__ = ["LiveStatus", "Orchestrator", "RunOptions", "RunOutcome", "new_run_id"]

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.25
SATURATED_CPU = 0.9
SATURATED_LAG_MS = 100.0


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
        self.agent: ChaosAgent | None = None
        self.process_ids: list[str] = []
        self.aggregator: Aggregator | None = None
        self.endpoints: list[Endpoint] = []
        self.active_faults: dict[str, float] = {}
        self.events: list[dict[str, Any]] = []
        self.timings: dict[str, float] = {}
        self.dead_processes: set[str] = set()
        self.trip: GuardTrip | None = None
        self.phase = ""
        self.started_ray = False
        self.start_epoch = 0.0
        self.start_mono = 0.0
        self.saturated_seconds = 0
        self.late_seconds = 0
        self.book: SloBook | None = None
        self.ledger: RunLedger | None = None
        self.guards = GuardWatch(list(self.scenario.guards))

    # ------------------------------------------------------------------ lifecycle

    def run(self) -> RunOutcome:
        error = ""
        interrupted = False
        try:
            self._start_ray()
            self._start_generators()
            self._start_agent()
            self._loop()
        except KeyboardInterrupt:
            interrupted = True
            self._note("interrupted: reverting faults and stopping load")
        except HarnessError as exc:
            error = f"{type(exc).__name__}: {exc}"
            self._note(f"error: {exc}")
        finally:
            with _deferred_interrupts():
                self._teardown()
        return self._judge(error=error, interrupted=interrupted)

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
            ray.init(address=self.options.ray_address, **kwargs)
        else:
            # "local": never join a cluster that `ray start` left recorded in /tmp/ray.
            ray.init(address="local", num_cpus=os.cpu_count() or 1, **kwargs)
            self.started_ray = True
        self.timings["ray_init_s"] = round(time.monotonic() - began, 3)

    def _start_generators(self) -> None:
        """Place one generator per placement-group bundle (spread across nodes) and start them.

        Where each generator landed is kept in ``self.placement_report`` for the summary.
        """
        load = self.scenario.load
        processes = self.options.processes or (None if load.processes == "auto" else load.processes)
        env = {"HARNESS_RUN_ID": self.run_id, **self.options.extra_env}
        began = time.monotonic()
        self.placement = place_generators(load.generators, name=f"harness-{self.run_id}")
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
        for generator in self.generators:
            info = generator.start()
            self.process_ids += generator.process_ids
            self.placement_report.append(_placement_entry(generator.spec.generator_id, info))
        self.timings["generators_start_s"] = round(time.monotonic() - began, 3)
        self.aggregator = Aggregator(self.process_ids)

    def _release_placement(self) -> None:
        """Give the generators' placement group back to the cluster (after they are stopped)."""
        if self.placement is not None:
            self.placement.remove()

    def _start_agent(self) -> None:
        if self.scenario.faults:
            self.agent = ChaosAgent.start(self.run_id)

    # ------------------------------------------------------------------ the clock

    def _loop(self) -> None:
        self.start_mono = time.monotonic()
        self.start_epoch = time.time()
        self.book = SloBook(self.plan, self.start_epoch)
        self.ledger = RunLedger(self.plan, self.start_epoch)
        self.timings["load_start_s"] = round(self.start_epoch - self.options.invoked_at, 3)
        pending = list(self.plan.steps)
        next_poll = self.start_mono
        while pending:
            now = time.monotonic()
            elapsed = now - self.start_mono
            while pending and pending[0].offset <= elapsed:
                step = pending.pop(0)
                self._execute(step)
            if not pending or self.trip is not None:
                break
            if now >= next_poll:
                self._poll()
                next_poll = now + POLL_INTERVAL
            wake = min(self.start_mono + pending[0].offset, next_poll)
            time.sleep(max(0.0, min(POLL_INTERVAL, wake - time.monotonic())))

    def _execute(self, step: Step) -> None:
        now = time.time()
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
            self._apply_stage(step.stage)
        elif step.kind is StepKind.FAULT_START and step.fault_index is not None:
            self._inject(step.fault_index)
        elif step.kind is StepKind.FAULT_END:
            self._revert(step.name)

    def _apply_stage(self, stage: UsersStage | RateStage) -> None:
        commands: dict[str, Command] = {}
        count = len(self.process_ids)
        if isinstance(stage, RateStage):
            users = split_evenly(stage.max_users, count)
            for pid, share in zip(self.process_ids, users, strict=True):
                commands[pid] = Command("set_rate", rate=stage.arrival_rate / count, users=max(1, share))
        else:
            users = split_evenly(stage.users, count)
            for pid, share in zip(self.process_ids, users, strict=True):
                rate = stage.spawn_rate * share / stage.users if stage.users else stage.spawn_rate
                commands[pid] = Command("set_users", users=share, spawn_rate=max(rate, 0.01))
        refs = [g.command_async({p: commands[p] for p in g.process_ids}) for g in self.generators]
        try:
            ray.get(refs, timeout=10)
        except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
            raise LoadError(f"could not change load: {type(exc).__name__}") from None

    def _inject(self, index: int) -> None:
        fault = self.scenario.faults[index]
        assert self.agent is not None
        self.active_faults[fault.name] = time.time()
        try:
            info = self.agent.inject(fault)
        except FaultError:
            self.active_faults.pop(fault.name, None)
            raise
        pids = info.get("pids", [])
        text = f"{fault.kind} on {len(pids)} process(es) {pids}" + (
            f": {fault.description}" if fault.description else ""
        )
        self._event("fault", fault.name, "start", text, time.time())

    def _revert(self, name: str) -> None:
        if name not in self.active_faults or self.agent is None:
            return
        self.agent.revert(name)
        self.active_faults.pop(name, None)
        self._event("fault", name, "end", f"fault {name} reverted", time.time())

    # ------------------------------------------------------------------ windows

    def _poll(self, final: list[dict[str, Any]] | None = None) -> None:
        assert self.aggregator is not None
        if final is None:
            refs = [g.drain_async() for g in self.generators]
            try:
                batches = ray.get(refs, timeout=5)
            except (ray.exceptions.GetTimeoutError, ray.exceptions.RayActorError) as exc:
                raise LoadError(f"lost contact with a load generator: {type(exc).__name__}") from None
        else:
            batches = final
        for batch in batches:
            for line in batch["windows"]:
                window = parse_window(line)
                if window is not None:
                    self.aggregator.add(window)
            for text in batch["events"]:
                self._note(f"load process reported: {text}")
            for process in batch["dead"]:
                if process not in self.dead_processes:
                    self.dead_processes.add(process)
                    self._event("run", process, "end", f"load process {process} died", time.time())
                    self.aggregator.processes.discard(process)
        closed = self.aggregator.close_all() if final is not None else self.aggregator.close_ready(time.time())
        for second in closed:
            self._on_second(second)

    def _on_second(self, closed: ClosedSecond) -> None:
        assert self.book is not None and self.ledger is not None
        for key in closed.endpoints:
            if key not in self.endpoints:
                self.endpoints.append(key)
        if closed.late:
            self.late_seconds += 1
        saturated = any(h.cpu > SATURATED_CPU or h.lag_ms > SATURATED_LAG_MS for h in closed.health)
        self.saturated_seconds += saturated
        self.book.observe(closed)
        self.ledger.observe(closed)
        total = closed.total()
        if total.count and "first_request_by_s" not in self.timings:
            # Upper bound: the first request completed before the end of its window.
            self.timings["first_request_by_s"] = round(closed.second + 1 - self.options.invoked_at, 3)
        points = list(request_points(self.run_id, self.scenario.name, closed, self.endpoints))
        points.append(load_point(self.run_id, self.scenario.name, closed, len(self.generators), saturated))
        self._write(points)
        if self.trip is None and self.guards.guards:
            trip = self.guards.observe(closed)
            if trip is not None:
                self.trip = trip
                self._note(trip.message)
                self._event("abort", trip.guard, "start", trip.message, time.time())
        if self.on_status is not None:
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
                active_faults=tuple(self.active_faults),
                saturated=saturated,
            )
            try:
                self.on_status(status)
            except Exception:  # a display problem must never break a run
                log.exception("progress display failed")

    # ------------------------------------------------------------------ teardown

    def _teardown(self) -> None:
        if self.agent is not None:
            try:
                for name in list(self.active_faults):
                    self._revert(name)
            except HarnessError as exc:
                self._note(f"revert failed, reverting all: {exc}")
            finally:
                self.agent.stop()
                for name in list(self.active_faults):
                    self.active_faults.pop(name)
                    self._event("fault", name, "end", f"fault {name} reverted at teardown", time.time())
        finals = [g.stop() for g in self.generators]
        self._release_placement()
        if self.aggregator is not None and self.book is not None:
            with contextlib.suppress(HarnessError):
                self._poll(final=finals)
        self.timings["load_stopped_at"] = time.time()
        if self.started_ray:
            ray.shutdown()

    def _judge(self, error: str, interrupted: bool) -> RunOutcome:
        ended = time.time()
        slos = self.book.results() if self.book is not None else []
        invalid = ""
        if self.dead_processes:
            invalid = f"load not delivered: {len(self.dead_processes)} load process(es) died"
        elif self.book is not None and not self.ledger.windows["run"].total().count:  # type: ignore[union-attr]
            invalid = "no requests were completed: check the target and the locustfile"
        verdict, reason = decide(
            slos,
            error=error,
            interrupted=interrupted,
            aborted=self.trip.message if self.trip else "",
            invalid=invalid,
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
            "dead_processes": sorted(self.dead_processes),
            "seconds": {"saturated": self.saturated_seconds, "late": self.late_seconds},
            "totals": self.ledger.window_table()["run"] if self.ledger else {},
            "endpoints": self.ledger.endpoint_table() if self.ledger else [],
            "windows": self.ledger.window_table() if self.ledger else {},
            "slos": [r.to_dict() for r in slos],
            "guard": None if self.trip is None else self.trip.__dict__,
            "events": self.events,
            "timings": self.timings,
            "driver_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        }
        return RunOutcome(self.run_id, verdict, reason, slos, summary)

    # ------------------------------------------------------------------ helpers

    def _event(self, kind: str, name: str, state: str, text: str, at: float) -> None:
        offset = at - self.start_epoch if self.start_epoch else 0.0
        self.events.append(
            {"time": at, "offset": round(offset, 3), "kind": kind, "name": name, "state": state, "text": text}
        )
        self._write([event_point(self.run_id, kind, name, state, text, at)])
        if kind in ("fault", "abort"):
            self._note(f"[{format_duration(round(offset, 1))}] {text}")

    def _write(self, points: list[Point]) -> None:
        try:
            self.writer.write(points)
        except Exception:  # results problems are counted by the writer; never break the run
            log.exception("results writer failed")

    def _note(self, text: str) -> None:
        if self.on_event is not None:
            with contextlib.suppress(Exception):
                self.on_event(text)


def _placement_entry(generator_id: str, info: dict[str, Any]) -> dict[str, Any]:
    """One generator's line in summary.json's ``generators``: where it ran and what it ran."""
    return {
        "id": generator_id,
        "node": info.get("node", ""),
        "node_ip": info.get("node_ip", ""),
        "hostname": info.get("hostname", ""),
        "processes": info.get("processes", []),
    }


@contextlib.contextmanager
def _deferred_interrupts() -> Any:
    """Let teardown finish when a second Ctrl-C arrives; the watchdog covers a SIGKILL."""
    import signal

    received: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    try:
        signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
