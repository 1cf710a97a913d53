"""The live progress of a run as users see it: the terminal's panel and the plain lines of CI logs.

Each test feeds :class:`LiveStatus` values (what the run gives the display each second) to the
real rendering and reads the visible text back from a rich Console of fixed width, once as a
terminal (``force_terminal=True``; escape codes stripped before reading) and once as a pipe.
The same output from real runs is checked in tests/test_cli_run.py.
"""

from __future__ import annotations

import io
import math
import re

import pytest
from rich.console import Console

from harness.cli.progress import Progress, plain_every, plain_line, render_panel
from harness.results.lineproto import Point
from harness.run.recorder import Recorder
from harness.run.seconds import FaultNow, LiveStatus, Timeline

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
TIMELINE = Timeline(60.0, (("ramp", 0.0, 15.0), ("steady", 15.0, 60.0)), (("kill-payments", 20.0, 30.0),))
WIDTH = 100


def status(elapsed: float, **changes: object) -> LiveStatus:
    fields: dict[str, object] = {
        "elapsed": elapsed,
        "timeline": TIMELINE,
        "phase": "ramp" if elapsed < 15 else "steady",
        "users": 200,
        "target_rate": 0.0,
        "rps": 812.0,
        "p99_ms": 27.14,
        "error_rate": 3 / 812,
        "errors": 3,
        "faults": (FaultNow("kill-payments", 30.0 - elapsed),) if 20 <= elapsed < 30 else (),
        "saturated": False,
    }
    fields.update(changes)
    return LiveStatus(**fields)  # type: ignore[arg-type]


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=WIDTH, force_terminal=True, color_system="truecolor"), out


def pipe() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, width=WIDTH, force_terminal=False), out


def visible(text: str) -> list[str]:
    return [line.rstrip() for line in ANSI.sub("", text).splitlines()]


def row(lines: list[str], label: str) -> str:
    [found] = [line for line in lines if line.startswith(f"│ {label} ")]
    return found


def test_a_plain_line_says_everything_of_the_second_on_one_line() -> None:
    line = plain_line(status(23.2))
    assert line == (
        "[ 23s/60s] phase steady | faults: kill-payments (7s left) | 200 users | 812 rps | p99 27.1 ms"
        " | errors 0.4% (3)"
    )
    quiet = plain_line(status(3.0, rps=0.0, p99_ms=math.nan, error_rate=0.0, errors=0))
    assert quiet == "[  3s/60s] phase ramp | faults: none | 200 users | 0 rps | p99 - | errors 0.0% (0)"
    rare = plain_line(status(40.0, error_rate=1 / 5000, errors=1, target_rate=500.0, saturated=True, lost=("g1",)))
    assert rare.endswith("| 500/s target | 812 rps | p99 27.1 ms | errors <0.1% (1) | generators saturated | lost: g1")
    many = plain_line(status(25.0, faults=(FaultNow("kill-payments", 5.0), FaultNow("slow-db", None))))
    assert "| faults: kill-payments (5s left), slow-db |" in many


@pytest.mark.parametrize("force_terminal", [True, False])
def test_the_panel_draws_the_timeline_and_the_last_second(force_terminal: bool) -> None:
    console, out = terminal() if force_terminal else pipe()
    console.print(render_panel("demo-1", status(23.0), WIDTH))
    lines = visible(out.getvalue())
    assert lines[0].startswith("╭─ run demo-1 ")
    bar_width = WIDTH - 8 - 18  # what render_panel gives the bar at this width
    cells = bar_width / TIMELINE.duration
    time_row = row(lines, "time   ")
    # The bar: 23 s of 60 s gone, then the rest, then the figures.
    assert time_row.startswith("│ time    " + "█" * int(23 * cells) + "░" * (bar_width - int(23 * cells)) + " 23s/60s")
    bar_start = len("│ time    ")
    # Each phase and fault is written where it falls on the same axis as the bar.
    phases = row(lines, "phases")
    assert phases.index("ramp") == bar_start and phases.index("steady") == bar_start + int(15 * cells)
    faults = row(lines, "faults  ")
    fault_start, fault_end = bar_start + int(20 * cells), bar_start + round(30 * cells)
    assert faults[fault_start:fault_end] == "├" + "━" * (fault_end - fault_start - 2) + "┤"
    assert faults[fault_end:].strip(" │") == "kill-payments"  # its name beside it, where there is room
    assert row(lines, "phase   ").split("│")[1].split() == ["phase", "steady"]
    assert row(lines, "active faults").split("│")[1].split() == ["active", "faults", "kill-payments", "(7s", "left)"]
    assert "200 users" in row(lines, "load")
    assert "812 rps · p99 27.1 ms · errors 0.4% (3)" in row(lines, "last second")
    if not force_terminal:
        assert "\x1b" not in out.getvalue()
    else:
        assert "\x1b[" in out.getvalue()  # styled: the bar in colour, the active fault in red


def test_the_panel_without_faults_or_room() -> None:
    calm = Timeline(8.0, (("ramp", 0.0, 2.0), ("steady", 2.0, 8.0)))
    console, out = pipe()
    narrow = 40
    console.width = narrow
    console.print(render_panel("r", status(4.0, timeline=calm, faults=()), narrow))
    lines = visible(out.getvalue())
    assert not [line for line in lines if line.startswith("│ faults")]  # no fault row when none is planned
    assert row(lines, "active faults").split("│")[1].split() == ["active", "faults", "none"]
    assert all(len(line) <= narrow for line in lines)
    assert "█" * 5 + "░" * 5 in row(lines, "time   ")  # half the run gone, whatever the width
    console, out = pipe()
    console.print(render_panel("r", None, WIDTH))
    assert "starting Ray, the load generators and the chaos agents" in out.getvalue()


def test_plain_progress_prints_a_line_every_few_seconds_and_every_event() -> None:
    console, out = pipe()
    with Progress("demo-1", 60.0, console) as progress:
        assert progress.every == 2 and progress.live is None
        for second in range(1, 9):
            progress.update(status(second - 0.03))
            if second == 3:
                progress.event("[3s] phase ramp ended")
    text = out.getvalue()
    assert "\x1b" not in text and "\r" not in text
    lines = text.splitlines()
    assert [line[:10] for line in lines] == ["[  2s/60s]", "[3s] phase", "[  4s/60s]", "[  6s/60s]", "[  8s/60s]"]
    assert all(" | p99 27.1 ms | " in line for line in lines if line.startswith("[ "))


def test_terminal_progress_is_a_live_panel() -> None:
    console, out = terminal()
    with Progress("demo-1", 60.0, console) as progress:
        assert progress.live is not None
        progress.update(status(22.0))
        progress.event("[20s] fault kill-payments started: process.kill on 1 process(es)")
        progress.update(status(23.0))
    raw = out.getvalue()
    text = "\n".join(visible(raw))
    assert "starting Ray" in text  # drawn before the first second closed
    assert "23s/60s" in text and "kill-payments (7s left)" in text
    assert "[20s] fault kill-payments started: process.kill on 1 process(es)" in text
    assert "\x1b[?25l" in raw  # rich's Live hides the cursor while it redraws


def test_plain_lines_are_fewer_for_longer_runs() -> None:
    assert [plain_every(s) for s in (8, 30, 60, 90, 300, 600, 3600, 86400)] == [1, 1, 2, 5, 10, 30, 60, 60]


class _Points:
    def __init__(self) -> None:
        self.points: list[Point] = []

    def write(self, points: list[Point]) -> None:
        self.points.extend(points)


def test_phase_and_fault_events_become_event_lines_naming_what_they_are_about() -> None:
    console, out = pipe()
    with Progress("demo-1", 60.0, console) as progress:
        recorder = Recorder("demo-1", _Points(), note=progress.event)
        recorder.start_epoch = 1000.0
        assert recorder.shown_phase() == ""
        recorder.event("phase", "ramp", "start", "phase ramp started", 1000.0)
        assert recorder.shown_phase() == "ramp"
        recorder.event("stage", "ramp", "start", "200 users at 20/s", 1000.0)  # a stage is no line of its own
        recorder.event("phase", "ramp", "end", "phase ramp ended", 1015.0)
        assert recorder.shown_faults() == []
        recorder.event("fault", "kill-payments", "start", "process.kill on 1 process(es) [41377]", 1040.02)
        assert recorder.shown_faults() == ["kill-payments"]  # what the progress lines show from now on
        recorder.event("fault", "kill-payments", "end", "fault kill-payments reverted", 1050.0)
        assert recorder.shown_faults() == []
        recorder.event("abort", "meltdown", "start", "guard meltdown tripped", 1065.3)
    assert out.getvalue().splitlines() == [
        "[0s] phase ramp started",
        "[15s] phase ramp ended",
        "[40s] fault kill-payments started: process.kill on 1 process(es) [41377]",
        "[50s] fault kill-payments reverted",
        "[1m5.3s] guard meltdown tripped",
    ]
