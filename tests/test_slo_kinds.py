"""The gate's SLO kinds judged on synthetic seconds: error kinds, recovery time, error-budget burn.

Each kind is checked both ways (met and breached) with the message a CI log shows.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from harness.errors import ScenarioError
from harness.judge.objectives import failure_matches, recovery_seconds
from harness.judge.slo import SloBook, SloResult, SloStatus
from harness.measure.windows import ClosedSecond, EndpointStats
from harness.plan import compile_plan
from harness.scenario import load_scenario

LOCUSTFILE = """\
from locust import FastHttpUser, task


class Shopper(FastHttpUser):
    @task
    def t(self):
        pass
"""

HEAD = """\
name: kinds
target: {base_url: 'http://127.0.0.1:8700'}
load:
  locustfile: locust.py
  user_classes: [{class: Shopper}]
  stages: [{name: main, duration: 60s, users: 10}]
faults:
  - {name: F, kind: process.pause, at: 10s, duration: 10s, target: {pattern: payments}}
"""

SLOS = """\
slos:
  - {name: steady-p99, objective: "p99 < 200ms", window: steady}
  - {name: steady-errors, objective: "error_rate < 1%", window: steady}
  - {name: recovers, objective: "recovery_time < 10s", window: "after:F"}
  - {name: recovers-fast, objective: "recovery_time < 3s", window: "after:F"}
  - name: checkout-recovers
    objective: "recovery_time < 30s"
    window: "after:F"
    endpoint: /checkout
    recovery: {p99: 1s, error_rate: 5%, stable_for: 2s}
  - {name: no-5xx, objective: "error_rate < 1%", window: run, errors: [5xx]}
  - {name: no-503, objective: "error_rate < 1%", window: run, errors: [503]}
  - {name: no-timeouts, objective: "error_rate < 1%", window: run, errors: [ConnectTimeout]}
  - {name: burn, objective: "burn_rate < 2x", window: run, budget: {availability: 99%, period: 30d}}
  - {name: burn-loose, objective: "burn_rate < 10", window: run, budget: {availability: 99%}}
  - {name: budget, objective: "budget_burn < 0.01%", window: run, budget: {availability: 99%, period: 1d}}
  - {name: budget-loose, objective: "budget_burn < 1%", window: run, budget: {availability: 99%, period: 1d}}
"""

START = 1000.6  # second s has its midpoint at offset s + 0.5 - START; F ends at epoch 1020.6
N = 100


def _second(second: int, latency_ms: float, failures: dict[str, int] | None = None, n: int = N) -> ClosedSecond:
    endpoints = {}
    for key in (("GET", "/item"), ("POST", "/checkout")):
        stats = EndpointStats()
        bad = dict(failures or {})
        for _ in range(n):
            kind = next((k for k, left in bad.items() if left > 0), None)
            if kind is not None:
                bad[kind] -= 1
            stats.record(int(latency_ms * 1000), 100, kind)
        if n:
            endpoints[key] = stats
    return ClosedSecond(second, endpoints, [])


def _timeline(second: int) -> ClosedSecond:
    """Healthy (50 ms) except: 1011..1020 inside F all failing with 503s; after F ends (1020.6)
    seconds 1021..1025 slow (600 ms), 1026 healthy, 1027 without requests, 1028 on healthy.
    Before F, second 1005 has two ConnectTimeout failures per endpoint."""
    if 1011 <= second <= 1020:
        return _second(second, 50, {"http_503": N})
    if 1021 <= second <= 1025:
        return _second(second, 600)
    if second == 1027:
        return _second(second, 50, n=0)
    if second == 1005:
        return _second(second, 50, {"ConnectTimeout": 2})
    return _second(second, 50)


@pytest.fixture
def results(tmp_path: Path) -> dict[str, SloResult]:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + SLOS)
    book = SloBook(compile_plan(load_scenario(path)), START)
    for second in range(1001, 1061):
        book.observe(_timeline(second))
    return {r.name: r for r in book.results()}


def test_recovery_time_runs_from_the_fault_end_to_the_first_stable_streak(results: dict[str, SloResult]) -> None:
    # Thresholds come from the steady SLOs (p99 < 200ms, error_rate < 1%), 3 seconds in a row:
    # 1026 is good but 1027 had no requests, so the first streak starts at 1028.
    result = results["recovers"]
    assert result.measured == pytest.approx(1028 - 1020.6)
    assert result.passed and result.status == SloStatus.MET
    assert result.message.startswith(
        "recovery_time 7.4s after F (per-second p99 <= 200.0ms and error rate <= 1% for 3 consecutive seconds)"
    )
    assert result.message.endswith("met < 10s")
    failed = results["recovers-fast"]
    assert not failed.passed and failed.status == SloStatus.BREACHED
    assert failed.message.endswith("breached < 3s")


def test_never_recovered_is_a_failure_with_its_own_message(tmp_path: Path) -> None:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + SLOS)
    book = SloBook(compile_plan(load_scenario(path)), START)
    for second in range(1001, 1061):
        book.observe(_second(second, 50) if second <= 1010 else _second(second, 50, {"http_503": N}))
    result = {r.name: r for r in book.results()}["checkout-recovers"]
    assert not result.passed
    assert result.status == SloStatus.NEVER_RECOVERED
    assert math.isinf(result.measured) and result.to_dict()["measured"] is None
    assert result.message == (
        "never recovered after F on /checkout: per-second p99 <= 1000.0ms and error rate <= 5% "
        "for 2 consecutive seconds did not hold within the 40s after the fault ended"
    )


def test_an_endpoint_recovery_rule_of_its_own(results: dict[str, SloResult]) -> None:
    # p99 <= 1s: the 600 ms seconds count as good, so /checkout is back at once (1021 starts the streak).
    result = results["checkout-recovers"]
    assert result.measured == pytest.approx(1021 - 1020.6)
    assert result.passed


def test_recovery_seconds_rule() -> None:
    seconds = {10: (100, 0, 50.0), 11: (100, 50, 50.0), 12: (100, 0, 50.0), 14: (100, 0, 50.0), 15: (100, 0, 50.0)}
    # 13 is missing (no window at all): 12 and 14 are not consecutive.
    assert recovery_seconds(seconds, 9.5, 100.0, 0.01, 2) == pytest.approx(14 - 9.5)
    assert recovery_seconds(seconds, 9.5, 100.0, 0.01, 1) == pytest.approx(0.5)
    assert recovery_seconds(seconds, 9.5, 100.0, 0.01, 3) is None
    assert recovery_seconds(seconds, 9.5, 100.0, 0.5, 3) == pytest.approx(0.5)  # 50% errors allowed
    assert recovery_seconds({}, 0.0, 100.0, 0.01, 1) is None


def test_error_rate_by_kind_and_status(results: dict[str, SloResult]) -> None:
    # 10 of the 59 seconds with requests failed entirely with 503; 4 ConnectTimeouts in 11800 requests.
    assert results["no-5xx"].measured == pytest.approx(10 / 59)
    assert results["no-503"].measured == pytest.approx(10 / 59)
    assert not results["no-5xx"].passed
    assert results["no-5xx"].message.startswith("error_rate (5xx only) 16.9% over run")
    assert results["no-timeouts"].measured == pytest.approx(4 / (59 * 2 * N))
    assert results["no-timeouts"].passed


def test_failure_matches() -> None:
    assert failure_matches("http_503", ["5xx"])
    assert failure_matches("http_503", ["503"])
    assert failure_matches("http_503", ["http_503"])
    assert not failure_matches("http_503", ["4xx", "502"])
    assert failure_matches("ConnectionRefusedError", ["ConnectionRefusedError"])
    assert not failure_matches("ConnectionRefusedError", ["5xx"])


def test_burn_rate_and_budget_burn(results: dict[str, SloResult]) -> None:
    # Error rate over the run: (10 s of 503s + 4 timeouts) / 59 s with requests = 0.1698; budget 1%.
    error_rate = (10 * 2 * N + 4) / (59 * 2 * N)
    burn = results["burn"]
    assert burn.measured == pytest.approx(error_rate / 0.01)
    assert not burn.passed
    assert burn.message.startswith("burn_rate 17x over run: error rate 17% against a 1% budget (99% availability)")
    assert not results["burn-loose"].passed  # 17x >= 10
    budget = results["budget"]
    assert budget.measured == pytest.approx(error_rate / 0.01 * 60 / 86400)
    assert not budget.passed
    assert budget.message.startswith("budget_burn 1.18% of the 1d error budget used over run")
    assert results["budget-loose"].measured == pytest.approx(0.0118, rel=0.01)
    assert not results["budget-loose"].passed  # 1.18% >= 1%


def test_budget_burn_met_when_errors_are_rare(tmp_path: Path) -> None:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + SLOS)
    book = SloBook(compile_plan(load_scenario(path)), START)
    for second in range(1001, 1061):
        book.observe(_second(second, 50, {"http_500": 1} if second == 1030 else None))
    results = {r.name: r for r in book.results()}
    assert results["burn"].measured == pytest.approx(2 / 12000 / 0.01)  # one 500 per endpoint
    assert results["burn"].passed and results["burn"].message.endswith("met < 2x")
    assert results["budget-loose"].passed


@pytest.mark.parametrize(
    ("slo", "where", "message"),
    [
        (
            '{name: x, objective: "recovery_time < 10s", window: run}',
            "slos[0].window",
            "recovery_time is measured from a fault's end: use window after:FAULT",
        ),
        (
            '{name: x, objective: "recovery_time < 10s", window: "after:F"}',
            "slos[0].recovery",
            "recovery_time needs recovery.p99 or a steady 'p99 <' SLO to compare with",
        ),
        ('{name: x, objective: "recovery_time < 10", window: "after:F"}', "slos[0].objective", "needs a unit"),
        ('{name: x, objective: "burn_rate < 2"}', "slos[0].objective", "burn_rate needs budget"),
        (
            '{name: x, objective: "budget_burn < 2%", budget: {availability: 99.9}}',
            "slos[0].budget.availability",
            "99.9 is not a fraction; write a percentage with '%'",
        ),
        (
            '{name: x, objective: "budget_burn < 2%", budget: {availability: 99.9%, period: 2y}}',
            "slos[0].budget.period",
            "is not a duration",
        ),
        ('{name: x, objective: "p99 < 1s", errors: [5xx]}', "slos[0].errors", "errors filters an error_rate SLO"),
        ('{name: x, objective: "error_rate < 1%", errors: [6xx]}', "slos[0].errors[0]", "is not an error kind"),
        (
            '{name: x, objective: "p99 < 1s", budget: {availability: 99%}}',
            "slos[0].budget",
            "budget applies to burn_rate and budget_burn SLOs",
        ),
    ],
)
def test_bad_slo_kinds_name_the_key(tmp_path: Path, slo: str, where: str, message: str) -> None:
    (tmp_path / "locust.py").write_text(LOCUSTFILE)
    path = tmp_path / "s.yaml"
    path.write_text(HEAD + f"slos:\n  - {slo}\n")
    with pytest.raises(ScenarioError) as info:
        load_scenario(path)
    text = str(info.value)
    assert f"s.yaml:{len(HEAD.splitlines()) + 2}:" in text
    assert f"{where}: " in text and message in text, text


def test_a_baseline_regression_fails_the_verdict_after_run_problems() -> None:
    from harness.judge.verdict import Verdict, decide

    failed = SloResult("slow", "p99 < 1ms", "run", "all", "p99", 5.0, 1.0, False, 10, 1, "", SloStatus.BREACHED)
    regression = "baseline b1: 1 regression: p99 of POST /checkout in phase steady (+120%)"
    assert decide([], regression=regression) == (Verdict.FAILED, regression)
    assert decide([failed], regression=regression) == (Verdict.FAILED, f"SLO failed: slow; {regression}")
    # An aborted or invalid run is that first: its comparison says little.
    assert decide([], aborted="guard x tripped", regression=regression)[0] is Verdict.ABORTED
    assert decide([], invalid="load not delivered", regression=regression)[0] is Verdict.INVALID
