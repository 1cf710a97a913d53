"""Every row of the objectives table through an SLO and a guard (issue 14, deliverable 2).

The tests are parametrised over :data:`harness.judge.objectives.METRICS`, so a new row is tested
as soon as it is added, and fails until its :class:`Case` below is written (``CASES``):

* as an SLO, judged by the real ``SloBook`` on a replay of a 30 s run's seconds that went
  through the real pipeline (two Locust-side ``WindowRecorder``\\ s, their wire lines, the
  ``Aggregator``'s exact merge), the measured value equals the one computed here from the raw
  latencies, independently (nearest-rank percentiles over the sorted samples, counts, the
  recovery rule over each second);
* as a guard, when the row can be judged per second: the real ``GuardWatch`` trips on the second
  the condition has held its ``for`` seconds in a row, not before (a good second resets the
  streak), with the value of that second computed here;
* when the row cannot be judged per second, a scenario with that guard is refused by
  ``load_scenario`` and by ``harness validate`` (exit 2) with a located message that says why.

The run with a real target that a ``burn_rate`` guard aborts is at the end (marked slow).
"""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from harness.errors import ScenarioError
from harness.judge.guards import GuardWatch
from harness.judge.objectives import EXTRA_KEYS, METRICS, Metric, lookup
from harness.judge.probe_samples import ProbeSample
from harness.judge.slo import SloBook, SloStatus
from harness.load.protocol import Health
from harness.measure.aggregator import Aggregator
from harness.measure.heal import HealTime
from harness.measure.windows import ClosedSecond, WindowRecorder, parse_window
from harness.plan import compile_plan
from harness.scenario import Guard, Slo, load_scenario
from tests.influx_fixtures import InfluxServer, free_port

Request = tuple[int, str | None]  # latency in microseconds, failure kind (None: success)
ENDPOINTS = (("GET", "/item"), ("POST", "/checkout"))

LOCUSTFILE = """\
from locust import FastHttpUser, task


class Shopper(FastHttpUser):
    @task
    def t(self):
        pass
"""

HEAD = """\
name: objectives
target: {base_url: 'http://127.0.0.1:8700'}
load:
  locustfile: locust.py
  user_classes: [{class: Shopper}]
  stages: [{name: main, duration: 30s, users: 10}]
faults:
  - {name: F, kind: process.pause, at: 10s, duration: 5s, target: {pattern: payments},
     heal: {url: 'http://127.0.0.1:8703/health'}}
probes:  # a server-side count of the requests it served each second (the probe row's case)
  prometheus: http://127.0.0.1:9
  queries: [{name: served, promql: 'sum(rate(served_total[1s]))'}]
"""

# The run starts at epoch 1000.6; second s belongs to a window when its midpoint s + 0.5 - START
# lies inside it: the run is seconds 1001..1030, fault F (10 s..15 s) seconds 1011..1015, and
# after:F seconds 1016..1030, measured from F's end at epoch 1015.6.
START = 1000.6
RUN = range(1001, 1031)
F_END = START + 15
# heal_time is measured from the system's side, not from requests: the run hands the judge this
# (F's health URL first answered 2xx 2.35 s after F's end).
HEALS = {"F": HealTime("F", "http://127.0.0.1:8703/health answers 2xx", F_END, F_END + 2.35, F_END + 2.35, 17)}


# ---------------------------------------------------------------- the replayed run


def requests_of(second: int) -> list[Request]:
    """The run: healthy seconds with a few failures of mixed kinds; inside F slow with many
    failures; the three seconds after F slow, then healthy again (so recovery comes)."""
    rng = random.Random(second)
    if second in range(1011, 1016):
        n, low, high, failing = 60, 150_000, 2_500_000, 0.4
    elif second in range(1016, 1019):
        n, low, high, failing = 120, 40_000, 450_000, 0.05
    else:
        n, low, high, failing = 100 + second % 7 * 10, 2_000, 80_000, 0.01
    kinds = ("http_503", "http_500", "http_404", "ConnectionRefusedError")
    return [(rng.randint(low, high), rng.choice(kinds) if rng.random() < failing else None) for _ in range(n)]


def replay(seconds: dict[int, list[Request]]) -> list[ClosedSecond]:
    """Each second's requests recorded by two Locust-side recorders (alternating, across the two
    endpoints), sent as wire lines and merged exactly by the aggregator, as in a run."""
    first, last = min(seconds), max(seconds)
    recorders = [WindowRecorder("p0", first), WindowRecorder("p1", first)]
    for second, requests in seconds.items():
        for i, (latency_us, failure) in enumerate(requests):
            method, name = ENDPOINTS[i // 2 % 2]
            recorders[i % 2].record(second, method, name, latency_us, 100, failure)
    aggregator = Aggregator(["p0", "p1"])
    health = Health(cpu=0.2, lag_ms=1.0, users=10, rate=0.0)
    for recorder in recorders:
        for line in recorder.flush(last + 1, health):
            window = parse_window(line)
            assert window is not None
            aggregator.add(window)
    closed = aggregator.close_ready(now=float(last + 1))
    assert [c.second for c in closed] == list(range(first, last + 1))
    return closed


# ---------------------------------------------------------------- values computed here, from the raw requests

Window = dict[int, list[Request]]  # epoch second -> its requests


def _all(window: Window) -> list[Request]:
    return [request for requests in window.values() for request in requests]


def _latencies_ms(window: Window) -> list[float]:
    return sorted(latency / 1000 for latency, _ in _all(window))


def _failed(window: Window) -> float:
    return sum(1 for _, kind in _all(window) if kind) / len(_all(window))


def nearest_rank(p: str) -> Callable[[Window], float]:
    """The smallest sample with at least p percent of the samples at or below it."""

    def value(window: Window) -> float:
        ordered = _latencies_ms(window)
        return ordered[max(1, math.ceil(Fraction(p) * len(ordered) / 100)) - 1]

    return value


def failed_only(value: Callable[[Window], float]) -> Callable[[Window], float]:
    """``value`` over the window's failed requests alone."""
    return lambda window: value({s: [r for r in requests if r[1]] for s, requests in window.items()})


def largest(window: Window) -> float:
    return max(_latencies_ms(window))


def average(window: Window) -> float:
    return sum(_latencies_ms(window)) / len(_all(window))


def share_5xx(window: Window) -> float:
    return sum(1 for _, kind in _all(window) if kind and kind.startswith("http_5")) / len(_all(window))


def per_second(window: Window) -> float:
    return len(_all(window)) / len(window)


def burn(availability: float) -> Callable[[Window], float]:
    return lambda window: _failed(window) / (1 - availability)


def budget_used(availability: float, period: float) -> Callable[[Window], float]:
    return lambda window: burn(availability)(window) * len(window) / period


def recovered_after_f(window: Window) -> float:
    """The recovery rule (p99 <= 100 ms, error rate <= 2%, 3 seconds in a row), from F's end."""
    good = [s for s in sorted(window) if nearest_rank("99")({s: window[s]}) <= 100 and _failed({s: window[s]}) <= 0.02]
    for second in good:
        if second + 1 in good and second + 2 in good:
            return second - F_END
    return math.inf


@dataclass(frozen=True)
class Case:
    """How a metric is put through the tests: its SLO (the keys after ``name``) over the seconds
    ``window``, the value computed here from a window's raw requests, and a guard (condition and
    extra keys) that breaches on the bad seconds of the guard test and holds on the good ones."""

    slo: str
    value: Callable[[Window], float]
    condition: str
    guard_keys: str = ""
    window: range = RUN
    heals: dict[str, HealTime] | None = None  # what the run measured from the system's side
    probe: bool = False  # a probe's row: its samples are each second's count of requests, polled mid-second


def served(window: Window) -> float:
    """The probe case: the worst (highest) of the per-second counts a server reports."""
    return float(max(len(requests) for requests in window.values()))


def _served_sample(second: int, requests: list[Request]) -> ProbeSample:
    return ProbeSample("served", second + 0.5, float(len(requests)))


def _latency_case(p: str, value: Callable[[Window], float] | None = None) -> Case:
    name = p if value is not None else f"p{p.replace('.', '')}"
    return Case(f"objective: '{name} < 250ms'", value or nearest_rank(p), f"{name} > 100ms for 3s")


CASES: dict[str, Case] = {
    "p50": _latency_case("50"),
    "p75": _latency_case("75"),
    "p90": _latency_case("90"),
    "p95": _latency_case("95"),
    "p99": _latency_case("99"),
    "p999": _latency_case("99.9"),
    "max": _latency_case("max", largest),
    "mean": _latency_case("mean", average),
    "error_rate": Case(
        "objective: 'error_rate < 5%', errors: [5xx]", share_5xx, "error_rate > 10% for 3s", ", errors: [5xx]"
    ),
    "rps": Case("objective: 'rps >= 100'", per_second, "rps < 50 for 3s"),
    "failed_p50": Case("objective: 'failed_p50 < 250ms'", failed_only(nearest_rank("50")), "failed_p50 > 100ms for 3s"),
    "failed_p99": Case("objective: 'failed_p99 < 250ms'", failed_only(nearest_rank("99")), "failed_p99 > 100ms for 3s"),
    "failed_max": Case("objective: 'failed_max < 250ms'", failed_only(largest), "failed_max > 100ms for 3s"),
    "recovery_time": Case(
        "objective: 'recovery_time < 10s', window: 'after:F', recovery: {p99: 100ms, error_rate: 2%, stable_for: 3s}",
        recovered_after_f,
        "recovery_time > 10s for 3s",
        window=range(1016, 1031),
    ),
    "heal_time": Case(
        "objective: 'heal_time < 10s', window: 'after:F'",
        lambda window: HEALS["F"].healed - HEALS["F"].began,  # type: ignore[operator]
        "heal_time > 10s for 3s",
        window=range(1016, 1031),
        heals=HEALS,
    ),
    "burn_rate": Case(
        "objective: 'burn_rate < 2x', budget: {availability: 99%, period: 30d}",
        burn(0.99),
        "burn_rate > 2 for 3s",
        ", budget: {availability: 99%}",
    ),
    "budget_burn": Case(
        "objective: 'budget_burn < 0.1%', budget: {availability: 99%, period: 1d}",
        budget_used(0.99, 86400.0),
        "budget_burn > 1% for 3s",
        ", budget: {availability: 99%, period: 1d}",
    ),
    "probe": Case("objective: 'probe:served < 1000'", served, "probe:served < 100 for 3s", probe=True),
}

ROWS = [pytest.param(row, id=row.name) for row in METRICS]
PER_SECOND = [pytest.param(row, id=row.name) for row in METRICS if row.per_second]
WHOLE_WINDOW = [pytest.param(row, id=row.name) for row in METRICS if not row.per_second]


def _scenario(tmp_path: Path, body: str) -> Path:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + body)
    return path


def _guard_body(row: Metric) -> str:
    case = CASES[row.name]
    return f"guards:\n  - {{name: g, condition: '{case.condition}'{case.guard_keys}}}\n"


def test_every_row_has_a_case() -> None:
    missing = sorted({row.name for row in METRICS} - set(CASES))
    assert not missing, f"add a Case for {missing} to CASES (the row's SLO, guard and independent value)"
    assert sorted(CASES) == sorted(row.name for row in METRICS)


# ---------------------------------------------------------------- SLOs


@pytest.fixture(scope="module")
def run() -> tuple[dict[int, list[Request]], list[ClosedSecond]]:
    seconds = {second: requests_of(second) for second in RUN}
    return seconds, replay(seconds)


@pytest.mark.parametrize("row", ROWS)
def test_an_slo_measures_what_the_raw_requests_give(
    row: Metric, tmp_path: Path, run: tuple[dict[int, list[Request]], list[ClosedSecond]]
) -> None:
    case = CASES[row.name]
    scenario = load_scenario(_scenario(tmp_path, f"slos:\n  - {{name: x, {case.slo}}}\n"))
    book = SloBook(compile_plan(scenario), START)
    raw, closed = run
    for second in closed:
        book.observe(second)
        if case.probe:
            book.observe_probe(_served_sample(second.second, raw[second.second]))
    [result] = book.results(case.heals)

    window = {second: raw[second] for second in case.window}
    requests = _all(window)
    expected = case.value(window)
    assert math.isfinite(expected) and expected > 0  # a value that shows the metric was measured
    assert lookup(result.metric) == row and result.metric == scenario.slos[0].objective.metric
    assert result.measured == pytest.approx(expected, rel=1e-3)  # HDR keeps 3 significant digits
    assert result.requests == len(requests) and result.seconds == len(window)
    assert result.passed is scenario.slos[0].objective.holds(result.measured)
    assert result.status is (SloStatus.MET if result.passed else SloStatus.BREACHED)
    assert row.format(result.measured) in result.message, result.message
    assert result.message.endswith(f"{scenario.slos[0].objective.op} {row.format(result.threshold)}")


# ---------------------------------------------------------------- guards


def _second(second: int, good: bool) -> tuple[ClosedSecond, Window]:
    """A healthy second (200 requests, 5-20 ms, no failures) or a bad one (20 requests, 300-900 ms,
    half of them 503s), merged as in a run, and its raw requests: every guard condition in CASES
    holds on the bad seconds only."""
    rng = random.Random(second)
    if good:
        requests: list[Request] = [(rng.randint(5_000, 20_000), None) for _ in range(200)]
    else:
        requests = [(rng.randint(300_000, 900_000), "http_503" if i % 2 else None) for i in range(20)]
    [closed] = replay({second: requests})
    return closed, {second: requests}


@pytest.mark.parametrize("row", PER_SECOND)
def test_a_guard_trips_when_its_condition_has_held_for_its_seconds_and_not_before(row: Metric, tmp_path: Path) -> None:
    case = CASES[row.name]
    scenario = load_scenario(_scenario(tmp_path, _guard_body(row)))
    [guard] = scenario.guards
    assert guard.condition.for_seconds == 3
    watch = GuardWatch(list(scenario.guards))
    # two bad seconds, a good one, then bad ones: the third in a row is 1007
    timeline = [_second(s, s in (1001, 1004)) for s in range(1001, 1008)]
    for closed, raw in timeline:
        if case.probe:
            watch.observe_probe(_served_sample(closed.second, raw[closed.second]))
        if closed.second < 1007:
            assert watch.observe(closed) is None, closed.second
    closed, raw = timeline[-1]
    trip = watch.observe(closed)
    assert trip is not None
    assert (trip.guard, trip.second, trip.condition) == ("g", 1007, case.condition)
    assert trip.value == pytest.approx(case.value(raw), rel=1e-3)  # HDR keeps 3 significant digits
    named = guard.condition.breach.metric  # the row's name; probe:NAME for the probe row
    assert trip.message == f"guard 'g' tripped: {named} was {row.format(trip.value)} ({case.condition})"


@pytest.mark.parametrize("row", WHOLE_WINDOW)
def test_a_guard_on_a_metric_judged_over_a_whole_window_is_refused_where_it_is_written(
    row: Metric, tmp_path: Path
) -> None:
    path = _scenario(tmp_path, _guard_body(row))
    line = len(HEAD.splitlines()) + 2
    column = path.read_text().splitlines()[line - 1].index("condition") + 1  # where the key is written
    expected = (
        f"{path}:{line}:{column}: guards[0].condition: {row.name} cannot be judged second by second, "
        f"so it cannot be a guard: {row.why}"
    )
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    assert str(info.value) == expected
    done = subprocess.run(
        [sys.executable, "-m", "harness.cli", "validate", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert expected in done.stdout + done.stderr


# ---------------------------------------------------------------- the extra keys, as the table says


def test_the_models_have_a_described_field_for_every_extra_key_the_table_lets_them_take() -> None:
    for model, rows in ((Slo, METRICS), (Guard, [row for row in METRICS if row.per_second])):
        taken = {key for row in rows for key in row.takes}
        for key in taken:
            assert key in model.model_fields, f"{model.__name__} lacks {key}, which the table lets it take"
            assert model.model_fields[key].description, f"{model.__name__}.{key} needs a description"
        unused = {key.name for key in EXTRA_KEYS} - taken
        assert not unused & set(model.model_fields), f"{model.__name__} has keys no metric takes: {unused}"


@pytest.mark.parametrize(
    ("guard", "where", "message"),
    [
        (
            "{name: g, condition: 'burn_rate > 2 for 3s'}",
            "guards[0].condition",
            "burn_rate needs budget: {availability: 99.9%}",
        ),
        (
            "{name: g, condition: 'p99 > 1s for 3s', budget: {availability: 99%}}",
            "guards[0].budget",
            "budget applies to a burn_rate guard, not p99",
        ),
        (
            "{name: g, condition: 'rps < 1 for 3s', errors: [5xx]}",
            "guards[0].errors",
            "errors filters an error_rate guard, not rps",
        ),
    ],
)
def test_a_guard_gives_the_keys_its_metric_needs_and_no_others(
    tmp_path: Path, guard: str, where: str, message: str
) -> None:
    with pytest.raises(ScenarioError) as info:
        load_scenario(_scenario(tmp_path, f"guards:\n  - {guard}\n"))
    assert re.fullmatch(
        rf".*s\.yaml:{len(HEAD.splitlines()) + 2}:\d+: {re.escape(where)}: {re.escape(message)}", str(info.value)
    )


def test_aliases_and_units_are_the_rows() -> None:
    from harness.scenario.expressions import parse_objective

    for row in METRICS:
        unit = next(iter(row.quantity.units))
        for name in (row.name, *row.aliases):
            written = "probe:served" if row.name == "probe" else name  # a probe objective names its probe
            parsed = parse_objective(f"{written} < 1{unit}").metric
            assert parsed == (written if row.name == "probe" else row.name) and lookup(parsed) == row


# ---------------------------------------------------------------- a real run a burn_rate guard aborts


class _Failing(BaseHTTPRequestHandler):
    """Answers 200 for the first ``HEALTHY_FOR`` seconds after the first request, then 500."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        server: Any = self.server
        now = time.time()
        with server.lock:
            if server.fail_from is None:
                server.fail_from = now + HEALTHY_FOR
        failing = now >= server.fail_from
        body = b"broken\n" if failing else b"ok\n"
        self.send_response(500 if failing else 200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


HEALTHY_FOR = 6.0


@pytest.fixture
def failing_server() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", free_port()), _Failing)
    server.daemon_threads = True
    server.fail_from = None
    server.lock = threading.Lock()
    thread = threading.Thread(target=server.serve_forever, name="failing-target", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.mark.slow
def test_a_burn_rate_guard_aborts_a_real_run_whose_target_fails(
    tmp_path: Path, failing_server: Any, influxd: InfluxServer
) -> None:
    """Once the target answers 500 to everything the burn rate against a 1% budget is 100x: the
    guard ``burn_rate > 2 for 3s`` trips (exit 4, its message), one at 150x never does."""
    influxd.create_database("objectives")
    port = failing_server.server_address[1]
    locustfile = Path(__file__).resolve().parent / "locustfiles" / "ping.py"
    scenario = tmp_path / "burn.yaml"
    scenario.write_text(
        f"""
name: burn-guard
target: {{base_url: 'http://127.0.0.1:{port}'}}
load:
  locustfile: {locustfile}
  user_classes: [{{class: Idler}}]
  processes: 1
  stages: [{{name: steady, duration: 60s, users: 10, spawn_rate: 10}}]
guards:
  - {{name: never, condition: 'burn_rate > 150 for 2s', budget: {{availability: 99%}}}}
  - {{name: burning, condition: 'burn_rate > 2 for 3s', budget: {{availability: 99%, period: 7d}}}}
results: {{url: '{influxd.url}', database: objectives}}
""".lstrip()
    )
    run_id = "objectives-burn"
    env = {**os.environ, "HARNESS_RUNS_DIR": str(tmp_path / "runs")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(scenario), "--run-id", run_id],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    summary_path = tmp_path / "runs" / run_id / "summary.json"
    try:
        output, _ = proc.communicate(timeout=150)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, output[-3000:]
    assert "Traceback" not in output and "KeyError" not in output, output[-3000:]
    summary = json.loads(summary_path.read_text())
    assert summary["verdict"] == "aborted"
    assert re.fullmatch(r"guard 'burning' tripped: burn_rate was \S+x \(burn_rate > 2 for 3s\)", summary["reason"])
    assert summary["guard"]["guard"] == "burning" and summary["guard"]["value"] > 2
    [abort] = [e for e in summary["events"] if e["kind"] == "abort"]
    # three breaching seconds after the failures began (the first may be partly healthy), and
    # long before the 60 s the plan asked for
    began = failing_server.fail_from
    assert began is not None, output[-3000:]
    assert began + 2 <= abort["time"] <= began + 8, (abort, began)
    assert abort["offset"] < 50
