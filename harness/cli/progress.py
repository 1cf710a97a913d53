"""The live progress of a run, as ``harness run`` and ``harness gate`` show it while the load runs.

Two forms, chosen by where the output goes:

* a terminal: a rich Live panel, redrawn each second when a second closes: a bar over the
  whole timeline with the phases and the faults drawn where they fall, then the phase, the
  active faults with their time left, the load, and rps, p99 and errors of the last second;
* anything else (CI logs, pipes, files): one plain line every few seconds (:func:`plain_every`),
  with no ANSI code and no carriage return, each line whole in itself so that ``grep`` finds
  what it needs (``[ 20s/60s] phase steady | faults: kill-payments (7s left) | ...``).

Phase and fault starts and ends, generator losses and aborts come as event lines
(:meth:`Progress.event`) in both forms, as they happen.
"""

from __future__ import annotations

import math

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from harness.cli.display import console
from harness.judge.units import format_duration
from harness.run.seconds import FaultNow, LiveStatus, Timeline

__all__ = ["Progress", "plain_every", "plain_line", "render_panel", "timeline_rows"]

#: Seconds between plain lines: the smallest of these that gives at most about 30 lines a run.
_PLAIN_STEPS = (1, 2, 5, 10, 15, 30, 60)
_PLAIN_LINES = 30
_LABEL = 8  # width of the labels left of the timeline rows ("phases", "faults", "time")


def plain_every(duration: float) -> int:
    """Seconds between two plain progress lines for a run of ``duration`` seconds."""
    return next((step for step in _PLAIN_STEPS if duration / step <= _PLAIN_LINES), _PLAIN_STEPS[-1])


def _clock(seconds: float) -> str:
    return format_duration(max(0, round(seconds)))


def _left(fault: FaultNow) -> str:
    return fault.name if fault.left_s is None else f"{fault.name} ({_clock(fault.left_s)} left)"


def _p99(status: LiveStatus) -> str:
    return "-" if math.isnan(status.p99_ms) else f"{status.p99_ms:.1f} ms"


def _errors(status: LiveStatus) -> str:
    share = status.error_rate * 100
    shown = f"{share:.1f}%" if share >= 0.1 or share == 0 else "<0.1%"
    return f"{shown} ({status.errors})"


def _load(status: LiveStatus) -> str:
    return f"{status.target_rate:g}/s target" if status.target_rate else f"{status.users} users"


def _problems(status: LiveStatus) -> list[str]:
    return [
        *(["generators saturated"] if status.saturated else []),
        *(["arrival rate short"] if status.short else []),
        *([f"lost: {', '.join(status.lost)}"] if status.lost else []),
    ]


def plain_line(status: LiveStatus) -> str:
    """One self-contained line of progress, for output that is not a terminal."""
    total = f"{round(status.total)}s"
    when = f"[{round(status.elapsed):>{len(total)}}s/{total}]"
    faults = ", ".join(_left(f) for f in status.faults) or "none"
    parts = [
        f"{when} phase {status.phase or '-'}",
        f"faults: {faults}",
        _load(status),
        f"{status.rps:.0f} rps",
        f"p99 {_p99(status)}",
        f"errors {_errors(status)}",
        *_problems(status),
    ]
    return " | ".join(parts)


def _paint(cells: list[tuple[str, str]], start: float, end: float, label: str, style: str, scale: float) -> None:
    """Write ``label`` over the cells from offset ``start`` to ``end``, padded with a rule."""
    first, last = _cell_span(start, end, scale, len(cells))
    text = (label + " " if len(label) < last - first else label[: last - first]).ljust(last - first, "━")
    for i, char in enumerate(text):
        cells[first + i] = (char, style)


def _row(cells: list[tuple[str, str]]) -> Text:
    row = Text()
    for char, style in cells:
        row.append(char, style=style)
    return row


def _cell_span(start: float, end: float, scale: float, width: int) -> tuple[int, int]:
    first = min(width - 1, int(start * scale))
    return first, max(first + 1, min(width, round(end * scale)))


def _fault_row(timeline: Timeline, elapsed: float, scale: float, width: int) -> list[tuple[str, str]]:
    """Each fault as a rule over its window, its name beside it (after it, else before it, where
    the row is free), so its extent reads on the time bar's axis whatever the name's length."""
    cells: list[tuple[str, str]] = [(" ", "")] * width
    placed = []
    for name, start, end in timeline.faults:
        style = "bold red" if start <= elapsed < end else "dim red" if elapsed >= end else "red"
        first, last = _cell_span(start, end, scale, width)
        rule = "│" if last - first == 1 else "├" + "━" * (last - first - 2) + "┤"
        cells[first:last] = [(c, style) for c in rule]
        placed.append((name, first, last, style))
    for name, first, last, style in placed:
        label = f" {name}"
        if all(c == " " for c, _ in cells[last : last + len(label)]) and last + len(label) <= width:
            cells[last : last + len(label)] = [(c, style) for c in label]
        elif first >= len(label) and all(c == " " for c, _ in cells[first - len(label) : first]):
            cells[first - len(label) : first] = [(c, style) for c in name + " "]
    return cells


def timeline_rows(timeline: Timeline, elapsed: float | None, width: int, phase: str = "") -> list[Text]:
    """The bar over the whole run, ``width`` cells wide: the phases, the faults where they fall,
    and the time gone (``elapsed``; None: not started). Each row starts with its label."""
    duration = max(timeline.duration, 1e-9)
    scale = width / duration
    phases: list[tuple[str, str]] = [(" ", "")] * width
    for name, start, end in timeline.phases:
        _paint(phases, start, end, name, "bold" if name == phase else "dim", scale)
    faults = _fault_row(timeline, -1.0 if elapsed is None else elapsed, scale, width)
    done = 0 if elapsed is None else min(width, int(elapsed * scale))
    bar = Text("█" * done, style="cyan") + Text("░" * (width - done), style="dim")
    rows = [Text("phases".ljust(_LABEL)) + _row(phases)]
    if timeline.faults:
        rows.append(Text("faults".ljust(_LABEL)) + _row(faults))
    gone = "" if elapsed is None else f" {round(elapsed)}s/{round(timeline.duration)}s"
    rows.append(Text("time".ljust(_LABEL)) + bar + Text(gone))
    return rows


def render_panel(run_id: str, status: LiveStatus | None, width: int) -> Panel:
    """The live panel for a terminal ``width`` columns wide; ``status`` None: the run is starting."""
    bar_width = max(10, min(100, width - _LABEL - 18))
    parts: list[RenderableType] = []
    if status is not None:
        parts.extend(timeline_rows(status.timeline, status.elapsed, bar_width, status.phase))
        parts.append(Text())
    figures = Table.grid(padding=(0, 2))
    figures.add_column(style="bold")
    figures.add_column()
    if status is None:
        figures.add_row("status", "starting Ray, the load generators and the chaos agents…")
    else:
        faults = ", ".join(_left(f) for f in status.faults) or "none"
        figures.add_row("phase", escape(status.phase or "-"))
        figures.add_row("active faults", escape(faults), style="red" if status.faults else "")
        figures.add_row("load", _load(status))
        last = f"{status.rps:.0f} rps · p99 {_p99(status)} · errors {_errors(status)}"
        figures.add_row("last second", last, style="red" if status.errors else "")
        problems = _problems(status)
        if problems:
            figures.add_row("warning", escape("; ".join(problems)), style="yellow")
    parts.append(figures)
    return Panel(Group(*parts), title=f"run {escape(run_id)}", title_align="left", expand=False)


class Progress:
    """Live progress of a run (a :class:`harness.run.session.ProgressView`), shown while its load runs.

    ``out``: where it goes (stdout's console, or stderr's when stdout carries a JSON summary);
    a terminal gets the live panel, anything else a plain line every ``every`` closed seconds
    (default: :func:`plain_every` of ``total``). Called from the run's threads: rich's Live
    serialises its own output.
    """

    def __init__(self, run_id: str, total: float, out: Console | None = None, every: int | None = None) -> None:
        self.run_id = run_id
        self.total = total
        self.out = out or console
        self.every = every or plain_every(total)
        self.live: Live | None = None
        self.status: LiveStatus | None = None
        self._seen = 0  # seconds shown so far (one status per closed second)

    def __enter__(self) -> Progress:
        if self.out.is_terminal:
            self.live = Live(self._panel(), console=self.out, auto_refresh=False, transient=False)
            self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.live is not None:
            self.live.__exit__(None, None, None)
            self.live = None

    def update(self, status: LiveStatus) -> None:
        """A second closed: redraw the panel, or print a plain line when one is due."""
        self.status = status
        if self.live is not None:
            self.live.update(self._panel(), refresh=True)
            return
        self._seen += 1
        if self._seen % self.every == 0:
            self.out.print(plain_line(status), markup=False, highlight=False, soft_wrap=True)

    def event(self, text: str) -> None:
        """A line that stays (above the panel on a terminal)."""
        self.out.print(text, markup=False, highlight=False, soft_wrap=True)

    def _panel(self) -> Panel:
        return render_panel(self.run_id, self.status, self.out.width)
