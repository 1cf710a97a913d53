"""`harness new` then `harness run` against the demo shop, as a newcomer does, and what a run
prints with `--json`, `--quiet` and on a terminal: real runs (Ray, Locust subprocesses, a chaos
agent, the demo), short.

`--json`: stdout is the summary and nothing else (the same document as summary.json), the
progress goes to stderr as plain lines (stderr is not a terminal). `--quiet`: one line, the
verdict with the run id. On a terminal (a pseudo-terminal here): the live panel, then the
verdict table. Results go to an address where nothing listens, so they stay in the run
directory (no InfluxDB needed).
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Iterator
from fcntl import ioctl
from pathlib import Path

import pytest

from harness.demo.control import DemoInfo, down, up

pytestmark = pytest.mark.slow

BASE_PORT = 19640  # its own ports and payments subnet (10.214.140.0/24): no other test module uses them


# A plain progress line: `[  4s/8s] phase steady | faults: kill-payments (2s left) | 10 users | 9 rps | ...`
PROGRESS = re.compile(
    r"^\[ *(?P<at>\d+)s/8s\] phase (?P<phase>\S+) \| faults: (?P<faults>[^|]+) \| (?P<users>\d+) users"
    r" \| (?P<rps>\d+) rps \| p99 (?P<p99>\d+\.\d ms|-) \| errors (?P<share><?\d+\.\d)% \((?P<errors>\d+)\)$",
    re.MULTILINE,
)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DemoInfo]:
    directory = tmp_path_factory.mktemp("demo")
    try:
        yield up(directory=directory, base_port=BASE_PORT, restart_delay=3.0)
    finally:
        down(directory=directory)


@pytest.fixture(scope="module")
def scenario(demo: DemoInfo, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """What `harness new` wrote, pointed at this module's demo, its stages cut to 2 s + 6 s."""
    where = tmp_path_factory.mktemp("new")
    done = _cli("new", "first-steps", "--base-url", demo.base_url, cwd=where)
    assert done.returncode == 0, done.stderr
    path = where / "first-steps.yaml"
    text = path.read_text()
    assert "duration: 10s" in text and "duration: 50s" in text
    path.write_text(text.replace("duration: 10s", "duration: 2s").replace("duration: 50s", "duration: 6s"))
    return path


@pytest.fixture(scope="module")
def faulted(scenario: Path) -> Path:
    """The new scenario with a fault added: payments (which its Visitor never calls, so the
    verdict is untouched) killed at 3 s for 3 s, so that a run shows a fault's progress."""
    path = scenario.with_name("first-steps-faulted.yaml")
    payments = BASE_PORT + 3
    path.write_text(
        scenario.read_text()
        + "faults:\n"
        + "  - {name: kill-payments, kind: process.kill, at: 3s, duration: 3s,\n"
        + f"     target: {{pattern: 'harness\\.demo\\.services payments --port {payments}\\b'}}}}\n"
    )
    return path


@pytest.fixture(scope="module")
def json_run(faulted: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """One `--json` run of the faulted scenario, read by the tests of its stdout and its stderr."""
    runs = tmp_path_factory.mktemp("runs")
    return runs, _run(faulted, runs, "new-json", "--json")


def _cli(*args: str, cwd: Path | None = None, runs: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    if runs is not None:
        env["HARNESS_RUNS_DIR"] = str(runs)
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


def _run(scenario: Path, runs: Path, run_id: str, *flags: str) -> subprocess.CompletedProcess[str]:
    return _cli(
        "run", str(scenario), "--run-id", run_id, "--processes", "1", "--results-url", "http://127.0.0.1:9", *flags,
        runs=runs,
    )  # fmt: skip


def test_a_new_scenario_runs_against_the_demo_and_json_is_the_summary(
    json_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    runs, done = json_run
    assert done.returncode == 0, done.stdout + done.stderr
    printed = json.loads(done.stdout)  # stdout is one JSON document and nothing else
    written = json.loads((runs / "new-json" / "summary.json").read_text())
    assert printed == written
    assert (printed["run_id"], printed["scenario"], printed["verdict"]) == ("new-json", "first-steps", "passed")
    assert printed["totals"]["requests"] > 0 and printed["totals"]["failures"] == 0
    assert sorted(slo["name"] for slo in printed["slos"]) == ["errors", "steady-latency"]
    # What the run said as it went is on stderr: its plan line and where its outputs are.
    assert "run new-json: first-steps, 8s; outputs in" in done.stderr
    assert f"summary: {runs / 'new-json' / 'summary.json'}" in done.stderr
    assert "PASSED" not in done.stdout


def test_quiet_prints_the_verdict_line_alone(scenario: Path, tmp_path: Path) -> None:
    done = _run(scenario, tmp_path, "new-quiet", "--quiet")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "new-quiet" / "summary.json").read_text())
    assert summary["reason"] == "all 2 SLOs met"
    assert done.stdout == "PASSED: all 2 SLOs met (run new-quiet)\n"
    assert not PROGRESS.search(done.stderr) and "] phase " not in done.stderr  # no progress lines, no events
    assert "outputs in" not in done.stderr  # no chatter


def test_progress_on_a_pipe_is_plain_lines_with_phases_faults_and_figures(
    json_run: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    """stderr is not a terminal: one line a second (a short run), events as they happen."""
    _, done = json_run
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stderr and "\r" not in done.stderr  # no escape code, no carriage return
    lines = done.stderr.splitlines()
    progress = [(i, m) for i, line in enumerate(lines) if (m := PROGRESS.match(line))]
    assert len(progress) >= 5, done.stderr  # 8 s, a line a second (some may close after the last step)
    assert [int(m["at"]) for _, m in progress] == sorted(int(m["at"]) for _, m in progress)
    # Phases: announced in order, and shown in that order.
    events = [line for line in lines if re.match(r"^\[[^]/]+\] (phase|fault) ", line)]
    said = [re.sub(r"^\[[^]]+\] ", "", line).split(":")[0] for line in events]
    assert said == [
        "phase ramp started",
        "phase ramp ended",
        "phase steady started",
        "fault kill-payments started",
        "fault kill-payments reverted",
        "phase steady ended",
    ], done.stderr
    shown = [m["phase"] for _, m in progress]
    assert "steady" in shown and shown == sorted(shown, key=["ramp", "steady"].index)
    steady = next(i for i, line in enumerate(lines) if line.endswith("] phase steady started"))
    assert all(i > steady for i, m in progress if m["phase"] == "steady")  # never before it is announced
    assert max(int(m["users"]) for _, m in progress) == 10  # the users the stages ask for
    # The fault: with its time left while it is active, between its start and end lines.
    started = next(i for i, line in enumerate(lines) if "fault kill-payments started: process.kill" in line)
    ended = next(i for i, line in enumerate(lines) if "fault kill-payments reverted" in line)
    active = [(i, m) for i, m in progress if m["faults"] != "none"]
    assert active, done.stderr
    for i, m in active:
        left = re.fullmatch(r"kill-payments \((\d+)s left\)", m["faults"].strip())
        assert left is not None and started < i < ended, m[0]
        assert 0 <= int(left[1]) <= 3 and 5 <= int(m["at"]) + int(left[1]) <= 7, m[0]  # it ends at 6 s
    assert all(m["faults"].strip() == "none" for i, m in progress if i < started or i > ended)
    # The figures of the last second are numbers, and they add up.
    assert any(int(m["rps"]) > 0 and m["p99"] != "-" for _, m in progress)
    for _, m in progress:
        assert m["p99"] == "-" or float(m["p99"].split()[0]) >= 0
        assert int(m["errors"]) <= int(m["rps"]) and (m["share"] != "0.0" or m["errors"] == "0")


def _run_on_a_terminal(scenario: Path, runs: Path, run_id: str, timeout: float = 300) -> tuple[int, str]:
    """`harness run` with stdout and stderr on a pseudo-terminal 120 columns wide; all it wrote."""
    controller, terminal = pty.openpty()
    ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 120, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "FORCE_COLOR")}
    env.update(TERM="xterm-256color", HARNESS_RUNS_DIR=str(runs))
    args = ["run", str(scenario), "--run-id", run_id, "--processes", "1", "--results-url", "http://127.0.0.1:9"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", *args], stdin=terminal, stdout=terminal, stderr=terminal, env=env
    )
    os.close(terminal)
    output = bytearray()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(controller, 65536)
                except OSError:  # EIO: the child closed the terminal's last end
                    break
                if not chunk:
                    break
                output += chunk
        return proc.wait(timeout=max(1.0, deadline - time.monotonic())), output.decode("utf-8", "replace")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(controller)


def test_progress_on_a_terminal_is_a_live_panel_then_the_verdict_table(faulted: Path, tmp_path: Path) -> None:
    code, raw = _run_on_a_terminal(faulted, tmp_path, "new-pty")
    assert code == 0, raw
    assert "\x1b[" in raw  # a terminal: styled, redrawn in place
    text = ANSI.sub("", raw)
    panel = text.index("╭─ run new-pty")
    # The panel: the bar over the timeline with the phases and the fault, the phase, the figures.
    assert re.search(r"│ phases  ramp", text[panel:]), text
    assert re.search(r"│ faults +├━+┤ kill-payments", text[panel:]), text
    bars = re.findall(r"│ time    (█*)(░*) (\d+)s/8s", text)
    assert bars and len({len(full) + len(empty) for full, empty, _ in bars}) == 1, text  # one width
    assert len(bars[-1][0]) > len(bars[0][0])  # the bar fills as the run goes
    assert re.search(r"│ phase +steady", text), text
    assert re.search(r"│ active faults +kill-payments \(\d+s left\)", text), text
    assert re.search(r"│ last second +\d+ rps · p99 [\d.]+ ms · errors [\d.]+% \(\d+\)", text), text
    # Then, after the last drawing of the panel, the verdict table and line.
    verdict = text.index("verdict for new-pty")
    assert text.rindex("│ time    ") < verdict < text.index("PASSED: all 2 SLOs met")
