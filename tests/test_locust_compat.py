"""Ordinary locustfiles run under harness as they do under ``locust --headless``.

Each locustfile in tests/locustfiles/compat/ is shaped like the examples in Locust's own
documentation (event hooks, a custom argument, TaskSet and SequentialTaskSet, on_start and
on_stop, catch_response, a LoadTestShape, HttpUser and FastHttpUser, a custom client firing
``events.request``). Each runs twice against the same real HTTP server on loopback: under
plain ``locust --headless`` (a real subprocess) and under ``harness run`` (real Ray, real
Locust processes, a real influxd). The hooks append to a file named by COMPAT_HOOK_LOG, so
the test sees which fired and how often in each process, and the request counts of both
tools are compared:

* hooks.py bounds each user's work (``--iterations`` rounds, then it idles), so the counts
  do not depend on timing: they must be equal, endpoint by endpoint, failures included.
* shaped.py runs for as long as its shape says (5 s); its counts depend on when users start
  and stop. Locust's shape worker reads ``tick()`` once a second, so either tool may change
  users up to one tick later than the other: the counts may differ by one second of the peak
  rate (4 users x 10/s = 40 requests, a quarter of the run's ~160) and are held to that.

In both, a module-level request listener must see exactly the requests each tool counted.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.influx_fixtures import InfluxServer

pytestmark = pytest.mark.slow

HERE = Path(__file__).resolve().parent
COMPAT = HERE / "locustfiles" / "compat"
VENV_BIN = Path(sys.executable).parent
ITERATIONS = 3


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    """A real HTTP server on loopback answering 200 to every GET."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _hooks(log: Path) -> list[list[str]]:
    return [line.split(" ", 2) for line in log.read_text().splitlines()] if log.exists() else []


def _fired(log: Path) -> dict[str, Counter[str]]:
    """Per process (pid), how often each hook fired."""
    out: dict[str, Counter[str]] = {}
    for pid, hook, *_ in _hooks(log):
        out.setdefault(pid, Counter())[hook] += 1
    return out


def _listener_counts(log: Path) -> Counter[str]:
    """What the module-level request listeners saw, summed over processes ("GET /cart": n)."""
    seen: Counter[str] = Counter()
    for _, hook, *rest in _hooks(log):
        if hook == "quitting":
            seen.update(json.loads(rest[0]))
    return seen


def run_locust(locustfile: Path, url: str, tmp: Path, *args: str) -> tuple[Counter[str], Counter[str], Path]:
    """Plain ``locust --headless``: requests and failures per "METHOD name" from its CSV, and its hook log."""
    log = tmp / "locust-hooks.log"
    prefix = tmp / "locust"
    env = {**os.environ, "COMPAT_HOOK_LOG": str(log)}
    done = subprocess.run(
        [
            *(str(VENV_BIN / "locust"), "-f", str(locustfile), "--headless", "--host", url, "--csv", str(prefix)),
            *("--only-summary", "--loglevel", "WARNING", "--exit-code-on-error", "0", *args),
        ],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    requests: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    with open(f"{prefix}_stats.csv") as stats:
        for row in csv.DictReader(stats):
            if row["Name"] != "Aggregated":
                requests[f"{row['Type']} {row['Name']}"] = int(row["Request Count"])
                failures[f"{row['Type']} {row['Name']}"] = int(row["Failure Count"])
    return requests, failures, log


def run_harness(
    locustfile: Path, url: str, tmp: Path, influx: InfluxServer, load: str
) -> tuple[Counter[str], Counter[str], dict[str, dict[str, int]], Path]:
    """``harness run``: requests, failures and failure kinds per "METHOD name" from summary.json, and the hook log."""
    log = tmp / "harness-hooks.log"
    scenario = tmp / "scenario.yaml"
    scenario.write_text(
        f"name: compat\ntarget:\n  base_url: {url}\nload:\n  locustfile: {locustfile}\n{load}"
        f"results:\n  url: {influx.url}\n  database: compat\n"
    )
    env = {**os.environ, "COMPAT_HOOK_LOG": str(log), "HARNESS_RUNS_DIR": str(tmp / "runs")}
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", "compat"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((tmp / "runs" / "compat" / "summary.json").read_text())
    requests: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    kinds: dict[str, dict[str, int]] = {}
    for endpoint in summary["endpoints"]:
        key = f"{endpoint['method']} {endpoint['name']}"
        requests[key] = endpoint["requests"]
        failures[key] = endpoint["failures"]
        kinds[key] = endpoint["failure_kinds"]
    return requests, failures, kinds, log


def test_hooks_arguments_tasksets_and_catch_response(target: str, influxd: InfluxServer, tmp_path: Path) -> None:
    locustfile = COMPAT / "hooks.py"
    (tmp_path / "locust").mkdir()
    (tmp_path / "harness").mkdir()
    users = 3  # one Shopper (fixed_count 1) and two Browsers, in both tools
    plain, plain_failed, plain_log = run_locust(
        locustfile, target, tmp_path / "locust", "-u", str(users), "-r", "10", "-t", "4s", "--iterations", "3"
    )
    load = (
        f"  arguments: {{iterations: {ITERATIONS}, greeting: hi}}\n"
        f"  processes: 1\n  stages:\n    - {{duration: 4s, users: {users}, spawn_rate: 10}}\n"
    )
    ours, ours_failed, kinds, ours_log = run_harness(locustfile, target, tmp_path / "harness", influxd, load)

    # Bounded work: the same requests, endpoint by endpoint, whoever ran them.
    expected = Counter(
        {
            "GET /login": 1,
            "GET /cart": ITERATIONS,
            "GET /pay": ITERATIONS,
            "GET /item": 2 * ITERATIONS,
        }
    )
    assert plain == expected
    assert ours == expected
    assert (
        ours_failed == plain_failed == Counter({"GET /pay": ITERATIONS, **{k: 0 for k in expected if k != "GET /pay"}})
    )
    # catch_response's own message is the failure kind, its ids normalised into one kind.
    assert kinds["GET /pay"] == {"payment <uuid> declined for order <n>": ITERATIONS}

    for log, greeting in ((plain_log, "hello"), (ours_log, "hi")):
        fired = _fired(log)
        assert len(fired) == 1, fired  # one Locust process each
        (counts,) = fired.values()
        assert counts == Counter({"init": 1, "test_start": 1, "runner": 1, "on_stop": 1, "test_stop": 1, "quitting": 1})
        order = [hook for _, hook, *_ in _hooks(log) if hook != "runner"]
        assert order == ["init", "test_start", "on_stop", "test_stop", "quitting"], order
        init = next(words for _, hook, *words in _hooks(log) if hook == "init")[0].split()
        assert init == [str(ITERATIONS), greeting, target, "LocalRunner"]
        state, user_count = next(words for _, hook, *words in _hooks(log) if hook == "runner")[0].split()
        assert state in ("spawning", "running") and 1 <= int(user_count) <= users
    # The module-level listener saw exactly what each tool counted.
    assert _listener_counts(plain_log) == plain
    assert _listener_counts(ours_log) == ours


def test_shape_fasthttpuser_and_custom_client(target: str, influxd: InfluxServer, tmp_path: Path) -> None:
    locustfile = COMPAT / "shaped.py"
    (tmp_path / "locust").mkdir()
    (tmp_path / "harness").mkdir()
    plain, _, plain_log = run_locust(locustfile, target, tmp_path / "locust")
    ours, ours_failed, _, ours_log = run_harness(
        locustfile, target, tmp_path / "harness", influxd, "  shape: StagesShape\n  processes: 2\n"
    )
    assert set(plain) == set(ours) == {"GET /api/status", "custom compute"}
    assert not any(ours_failed.values())
    for key in plain:
        # One tick (1 s) of the peak rate, 4 users x 10/s, split between the two classes: 20.
        assert abs(plain[key] - ours[key]) <= 20 + 2, (key, plain[key], ours[key])
    assert sum(ours.values()) >= 100  # the shape ran its stages: ~160 expected, not a stray second

    plain_fired = _fired(plain_log)
    assert list(plain_fired.values()) == [Counter({"init": 1, "test_start": 1, "test_stop": 1, "quitting": 1})]
    ours_fired = _fired(ours_log)
    assert len(ours_fired) == 2, ours_fired  # two Locust processes, each with its own hooks
    for counts in ours_fired.values():
        assert counts == Counter({"init": 1, "test_start": 1, "test_stop": 1, "quitting": 1}), counts
    for log in (plain_log, ours_log):
        assert {words[0] for _, hook, *words in _hooks(log) if hook == "init"} == {"StagesShape"}
    # harness's listener sees exactly what harness counted. Plain Locust's CSV can miss a request
    # completed while Locust stops a timed-out shape (seen: 80 in its CSV, 81 seen by the listener).
    assert _listener_counts(ours_log) == ours
    seen = _listener_counts(plain_log)
    assert all(abs(seen[key] - plain[key]) <= 2 for key in plain), (seen, plain)


def test_plan_prints_the_shape_as_stages_and_validate_refuses_a_broken_shape(tmp_path: Path) -> None:
    scenario = tmp_path / "shape.yaml"
    scenario.write_text(
        f"name: shaped\ntarget:\n  base_url: http://127.0.0.1:9\nload:\n  locustfile: {COMPAT / 'shaped.py'}\n"
        "  shape: StagesShape\n"
    )
    plan = subprocess.run(
        [sys.executable, "-m", "harness.cli", "plan", str(scenario)], capture_output=True, text=True, timeout=60
    )
    assert plan.returncode == 0, plan.stderr
    assert "StagesShape: 2 stages read from its ticks, one a second" in plan.stdout
    assert "2 users at 10/s for 2s" in plan.stdout
    assert "4 users at 10/s for 3s" in plan.stdout
    assert "5s in all" in plan.stdout

    broken = tmp_path / "broken.py"
    broken.write_text(
        "from locust import HttpUser, LoadTestShape, task\n\n"
        "class U(HttpUser):\n    @task\n    def t(self):\n        pass\n\n"
        "class Forever(LoadTestShape):\n    def tick(self):\n"
        "        if self.get_run_time() >= 3:\n"
        "            raise RuntimeError('no stage for %d s' % self.get_run_time())\n"
        "        return (1, 1)\n"
    )
    scenario.write_text(
        f"name: broken\ntarget:\n  base_url: http://127.0.0.1:9\nload:\n  locustfile: {broken}\n  shape: Forever\n"
    )
    validate = subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", str(scenario)], capture_output=True, text=True, timeout=60
    )
    assert validate.returncode == 2
    assert f"{scenario}: load.shape: Forever: RuntimeError: no stage for 3 s" in validate.stderr + validate.stdout
    assert "Traceback" not in validate.stderr
