"""Load processes and generators lost mid-run, with real processes killed by PID.

One real ``harness run`` (local Ray, two LoadGenerator actors with two Locust processes each,
a real influxd) against a small counting HTTP server in this process. Mid-run, one Locust
process is SIGKILLed, and a few seconds later a whole generator actor's worker process is
SIGKILLed. What is pinned (the loss policy, README "Generator loss policy"):

* each loss is noticed within ``DETECT_S`` and recorded as a ``generator`` event (state
  ``end``, at the detection time, naming the process or generator) in summary.json and
  InfluxDB;
* its share is redistributed over every live process of the run, and a second ``generator``
  event (state ``start``) says when the last of them applied its new share; the users the
  processes report add up to the stage's users again, and the request rate holds;
* the lost actor's Locust processes are gone within ``STRAY_S`` (no stray load);
* the run goes on to its end and is invalid (exit 5), the reason naming both losses.

The helpers here (the counting target, finding a run's Locust processes, cleaning up a
driver's process tree) are shared with ``tests/test_signals.py``.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.influx_fixtures import InfluxServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
LOCUSTFILE = ROOT / "tests" / "locustfiles" / "ping.py"
DATABASE = "generator_loss"
DETECT_S = 3.0  # the bound for noticing a killed Locust process
STRAY_S = 3.0  # a lost generator's Locust processes are gone within this
USERS = 16


# --------------------------------------------------------------------------- shared helpers


class CountingTarget:
    """A loopback HTTP server answering ``ok``; counts requests and when the last one came."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0  # time.time() of the latest request
        self._lock = threading.Lock()
        target = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with target._lock:
                    target.count += 1
                    target.last = time.time()
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="counting-target", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextlib.contextmanager
def counting_target() -> Iterator[CountingTarget]:
    target = CountingTarget()
    try:
        yield target
    finally:
        target.close()


def wait_for(check: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(step)
    return check()


def runners(run_id: str) -> dict[str, psutil.Process]:
    """Process id (g0.1, ...) -> the Locust process of run ``run_id`` (its environment names the run)."""
    found = {}
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmdline = proc.info["cmdline"] or []
            if "harness.load.runner" in cmdline and proc.environ().get("HARNESS_RUN_ID") == run_id:
                found[cmdline[cmdline.index("--process-id") + 1]] = proc
        except (psutil.Error, ValueError, IndexError):
            continue
    return found


def start_driver(scenario: Path, tmp: Path, run_id: str) -> subprocess.Popen[bytes]:
    """``harness run`` in its own session (so a test can signal it alone), output to a log file."""
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp / "runs")}
    with (tmp / f"{run_id}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", run_id],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def driver_log(tmp: Path, run_id: str) -> str:
    return (tmp / f"{run_id}.log").read_text(errors="replace")[-4000:]


def harness_cli(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp / "runs"), "COLUMNS": "250"}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def tree(pid: int) -> list[psutil.Process]:
    """Everything a driver started (Ray, its workers and agents, Locust), to clean up by PID."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []


def end_driver(driver: subprocess.Popen[bytes], processes: list[psutil.Process], grace: float = 3.0) -> None:
    """Kill the driver if it still runs, then whatever it started that did not follow within ``grace``.

    Ray's agents outlive a driver killed without a shutdown; psutil checks each process's
    start time, so a recycled PID is never signalled.
    """
    if driver.poll() is None:
        driver.kill()
    driver.wait(30)
    _gone, alive = psutil.wait_procs([p for p in processes if p.is_running()], timeout=grace)
    for proc in alive:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGCONT)  # a stopped process we stopped
            proc.kill()
    psutil.wait_procs(alive, timeout=10)


def scenario_file(tmp: Path, name: str, url: str, influxd: InfluxServer, database: str, body: str) -> Path:
    influxd.create_database(database)
    path = tmp / f"{name}.yaml"
    path.write_text(
        f"""
name: {name}
target:
  base_url: {url}
load:
  locustfile: {LOCUSTFILE}
  user_classes: [{{class: Idler}}]
{body}
results:
  url: {influxd.url}
  database: {database}
""".lstrip()
    )
    return path


# --------------------------------------------------------------------------- the test


def test_a_killed_process_and_a_lost_generator_are_noticed_redistributed_and_make_the_run_invalid(
    tmp_path: Path, influxd: InfluxServer
) -> None:
    run_id = "genloss"
    body = f"""  generators: 2
  processes: 2
  stages:
    - {{name: steady, duration: 15s, users: {USERS}, spawn_rate: {USERS}}}"""
    with counting_target() as target:
        scenario = scenario_file(tmp_path, "genloss", target.url, influxd, DATABASE, body)
        driver = start_driver(scenario, tmp_path, run_id)
        started: list[psutil.Process] = []
        try:
            assert wait_for(lambda: len(runners(run_id)) == 4 or driver.poll() is not None, 90, 0.2)
            assert driver.poll() is None, driver_log(tmp_path, run_id)
            processes = runners(run_id)
            started = tree(driver.pid)
            # The load is under way: requests arrive, then a few seconds of it from all four.
            assert wait_for(lambda: target.count > 0, 60, 0.1), driver_log(tmp_path, run_id)
            time.sleep(3.5)
            killed_at = time.time()
            processes["g0.1"].kill()  # SIGKILL one Locust process by PID
            time.sleep(4.5)
            actor = processes["g1.0"].parent()
            assert actor is not None and actor.pid == processes["g1.1"].parent().pid
            assert "harness.load.runner" not in " ".join(actor.cmdline())
            lost_at = time.time()
            actor.kill()  # SIGKILL the generator actor's worker process by PID
            strays = [processes["g1.0"], processes["g1.1"]]
            assert wait_for(lambda: not any(p.is_running() and p.status() != "zombie" for p in strays), 10)
            strays_gone_s = time.time() - lost_at
            driver.wait(120)
        finally:
            end_driver(driver, started)
    output = driver_log(tmp_path, run_id)
    assert driver.returncode == 5, output
    assert "Traceback" not in output
    summary = json.loads((tmp_path / "runs" / run_id / "summary.json").read_text())
    assert summary["verdict"] == "invalid"
    reason = summary["reason"]
    assert "load not delivered: generator g1 lost at 00:" in reason, reason
    assert "load not delivered: load process g0.1 died at 00:" in reason, reason
    assert "(killed by SIGKILL; its share ran on 3 other processes " in reason, reason
    assert summary["dead_processes"] == ["g0.1"]
    assert [g["id"] for g in summary["lost_generators"]] == ["g1"]

    # Noticed within DETECT_S, at the detection time, as generator events (summary and InfluxDB).
    events = [e for e in summary["events"] if e["kind"] == "generator"]
    assert [(e["name"], e["state"]) for e in events] == [
        ("g0.1", "end"),
        ("g0.1", "start"),
        ("g1", "end"),
        ("g1", "start"),
    ]
    died, moved, lost, moved_again = events
    process_detect_s = died["time"] - killed_at
    generator_detect_s = lost["time"] - lost_at
    assert 0 < process_detect_s < DETECT_S, died
    assert 0 < generator_detect_s < DETECT_S, lost
    assert "load process g0.1 died (killed by SIGKILL)" in died["text"] and "g0.0, g1.0, g1.1" in died["text"]
    assert "generator g1 lost (its actor died" in lost["text"] and "(g0.0)" in lost["text"]
    rows = influxd.query(
        f"SELECT \"name\", state, \"text\" FROM harness_events WHERE run_id = '{run_id}' AND kind = 'generator'",
        DATABASE,
    )
    assert [(r["name"], r["state"]) for r in rows] == [(e["name"], e["state"]) for e in events], rows
    assert abs(int(rows[0]["time"]) / 1e9 - died["time"]) < 0.01

    # The gaps: from the loss until every live process applied its new share.
    gaps = {g["subject"]: g for g in summary["load_gaps"]}
    assert gaps["g0.1"]["moved_to"] == ["g0.0", "g1.0", "g1.1"] and gaps["g1"]["moved_to"] == ["g0.0"]
    process_gap_s, generator_gap_s = gaps["g0.1"]["gap_s"], gaps["g1"]["gap_s"]
    assert 0 < process_gap_s < DETECT_S + 1, gaps["g0.1"]
    assert 0 < generator_gap_s < DETECT_S + 1, gaps["g1"]
    assert abs(gaps["g0.1"]["lost_at"] - killed_at) < 0.5  # the actor saw the exit at once
    assert [s["step"] for s in summary["step_timing"]].count("redistribute") == 2

    # The share really moved: the users reported add up to the stage's again, the rate holds.
    load = influxd.query(f"SELECT \"users\", achieved_rate FROM harness_load WHERE run_id = '{run_id}'", DATABASE)
    by_second = {int(r["time"]) // 1_000_000_000: r for r in load}
    # A second is stamped with its start: second s is settled when it began 1.5 s after a move.
    # The lost actor's windows of its last second or two never came: those seconds are left out.
    end = summary["started"] + 14
    settled = [s for s in by_second if moved["time"] + 1.5 <= s and s + 2 < lost_at]
    settled += [s for s in by_second if moved_again["time"] + 1.5 <= s < end]
    assert len(settled) >= 4, (sorted(by_second), moved["time"], moved_again["time"])
    assert all(by_second[s]["users"] == USERS for s in settled), [(s, by_second[s]["users"]) for s in settled]
    before = [by_second[s]["achieved_rate"] for s in by_second if summary["started"] + 1 <= s < killed_at - 1]
    after = [r["achieved_rate"] for s, r in by_second.items() if moved_again["time"] + 1.5 <= s < end]
    assert before and after
    rate_before, rate_after = sum(before) / len(before), sum(after) / len(after)
    assert rate_after > 0.8 * rate_before, (before, after)
    assert strays_gone_s < STRAY_S, strays_gone_s
    print(
        f"Locust process SIGKILLed: noticed after {process_detect_s:.2f} s, share running again on 3 processes "
        f"{process_gap_s:.2f} s after the kill; generator actor SIGKILLed: noticed after {generator_detect_s:.2f} s, "
        f"its Locust processes gone after {strays_gone_s:.2f} s, share on the last process {generator_gap_s:.2f} s "
        f"after its last answer; requests/s {rate_before:.1f} before, {rate_after:.1f} after"
    )
