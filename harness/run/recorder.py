"""The run's record as it happens: events, points for the results writer, notes for the user.

Every part of a run reports through one :class:`Recorder`: an event goes into the summary
and, as an annotation, to InfluxDB; points go to the results writer (and, when the run is
compared with a baseline, the ones the comparison reads are kept); a note is a line for the
user. None of it can break a run: a writer or display failure is logged and the run goes on.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Protocol

from harness.judge.summary import RunEvent
from harness.judge.units import format_duration
from harness.results.lineproto import Point
from harness.results.points import event_point, fault_end_point

__all__ = ["PointWriter", "Recorder"]

log = logging.getLogger(__name__)

#: Events of these kinds are also shown to the user as they happen (the progress display's event lines).
_SHOWN = ("phase", "fault", "abort", "heal")


class PointWriter(Protocol):
    """Where points go (:class:`harness.results.writer.ResultsWriter`); never blocks for long."""

    def write(self, points: list[Point]) -> None: ...


class Recorder:
    """Events, points and notes of one run. Thread-safe: the clock and poll threads both record.

    ``keep``: which points to keep in memory as well (``BaselineRun.wants``), for the
    baseline comparison at the end (results.lp may lag behind the writer).
    ``note``: shows a line to the user (the progress display).
    ``hide``: replaces the scenario's secret values (``Loaded.redact``) in every event text and
    every text field written, so a fault whose message carries a value that came from a secret
    variable never shows it anywhere.
    """

    def __init__(
        self,
        run_id: str,
        writer: PointWriter,
        note: Callable[[str], None] | None = None,
        keep: Callable[[str, Mapping[str, str]], bool] | None = None,
        hide: Callable[[str], str] | None = None,
    ) -> None:
        self.run_id = run_id
        self._hide = hide
        self.start_epoch = 0.0  # set when the clock starts; offsets are from here
        self.events: list[RunEvent] = []
        self.kept: list[Point] = []
        self._writer = writer
        self._note = note
        self._keep = keep
        self._lock = threading.Lock()
        self._fault_starts: dict[str, float] = {}  # active fault -> its start event's time
        # The faults the user was told started and not yet told ended, in that order, and the lock
        # under which that list and the lines telling it change (see :attr:`showing`).
        self._shown_faults: list[str] = []
        self._shown_phase = ""
        self._showing = threading.Lock()

    def event(
        self,
        kind: str,
        name: str,
        state: str,
        text: str,
        at: float,
        planned: float | None = None,
        late_ms: float | None = None,
        until: float | None = None,
    ) -> RunEvent:
        """Record an event in the summary and write it as an annotation; returns the summary entry.

        A stage event is written by :meth:`write_stage` once the processes acknowledged the
        change, so that its annotation carries how late it took effect. A fault's start event
        carries ``until``, its planned end (epoch s), so Grafana draws its region as soon as it
        starts; its end event also rewrites the start event with the real end.
        """
        offset = at - self.start_epoch if self.start_epoch else 0.0
        if self._hide is not None:
            text = self._hide(text)
        event = RunEvent(
            time=at,
            offset=round(offset, 3),
            kind=kind,
            name=name,
            state=state,
            text=text,
            planned_offset=None if planned is None else round(planned, 3),
            late_ms=None if late_ms is None else round(late_ms, 1),
        )
        with self._lock:
            self.events.append(event)
            started = self._fault_started(kind, name, state, at)
        if kind != "stage":
            points = [event_point(self.run_id, kind, name, state, text, at, planned, late_ms, until)]
            if started is not None:
                points.append(fault_end_point(self.run_id, name, started, at))
            self.write(points)
        if kind in _SHOWN:
            # A fault's start text says what was done ("process.kill SIGKILL sent to ..."): name it too.
            shown = f"fault {name} started: {text}" if kind == "fault" and state == "start" else text
            with self._showing:
                if kind == "fault" and state == "start" and name not in self._shown_faults:
                    self._shown_faults.append(name)
                elif kind == "fault" and state != "start" and name in self._shown_faults:
                    self._shown_faults.remove(name)
                elif kind == "phase" and state == "start":
                    self._shown_phase = name
                self.note(f"[{format_duration(round(offset, 1))}] {shown}")
        return event

    @property
    def showing(self) -> threading.Lock:
        """Held while a phase's or fault's start or end is told to the user: the progress display
        holds it while it reads :meth:`shown_phase` and :meth:`shown_faults` and shows a second,
        so that no progress line shows a phase or fault before the line saying it started, or a
        fault after the line saying it ended."""
        return self._showing

    def shown_phase(self) -> str:
        """The phase the user was last told started ("" before the first)."""
        return self._shown_phase

    def shown_faults(self) -> list[str]:
        """The faults the user was told started and not yet told ended, in that order (under :attr:`showing`)."""
        return list(self._shown_faults)

    def _fault_started(self, kind: str, name: str, state: str, at: float) -> float | None:
        """Remember when a fault started; on its end, when that was (None for other events)."""
        if kind != "fault":
            return None
        if state == "start":
            self._fault_starts[name] = at
            return None
        return self._fault_starts.pop(name, None)

    def write_stage(self, event: RunEvent, planned_s: float, late_ms: float) -> None:
        """Write a stage event's annotation, with its planned offset and how late it took effect."""
        point = event_point(
            self.run_id, "stage", event.name, "start", event.text, event.time, planned_offset=planned_s, late_ms=late_ms
        )
        self.write([point])

    def write(self, points: list[Point]) -> None:
        if self._hide is not None:  # only when the scenario has secrets: the per-second path pays nothing
            points = [self._hidden(p) for p in points]
        if self._keep is not None:
            # What the baseline comparison reads back: the same points results.lp receives.
            self.kept.extend(p for p in points if self._keep(p.measurement, p.tags))
        try:
            self._writer.write(points)
        except Exception:  # results problems are counted by the writer; never break the run
            log.exception("results writer failed")

    def _hidden(self, point: Point) -> Point:
        """``point`` with the scenario's secret values replaced in its text fields (a run's reason)."""
        hide = self._hide
        assert hide is not None
        fields = {k: hide(v) if isinstance(v, str) else v for k, v in point.fields.items()}
        return point._replace(fields=fields)

    def note(self, text: str) -> None:
        """A line for the user; a display problem never breaks the run."""
        if self._note is not None:
            with contextlib.suppress(Exception):
                self._note(text)

    def at(self, epoch: float) -> str:
        """``[1m05s]``: when ``epoch`` falls in the run, for notes."""
        return f"[{format_duration(round(epoch - self.start_epoch, 1))}]"
