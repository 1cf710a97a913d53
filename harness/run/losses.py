"""A generator lost or a load process dead mid-run: recorded, stopped waiting for, its load moved.

:class:`Losses` is told by the poll thread that a generator is to be declared lost (its actor
died, stopped answering, or stopped its own load) or that a process exited without being
asked to. Either way the lost processes leave the aggregator (later seconds close without
them), their stage acknowledgements are no longer awaited, their share goes to the live
processes of every generator (:meth:`harness.run.stages.Stages.redistribute`), and the run
goes on to its end, where the delivery rules judge it invalid (load was not delivered).
"""

from __future__ import annotations

import contextlib
import signal
import time
from typing import Any

from harness.judge.summary import LostGenerator
from harness.measure.aggregator import Aggregator
from harness.measure.delivery import DeliveryWatch
from harness.run.fleet import Fleet, Loss
from harness.run.recorder import Recorder
from harness.run.stages import Stages

__all__ = ["Losses"]


class Losses:
    """The losses of one run, in the order they were noticed (``lost_report`` for the summary)."""

    def __init__(
        self, fleet: Fleet, stages: Stages, aggregator: Aggregator, delivery: DeliveryWatch, recorder: Recorder
    ) -> None:
        self.lost_report: list[LostGenerator] = []
        self._fleet = fleet
        self._stages = stages
        self._aggregator = aggregator
        self._delivery = delivery
        self._recorder = recorder

    def generator_lost(self, loss: Loss) -> None:
        """Declare a generator lost: record it, stop waiting for it, move its load to the others.

        Its windows not yet handed over are missing from the results, which the delivery
        rules report (the run is invalid).
        """
        index, why = loss.index, loss.why
        at = time.time()
        if not self._fleet.declare_lost(index, why):
            return
        gid = self._fleet.generator_id(index)
        generator = self._fleet.pool[index]
        processes = generator.process_ids
        self._stages.forget(processes)
        self._aggregator.processes.difference_update(processes)
        finding = self._delivery.lost(gid, at, why)
        entry = LostGenerator(
            id=gid,
            offset=round(finding.offset, 3),
            time=at,
            why=why,
            actor_pid=generator.info.get("actor_pid"),
            processes=processes,
        )
        self.lost_report.append(entry)
        text = f"generator {gid} lost: {why}; its processes ({', '.join(processes)}) are no longer waited for"
        self._recorder.event("run", gid, "end", text, at)
        # Its windows were taken in up to its last answered drain (sent then): the gap starts there.
        last = self._fleet.last_heard(index, at)
        live = [p for p in processes if p not in self._fleet.dead]
        moved = self._stages.redistribute(gid, live, min(last, at), at, f"generator {gid} lost ({why})")
        entry.load = moved
        gtext = f"generator {gid} lost ({why}), last heard from {max(0.0, at - last):.2f} s before; {moved}"
        self._recorder.event("generator", gid, "end", gtext, at)
        self._recorder.note(f"{self._recorder.at(self._recorder.start_epoch + finding.offset)} {gtext}")

    def process_died(self, process: str, info: dict[str, Any]) -> None:
        """A Locust process exited without being asked to: record it and move its share.

        ``info`` is what its actor saw: ``at`` (epoch time of the exit) and ``code`` (exit
        code; negative: killed by that signal).
        """
        if process in self._fleet.dead:
            return
        detected = time.time()
        exited = float(info.get("at") or detected)
        how = _exit_text(info.get("code"))
        self._fleet.dead.add(process)
        self._stages.forget([process])
        self._aggregator.processes.discard(process)
        self._delivery.died(process, exited, how)
        moved = self._stages.redistribute(process, [process], exited, detected, f"load process {process} died ({how})")
        text = f"load process {process} died ({how}), noticed {max(0.0, detected - exited):.2f} s later; {moved}"
        self._recorder.event("generator", process, "end", text, detected)
        self._recorder.note(f"{self._recorder.at(detected)} {text}")


def _exit_text(code: Any) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it)."""
    if not isinstance(code, int):
        return "exit status unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"
    return f"exit code {code}"
