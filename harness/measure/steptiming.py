"""When each step of the plan really happened, against when it was planned.

Pure: times are passed in. A stage change or a fault that lands late moves load and faults
relative to the SLO windows computed from the plan, so the orchestrator records, for every
step, three instants as offsets from the run start:

* ``planned_s``: the step's offset in the plan;
* ``executed_s``: when the driver acted on it (sent the commands, called the chaos agent);
* ``done_s``: when it took effect: for a stage, the latest acknowledgement of a Locust
  process that applied its command (``applied`` report lines); for a fault, when the agent
  injected or reverted it. None while (or when) nothing acknowledged it.

``late_ms`` is ``done_s`` (or ``executed_s`` when nothing acknowledged) minus ``planned_s``.

Acknowledgements carry no command id: each process applies its commands in the order it
receives them, so the k-th ``applied`` line of a process answers the k-th stage command
sent to it. :class:`StepLog` keeps that queue per process.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from harness.load.protocol import Applied, decode_as

__all__ = ["Applied", "StepLog", "StepRecord", "parse_applied"]


def parse_applied(line: str | bytes) -> Applied | None:
    """Decode an ``{"t":"applied","p":ID,"cmd":C,"at":EPOCH}`` report line; None for others."""
    try:
        return decode_as(line, Applied)
    except ValueError:
        return None


@dataclass
class StepRecord:
    """One executed step and when it took effect."""

    kind: str
    name: str
    planned_s: float
    executed_s: float
    done_s: float | None = None
    awaiting: set[str] = field(default_factory=set)  # processes whose acknowledgement is due
    acknowledged: int = 0
    lead_s: float = 0.0  # sent this long before planned_s on purpose (open-model stages)

    @property
    def exec_late_ms(self) -> float:
        """How late the driver acted, against when it meant to act (planned_s - lead_s)."""
        return (self.executed_s + self.lead_s - self.planned_s) * 1000.0

    @property
    def complete(self) -> bool:
        return not self.awaiting

    @property
    def late_ms(self) -> float:
        actual = self.done_s if self.done_s is not None else self.executed_s
        return (actual - self.planned_s) * 1000.0

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.kind,
            "name": self.name,
            "planned_s": round(self.planned_s, 3),
            "executed_s": round(self.executed_s, 4),
            "done_s": None if self.done_s is None else round(self.done_s, 4),
            "late_ms": round(self.late_ms, 1),
        }
        if self.lead_s:
            out["lead_s"] = round(self.lead_s, 3)
        if self.acknowledged or self.awaiting:
            out["acknowledged"] = self.acknowledged
            out["unacknowledged"] = sorted(self.awaiting)
        return out


class StepLog:
    """Every step's planned, executed and done offsets, in execution order."""

    def __init__(self, start_epoch: float) -> None:
        self.start_epoch = start_epoch
        self.records: list[StepRecord] = []
        self._queues: dict[str, deque[StepRecord]] = defaultdict(deque)

    def executed(self, kind: str, name: str, planned_s: float, at: float) -> StepRecord:
        """The driver acted on a step at epoch time ``at``."""
        record = StepRecord(kind, name, planned_s, at - self.start_epoch)
        self.records.append(record)
        return record

    def expect(self, record: StepRecord, processes: list[str]) -> None:
        """``record`` sent one command to each of ``processes``; each will acknowledge it."""
        for process in processes:
            record.awaiting.add(process)
            self._queues[process].append(record)

    def done(self, record: StepRecord, at: float) -> None:
        """The step took effect at epoch time ``at`` (a fault injected or reverted)."""
        record.done_s = at - self.start_epoch

    def applied(self, ack: Applied) -> StepRecord | None:
        """File one acknowledgement; returns its step when that was the last one it awaited."""
        queue = self._queues.get(ack.process)
        if not queue:
            return None
        record = queue.popleft()
        record.awaiting.discard(ack.process)
        record.acknowledged += 1
        offset = ack.at - self.start_epoch
        record.done_s = offset if record.done_s is None else max(record.done_s, offset)
        return record if record.complete else None

    def forget(self, processes: list[str]) -> list[StepRecord]:
        """Stop waiting for processes that are gone; returns steps that became complete."""
        completed = []
        for process in processes:
            for record in self._queues.pop(process, deque()):
                record.awaiting.discard(process)
                if record.complete:
                    completed.append(record)
        return completed

    def pending(self) -> list[StepRecord]:
        """Steps still waiting for an acknowledgement."""
        return [r for r in self.records if not r.complete]

    def max_late_ms(self, kinds: tuple[str, ...] | None = None) -> float:
        """The worst lateness over the steps of ``kinds`` (all when None); 0 when there were none."""
        chosen = [r.late_ms for r in self.records if kinds is None or r.kind in kinds]
        return round(max(chosen), 1) if chosen else 0.0

    def to_list(self) -> list[dict[str, Any]]:
        return [r.to_dict() for r in self.records]
