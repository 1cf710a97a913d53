"""The poll thread: takes in what the generators answered and does the per-second work.

The clock thread only executes steps; everything that takes time (merging histograms,
percentiles, SLOs, guards, results) happens here, every ``POLL_INTERVAL``. So that this
work never makes a step late, the clock thread announces when its next step is due
(:meth:`Poller.announce`) and each piece of work here (:meth:`Poller.pace`) waits until a
step that falls due meanwhile is done; the GIL is handed over every ``SWITCH_INTERVAL``
should a piece overrun (set by the orchestrator).

A failure here (a stage command the actor rejected, or a bug) is handed to the clock
thread, which raises it (:meth:`Poller.raise_failure`); the run then ends the way it would
have on the main thread.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

from harness.load.protocol import EXAMPLES_PREFIX, Examples, decode_as
from harness.measure.examples import Example, ExampleKeeper
from harness.measure.steptiming import parse_applied
from harness.measure.windows import parse_window
from harness.run.fleet import Fleet
from harness.run.losses import Losses
from harness.run.recorder import Recorder
from harness.run.seconds import Seconds
from harness.run.stages import Stages

__all__ = ["POLL_INTERVAL", "Poller"]

log = logging.getLogger(__name__)

POLL_INTERVAL = 0.25  # how often the poll thread takes in windows (s)
STEP_MARGIN = 0.05  # the poll thread starts no work that may run into a step due within 2 x its cost + this (s)
STEP_GUARD_MAX = 1.0  # ... but never holds a piece of work back for longer than this (s)
STEP_OVERDUE = 1.0  # ... unless that step is this overdue: the clock thread is busy with a slow step (s)
POLL_JOIN_TIMEOUT = 10.0  # how long the end of a run waits for a poll in progress (s)


class Poller:
    """The poll thread of one run. Start it early (:meth:`start`); it waits for :meth:`begin`."""

    def __init__(self, fleet: Fleet, recorder: Recorder) -> None:
        self.fleet = fleet
        self.recorder = recorder
        self.timings: dict[str, float] = {}
        self._parts: tuple[Stages, Losses, Seconds] | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._clock = threading.Condition()  # the clock thread announces its next step here
        self._next_due = 0.0  # monotonic time of the next step
        self._work_cost = 0.05  # recent worst duration of one piece of poll work (s)
        self.examples = ExampleKeeper()  # the run's example trace ids, from every process's

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        """Start the thread (it waits for :meth:`begin`): starting one takes tens of milliseconds."""
        self._thread = threading.Thread(target=self._run, name="harness-poll", daemon=True)
        self._thread.start()

    def begin(self, stages: Stages, losses: Losses, seconds: Seconds) -> None:
        """The load clock started: poll from now on."""
        self._parts = (stages, losses, seconds)
        self._started.set()

    @property
    def running(self) -> bool:
        """Whether the load still runs (the poll thread was not told to stop)."""
        return not self._stop.is_set()

    def stop(self) -> None:
        """Stop polling and wait for a poll in progress (up to ``POLL_JOIN_TIMEOUT``)."""
        self._stop.set()
        self._started.set()
        with self._clock:
            self._clock.notify_all()
        if self._thread is not None:
            self._thread.join(POLL_JOIN_TIMEOUT)
            if self._thread.is_alive():
                log.warning("poll thread still busy after %.0f s", POLL_JOIN_TIMEOUT)
            self._thread = None

    def raise_failure(self) -> None:
        """Clock thread: raise what ended the poll thread, if anything did."""
        failure, self._failure = self._failure, None
        if failure is not None:
            raise failure

    def _run(self) -> None:
        self._started.wait()
        cpu = time.thread_time()
        try:
            while not self._stop.is_set():
                began = time.monotonic()
                try:
                    self.poll()
                except BaseException as exc:  # re-raised by the clock thread
                    self._failure = exc
                    return
                self._stop.wait(max(0.0, POLL_INTERVAL - (time.monotonic() - began)))
        finally:
            self.timings["poll_thread_cpu_s"] = round(time.thread_time() - cpu, 3)

    # ------------------------------------------------------------------ pacing against the clock

    def announce(self, next_due: float) -> None:
        """Clock thread: the next step is due at monotonic ``next_due`` (``math.inf``: none is)."""
        with self._clock:
            self._next_due = next_due
            self._clock.notify_all()

    @contextlib.contextmanager
    def pace(self) -> Iterator[None]:
        """One piece of poll work: let a step that falls due meanwhile go first, then time the work.

        The GIL alone would hand over within ``SWITCH_INTERVAL``, but on a saturated machine
        the poll thread can be descheduled while it holds the GIL, and the step would wait
        for the CPU scheduler; so work that may overlap a step waits until the step is done.
        The estimate of what one piece costs is a decaying maximum.
        """
        guard = min(2 * self._work_cost + STEP_MARGIN, STEP_GUARD_MAX)
        give_up = time.monotonic() + STEP_GUARD_MAX  # however dense the steps, the work gets done
        with self._clock:
            while not self._stop.is_set():
                now = time.monotonic()
                ahead = self._next_due - now
                if ahead > guard or ahead < -STEP_OVERDUE or now >= give_up:
                    break
                self._clock.wait(max(0.001, min(ahead + STEP_OVERDUE, give_up - now)))
        began = time.monotonic()
        yield
        spent = time.monotonic() - began
        self._work_cost = max(spent, self._work_cost * 0.95, 0.005)
        self.timings["max_poll_work_ms"] = round(max(self.timings.get("max_poll_work_ms", 0.0), spent * 1000), 1)

    # ------------------------------------------------------------------ the work

    def poll(self) -> None:
        """Take in whatever the actors have answered by now; never waits for one."""
        assert self._parts is not None
        _, losses, seconds = self._parts
        for loss in self.fleet.collect_commands():
            losses.generator_lost(loss)
        batches, lost = self.fleet.collect_drains()
        for loss in lost:
            losses.generator_lost(loss)
        for batch in batches:
            with self.pace():
                self.take(batch)
        seconds.settle(self.pace)

    def take(self, batch: dict[str, Any]) -> None:
        """File one drain's windows, acknowledgements, error reports and process deaths."""
        assert self._parts is not None
        stages, losses, seconds = self._parts
        for line in batch.get("windows", []):
            if line.startswith(EXAMPLES_PREFIX):
                self._examples(line)
                continue
            window = parse_window(line)
            if window is not None:
                seconds.add(window)
        for line in batch.get("applied", []):
            ack = parse_applied(line)
            if ack is not None:
                stages.acknowledged(ack)
        for text in batch.get("events", []):
            self.recorder.note(f"load process reported: {text}")
        died = batch.get("died") or {}
        for process in batch.get("dead", []):
            losses.process_died(process, died.get(process) or {})

    def _examples(self, line: str) -> None:
        report = decode_as(line, Examples)
        for method, name, trace_id, ms, second, failure in report.entries if report is not None else []:
            self.examples.offer(method, name, Example(trace_id, ms, second, failure))

    def finish(self, batches: list[dict[str, Any]]) -> None:
        """At teardown, after the generators stopped: their last batches, then every second left."""
        assert self._parts is not None
        for batch in batches:
            self.take(batch)
        self._parts[2].settle(self.pace, final=True)
