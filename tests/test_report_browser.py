"""The HTML report in a real browser: headless Chromium (Debian ``chromium``) opens it offline.

Five checks, each shown able to fail on a page broken on purpose:

* no console message at all: the report's scripts log nothing, so anything Chromium logs to
  the console (an uncaught exception, a script or load refused by the page's
  Content-Security-Policy) is an error. Read from Chromium's own log (``--enable-logging=stderr``),
  where every console message is a ``CONSOLE`` line.
* no network request: Chromium's net log (``--log-net-log``) lists every URL request; those a
  page starts carry its initiator (``null`` for a file:// page), while Chromium's own
  background requests (update checks, sign-in) carry ``not an origin``. The report's must be none.
* the charts were drawn: the DOM Chromium built after the scripts ran (``--dump-dom``) has a
  canvas per chart and no longer the "charts need JavaScript" note.
* the screenshots at two widths (1280 and 800 px; PNG, decoded here with zlib) show every line
  colour across a good part of the page's width, the charts in order from top to bottom, and the
  fault band's colour.
* without JavaScript the page still shows its figures: the tables and the note.

Chromium runs with DNS disabled (only loopback could be reached), bounded by a timeout, in its
own session; every process of that session is killed and checked gone afterwards.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
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
from harness.review.plots import (
    ENDPOINT_P99_COLOUR,
    ERRORS_COLOUR,
    FAULT_COLOUR,
    P50_COLOUR,
    P95_COLOUR,
    P99_COLOUR,
    REQUESTS_COLOUR,
)
from harness.review.report import render
from harness.review.report_data import from_run_dir
from tests.test_report import Page, write_run

ROOT = Path(__file__).resolve().parents[1]
BASE_PORT = 19430  # its own ports and payments subnet (10.214.180.0/24): no other test module uses them
CHROMIUM = shutil.which("chromium")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian package chromium is not installed (apt-get install chromium; make setup does)"
)

WIDTHS = (1280, 800)
HEIGHT = 3800  # the whole page at 800 px: every chart is in the screenshot
TIMEOUT = 60.0
# A chart's lines span most of its plot (~75% of the window's width); a legend swatch is ~10 px.
MIN_SHARE = 0.4
LINE_COLOURS = {
    "requests/s": REQUESTS_COLOUR,
    "p50": P50_COLOUR,
    "p95": P95_COLOUR,
    "p99": P99_COLOUR,
    "error rate": ERRORS_COLOUR,
    "endpoint p99": ENDPOINT_P99_COLOUR,
}
CHARTS = 6  # timeline, load, latency, failures and one per endpoint (two)
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


def chromium(page: Path, profile: Path, *args: str, width: int = WIDTHS[0]) -> Browsed:
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
        f"--window-size={width},{HEIGHT}",
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


def plot_problems(png: Path, lines: tuple[str, ...] = tuple(LINE_COLOURS), faults: int = 6) -> list[str]:
    """What is missing from the screenshot's charts; [] when each of ``lines`` and the fault band show.

    ``faults``: the charts the fault band is drawn on (the timeline's fault lane counts as one)."""
    image = decode_png(png.read_bytes()).astype(np.int16)
    width = image.shape[1]
    problems = []
    centres = []
    for label in lines:
        colour = LINE_COLOURS[label]
        mask = (np.abs(image - np.array(_rgb(colour), dtype=np.int16)) <= 24).all(axis=2)
        columns = int(mask.any(axis=0).sum())
        if columns < MIN_SHARE * width:
            problems.append(f"{label} ({colour}): drawn in {columns} columns, {int(mask.sum())} pixels")
            continue
        rows = np.nonzero(mask.any(axis=1))[0]
        centres.append((label, float(np.median(rows))))
    band = (np.abs(image - np.array(_rgb(FAULT_COLOUR), dtype=np.int16)) <= 3).all(axis=2)
    # each chart's band: 5 s of a ~30 s axis (a sixth of the plot's width) by its height, less the lines
    if band.sum() < faults * (width * 0.6 / 6) * 60:
        problems.append(f"fault band ({FAULT_COLOUR}): {int(band.sum())} pixels")
    else:  # every chart's time axis is the same: the band starts and ends at the same columns on each
        spans = _band_spans(band)
        starts, ends = {a for a, _ in spans}, {b for _, b in spans}
        if max(starts) - min(starts) > 2 or max(ends) - min(ends) > 2:
            problems.append(f"fault band at different columns on different charts: {spans}")
    if not problems:
        order = [label for label, _ in sorted(centres, key=lambda item: item[1])]
        expected = [label for label in LINE_COLOURS if label in lines]
        if [order[0], order[-1]] != [expected[0], expected[-1]] or order.index("p50") > order.index("error rate"):
            problems.append(f"charts out of order from top to bottom: {order}")
    return problems


def _band_spans(band: np.ndarray) -> list[tuple[int, int]]:
    """(first, last column) of the band on each chart: rows holding it, in runs (one per chart), and in
    each run the columns it covers in most rows (lines drawn over it hide it in some)."""
    rows = np.nonzero(band.sum(axis=1) > band.shape[1] * 0.03)[0]
    runs = np.split(rows, np.nonzero(np.diff(rows) > 4)[0] + 1) if len(rows) else []
    spans = []
    for run in runs:
        if len(run) < 8:  # a legend swatch, not a chart
            continue
        columns = np.nonzero(band[run].mean(axis=0) > 0.5)[0]
        if len(columns):
            spans.append((int(columns.min()), int(columns.max())))
    return spans


def page_requests(netlog: Path) -> list[str]:
    """URLs the page asked for, from Chromium's net log (its own background requests left out)."""
    log = json.loads(netlog.read_text())
    started = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    jobs = [event.get("params", {}) for event in log["events"] if event["type"] == started]
    return [job["url"] for job in jobs if "url" in job and job.get("initiator") != "not an origin"]


def _rehashed(page: str, script: str, changed: str) -> str:
    """The page with one of its inline scripts changed, and the CSP hash changed with it."""

    def digest(text: str) -> str:
        return base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()

    assert script in page and f"'sha256-{digest(script)}'" in page
    return page.replace(script, changed).replace(digest(script), digest(changed))


# ---------------------------------------------------------------- the tests


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    runs = tmp_path_factory.mktemp("browser-runs")
    folder = write_run(runs, "r1")
    path = folder / "report.html"
    path.write_text(render(from_run_dir(folder)), encoding="utf-8")
    yield path


def test_report_opens_offline_without_console_errors_or_requests_and_its_charts_are_drawn(
    report: Path, tmp_path: Path
) -> None:
    for width in WIDTHS:
        shot, netlog = tmp_path / f"report-{width}.png", tmp_path / f"net-{width}.json"
        browsed = chromium(report, tmp_path / "profile", f"--screenshot={shot}", f"--log-net-log={netlog}", width=width)
        assert browsed.returncode == 0, browsed.log[-2000:]
        assert browsed.console() == []
        assert page_requests(netlog) == []
        assert plot_problems(shot) == [], width
    dom = chromium(report, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0 and dom.console() == []
    assert len(re.findall(r"<canvas\b", dom.stdout)) == CHARTS
    assert f'data-charts="{CHARTS}"' in dom.stdout and 'id="charts-fallback"' not in dom.stdout
    assert "<script>alert" not in dom.stdout  # the hostile names stayed text in the browser's DOM too
    # hover values: every chart but the timeline has uPlot's live legend
    assert len(re.findall(r'<table class="u-legend', dom.stdout)) == CHARTS - 1


def test_without_javascript_the_page_shows_its_figures(report: Path, tmp_path: Path) -> None:
    """Scripts refused (a CSP of ``script-src 'none'``; Chromium's --dump-dom needs JavaScript itself,
    so it cannot simply be switched off): the charts' check fails here (no canvas), and the tables
    and the note are what a reader gets."""
    text = report.read_text()
    refused = tmp_path / "refused.html"
    refused.write_text(re.sub(r"script-src [^;]*;", "script-src 'none';", text, count=1))
    dom = chromium(refused, tmp_path / "profile", "--dump-dom")
    assert dom.returncode == 0
    assert len(dom.console()) == 2 and all("Executing inline script violates" in c for c in dom.console())
    assert len(re.findall(r"<canvas\b", dom.stdout)) == 0 and 'id="charts-fallback"' in dom.stdout
    page = Page(dom.stdout)
    assert [row[0] for row in page.rows("endpoints")][-1] == "all endpoints"
    assert len(page.rows("failures")) == 2 and len(page.rows("seconds")) == 31 and len(page.rows("slos")) == 4


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


def test_the_request_check_catches_a_page_that_loads_an_external_url(report: Path, tmp_path: Path) -> None:
    """The report's page without its CSP and with an image from elsewhere: the net log has the request."""
    text = report.read_text()
    page = tmp_path / "loads.html"
    page.write_text(
        re.sub(r'<meta http-equiv="Content-Security-Policy"[^>]*>', "", text).replace(
            "</main>", '<img src="http://example.invalid/x.png"></main>'
        )
    )
    netlog = tmp_path / "net.json"
    browsed = chromium(page, tmp_path / "profile", f"--log-net-log={netlog}", "--dump-dom")
    assert browsed.returncode == 0
    assert page_requests(netlog) == ["http://example.invalid/x.png"]


def test_the_chart_check_catches_blank_charts(report: Path, tmp_path: Path) -> None:
    """Lines of width 0 and a white fault band: every line and the band are reported missing."""
    app = (ROOT / "harness" / "review" / "report.js").read_text()
    text = _rehashed(report.read_text(), app, app.replace("width: 2,", "width: 0,").replace("width: 1.5", "width: 0"))
    blank = tmp_path / "blank.html"
    blank.write_text(text.replace(f'"fault":"{FAULT_COLOUR}"', '"fault":"#ffffff"'))
    shot = tmp_path / "blank.png"
    browsed = chromium(blank, tmp_path / "profile", f"--screenshot={shot}")
    assert browsed.returncode == 0 and browsed.console() == []
    problems = plot_problems(shot)
    assert [p.split(" (")[0] for p in problems] == [*LINE_COLOURS, "fault band"]


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
    charts = page.chart_data()
    assert [f["text"] for f in charts["faults"]] == ["kill-payments"]
    assert [m["text"] for m in charts["markers"] if m["kind"] == "phase"] == ["ramp", "steady"]
    shot, netlog = tmp_path / "run.png", tmp_path / "net.json"
    browsed = chromium(folder / "report.html", tmp_path / "profile", f"--screenshot={shot}", f"--log-net-log={netlog}")
    assert browsed.returncode == 0 and browsed.console() == []
    assert page_requests(netlog) == []
    assert plot_problems(shot, ("requests/s", "p50", "p99", "error rate"), faults=4) == []
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
