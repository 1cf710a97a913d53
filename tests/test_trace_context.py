"""W3C trace context on the requests of a load process (``load.trace``).

The pure parts directly: header formats, the baggage, the example keeper, the wire messages,
the scenario key. Then a real ``harness.load.runner`` process (real Locust, FastHttpUser and
HttpUser) against a local HTTP server that records the headers it receives: every request
carries a valid ``traceparent`` and the baggage the driver's context command says, a
locustfile's own headers win, ``per: iteration`` shares a trace within a task run, and the
example trace ids the process reports are ids the server saw. The whole run against the demo
(ids in summary.json seen by the gateway, the fault in the baggage during its window) is in
tests/test_e2e.py.
"""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ScenarioError
from harness.load.protocol import (
    EXAMPLES_PREFIX,
    Examples,
    SetContext,
    SetUsers,
    Stop,
    decode_as,
    decode_command,
    decode_report,
    encode_command,
)
from harness.load.trace import IdPool, TracePer, TraceSettings, baggage, trace_id_of
from harness.measure.examples import Example, ExampleKeeper
from harness.scenario import load_scenario

TRACEPARENT = re.compile(r"\A00-([0-9a-f]{32})-([0-9a-f]{16})-(0[01])\Z")

# ---------------------------------------------------------------- pure parts


def test_settings_travel_as_one_argument() -> None:
    for settings in (TraceSettings(), TraceSettings(TracePer.ITERATION, sampled=False)):
        assert TraceSettings.parse(settings.arg()) == settings
    with pytest.raises(ValueError):
        TraceSettings.parse("per=sometimes")


def test_ids_are_random_hex_of_their_length() -> None:
    pool = IdPool(32)
    ids = [pool.take() for _ in range(10_000)]  # more than one batch
    assert all(re.fullmatch("[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)


def test_baggage_names_the_run_phase_and_active_faults() -> None:
    assert baggage("r-1", "", ()) == "harness.run_id=r-1"
    assert baggage("r-1", "steady", ()) == "harness.run_id=r-1,harness.phase=steady"
    assert (
        baggage("r-1", "steady", ["kill-payments", "slow.db"])
        == "harness.run_id=r-1,harness.phase=steady,harness.faults=kill-payments%2Cslow.db"
    )


def test_trace_id_of_reads_a_traceparent_only() -> None:
    assert trace_id_of("00-" + "a" * 32 + "-" + "b" * 16 + "-01") == "a" * 32
    assert trace_id_of("garbage") == trace_id_of(None) == ""


def test_keeper_keeps_the_slowest_and_the_first_failed_per_endpoint() -> None:
    keeper = ExampleKeeper(keep=3)
    for i in range(100):
        failure = "http_503" if i % 10 == 5 else ""
        if keeper.wanted(("GET", "/a"), float(i % 37), bool(failure)):
            keeper.offer("GET", "/a", Example(f"t{i}", float(i % 37), 1000 + i, failure))
    keeper.offer("POST", "/b", Example("only", 1.0, 1000))
    (a, b) = keeper.table()
    assert [e.latency_ms for e in a.slowest] == [36.0, 36.0, 35.0]
    assert [e.trace_id for e in a.failed] == ["t5", "t15", "t25"]
    assert [e.trace_id for e in b.slowest] == ["only"] and b.failed == ()
    assert not keeper.wanted(("GET", "/a"), 1.0, False)
    assert not keeper.wanted(("GET", "/a"), 1.0, True)  # three failures kept already
    new = keeper.take_new()
    assert ("POST", "/b", "only", 1.0, 1000, "") in new and keeper.take_new() == []


def test_context_command_and_examples_report_round_trip() -> None:
    command = SetContext("steady", ("kill-payments",))
    assert decode_command(encode_command(command)) == command
    report = Examples("g0.1", [("GET", "/", "a" * 32, 1.5, 17, "http_500")])
    line = report.encode()
    assert line.startswith(EXAMPLES_PREFIX)
    assert decode_report(line) == report


SCENARIO = """
name: traced
target: {base_url: http://127.0.0.1:9}
load:
  locustfile: lf.py
  stages: [{duration: 1s, users: 1}]
"""


@pytest.mark.parametrize(
    ("trace", "expected"),
    [
        ("", TraceSettings()),
        ("  trace: off\n", None),
        ("  trace: 'off'\n", None),
        ("  trace: on\n", TraceSettings()),
        ("  trace: {per: iteration, sampled: false}\n", TraceSettings(TracePer.ITERATION, False)),
    ],
)
def test_scenario_trace_key(tmp_path: Path, trace: str, expected: TraceSettings | None) -> None:
    (tmp_path / "lf.py").write_text(
        "from locust import HttpUser, task\nclass U(HttpUser):\n    @task\n    def t(self): pass\n"
    )
    (tmp_path / "s.yaml").write_text(SCENARIO + trace)
    tracing = load_scenario(tmp_path / "s.yaml").load.trace
    got = None if tracing is None else TraceSettings(TracePer(tracing.per), tracing.sampled)
    assert got == expected


def test_a_bad_trace_key_is_located(tmp_path: Path) -> None:
    (tmp_path / "lf.py").write_text(
        "from locust import HttpUser, task\nclass U(HttpUser):\n    @task\n    def t(self): pass\n"
    )
    (tmp_path / "s.yaml").write_text(SCENARIO + "  trace: {per: sometimes}\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(tmp_path / "s.yaml")
    assert (
        str(caught.value)
        == f"{tmp_path / 's.yaml'}:7:11: load.trace.per: 'sometimes' is not one of 'request', 'iteration'"
    )


# ---------------------------------------------------------------- a real load process

LOCUSTFILE = """
from locust import FastHttpUser, HttpUser, constant, task

OWN = "00-" + "a" * 32 + "-" + "b" * 16 + "-01"


class Fast(FastHttpUser):
    wait_time = constant(0.05)

    @task
    def journey(self):
        self.client.get("/fast/one")
        self.client.get("/fast/two")
        self.client.get("/fast/own", headers={"Traceparent": OWN, "BAGGAGE": "mine=1"})
        self.client.get("/fail/fast")


class Plain(HttpUser):
    wait_time = constant(0.05)

    @task
    def journey(self):
        self.client.get("/plain/one")
        self.client.get("/plain/own", headers={"traceparent": OWN})
        self.client.get("/fail/plain")


class Defaults(FastHttpUser):
    wait_time = constant(0.05)
    default_headers = {"Baggage": "team=defaults"}

    @task
    def journey(self):
        self.client.get("/defaults")
"""


class _Recorder(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[float, str, str | None, str | None]] = []

    def do_GET(self) -> None:
        self.seen.append((time.time(), self.path, self.headers.get("traceparent"), self.headers.get("baggage")))
        status = 500 if self.path.startswith("/fail") else 200
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, list[tuple[float, str, str | None, str | None]]]]:
    seen: list[tuple[float, str, str | None, str | None]] = []
    handler = type("Recorder", (_Recorder,), {"seen": seen})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


def _run_process(tmp: Path, url: str, trace: str | None, steps: list[tuple[float, bytes]]) -> list[str]:
    """One load process, its commands sent at their offsets (s) after it is ready; its report lines."""
    (tmp / "lf.py").write_text(LOCUSTFILE)
    read_fd, write_fd = os.pipe()
    args = ["--process-id", "p", "--locustfile", str(tmp / "lf.py"), "--host", url, "--report-fd", str(write_fd)]
    args += ["--trace", trace] if trace else []
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.load.runner", *args],
        stdin=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        pass_fds=(write_fd,),
        env={**os.environ, "HARNESS_RUN_ID": "run-7"},
    )
    os.close(write_fd)
    lines: list[str] = []
    ready = threading.Event()

    def read() -> None:
        with os.fdopen(read_fd, "rb") as reports:
            for raw in reports:
                lines.append(raw.decode().rstrip("\n"))
                ready.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert proc.stdin is not None
    try:
        assert ready.wait(60), "the load process did not start"
        began = time.monotonic()
        for at, line in steps:
            time.sleep(max(0.0, began + at - time.monotonic()))
            proc.stdin.write(line)
            proc.stdin.flush()
        proc.stdin.close()
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    return lines


def _split(traceparent: str | None) -> tuple[str, str, str]:
    found = TRACEPARENT.match(traceparent or "")
    assert found is not None, f"not a W3C traceparent: {traceparent!r}"
    return found.group(1), found.group(2), found.group(3)


@pytest.mark.slow
def test_every_request_is_traced_and_the_examples_are_ids_the_server_saw(tmp_path: Path, server: Any) -> None:
    url, seen = server
    steps = [
        (0.0, encode_command(SetUsers(users=3, spawn_rate=100))),
        (1.0, encode_command(SetContext("steady", ("kill-payments",)))),
        (2.0, encode_command(SetContext("steady", ()))),
        (3.0, encode_command(Stop())),
    ]
    lines = _run_process(tmp_path, url, "per=request,sampled=1", steps)
    assert len(seen) > 60, "too few requests to judge"
    context_at = min(t for t, *_ in seen)  # the first request: before the first context command
    ids = set()
    for _, path, traceparent, bag in seen:
        if path.endswith("/own"):  # the locustfile's own headers win, whatever their case
            assert traceparent == "00-" + "a" * 32 + "-" + "b" * 16 + "-01", path
            if path.startswith("/fast"):
                assert bag == "mine=1"
            else:  # it gave its own traceparent only: harness adds the baggage
                assert bag is not None and bag.startswith("harness.run_id=run-7"), bag
            continue
        trace_id, _, flags = _split(traceparent)
        assert flags == "01"
        ids.add(trace_id)
        if path == "/defaults":  # a session's default_headers win too
            assert bag == "team=defaults"
            continue
        assert bag is not None and bag.startswith("harness.run_id=run-7"), bag
    per_request = [tp for _, p, tp, _ in seen if not p.endswith("/own") and p != "/defaults"]
    assert len({_split(tp)[0] for tp in per_request}) == len(per_request), "per request: a new trace each"
    # The baggage follows the context commands: the fault is named only while it is active.
    bags = [(t, b) for t, p, _, b in seen if not p.endswith("/own") and p != "/defaults"]
    with_fault = [t for t, b in bags if "harness.faults=kill-payments" in (b or "")]
    assert with_fault, "no request carried the active fault"
    assert min(with_fault) > context_at + 0.5 and max(with_fault) < context_at + 2.5
    assert any("harness.phase=steady" in (b or "") and "faults" not in (b or "") for _, b in bags[-10:])

    examples = [e for line in lines if (r := decode_as(line, Examples)) is not None for e in r.entries]
    assert examples, "no example trace reported"
    assert {trace_id for _, _, trace_id, *_ in examples} <= ids | {"a" * 32}
    failed = {(m, n) for m, n, _, _, _, failure in examples if failure}
    assert failed == {("GET", "/fail/fast"), ("GET", "/fail/plain")}
    assert all(f == "http_500" for *_, f in examples if f)


@pytest.mark.slow
def test_per_iteration_shares_a_trace_and_off_sends_nothing(tmp_path: Path, server: Any) -> None:
    url, seen = server
    steps = [(0.0, encode_command(SetUsers(users=3, spawn_rate=100))), (1.5, encode_command(Stop()))]
    _run_process(tmp_path, url, "per=iteration,sampled=0", steps)
    by_trace: dict[str, list[str]] = {}
    for _, path, traceparent, _ in seen:
        if not path.endswith("/own"):
            trace_id, _, flags = _split(traceparent)
            assert flags == "00"
            by_trace.setdefault(trace_id, []).append(path)
    journeys = [paths for paths in by_trace.values() if "/fast/one" in paths]
    assert journeys and all(paths == ["/fast/one", "/fast/two", "/fail/fast"] for paths in journeys[:-1]), journeys
    spans = [_split(tp)[1] for _, p, tp, _ in seen if not p.endswith("/own")]
    assert len(set(spans)) == len(spans), "a new parent-id per request"

    seen.clear()
    _run_process(tmp_path, url, None, steps)
    assert seen and all(tp is None or tp.startswith("00-" + "a" * 32) for _, _, tp, _ in seen)
    assert all(b in (None, "team=defaults", "mine=1") for *_, b in seen)
