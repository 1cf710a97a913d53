"""The run's ladders: a fault's radius widened step by step while its SLOs hold, stopped where they break.

At each step's end (the plan's ``fault widen`` step, or the fault's end for the last one) the
clock thread judges the step that ends (:meth:`LadderBook.judge`). A step that held lets the fault
widen to the next; the first that broke stops the escalation: the fault is reverted at once, the
steps left are skipped (never injected) and the load goes on through the rest of the run. Every
decision is an event (kind ``ladder``) in the summary, on the terminal and in InfluxDB.
"""

from __future__ import annotations

import time

from harness.judge.ladder import LadderBook, StepResult, StepState
from harness.plan import Plan
from harness.run.faults import FaultAgents, Injected
from harness.run.recorder import Recorder

__all__ = ["LadderControl"]


class LadderControl:
    """Decides, at each step boundary of each ladder, whether its fault widens or stops."""

    def __init__(self, plan: Plan, faults: FaultAgents, book: LadderBook, recorder: Recorder) -> None:
        self.plan = plan
        self.faults = faults
        self.book = book
        self.recorder = recorder
        self._stopped: set[str] = set()
        #: When a ladder's fault was reverted because a step broke (epoch, driver's clock), by fault name.
        self.stopped_at: dict[str, float] = {}

    def widen(self, name: str, rung: int) -> Injected | None:
        """Judge step ``rung - 1`` of fault ``name``'s ladder; if it held, apply step ``rung`` and
        return what was injected; if it broke, stop the ladder and return None."""
        if name in self._stopped or name not in self.faults.active():
            return None
        if self._judge(name, rung - 1).state is StepState.BROKE:
            self._stop(name, rung - 1)
            return None
        return self.faults.inject(self.plan.ladders[name].fault_index, rung)

    def end(self, name: str) -> None:
        """At the fault's planned end: judge its last step (the fault is reverted next, as planned)."""
        if name in self._stopped or name not in self.faults.active():
            return
        self._judge(name, len(self.plan.ladders[name].rungs))

    def _judge(self, name: str, index: int) -> StepResult:
        acts_on, found = self.faults.reach.get(name, (None, None))
        result = self.book.judge(name, index, acts_on, found)
        rung = self.plan.ladders[name].rungs[index - 1]
        on = f" on {acts_on} of {found} instances" if acts_on is not None else ""
        self.recorder.event(
            "ladder",
            name,
            result.state.value,
            f"fault {name} {rung.label}{on} {result.state.value}: {result.reason}",
            time.time(),
        )
        return result

    def _stop(self, name: str, broken: int) -> None:
        """Stop fault ``name``'s escalation at step ``broken``: revert it now, skip the steps left."""
        self._stopped.add(name)
        ladder = self.plan.ladders[name]
        label = ladder.rungs[broken - 1].label
        at = self.faults.revert(name)
        if at is not None:
            self.stopped_at[name] = at
            self.recorder.event("fault", name, "end", f"fault {name} reverted: escalation stopped, {label} broke", at)
        for rung in ladder.rungs[broken:]:
            reason = f"not injected: {label} broke"
            self.book.skip(name, rung.index, reason)
            self.recorder.event("ladder", name, "skipped", f"fault {name} {rung.label} skipped ({reason})", time.time())
