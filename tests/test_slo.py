"""SLOs judged over windows of closed seconds, guards checked every second, and the verdict."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from harness.errors import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_PASSED,
)
from harness.judge.guards import GuardWatch
from harness.judge.slo import SloBook, SloResult
from harness.judge.verdict import RunLedger, Verdict, decide
from harness.measure.windows import ClosedSecond, EndpointStats, ProcessHealth
from harness.plan import compile_plan
from harness.scenario import Guard, load_scenario

LOCUSTFILE = """\
from locust import FastHttpUser, task


class Shopper(FastHttpUser):
    @task
    def t(self):
        pass
"""

SCENARIO = """\
name: slo-test
target:
  base_url: http://127.0.0.1:8700
load:
  locustfile: locust.py
  user_classes: [{class: Shopper}]
  stages:
    - {name: main, duration: 30s, users: 10}
faults:
  - {name: F, kind: process.pause, at: 10s, duration: 10s, target: {pattern: payments}}
slos:
  - {name: during-errors, objective: "error_rate < 1%", window: "during:F"}
  - {name: during-max, objective: "max < 500ms", window: "during:F"}
  - {name: during-p99, objective: "p99 < 250ms", window: "during:F"}
  - {name: steady-p90, objective: "p90 < 250ms", window: steady}
  - {name: steady-errors, objective: "error_rate <= 5%", window: steady}
  - {name: run-rps, objective: "rps >= 100", window: run}
  - {name: run-rps-high, objective: "rps >= 150", window: run}
  - {name: after-F, objective: "max < 1s", window: "after:F:5s"}
  - {name: tail, objective: "p99 < 250ms", window: "last:5s"}
  - {name: nowhere, objective: "p99 < 250ms", window: run, endpoint: /nowhere}
  - {name: item-only, objective: "p99 < 250ms", window: run, endpoint: "GET /item"}
"""

START = 1000.6  # run start epoch; second s has its midpoint at offset s + 0.5 - START
PER_SECOND = 100


def closed_second(
    second: int,
    latency_ms: float,
    failure: str | None = None,
    n: int = PER_SECOND,
    endpoint: tuple[str, str] = ("GET", "/api"),
) -> ClosedSecond:
    stats = EndpointStats()
    for _ in range(n):
        stats.record(int(latency_ms * 1000), 200, failure)
    health = [ProcessHealth("p0", cpu=0.3, lag_ms=1.0, users=10, target_rate=0.0)]
    return ClosedSecond(second, {endpoint: stats} if n else {}, health)


@pytest.fixture
def plan(tmp_path: Path):  # type: ignore[no-untyped-def]
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    path = tmp_path / "scenario.yaml"
    path.write_text(SCENARIO)
    return compile_plan(load_scenario(path))


def second_for(second: int) -> ClosedSecond:
    """The synthetic run: 1010 (midpoint 9.9s, just before F) all failed, 1011..1020 (inside F)
    at 400 ms, 1021 (midpoint 20.9s, just after F) at 900 ms, everything else at 100 ms."""
    if second == 1010:
        return closed_second(second, 100, failure="HTTPError 503")
    if 1011 <= second <= 1020:
        return closed_second(second, 400)
    if second == 1021:
        return closed_second(second, 900)
    return closed_second(second, 100)


@pytest.fixture
def results(plan) -> dict[str, SloResult]:  # type: ignore[no-untyped-def]
    book = SloBook(plan, START)
    for second in range(995, 1036):  # includes seconds before and after the run
        book.observe(second_for(second))
    return {r.name: r for r in book.results()}


def test_a_during_window_sees_only_seconds_whose_midpoint_is_inside_the_fault(
    results: dict[str, SloResult],
) -> None:
    for name in ("during-errors", "during-max", "during-p99"):
        assert results[name].seconds == 10
        assert results[name].requests == 10 * PER_SECOND
    # Second 1010 (all failures) is outside, so no errors; second 1021 (900 ms) is outside too.
    assert results["during-errors"].passed
    assert results["during-errors"].measured == 0.0
    assert results["during-max"].passed
    assert results["during-max"].measured == pytest.approx(400.0, rel=1e-3)


def test_failed_slo_says_what_was_measured_and_breached(results: dict[str, SloResult]) -> None:
    result = results["during-p99"]
    assert not result.passed
    assert result.metric == "p99"
    assert result.threshold == 250.0
    assert result.measured == pytest.approx(400.0, rel=1e-3)
    assert result.window == "during:F"
    assert result.endpoint == "all"
    # HDR reports a bucket's upper bound, within 0.1% of the recorded 400 ms.
    assert re.fullmatch(r"p99 400\.\dms over during:F \(1000 requests\): breached < 250\.0ms", result.message)


def test_passed_slo_message(results: dict[str, SloResult]) -> None:
    result = results["steady-p90"]
    assert result.passed
    assert re.fullmatch(r"p90 100\.\dms over steady \(2000 requests\): met < 250\.0ms", result.message)


def test_steady_is_the_run_outside_the_fault_window(results: dict[str, SloResult]) -> None:
    steady = results["steady-errors"]
    assert steady.seconds == 20  # 30 s run minus the 10 s fault window
    assert steady.requests == 20 * PER_SECOND
    assert steady.measured == pytest.approx(0.05)  # second 1010 is steady
    assert steady.passed
    assert "5%" in steady.message


def test_rps_over_the_run(results: dict[str, SloResult], plan) -> None:  # type: ignore[no-untyped-def]
    # The run window takes every second the run closed (41 fed here, the partial seconds around
    # the 30 s plan included), as the run ledger's run window does: an SLO over the run judges
    # exactly the requests summary.json's totals and the terminal's totals line count.
    ledger = RunLedger(plan, START)
    for second in range(995, 1036):
        ledger.observe(second_for(second))
    run = ledger.window_table()["run"]
    assert results["run-rps"].seconds == run["seconds"] == 41
    assert results["run-rps"].requests == run["requests"] == 4100
    assert results["run-rps"].measured == pytest.approx(100.0) == run["rps"]
    assert results["run-rps"].passed
    assert not results["run-rps-high"].passed
    assert results["run-rps-high"].message == "rps 100.0/s over run (4100 requests): breached >= 150.0/s"


def test_after_and_last_windows(results: dict[str, SloResult]) -> None:
    assert results["after-F"].seconds == 5
    assert results["after-F"].measured == pytest.approx(900.0, rel=1e-3)
    assert results["after-F"].passed
    assert results["tail"].seconds == 5
    assert results["tail"].measured == pytest.approx(100.0, rel=1e-3)


def test_no_requests_fails_with_no_requests(results: dict[str, SloResult]) -> None:
    result = results["nowhere"]
    assert not result.passed
    assert math.isnan(result.measured)
    assert result.requests == 0
    assert "no requests" in result.message
    assert result.message == "no requests in window run on /nowhere: nothing to judge"
    assert result.to_dict()["measured"] is None


def test_endpoint_selector_limits_an_slo_to_one_endpoint(plan) -> None:  # type: ignore[no-untyped-def]
    book = SloBook(plan, START)
    for second in range(1001, 1031):
        fast = closed_second(second, 50, endpoint=("GET", "/item")).endpoints
        slow = closed_second(second, 800, endpoint=("POST", "/checkout")).endpoints
        book.observe(ClosedSecond(second, {**fast, **slow}, []))
    results = {r.name: r for r in book.results()}
    assert results["item-only"].passed
    assert results["item-only"].requests == 30 * PER_SECOND
    assert re.match(r"p99 50\.\dms over run on GET /item \(3000 requests\): met", results["item-only"].message)
    assert not results["during-p99"].passed  # all endpoints: the slow one counts


def test_an_slo_with_no_seconds_at_all_fails(plan) -> None:  # type: ignore[no-untyped-def]
    results = SloBook(plan, START).results()
    assert results and not any(r.passed for r in results)
    assert all("no requests" in r.message for r in results)


# ---------------------------------------------------------------- guards


def guard(name: str, condition: str) -> Guard:
    return Guard.model_validate({"name": name, "condition": condition})


def test_guard_trips_only_after_n_consecutive_breaching_seconds() -> None:
    watch = GuardWatch([guard("errors", "error_rate > 50% for 3s")])
    bad = lambda s: closed_second(s, 10, failure="timeout")  # noqa: E731
    good = lambda s: closed_second(s, 10)  # noqa: E731
    assert watch.observe(bad(1)) is None
    assert watch.observe(bad(2)) is None
    assert watch.observe(good(3)) is None  # resets the streak
    assert watch.observe(bad(4)) is None
    assert watch.observe(bad(5)) is None
    trip = watch.observe(bad(6))
    assert trip is not None
    assert (trip.guard, trip.second, trip.value) == ("errors", 6, 1.0)
    assert trip.condition == "error_rate > 50% for 3s"
    assert trip.message == "guard 'errors' tripped: error_rate was 100% (error_rate > 50% for 3s)"


def test_guard_threshold_is_strict_and_latency_guards_work() -> None:
    watch = GuardWatch([guard("slow", "p99 > 1s for 2s")])
    assert watch.observe(closed_second(1, 990)) is None  # just under 1 s does not breach "> 1s"
    assert watch.observe(closed_second(2, 990)) is None
    assert watch.observe(closed_second(3, 1500)) is None
    trip = watch.observe(closed_second(4, 1500))
    assert trip is not None and trip.guard == "slow"
    assert re.search(r"p99 was 1500\.\dms \(p99 > 1s for 2s\)$", trip.message)


def test_a_silent_second_breaks_an_error_streak_but_feeds_an_rps_floor() -> None:
    watch = GuardWatch([guard("errors", "error_rate > 50% for 2s"), guard("dead", "rps < 10 for 2s")])
    assert watch.observe(closed_second(1, 10, failure="timeout")) is None
    assert watch.observe(closed_second(2, 10, n=0)) is None  # no requests: error rate unknown, rps 0
    trip = watch.observe(closed_second(3, 10, n=0))
    assert trip is not None
    assert trip.guard == "dead"
    assert trip.value == 0.0


def test_a_guard_with_for_1s_trips_on_the_first_breach() -> None:
    watch = GuardWatch([guard("any", "error_rate > 0%")])
    assert watch.observe(closed_second(1, 10)) is None
    assert watch.observe(closed_second(2, 10, failure="x", n=1)) is not None


# ---------------------------------------------------------------- the verdict


def result(name: str, passed: bool) -> SloResult:
    return SloResult(
        name=name,
        objective="p99 < 1ms",
        window="run",
        endpoint="all",
        metric="p99",
        measured=0.5 if passed else 2.0,
        threshold=1.0,
        passed=passed,
        requests=1,
        seconds=1,
        message="",
    )


def test_decide_all_met() -> None:
    verdict, reason = decide([result("a", True), result("b", True)])
    assert (verdict, reason, verdict.exit_code) == (Verdict.PASSED, "all 2 SLOs met", EXIT_PASSED)


def test_decide_without_slos() -> None:
    assert decide([]) == (Verdict.PASSED, "no SLOs defined; run completed")


def test_decide_failed_names_the_failed_slos() -> None:
    verdict, reason = decide([result("a", False), result("b", True), result("c", False)])
    assert (verdict, reason, verdict.exit_code) == (Verdict.FAILED, "SLO failed: a, c", EXIT_FAILED)


@pytest.mark.parametrize(
    ("kwargs", "verdict", "code"),
    [
        ({"invalid": "load not delivered"}, Verdict.INVALID, EXIT_INVALID),
        ({"invalid": "x", "aborted": "guard tripped"}, Verdict.ABORTED, EXIT_ABORTED),
        ({"invalid": "x", "aborted": "y", "interrupted": True}, Verdict.INTERRUPTED, EXIT_INTERRUPTED),
        (
            {"invalid": "x", "aborted": "y", "interrupted": True, "error": "boom"},
            Verdict.ERROR,
            EXIT_INTERNAL,
        ),
    ],
)
def test_decide_precedence(kwargs: dict[str, object], verdict: Verdict, code: int) -> None:
    got, reason = decide([result("a", False)], **kwargs)  # type: ignore[arg-type]
    assert got is verdict
    assert got.exit_code == code
    if verdict is Verdict.INTERRUPTED:
        assert reason.startswith("interrupted")
    else:
        assert reason == kwargs[{"INVALID": "invalid", "ABORTED": "aborted", "ERROR": "error"}[verdict.name]]
