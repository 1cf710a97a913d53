"""JUnit XML from a run's summary, read back with junitparser (a real JUnit consumer library)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from junitparser import Error, Failure, JUnitXml

from harness.judge.junit import junit_xml as junit_of
from harness.judge.summary import RunSummary


def junit_xml(summary: dict[str, Any], guards: list[tuple[str, str]] | None = None) -> str:
    """The JUnit XML of a summary.json as a run writes it, read back through RunSummary."""
    return junit_of(RunSummary.from_json(summary), guards or [])


def _slo(name: str, passed: bool, measured: float | None = 12.5) -> dict[str, Any]:
    return {
        "name": name,
        "objective": "p99 < 250ms",
        "window": "during:kill",
        "endpoint": "/api/checkout/[session]",
        "metric": "p99",
        "measured": measured,
        "threshold": 250.0,
        "passed": passed,
        "requests": 100,
        "seconds": 10,
        "message": f"p99 {measured}ms over during:kill (100 requests): {'met' if passed else 'missed'} < 250.0ms",
    }


def _summary(**over: Any) -> dict[str, Any]:
    base = {
        "run_id": "r1",
        "scenario": "shop",
        "verdict": "failed",
        "reason": "SLO failed: slow",
        "exit_code": 1,
        "started": "2026-11-22T04:00:00Z",
        "timings": {"load_window_s": 30.0},
        "slos": [_slo("fast", True), _slo("slow", False, 400.0), _slo("empty", False, None)],
        "guard": None,
    }
    return {**base, **over}


def _read(text: str, tmp_path: Path) -> JUnitXml:
    path = tmp_path / "junit.xml"
    path.write_text(text)
    return JUnitXml.fromfile(str(path))


def test_one_testcase_per_slo_and_guard_with_the_failure_figures(tmp_path: Path) -> None:
    xml = _read(junit_xml(_summary(), [("meltdown", "error_rate > 50% for 5s")]), tmp_path)
    [suite] = list(xml)
    assert suite.name == "shop"
    assert (suite.tests, suite.failures, suite.errors, suite.skipped) == (4, 2, 0, 0)
    cases = {case.name: case for case in suite}
    assert cases["fast"].is_passed and cases["meltdown"].is_passed
    [failure] = cases["slow"].result
    assert isinstance(failure, Failure)
    assert failure.message == "p99 < 250ms not met: measured 400.0ms, threshold 250.0ms"
    assert failure.type == "SloFailed"
    assert "window during:kill, endpoint /api/checkout/[session]" in (failure.text or "")
    # No data fails the verdict, so it fails its testcase too (not a skip a report would hide).
    [empty] = cases["empty"].result
    assert isinstance(empty, Failure) and empty.type == "NoData"
    assert empty.message == "p99 < 250ms not met: measured no data, threshold 250.0ms"
    assert cases["slow"].classname == "harness.shop.slo" and cases["meltdown"].classname == "harness.shop.guard"


def test_a_tripped_guard_fails_its_testcase(tmp_path: Path) -> None:
    trip = {"guard": "meltdown", "condition": "error_rate > 50% for 5s", "value": 0.9, "second": 1, "message": "90%"}
    summary = _summary(verdict="aborted", slos=[_slo("fast", True)], guard=trip)
    [suite] = list(_read(junit_xml(summary, [("meltdown", "error_rate > 50% for 5s")]), tmp_path))
    cases = {case.name: case for case in suite}
    [failure] = cases["meltdown"].result
    assert isinstance(failure, Failure) and failure.message == "aborted: error_rate > 50% for 5s"
    assert suite.failures == 1


def test_an_invalid_run_is_an_error_not_slo_failures(tmp_path: Path) -> None:
    summary = _summary(verdict="invalid", reason="generator saturated: ...", slos=[_slo("fast", True)])
    [suite] = list(_read(junit_xml(summary), tmp_path))
    assert (suite.tests, suite.errors) == (2, 1)
    run = next(case for case in suite if case.name == "run")
    assert isinstance(run.result[0], Error) and run.result[0].message == "generator saturated: ..."


def test_baseline_comparisons_are_testcases_and_a_regression_fails(tmp_path: Path) -> None:
    comparisons = [
        {
            "phase": "steady",
            "endpoint": "POST /api/checkout/[session]",
            "metric": metric,
            "baseline": 40.0,
            "current": 92.0 if regressed else 41.0,
            "change": 1.3 if regressed else 0.02,
            "tolerance": 0.1,
            "p_value": 1e-6 if regressed else 0.7,
            "regressed": regressed,
            "message": f"{metric} of POST /api/checkout/[session] in phase steady",
        }
        for metric, regressed in (("p99", True), ("rps", False))
    ]
    baseline = {"ref": "last-pass", "run_id": "base-1", "passed": False, "comparisons": comparisons}
    summary = _summary(slos=[_slo("fast", True)], baseline=baseline, reason="baseline regression \x1b[31m")
    text = junit_xml(summary)
    assert "\x1b" not in text  # a control character would make the XML unreadable
    [suite] = list(_read(text, tmp_path))
    assert (suite.tests, suite.failures) == (3, 1)
    cases = {case.name: case for case in suite}
    regressed = cases["p99 of POST /api/checkout/[session] in phase steady"]
    [failure] = regressed.result
    assert isinstance(failure, Failure) and failure.type == "BaselineRegression"
    assert failure.message == "regressed against baseline run base-1"
    assert regressed.classname == "harness.shop.baseline"
    assert cases["rps of POST /api/checkout/[session] in phase steady"].is_passed
