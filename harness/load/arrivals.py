"""Open-model arrivals in a load process: the schedule of due slots and the users it paces.

Imported by :mod:`harness.load.runner` after gevent's monkey patching (it uses gevent). Every
epoch time here is on the driver's clock (:data:`CLOCK_OFFSET`), so the slots of processes on
different nodes follow one schedule.
"""

from __future__ import annotations

import bisect
import math
import time
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event
from gevent.queue import Queue
from locust import User

from harness.measure.clocks import offset_from_env

__all__ = ["CLOCK_OFFSET", "MAX_BACKLOG", "ArrivalSchedule", "driver_now", "intended", "paced"]

#: Seconds this node's clock is ahead of the driver's, measured at start (harness.measure.clocks). Every
#: epoch time here (window seconds, schedules, acknowledgements) is on the driver's clock, so
#: windows from every node line up second by second.
CLOCK_OFFSET = offset_from_env()


def driver_now() -> float:
    return time.time() - CLOCK_OFFSET


# Due slots a process queues for its users at most; beyond it the schedule skips ahead.
MAX_BACKLOG = 50_000


class ArrivalSchedule:
    """Open-model arrivals: a scheduler greenlet releases each slot when it falls due.

    The k-th slot of a stage is due at ``start + (k + phase) / rate``; the orchestrator gives
    each of n processes the phase i/n, so together they follow one schedule of n*rate
    arrivals/s. Users block in ``take()`` until a slot is due. When every user is busy (a
    slow or stalled target), due slots queue up and the next free user takes the oldest one
    at once: the iteration is late but still counted from its intended time (coordinated-
    omission correction, as wrk2 does), so a stall shows in the latency instead of hiding in
    a lower rate.
    """

    def __init__(self) -> None:
        self.rate = 0.0
        self._start = 0.0
        self._phase = 0.0
        self._k = 0
        self._pending: list[tuple[float, float, float]] = []  # (start, rate, phase), sent ahead
        self._due: Queue[float] = Queue()
        self._changed = Event()
        self.skipped = 0  # slots never queued because the backlog was full

    def set_rate(self, rate: float, start: float = 0.0, phase: float = 0.0) -> float:
        """Follow a new schedule from its own slot 0 at ``start``; returns when it takes over.

        A ``start`` in the future (the orchestrator sends open-model stages ahead) is kept
        until then while the current schedule runs on, so the change lands on its planned
        instant in intended time however late this busy process gets to run. Slots already
        released stay due.
        """
        now = driver_now()
        start = start or now
        if start > now:
            bisect.insort(self._pending, (start, max(0.0, rate), phase))
            self._changed.set()
            return start
        self._switch(start, max(0.0, rate), phase)
        return now

    def _switch(self, start: float, rate: float, phase: float) -> None:
        self.rate, self._start, self._phase, self._k = rate, start, phase, 0
        self._changed.set()

    def run(self) -> None:
        """The scheduler greenlet: release every slot that is due, then sleep to the next."""
        while True:
            self._changed.clear()
            now = driver_now()
            switch_at = self._pending[0][0] if self._pending else math.inf
            due = self._start + (self._k + self._phase) / self.rate if self.rate > 0 else math.inf
            while due <= now and due < switch_at:
                if self._due.qsize() >= MAX_BACKLOG:
                    # The users cannot keep up (a rate far beyond this process): skip what is
                    # due instead of queueing it without bound. The windows' started counts
                    # show the shortfall, which makes the run invalid.
                    behind = math.floor((min(now, switch_at) - self._start) * self.rate - self._phase) + 1 - self._k
                    self.skipped += max(1, behind)
                    self._k += max(1, behind)
                    due = self._start + (self._k + self._phase) / self.rate
                    break
                self._due.put_nowait(due)
                self._k += 1
                due = self._start + (self._k + self._phase) / self.rate
            if switch_at <= now and not (due <= now and due < switch_at):
                self._switch(*self._pending.pop(0))  # every slot of the old schedule before it is out
                continue
            wake = min(due, switch_at)
            self._changed.wait(None if wake == math.inf else max(0.0, wake - now))

    def take(self) -> float:
        """Block until a slot is due; returns its intended epoch time."""
        return self._due.get()

    @property
    def backlog(self) -> int:
        """Slots due but not yet taken by a user."""
        return self._due.qsize()


def paced(cls: type[User], schedule: ArrivalSchedule, started: Callable[[], None]) -> type[User]:
    """A subclass of ``cls`` whose iterations start at the schedule's slots, not its wait_time.

    The wait happens inside ``wait_time`` so that Locust sees the user as waiting (a stop
    then ends it gracefully) and the iteration starts the moment ``wait_time`` returns.
    """
    original_on_start = cls.on_start

    def wait_time(self: User) -> float:
        intended[gevent.getcurrent()] = schedule.take()
        started()
        return 0.0

    def on_start(self: User) -> None:
        original_on_start(self)
        wait_time(self)

    return type(cls.__name__, (cls,), {"on_start": on_start, "wait_time": wait_time, "weight": cls.weight})


# Each paced user's current iteration's intended start, by greenlet; consumed by the first
# request of the iteration.
intended: dict[Any, float] = {}
