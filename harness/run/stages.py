"""What each Locust process should run now, and when each change took effect.

:class:`Stages` splits a stage of the plan over the processes that carry load (open model:
one arrival schedule interleaved across them; closed model: users split evenly), sends the
shares through the fleet without waiting, and files the processes' acknowledgements in the
step log (:mod:`harness.measure.steptiming`). A stage's event is written once every process
acknowledged it, so its annotation says how late the change took effect.

After a loss, :meth:`Stages.redistribute` splits the current stage again over the processes
still alive (the loss policy): the share of the lost ones is carried by the others, and the
gap closes when the last of them acknowledged its new share.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from harness.judge.summary import LoadGap, RunEvent
from harness.load.protocol import Command, SetRate, SetUsers
from harness.measure.delivery import DeliveryWatch
from harness.measure.steptiming import Applied, StepLog, StepRecord
from harness.plan import Step, StepKind, split_evenly
from harness.run.fleet import Fleet
from harness.run.recorder import Recorder
from harness.scenario import RateStage

__all__ = ["RATE_STAGE_LEAD", "REDISTRIBUTE_LEAD", "Stages", "send_at"]

#: Open-model stages are sent this long before their planned offset (s): each process keeps
#: the new schedule until its start, so the change lands on time in intended time even when a
#: saturated process reads its commands a few hundred ms late.
RATE_STAGE_LEAD = 0.5
#: A share moved to the surviving processes in the open model starts this long after the
#: loss was noticed, on one common instant for all of them (their slots stay interleaved).
REDISTRIBUTE_LEAD = 0.25


def send_at(step: Step) -> float:
    """When the clock thread acts on ``step`` (offset in s): open-model stages a little early."""
    if step.kind is StepKind.STAGE and isinstance(step.stage, RateStage) and step.offset >= RATE_STAGE_LEAD:
        return step.offset - RATE_STAGE_LEAD
    return step.offset


def _processes(count: int) -> str:
    return f"{count} process" if count == 1 else f"{count} processes"


class Stages:
    """The step log and the stage shares of one run, shared by the clock and poll threads.

    Every method takes the lock it needs and holds it only briefly; ``load_running`` says
    whether the load is still running (a loss after its end moves nothing).
    """

    def __init__(
        self,
        start_epoch: float,
        fleet: Fleet,
        recorder: Recorder,
        delivery: DeliveryWatch,
        load_running: Callable[[], bool],
    ) -> None:
        self.start_epoch = start_epoch
        self.log = StepLog(start_epoch)
        self.load_gaps: list[LoadGap] = []
        self._fleet = fleet
        self._recorder = recorder
        self._delivery = delivery
        self._load_running = load_running
        self._lock = threading.RLock()
        self._current: Step | None = None  # the stage whose shares the processes run now
        self._events: dict[int, tuple[StepRecord, RunEvent]] = {}  # id(record) -> its stage event
        self._gaps: dict[int, LoadGap] = {}  # id(redistribution record) -> its gap

    # ------------------------------------------------------------------ steps

    def executed(self, step: Step, at: float) -> StepRecord:
        """The clock thread acted on ``step`` at epoch time ``at``."""
        with self._lock:
            record = self.log.executed(step.kind.value, step.name, step.offset, at)
            record.lead_s = step.offset - send_at(step)
        return record

    def done(self, record: StepRecord, at: float) -> tuple[float, float]:
        """A fault step took effect at epoch time ``at``; returns its (planned offset, lateness in ms)."""
        with self._lock:
            self.log.done(record, at)
        return record.planned_s, record.late_ms

    def apply(self, step: Step, record: StepRecord) -> None:
        """Send every live process its share of the stage; do not wait for the answers.

        The actors' answers are collected by the fleet (an error there ends the run); the
        processes' ``applied`` reports complete the step's timing and its ``stage`` event.
        """
        executed = self.start_epoch + record.executed_s
        # A stage sent ahead starts at its planned instant: that is where its annotation goes.
        when = max(executed, self.start_epoch + step.offset)
        event = self._recorder.event(
            "stage", step.name, "start", f"stage {step.name}: {step.detail}", when, step.offset
        )
        # Computed and sent under the lock, so that a redistribution by the poll thread can
        # never reach a process after (and so undo) the next stage's command.
        with self._lock:
            self._current = step
            live = self._fleet.live_processes()
            # Every acknowledgement is expected before the first command goes out: the poll
            # thread may file one as soon as a command is sent.
            self.log.expect(record, live)
            self._events[id(record)] = (record, event)
            self._send(step, live, self.start_epoch + step.offset, step.name)
            if record.complete:  # no process to wait for
                self._finish(record)

    def _send(self, step: Step, live: list[str], start: float, label: str) -> None:
        """Split ``step``'s stage evenly over ``live`` and send each generator its processes' shares.

        Open model: one schedule of the stage's arrival rate starting at epoch ``start``,
        interleaved across the processes. Closed model: users (and spawn rate) split evenly.
        Called with the lock held; never waits for an answer.
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
                    rate=stage.arrival_rate / count, users=max(1, share), start=start, phase=index / count
                )
        else:
            users = split_evenly(stage.users, count)
            for pid, share in zip(live, users, strict=True):
                rate = stage.spawn_rate * share / stage.users if stage.users else stage.spawn_rate
                commands[pid] = SetUsers(users=share, spawn_rate=max(rate, 0.01))
        self._fleet.send(commands, label)

    def acknowledged(self, ack: Applied) -> None:
        """File one process's acknowledgement of a command."""
        with self._lock:
            record = self.log.applied(ack)
            if record is not None:
                self._finish(record)

    def forget(self, processes: list[str]) -> None:
        """Stop waiting for processes that are gone (their steps may be complete now)."""
        with self._lock:
            for record in self.log.forget(processes):
                self._finish(record)

    def finish_all(self) -> None:
        """At teardown: write every stage event and close every gap still waiting for processes."""
        with self._lock:
            for record, _ in list(self._events.values()):
                self._finish(record)
            for record in [r for r in self.log.records if id(r) in self._gaps]:
                self._finish(record)

    def _finish(self, record: StepRecord) -> None:
        """Write a stage's event once every process acknowledged it (or at teardown). Lock held."""
        gap = self._gaps.pop(id(record), None)
        if gap is not None:
            self._restored(record, gap)
            return
        entry = self._events.pop(id(record), None)
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
        event.text = (
            f"{event.text}; planned at +{record.planned_s:.3f} s, sent at +{record.executed_s:.3f} s, "
            f"{how} ({record.late_ms:.0f} ms late)"
        )
        event.late_ms = round(record.late_ms, 1)
        event.done_offset = None if record.done_s is None else round(record.done_s, 4)
        event.finished = True
        self._recorder.write_stage(event, record.planned_s, record.late_ms)

    # ------------------------------------------------------------------ the loss policy

    def redistribute(self, subject: str, gone: list[str], lost_at: float, detected: float, cause: str) -> str:
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
        gap = LoadGap(
            subject=subject,
            processes=list(gone),
            cause=cause,
            lost_at=lost_at,
            lost_offset=round(lost_at - self.start_epoch, 3),
            detected_at=detected,
            detected_after_s=round(max(0.0, detected - lost_at), 3),
        )
        with self._lock:
            self.load_gaps.append(gap)
            step = self._current
            live = self._fleet.live_processes()
            if not self._load_running():
                gap.note = "lost after the load ended: nothing to move"
                return "the load had already ended"
            if not live:
                gap.note = "no load process left to take its share"
                self._delivery.not_moved(subject)
                return "no load process is left to take its share"
            gap.moved_to = live
            if step is None or step.stage is None:
                gap.note = "lost before the first stage: every stage is split over the live processes"
                return f"every stage is split over the live {_processes(len(live))}"
            now = time.time()
            record = self.log.executed("redistribute", step.name, now - self.start_epoch, now)
            self.log.expect(record, live)
            self._gaps[id(record)] = gap
            start = max(now + REDISTRIBUTE_LEAD, self.start_epoch + step.offset + 0.001)
            self._send(step, live, start, f"{step.name} (redistributed)")
        return f"its share of stage {step.name} moves to {_processes(len(live))} ({', '.join(live)})"

    def _restored(self, record: StepRecord, gap: LoadGap) -> None:
        """Every live process applied its new share (or teardown came first): close the gap. Lock held."""
        if record.done_s is None or record.awaiting:
            gap.note = f"the new shares were not all acknowledged ({len(record.awaiting)} missing)"
            return
        restored = self.start_epoch + record.done_s
        gap.restored_at = restored
        gap.gap_s = round(max(0.0, restored - gap.lost_at), 3)
        self._delivery.moved(gap.subject, gap.gap_s, len(gap.moved_to))
        text = (
            f"load of {gap.subject} running again on {_processes(len(gap.moved_to))} "
            f"({', '.join(gap.moved_to)}): applied by all by +{record.done_s:.3f} s, "
            f"{gap.gap_s:.2f} s after it was lost"
        )
        self._recorder.event("generator", gap.subject, "start", text, restored)
        self._recorder.note(f"{self._recorder.at(restored)} {text}")
