"""The run's load generators: placed across nodes, started, sent their shares, drained, stopped.

:class:`Fleet` knows which generators and Locust processes carry load now (not lost, not
dead) and talks to them through a :class:`~harness.load.generator.GeneratorPool`, never
waiting on one: stage commands are sent and their answers collected later; each generator
has at most one drain in flight. What a loss means for the run (events, the share moved to
the others) is :class:`harness.run.losses.Losses`'s business; the fleet only says who was lost.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import LoadError
from harness.judge.summary import GeneratorEntry
from harness.load.generator import Call, GeneratorPool, GeneratorSpec, LoadGenerator
from harness.load.protocol import Command
from harness.load.spec import LocustOptions
from harness.load.trace import TracePer, TraceSettings
from harness.run.placement import Placement, place_generators
from harness.scenario import RateStage, Scenario, scenario_total_seconds
from harness.scenario.locustfile import outline

__all__ = ["FINAL_DRAIN_TIMEOUT", "LOST_AFTER", "Fleet", "FleetOptions", "Loss"]

LOST_AFTER = 3.0  # a generator whose drain is unanswered this long is lost (s)
FINAL_DRAIN_TIMEOUT = 5.0  # at teardown, how long to wait for drains still in flight (s)


@dataclass(frozen=True)
class FleetOptions:
    """How to start the generators of run ``run_id``."""

    run_id: str
    run_dir: Path
    processes: int | None = None  # per generator; overrides the scenario's
    extra_env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Loss:
    """Generator ``index`` is to be declared lost, for ``why``."""

    index: int
    why: str


class Fleet:
    """The generators of one run. Not reusable: one per run.

    ``start`` places and starts them; then the poll thread calls :meth:`collect_commands` and
    :meth:`collect_drains`, and the clock thread :meth:`send`. ``lost`` and ``dead`` say who no
    longer carries load; :meth:`live_processes` who does.
    """

    def __init__(self, scenario: Scenario, options: FleetOptions) -> None:
        self.scenario = scenario
        self.options = options
        self.pool = GeneratorPool([])
        self.placement: Placement | None = None
        self.process_ids: list[str] = []
        self.report: list[GeneratorEntry] = []
        self.lost: dict[str, str] = {}  # generator id -> why it was declared lost
        self.dead: set[str] = set()  # processes that exited without being asked to
        self.timings: dict[str, float] = {}
        self._drains: dict[int, Call] = {}  # generator index -> its drain in flight
        self._commands: list[Call] = []  # sent by the clock thread, collected by the poll thread
        self._commands_lock = threading.Lock()
        # generator index -> epoch time its last answered drain was sent: its windows are in up to then
        self._last_answer: dict[int, float] = {}

    # ------------------------------------------------------------------ start and stop

    def start(self) -> None:
        """Place one generator per placement-group bundle (spread across nodes) and start them all."""
        load = self.scenario.load
        processes = self.options.processes or (None if load.processes == "auto" else load.processes)
        env = {"HARNESS_RUN_ID": self.options.run_id, **self.options.extra_env}
        began = time.monotonic()
        self.placement = place_generators(load.generators, name=f"harness-{self.options.run_id}", node=load.node)
        self.timings["placement_s"] = round(time.monotonic() - began, 3)
        generators = []
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
                locust=locust_options(self.scenario),
            )
            options = {"name": f"harness-{self.options.run_id}-{spec.generator_id}"}
            generators.append(LoadGenerator(spec, options | self.placement.actor_options(index)))
        self.pool = GeneratorPool(generators)
        began = time.monotonic()
        infos = self.pool.start()
        for generator, info in zip(generators, infos, strict=True):
            self.process_ids += generator.process_ids
            self.report.append(_entry(generator, info))
        self.timings["generators_start_s"] = round(time.monotonic() - began, 3)

    def stop(self) -> list[dict[str, Any]]:
        """Stop every generator and return what they still held, drains in flight included.

        A drain in flight has already taken its windows out of the actor, so it is awaited
        (up to ``FINAL_DRAIN_TIMEOUT``) before the actors are stopped; lost generators are
        only killed. Then the placement group is given back to the cluster.
        """
        in_flight = self.pool.ready(list(self._drains.values()), FINAL_DRAIN_TIMEOUT)
        batches = [a.value for a in in_flight if not a.died and not a.error]
        self._drains.clear()
        for generator in self.pool.generators:
            if generator.spec.generator_id in self.lost:
                generator.kill()
            else:
                batches.append(generator.stop())
        if self.placement is not None:
            self.placement.remove()
        return batches

    # ------------------------------------------------------------------ who carries load

    def live_processes(self) -> list[str]:
        """Processes that carry load now: not dead, and not of a lost generator (in run order)."""
        return [
            p
            for g in self.pool.generators
            if g.spec.generator_id not in self.lost
            for p in g.process_ids
            if p not in self.dead
        ]

    def live_generators(self) -> int:
        return len(self.pool) - len(self.lost)

    def generator_id(self, index: int) -> str:
        return self.pool[index].spec.generator_id

    def declare_lost(self, index: int, why: str) -> bool:
        """Kill generator ``index``'s actor and stop waiting for it; False when it was lost already.

        The actor is killed so that a merely unresponsive generator cannot keep sending load
        nobody counts (its Locust processes die with the actor, and stop by themselves once
        they hear nothing from it).
        """
        generator = self.pool[index]
        if generator.spec.generator_id in self.lost:
            return False
        generator.kill()
        self.lost[generator.spec.generator_id] = why
        self._drains.pop(index, None)
        with self._commands_lock:
            self._commands = [c for c in self._commands if c.generator != index]
        return True

    def last_heard(self, index: int, default: float) -> float:
        """Epoch time up to which generator ``index``'s windows were taken in (``default``: never)."""
        return self._last_answer.get(index, default)

    # ------------------------------------------------------------------ commands and drains

    def send(self, commands: dict[str, Command], label: str) -> None:
        """Send each live generator its processes' commands (keyed by process id); never waits."""
        for index, generator in enumerate(self.pool.generators):
            mine = {p: commands[p] for p in generator.process_ids if p in commands}
            if mine:
                call = self.pool.command(index, mine, label)
                with self._commands_lock:
                    self._commands.append(call)

    def collect_commands(self) -> list[Loss]:
        """Answers of stage commands: an actor error ends the run (LoadError), a dead actor is a loss."""
        losses = []
        with self._commands_lock:
            commands = list(self._commands)
        answers = self.pool.ready(commands)
        answered = {id(a.call) for a in answers}
        with self._commands_lock:
            self._commands = [c for c in self._commands if id(c) not in answered]
        for answer in answers:
            if answer.died:
                losses.append(Loss(answer.call.generator, f"its actor died ({answer.died})"))
            elif answer.error:
                raise LoadError(
                    f"could not change load to stage {answer.call.what} on generator "
                    f"{self.generator_id(answer.call.generator)}: {answer.error}"
                )
        return losses

    def collect_drains(self) -> tuple[list[dict[str, Any]], list[Loss]]:
        """Batches from drains that came back, and the generators to declare lost.

        One drain in flight per generator at most. A generator whose actor died, whose drain
        has gone unanswered for ``LOST_AFTER`` seconds, or that stopped its load by itself
        (the driver was silent too long, or it failed) is lost.
        """
        for index, generator in enumerate(self.pool.generators):
            if index not in self._drains and generator.spec.generator_id not in self.lost:
                self._drains[index] = self.pool.drain(index)
        now = time.monotonic()
        batches: list[dict[str, Any]] = []
        losses: list[Loss] = []
        answers = {a.call.generator: a for a in self.pool.ready(list(self._drains.values()))}
        for index, call in list(self._drains.items()):
            answer = answers.get(index)
            if answer is None:
                if now - call.sent > LOST_AFTER:
                    losses.append(Loss(index, f"no answer from its actor for {LOST_AFTER:g} s"))
                continue
            del self._drains[index]
            if answer.died:
                losses.append(Loss(index, f"its actor died ({answer.died})"))
                continue
            if answer.error:
                raise LoadError(f"generator {self.generator_id(index)}: {answer.error}")
            self._last_answer[index] = time.time() - (time.monotonic() - call.sent)
            batches.append(answer.value)
            cut_off = answer.value.get("cut_off")
            if cut_off:  # it stopped its own load: the driver was silent too long (or it failed)
                why = cut_off.get("error") or f"no drain from the driver for {cut_off.get('silent_s', 0):.1f} s"
                losses.append(Loss(index, f"it stopped its load itself ({why})"))
        return batches, losses


def _entry(generator: LoadGenerator, info: dict[str, Any]) -> GeneratorEntry:
    """One generator's line in summary.json's ``generators``: where it ran, what it ran, its clock."""
    clock = generator.clock.to_json()
    return GeneratorEntry(
        id=generator.spec.generator_id,
        node=str(info.get("node", "")),
        node_ip=str(info.get("node_ip", "")),
        hostname=str(info.get("hostname", "")),
        processes=list(info.get("processes", [])),
        offset_ms=clock["offset_ms"],
        uncertainty_ms=clock["uncertainty_ms"],
    )


def locust_options(scenario: Scenario) -> LocustOptions:
    """What each Locust process's ``environment`` says of the run (``parsed_options``, ``shape_class``).

    ``--users`` is the run's peak user count over all processes, as ``locust -u`` is the total
    over all workers; Locust's own request statistics are kept only when the locustfile reads
    ``.stats`` (they cost CPU on every request).
    """
    load = scenario.load
    users = max((s.max_users if isinstance(s, RateStage) else s.users for s in load.stages), default=None)
    declared = outline(scenario.locustfile_path)
    trace = load.trace
    return LocustOptions(
        shape=load.shape,
        arguments=dict(load.arguments),
        users=users,
        run_time=scenario_total_seconds(scenario) or None,
        keep_stats=declared is not None and declared.reads_stats,
        trace=None if trace is None else TraceSettings(TracePer(trace.per), trace.sampled).arg(),
    )
