"""Faults that wait for a steady state, during a run: judged on the poll thread, started on the clock's.

:class:`SteadyStarts` is one of the per-second observers: each closed second (and each probe
sample, through :class:`~harness.run.probes.ProbeObserver`) goes to the
:class:`~harness.judge.steady.SteadyWatch`, and a fault whose conditions held is queued for the
clock thread, which alone acts on faults. The clock thread is woken at once (:attr:`SteadyStarts.due`),
moves the fault in the plan to that instant
(:meth:`~harness.plan.Plan.started_at`) and hands the new plan to everything that judges
windows (:class:`Retimed`), then starts the fault as any other step. A second closes a few
hundred milliseconds after it ends, so the fault starts within a second of the condition holding.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Sequence
from typing import Protocol

from harness.judge.probe_samples import ProbeSample
from harness.judge.steady import SteadyHeld, SteadyWatch
from harness.measure.aggregator import LateWindow
from harness.plan import Plan, Step
from harness.run.recorder import Recorder
from harness.run.seconds import Second

__all__ = ["Retimed", "SteadyStarts", "never_steady", "retimed_steps"]


class Retimed(Protocol):
    """A part of the run that reads the plan's windows: told when a fault's start moved."""

    def retime(self, plan: Plan) -> None: ...


class SteadyStarts:
    """The per-second observer of the faults that wait; :meth:`take` is for the clock thread."""

    def __init__(self, plan: Plan, start_epoch: float, recorder: Recorder, stale_after: float) -> None:
        names = plan.waiting()
        waiting = {f.name: f.waits_for for f in plan.scenario.faults if f.name in names and f.waits_for is not None}
        self.watch = SteadyWatch(waiting, start_epoch, stale_after)
        self.recorder = recorder
        self._held: queue.SimpleQueue[SteadyHeld] = queue.SimpleQueue()
        #: Set when a fault is due: the clock thread waits on it between its looks, so it acts at once.
        self.due = threading.Event()

    def on_second(self, second: Second) -> None:
        for held in self.watch.observe(second.closed):
            self.recorder.note(f"{self.recorder.at(held.at)} fault {held.fault} is due: {held.text}")
            self._held.put(held)
            self.due.set()

    def on_late(self, late: LateWindow) -> None:
        pass

    def observe_probe(self, sample: ProbeSample) -> None:
        self.watch.observe_probe(sample)

    def take(self) -> list[SteadyHeld]:
        """The faults found steady since the last call."""
        self.due.clear()  # before taking: a fault queued after this sets it again
        out = []
        while True:
            try:
                out.append(self._held.get_nowait())
            except queue.Empty:
                return out


def retimed_steps(pending: Sequence[Step], plan: Plan, fault_index: int) -> list[Step]:
    """``pending`` with fault ``fault_index``'s steps replaced by ``plan``'s (where it moved to)."""
    kept = [s for s in pending if s.fault_index != fault_index]
    moved = [s for s in plan.steps if s.fault_index == fault_index]
    return sorted([*kept, *moved], key=Step.sort_key)


def never_steady(plan: Plan, step: Step) -> str:
    """The run's reason when ``step``, a fault's waiting start, came due: it never became steady."""
    fault = plan.scenario.faults[step.fault_index or 0]
    waits = fault.waits_for
    condition = waits.text() if waits is not None else ""
    return f"never steady: fault {fault.name} did not start, {condition} did not hold by {step.offset:g}s"
