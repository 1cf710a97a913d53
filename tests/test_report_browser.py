"""The HTML report in a real browser: headless Chromium (Debian ``chromium``) opens it offline.

Three checks, each shown able to fail on a page broken on purpose:

* no console message at all: the report has no script, so anything Chromium logs to the
  console (an uncaught exception, a resource refused by the page's Content-Security-Policy)
  is an error. Read from Chromium's own log (``--enable-logging=stderr``), where every console
  message is a ``CONSOLE`` line.
* the DOM Chromium built (``--dump-dom``) holds the three plots and their five lines.
* the screenshot (PNG, decoded here with zlib) shows every line colour of the plots across
  most of a plot's width, in plot order from top to bottom, and the fault shading.

Chromium runs with DNS disabled (only loopback could be reached, and nothing is asked for),
bounded by a timeout, in its own session; every process of that session is killed and
checked gone afterwards.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from harness.demo.control import DemoInfo, down, up
from harness.review.plots import ERRORS_COLOUR, P50_COLOUR, P95_COLOUR, P99_COLOUR, REQUESTS_COLOUR
from harness.review.report import render
from harness.review.report_data import from_run_dir
from tests.test_report import Page, write_run

ROOT = Path(__file__).resolve().parents[1]
BASE_PORT = 19430  # its own ports and payments subnet (10.214.180.0/24): no other test module uses them
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian package chromium is not installed (apt-get install chromium; make setup does)"
)

WIDTH, HEIGHT = 1280, 2400
TIMEOUT = 60.0
# Plot lines are ~920 px wide; a legend swatch is 18 px: a line must cover this many columns.
MIN_COLUMNS = 400
LINE_COLOURS = {
    "requests/s": REQUESTS_COLOUR,
    "p50": P50_COLOUR,
    "p95": P95_COLOUR,
    "p99": P99_COLOUR,
    "error rate": ERRORS_COLOUR,
}
FAULT_SHADE = (250, 228, 223)  # #f6c8c0 at 55% over white
_CONSOLE = re.compile(r":CONSOLE[(:\]]|Uncaught")


@dataclass
class Browsed:
    returncode: int
    stdout: str
    log: str

    def console(self) -> list[str]:
        """Every console line Chromium logged (the report logs none)."""
        return [line for line in self.log.splitlines() if _CONSOLE.search(line)]


def _session_members(sid: int) -> list[int]:
    """PIDs whose session is ``sid``: the Chromium we started and everything it forked."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 3 and int(fields[3]) == sid and fields[0] != "Z":
            found.append(int(entry.name))
    return found


def chromium(page: Path, profile: Path, *args: str) -> Browsed:
    """Run headless Chromium once on ``page`` (a file), bounded, leaving no process behind."""
    assert CHROMIUM is not None
    command = [
        CHROMIUM,
        "--headless=new",
        "--no-sandbox",  # root in a container: the sandbox cannot start
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--host-resolver-rules=MAP * ~NOTFOUND",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
        f"--window-size={WIDTH},{HEIGHT}",
        *args,
        page.resolve().as_uri(),
    ]
    proc = subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=10)
        raise
    finally:
        _end_session(proc.pid)
    return Browsed(proc.returncode, out, err)


def _end_session(sid: int) -> None:
    deadline = time.monotonic() + 10
    while _session_members(sid) and time.monotonic() < deadline:
        for pid in _session_members(sid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    assert not _session_members(sid), f"chromium processes of session {sid} are still running"


# ---------------------------------------------------------------- PNG, decoded with zlib


def _unfilter_slow(kind: int, line: bytes, prev: bytes, bpp: int) -> bytearray:
    """PNG filters 3 (Average) and 4 (Paeth): each byte depends on the decoded one to its left."""
    cur = bytearray(line)
    for i in range(len(cur)):
        b = prev[i]
        a = cur[i - bpp] if i >= bpp else 0
        if kind == 3:
            predicted = (a + b) >> 1
        else:
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            predicted = a if pa <= pb and pa <= pc else b if pb <= pc else c
        cur[i] = (cur[i] + predicted) & 255
    return cur


def decode_png(data: bytes) -> np.ndarray:
    """An 8-bit RGB or RGBA, non-interlaced PNG (what Chromium writes) as an (h, w, 3) array."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, chunks = 8, []
    width = height = channels = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", body)
            assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            chunks.append(body)
        elif kind == b"IEND":
            break
    stride = width * channels
    raw = zlib.decompress(b"".join(chunks))
    assert len(raw) == height * (stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prev = np.zeros(stride, dtype=np.int32)
    for y in range(height):
        kind = raw[y * (stride + 1)]
        line = np.frombuffer(raw, dtype=np.uint8, count=stride, offset=y * (stride + 1) + 1).astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 1:  # Sub: a running sum per channel
            cur = line.reshape(width, channels).cumsum(axis=0).reshape(-1) & 255
        elif kind == 2:  # Up
            cur = (line + prev) & 255
        else:
            decoded = _unfilter_slow(kind, line.astype(np.uint8).tobytes(), prev.astype(np.uint8).tobytes(), channels)
            cur = np.frombuffer(bytes(decoded), dtype=np.uint8).astype(np.int32)
        out[y] = cur
        prev = cur
    return out.reshape(height, width, channels)[:, :, :3]


def _rgb(colour: str) -> tuple[int, int, int]:
    return int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16)


def plot_problems(png: Path, lines: tuple[str, ...] = tuple(LINE_COLOURS)) -> list[str]:
    """What is missing from the screenshot's plots; [] when each of ``lines`` and the fault shading show."""
    image = decode_png(png.read_bytes()).astype(np.int16)
    problems = []
    centres = []
    for label in lines:
        colour = LINE_COLOURS[label]
        mask = (np.abs(image - np.array(_rgb(colour), dtype=np.int16)) <= 24).all(axis=2)
        columns = int(mask.any(axis=0).sum())
        if columns < MIN_COLUMNS:
            problems.append(f"{label} ({colour}): drawn in {columns} columns, {int(mask.sum())} pixels")
            continue
        rows = np.nonzero(mask.any(axis=1))[0]
        centres.append((label, float(np.median(rows))))
    shade = (np.abs(image - np.array(FAULT_SHADE, dtype=np.int16)) <= 6).all(axis=2)
    if shade.sum() < 3 * 2000:  # three fault rectangles, each ~40 x 180 px
        problems.append(f"fault shading: {int(shade.sum())} pixels")
    if not problems:
        order = [label for label, _ in sorted(centres, key=lambda item: item[1])]
        if order[0] != "requests/s" or order[-1] != "error rate":
            problems.append(f"plots out of order from top to bottom: {order}")
    return problems


# ---------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    runs = tmp_path_factory.mktemp("browser-runs")
    folder = write_run(runs, "r1")
    path = folder / "report.html"
    path.write_text(render(from_run_dir(folder)), encoding="utf-8")
    yield path


def test_report_opens_without_console_errors_and_its_plots_are_drawn(report: Path, tmp_path: Path) -> None:
    shot = tmp_path / "report.png"
    browsed = chromium(report, tmp_path / "profile", f"--screenshot={shot}")
    assert browsed.returncode == 0, browsed.log[-2000:]
    assert browsed.console() == []
    assert shot.is_file()
    assert plot_problems(shot) == []
    dom = chromium(report, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0 and dom.console() == []
    assert len(re.findall(r'<svg class="plot"', dom.stdout)) == 3
    assert len(re.findall(r'<polyline class="series"', dom.stdout)) == 5
    assert len(re.findall(r'<rect class="fault"', dom.stdout)) == 3
    assert "<script" not in dom.stdout  # the hostile names stayed text in the browser's DOM too


def test_the_console_check_catches_errors(report: Path, tmp_path: Path) -> None:
    """A script error and a load refused by the report's CSP both show up as console lines."""
    thrown = tmp_path / "thrown.html"
    thrown.write_text("<!DOCTYPE html><html><body><p>x</p><script>notDefined()</script></body></html>")
    browsed = chromium(thrown, tmp_path / "profile", "--dump-dom")
    assert any("Uncaught ReferenceError: notDefined is not defined" in line for line in browsed.console())
    external = tmp_path / "external.html"
    external.write_text(report.read_text().replace("</main>", '<img src="https://example.invalid/x.png"></main>'))
    browsed = chromium(external, tmp_path / "profile", "--dump-dom")
    assert any("violates the following Content Security Policy" in line for line in browsed.console())


def test_the_plot_check_catches_blank_plots(report: Path, tmp_path: Path) -> None:
    blank = tmp_path / "blank.html"
    blank.write_text(report.read_text().replace('stroke-width="2"', 'stroke-width="0"'))
    shot = tmp_path / "blank.png"
    browsed = chromium(blank, tmp_path / "profile", f"--screenshot={shot}")
    assert browsed.returncode == 0 and browsed.console() == []
    problems = plot_problems(shot)
    assert [p.split(" (")[0] for p in problems] == list(LINE_COLOURS)


# ---------------------------------------------------------------- a real run writes its report


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoInfo]:
    directory = tmp_path / "demo"
    directory.mkdir()
    try:
        yield up(directory=directory, base_port=BASE_PORT, restart_delay=2.0)
    finally:
        down(directory=directory)


@pytest.mark.slow
def test_a_real_run_writes_a_report_that_opens_cleanly(tmp_path: Path, demo: DemoInfo, influxd: Any) -> None:
    """harness run against the demo (payments killed at +6 s for 3 s): report.html beside summary.json."""
    influxd.create_database("report_e2e")
    scenario = tmp_path / "report-e2e.yaml"
    scenario.write_text(
        f"""
name: report-e2e
target:
  base_url: {demo.base_url}
load:
  locustfile: {ROOT / "locustfiles" / "shop.py"}
  user_classes:
    - class: Shopper
  processes: 1
  stages:
    - {{name: ramp, duration: 3s, users: 40, spawn_rate: 20}}
    - {{name: steady, duration: 11s, users: 40}}
faults:
  - name: kill-payments
    kind: process.kill
    at: 6s
    duration: 3s
    target: {{pid_file: {Path(demo.directory) / "payments.pid"}}}
slos:
  - {{name: steady-p99, objective: p99 < 2s, window: steady}}
results:
  url: {influxd.url}
  database: report_e2e
""".lstrip()
    )
    runs = tmp_path / "runs"
    env = {**os.environ, "HARNESS_RUNS_DIR": str(runs)}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", "report-e2e"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    folder = runs / "report-e2e"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"report: {folder / 'report.html'}" in done.stdout
    assert "warning: report.html not written" not in done.stdout
    page = Page((folder / "report.html").read_text())
    assert page.rows("slos")[0][0] == "steady-p99" and page.rows("slos")[0][-1] == "pass"
    assert [f["data-fault"] for f in page.find("rect", **{"class": "fault"})] == ["kill-payments"] * 3
    assert [p["data-phase"] for p in page.find("line", **{"class": "phase"})] == ["ramp", "steady"] * 3
    shot = tmp_path / "run.png"
    browsed = chromium(folder / "report.html", tmp_path / "profile", f"--screenshot={shot}")
    assert browsed.returncode == 0 and browsed.console() == []
    assert plot_problems(shot, ("requests/s", "p50", "p99", "error rate")) == []
    # With the run's own record gone, harness report reads the run back from InfluxDB, and its
    # exact series (harness_windows, harness_totals) give the run's figures again.
    folder.rename(tmp_path / "record-gone")
    command = ["report", "report-e2e", "--results-url", influxd.url, "--database", "report_e2e"]
    again = subprocess.run(
        [sys.executable, "-m", "harness.cli", *command, "--output", str(tmp_path / "again.html")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert again.returncode == 0 and again.stderr == "", again.stderr
    regenerated = Page((tmp_path / "again.html").read_text())
    assert "Source: InfluxDB" in " ".join(regenerated.text)
    assert _summary_figures(regenerated) == _summary_figures(page)


def _summary_figures(page: Page) -> dict[str, str]:
    """The summary's run-level figures: requests (rate), failures (rate), latency percentiles."""
    chunks = [c.strip() for c in page.text if c.strip()]
    return {key: chunks[chunks.index(key) + 1] for key in ("requests", "failures", "latency (ms)")}
