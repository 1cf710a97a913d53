"""Per-second windows and their exact merge across processes.

The main check: latencies recorded by several processes, shipped as JSON lines and merged by
the aggregator give the same percentiles as the raw samples (within HdrHistogram's 3
significant digits), per second and over the whole run. Percentiles are never averaged.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from dataclasses import replace
from fractions import Fraction

import pytest

from harness.load.protocol import Health
from harness.measure.aggregator import Aggregator
from harness.measure.windows import (
    ClosedSecond,
    EndpointStats,
    ProcessWindow,
    WindowRecorder,
    WindowTotals,
    parse_window,
)

T0 = 1_700_000_000
SECONDS = 50
PER_ENDPOINT_PER_SECOND = 1000  # multiples of 1000 make every nearest rank an integer
ENDPOINTS = [("GET", "/api/products"), ("POST", "/api/cart")]
PROCESSES = ["gen0-p0", "gen0-p1", "gen1-p0", "gen1-p1"]
IDLE = "gen1-p2"  # alive, reports every second, serves nothing
FAILURE_KINDS = ["HTTPError 503", "ConnectionResetError", "timeout"]
QUANTILES = {"p50": "50", "p90": "90", "p99": "99", "p999": "99.9"}
HEALTH = Health(cpu=0.5, lag_ms=1.5, users=10, rate=0.0)


def nearest_rank(sorted_values: list[int], percentile: str) -> int:
    """The smallest sample with at least ``percentile`` % of all samples at or below it."""
    n = len(sorted_values)
    rank = math.ceil(Fraction(percentile) * n / 100)
    return sorted_values[max(rank, 1) - 1]


def assert_close_us(measured_ms: float, truth_us: int, what: str) -> None:
    """HDR with 3 significant digits: relative error <= 0.1%, plus 1 us for integer rounding."""
    measured_us = measured_ms * 1000.0
    assert abs(measured_us - truth_us) <= truth_us * 0.001 + 1, f"{what}: {measured_us} us vs {truth_us} us"


def assert_matches(stats: EndpointStats, samples: list[tuple[int, int, str | None]], what: str) -> None:
    latencies = sorted(s[0] for s in samples)
    assert stats.count == len(samples), what
    assert stats.bytes == sum(s[1] for s in samples), what
    assert stats.failures == Counter(s[2] for s in samples if s[2]), what
    assert stats.failed == sum(1 for s in samples if s[2]), what
    latency = stats.latency_ms()
    for key, percentile in QUANTILES.items():
        assert_close_us(latency[key], nearest_rank(latencies, percentile), f"{what} {key}")
    assert_close_us(latency["max"], latencies[-1], f"{what} max")
    mean = sum(latencies) / len(latencies)
    assert abs(latency["mean"] * 1000 - mean) <= mean * 0.001 + 1, f"{what} mean"


@pytest.fixture(scope="module")
def workload() -> dict[str, object]:
    """Samples, their ground truth, and the closed seconds the aggregator produced from them."""
    rng = random.Random(20240611)
    recorders = {p: WindowRecorder(p, T0) for p in [*PROCESSES, IDLE]}
    truth: dict[tuple[int, tuple[str, str]], list[tuple[int, int, str | None]]] = defaultdict(list)
    lines: list[str] = []
    for offset in range(SECONDS):
        second = T0 + offset
        for endpoint in ENDPOINTS:
            for _ in range(PER_ENDPOINT_PER_SECOND):
                # lognormal around 20 ms with a long tail (up to seconds)
                latency = max(1, int(rng.lognormvariate(math.log(20_000), 1.0)))
                size = rng.randint(100, 5000)
                failure = rng.choice(FAILURE_KINDS) if rng.random() < 0.03 else None
                process = rng.choice(PROCESSES)
                filed = recorders[process].record(second, *endpoint, latency, size, failure)
                assert filed == second
                truth[(second, endpoint)].append((latency, size, failure))
        for recorder in recorders.values():
            lines.extend(recorder.flush(second + 1, HEALTH))
    rng.shuffle(lines)  # processes report in any order

    aggregator = Aggregator([*PROCESSES, IDLE], grace=3.0)
    for line in lines:
        window = parse_window(line)
        assert window is not None
        aggregator.add(window)
    closed = aggregator.close_ready(now=T0 + SECONDS + 0.1)
    return {"truth": truth, "closed": closed, "lines": lines, "aggregator": aggregator}


def test_every_second_closes_once_in_order_and_on_time(workload: dict[str, object]) -> None:
    closed = workload["closed"]
    assert isinstance(closed, list)
    assert [c.second for c in closed] == list(range(T0, T0 + SECONDS))
    assert not any(c.late for c in closed)
    assert all(len(c.health) == len(PROCESSES) + 1 for c in closed)
    assert all(c.users == 10 * (len(PROCESSES) + 1) for c in closed)
    assert len(workload["lines"]) == SECONDS * (len(PROCESSES) + 1)


def test_per_second_percentiles_counts_and_failures_are_exact(workload: dict[str, object]) -> None:
    truth = workload["truth"]
    assert isinstance(truth, dict)
    for closed in workload["closed"]:  # type: ignore[attr-defined]
        assert set(closed.endpoints) == set(ENDPOINTS)
        for endpoint in ENDPOINTS:
            assert_matches(closed.endpoints[endpoint], truth[(closed.second, endpoint)], f"{closed.second} {endpoint}")
        everything = [s for endpoint in ENDPOINTS for s in truth[(closed.second, endpoint)]]
        assert_matches(closed.total(), everything, f"{closed.second} all endpoints")


def test_whole_run_percentiles_via_window_totals_are_exact(workload: dict[str, object]) -> None:
    truth = workload["truth"]
    assert isinstance(truth, dict)
    totals = WindowTotals()
    for closed in workload["closed"]:  # type: ignore[attr-defined]
        totals.add(closed)
    assert totals.seconds == SECONDS
    for method, name in ENDPOINTS:
        samples = [s for (_, endpoint), items in truth.items() if endpoint == (method, name) for s in items]
        assert len(samples) == SECONDS * PER_ENDPOINT_PER_SECOND
        assert_matches(totals.endpoints[(method, name)], samples, f"run {method} {name}")
        assert_matches(totals.total(name), samples, f"run selector {name}")
        assert_matches(totals.total(f"{method} {name}"), samples, f"run selector {method} {name}")
    assert_matches(totals.total(), [s for items in truth.values() for s in items], "run all endpoints")
    assert totals.total("DELETE /api/products").count == 0


def test_merged_percentiles_are_not_averages_of_process_percentiles() -> None:
    """One fast process and one slow one: the merged p50 is a real sample, not their mean."""
    fast, slow = WindowRecorder("fast", T0), WindowRecorder("slow", T0)
    for _ in range(900):
        fast.record(T0, "GET", "/", 1_000, 10, None)
    for _ in range(100):
        slow.record(T0, "GET", "/", 500_000, 10, None)
    aggregator = Aggregator(["fast", "slow"])
    for recorder in (fast, slow):
        for line in recorder.flush(T0 + 1, HEALTH):
            window = parse_window(line)
            assert window is not None
            aggregator.add(window)
    (closed,) = aggregator.close_ready(now=T0 + 1)
    latency = closed.total().latency_ms()
    assert latency["p50"] == pytest.approx(1.0, rel=1e-3)
    assert latency["p90"] == pytest.approx(1.0, rel=1e-3)
    assert latency["p99"] == pytest.approx(500.0, rel=1e-3)


# ---------------------------------------------------------------- closing seconds


def window(process: str, second: int, latencies_us: list[int], failure: str | None = None) -> ProcessWindow:
    recorder = WindowRecorder(process, second)
    for latency in latencies_us:
        recorder.record(second, "GET", "/item", latency, 100, failure)
    (line,) = list(recorder.flush(second + 1, replace(HEALTH, users=3)))
    parsed = parse_window(line)
    assert parsed is not None
    return parsed


def test_a_second_waits_for_every_process_then_closes_late_after_the_grace() -> None:
    aggregator = Aggregator(["a", "b"], grace=3.0)
    aggregator.add(window("a", 100, [1000] * 5))
    assert aggregator.close_ready(now=100.5) == []
    assert aggregator.close_ready(now=103.99) == []
    (closed,) = aggregator.close_ready(now=104.0)  # 100 + 1 s + 3 s grace
    assert closed.second == 100
    assert closed.late is True
    assert closed.total().count == 5
    assert [h.process for h in closed.health] == ["a"]


def test_a_second_before_the_run_is_dropped_and_closes_nothing_late() -> None:
    """The load started at 611.05: second 610 is wholly before it. One process's window for it
    (the other's was drained before the run began) is dropped, so no second closes late; 611,
    the run's first (partial) second, is kept."""
    aggregator = Aggregator(["a", "b"], grace=3.0, since=611)
    aggregator.add(window("a", 610, []))
    aggregator.add(window("a", 611, [1000]))
    aggregator.add(window("b", 611, [1000] * 2))
    closed = aggregator.close_ready(now=620.0)
    assert [(c.second, c.late, c.total().count) for c in closed] == [(611, False, 3)]
    assert aggregator.late_count == 0


def test_a_second_closes_as_soon_as_all_processes_reported() -> None:
    aggregator = Aggregator(["a", "b"], grace=3.0)
    aggregator.add(window("a", 101, [1000] * 2))
    assert aggregator.close_ready(now=101.2) == []
    aggregator.add(window("b", 101, [2000] * 3))
    (closed,) = aggregator.close_ready(now=101.2)
    assert (closed.second, closed.late, closed.total().count, closed.users) == (101, False, 5, 6)


def test_seconds_close_in_order_a_complete_second_waits_for_an_older_incomplete_one() -> None:
    aggregator = Aggregator(["a", "b"], grace=3.0)
    aggregator.add(window("a", 102, [1000]))
    aggregator.add(window("a", 103, [1000]))
    aggregator.add(window("b", 103, [1000]))
    assert aggregator.close_ready(now=103.5) == []
    aggregator.add(window("b", 102, [1000]))
    assert [(c.second, c.late) for c in aggregator.close_ready(now=103.5)] == [(102, False), (103, False)]


def test_after_the_grace_the_late_second_and_the_complete_ones_behind_it_close_together() -> None:
    aggregator = Aggregator(["a", "b"], grace=3.0)
    aggregator.add(window("a", 200, [1000]))
    aggregator.add(window("a", 201, [1000]))
    aggregator.add(window("b", 201, [1000]))
    assert [(c.second, c.late) for c in aggregator.close_ready(now=204.0)] == [(200, True), (201, False)]


def test_late_windows_for_closed_seconds_are_kept_not_lost() -> None:
    aggregator = Aggregator(["a", "b"], grace=1.0, keep=2)
    aggregator.add(window("a", 299, [1000] * 3))
    aggregator.add(window("b", 299, [1000]))
    aggregator.add(window("a", 300, [1000] * 4))
    aggregator.add(window("a", 301, [1000]))
    aggregator.add(window("b", 301, [1000]))
    closed = aggregator.close_ready(now=302.0)
    assert [(c.second, c.late) for c in closed] == [(299, False), (300, True), (301, False)]
    assert aggregator.take_late() == []
    totals = WindowTotals()
    for second in closed:
        totals.add(second)

    aggregator.add(window("b", 300, [7000] * 6, failure="timeout"))
    aggregator.add(window("a", 299, [1000] * 2))  # older than the two seconds kept
    assert aggregator.late_count == 2
    straggler, older = aggregator.take_late()
    assert aggregator.take_late() == []
    # The straggler's own requests, to be added to the totals without counting the second twice.
    delta = straggler.delta.endpoints[("GET", "/item")]
    assert (straggler.delta.second, straggler.delta.revision) == (300, True)
    assert delta.count == 6
    assert delta.failures == Counter({"timeout": 6})
    assert delta.latency_ms()["max"] == pytest.approx(7.0, rel=1e-3)
    # The whole second, revised, to be written again over its earlier rows.
    assert straggler.revised is closed[1]
    revised = straggler.revised.endpoints[("GET", "/item")]
    assert (revised.count, revised.failed) == (10, 6)
    assert revised.latency_ms()["p50"] == pytest.approx(7.0, rel=1e-3)
    assert [h.process for h in straggler.revised.health] == ["a", "b"]
    # Too old to revise: its requests still reach the totals.
    assert older.revised is None
    assert older.delta.total().count == 2
    totals.add(straggler.delta)
    totals.add(older.delta)
    assert (totals.seconds, totals.total().count) == (3, 4 + 4 + 2 + 6 + 2)
    # No closed second is reopened or emitted again.
    assert aggregator.close_ready(now=400.0) == []
    assert aggregator.close_all() == []


def test_close_all_flushes_what_is_left() -> None:
    aggregator = Aggregator(["a", "b"], grace=60.0)
    aggregator.add(window("a", 500, [1000]))
    aggregator.add(window("a", 501, [1000]))
    assert aggregator.close_ready(now=502.0) == []
    assert [c.second for c in aggregator.close_all()] == [500, 501]


# ---------------------------------------------------------------- the recorder and the wire


def test_recorder_emits_empty_windows_for_quiet_seconds() -> None:
    recorder = WindowRecorder("p", 10)
    recorder.record(12, "GET", "/", 1500, 10, None)
    windows = [parse_window(line) for line in recorder.flush(13, HEALTH)]
    assert [w.second for w in windows if w] == [10, 11, 12]
    assert [sum(s.count for s in w.endpoints.values()) for w in windows if w] == [0, 0, 1]
    assert list(recorder.flush(13, HEALTH)) == []  # nothing is sent twice


def test_a_straggler_for_a_sent_second_is_filed_under_the_next_one() -> None:
    recorder = WindowRecorder("p", 10)
    recorder.record(10, "GET", "/", 1000, 10, None)
    assert len(list(recorder.flush(11, HEALTH))) == 1
    assert recorder.record(10, "GET", "/", 2000, 10, None) == 11
    (line,) = list(recorder.flush(12, HEALTH))
    late = parse_window(line)
    assert late is not None and late.second == 11
    assert late.endpoints[("GET", "/")].count == 1


def test_wire_round_trip_keeps_everything() -> None:
    recorder = WindowRecorder("gen3-p1", 42)
    recorder.record(42, "POST", "/api/checkout/[session]", 12_345, 321, "HTTPError 503")
    recorder.record(42, "POST", "/api/checkout/[session]", 70_000_000, 1, None)  # clamped to 60 s
    recorder.record(42, "GET", "/", 0, 5, None)  # clamped to 1 us
    (line,) = list(recorder.flush(43, Health(cpu=0.97, lag_ms=12.5, users=7, rate=33.0)))
    parsed = parse_window(line.encode())
    assert parsed is not None
    assert (parsed.process, parsed.second) == ("gen3-p1", 42)
    assert (parsed.health.cpu, parsed.health.lag_ms, parsed.health.users, parsed.health.target_rate) == (
        0.97,
        12.5,
        7,
        33.0,
    )
    checkout = parsed.endpoints[("POST", "/api/checkout/[session]")]
    assert (checkout.count, checkout.bytes, dict(checkout.failures)) == (2, 322, {"HTTPError 503": 1})
    assert checkout.latency_ms()["max"] == pytest.approx(60_000.0, rel=1e-3)
    assert parsed.endpoints[("GET", "/")].latency_ms()["max"] == pytest.approx(0.001, abs=1e-6)


def test_reports_that_are_not_windows_are_ignored() -> None:
    assert parse_window('{"t": "status", "p": "x"}') is None
    assert parse_window('{"t": "error", "text": "boom"}') is None


def test_no_requests_means_nan_latencies_and_zero_error_rate() -> None:
    stats = EndpointStats()
    assert all(math.isnan(v) for v in stats.latency_ms().values())
    assert stats.error_rate == 0.0
    empty = ClosedSecond(T0, {}, [])
    assert empty.total().count == 0
