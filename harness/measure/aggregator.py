"""The aggregator: every process's window of a second merged into one, closed when all reported.

Pure, like :mod:`harness.measure.windows` whose windows and seconds it merges. The run's poll
thread adds each process's window as it is drained (:meth:`Aggregator.add`) and closes the
seconds that are complete or past their grace (:meth:`Aggregator.close_ready`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from harness.measure.windows import ClosedSecond, EndpointStats, ProcessWindow

__all__ = ["Aggregator", "LateWindow"]


@dataclass(frozen=True)
class LateWindow:
    """A window that arrived after its second was closed, as the orchestrator must apply it.

    ``delta`` holds just this window's requests (a revision: feed it to the totals);
    ``revised`` is the whole second with the window merged in, to be written again over
    the second's earlier rows, or None when the second is older than the aggregator keeps.
    """

    delta: ClosedSecond
    revised: ClosedSecond | None


class Aggregator:
    """Merges windows from every process by second; a second closes when all have reported.

    A second also closes ``grace`` seconds after it ended even if a process is silent
    (marked late), so one stuck process cannot stall the live view. A window arriving for
    an already-closed second is never lost: ``take_late()`` hands it out once, merged into
    the closed second when that is one of the last ``keep`` closed seconds.

    ``since`` (epoch s): the first second of the run. A window for an earlier second (wholly
    before the load started: no request in it) is dropped; one process may report it and another
    not, depending on when each window was drained, and the second would close late for nothing.
    """

    def __init__(self, processes: Iterable[str], grace: float = 3.0, keep: int = 10, since: int | None = None) -> None:
        self.processes = set(processes)
        self.since = since
        self.grace = grace
        self.keep = keep
        self._seconds: dict[int, ClosedSecond] = {}
        self._reported: dict[int, set[str]] = {}
        self._closed_upto: int | None = None
        self._recent: dict[int, ClosedSecond] = {}  # the last ``keep`` closed seconds, by second
        self._late: list[ProcessWindow] = []
        self.late_count = 0

    def add(self, window: ProcessWindow) -> None:
        if self.since is not None and window.second < self.since:
            return
        if self._closed_upto is not None and window.second <= self._closed_upto:
            self._late.append(window)
            self.late_count += 1
            return
        current = self._seconds.get(window.second)
        if current is None:
            current = self._seconds[window.second] = ClosedSecond(window.second, {}, [])
        _merge_into(current, window)
        self._reported.setdefault(window.second, set()).add(window.process)

    def take_late(self) -> list[LateWindow]:
        """Late windows received since the last call, each merged into its kept second."""
        out = []
        for window in self._late:
            delta = ClosedSecond(window.second, {}, [], late=True, revision=True)
            _merge_into(delta, window)
            revised = self._recent.get(window.second)
            if revised is not None:
                _merge_into(revised, window, own=False)
            out.append(LateWindow(delta, revised))
        self._late = []
        return out

    def close_ready(self, now: float) -> list[ClosedSecond]:
        """Seconds every process has finished, plus any older than ``grace``; in order."""
        ready = []
        for second in sorted(self._seconds):
            complete = self._reported.get(second, set()) >= self.processes
            if complete or now >= second + 1 + self.grace:
                ready.append(self._close(second, late=not complete))
            else:
                break
        return ready

    def close_all(self) -> list[ClosedSecond]:
        return [self._close(second, late=False) for second in sorted(self._seconds)]

    def _close(self, second: int, late: bool) -> ClosedSecond:
        closed = self._seconds.pop(second)
        self._reported.pop(second, None)
        closed.late = late
        self._closed_upto = second if self._closed_upto is None else max(self._closed_upto, second)
        self._recent[second] = closed
        while len(self._recent) > self.keep:
            del self._recent[min(self._recent)]
        return closed


def _merge_into(closed: ClosedSecond, window: ProcessWindow, own: bool = True) -> None:
    """Merge a window's statistics into a second; ``own``: the window is not used elsewhere,
    so its statistics may become the second's own (no copy of the histogram)."""
    for key, stats in window.endpoints.items():
        mine = closed.endpoints.get(key)
        if mine is None and own:
            closed.endpoints[key] = stats
            continue
        if mine is None:
            mine = closed.endpoints[key] = EndpointStats()
        mine.merge(stats)
    closed.health.append(window.health)
