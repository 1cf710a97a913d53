"""The JUnit XML validates against the common JUnit schema (Jenkins xUnit plugin's junit-10.xsd).

The schema is a fixture (tests/schemas/junit-10.xsd, MIT, provenance in its header); xmlschema
validates every document harness.judge.junit writes for the shapes a run can end in. The last tests
show the schema does reject broken documents, so the others cannot pass vacuously.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
import xmlschema

from harness.judge.junit import junit_xml as junit_of
from harness.judge.summary import RunSummary

SCHEMA_PATH = Path(__file__).parent / "schemas" / "junit-10.xsd"


def junit_xml(summary: dict[str, Any], guards: list[tuple[str, str]]) -> str:
    """The JUnit XML of a summary.json as a run writes it, read back through RunSummary."""
    return junit_of(RunSummary.from_json(summary), guards)


GUARDS = [("meltdown", "error_rate > 50% for 5s"), ("no-traffic", "rps < 1 for 10s")]


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(SCHEMA_PATH))


def _slo(name: str, passed: bool, measured: float | None = 12.5, status: str | None = None) -> dict[str, Any]:
    if status is None:
        status = "no_data" if measured is None else "met" if passed else "breached"
    return {
        "name": name,
        "objective": "p99 < 250ms",
        "window": "during:kill",
        "endpoint": "/api/checkout/[session]",
        "metric": "p99",
        "measured": measured,
        "threshold": 250.0,
        "passed": passed,
        "requests": 0 if measured is None else 100,
        "seconds": 10,
        "message": f"p99 {measured}ms over during:kill (100 requests): {'met' if passed else 'missed'} < 250.0ms",
        "status": status,
    }


def _summary(**over: Any) -> dict[str, Any]:
    base = {
        "run_id": "r1",
        "scenario": "shop",
        "verdict": "passed",
        "reason": "all SLOs met",
        "exit_code": 0,
        "started": "2026-11-22T04:00:00Z",
        "timings": {"load_window_s": 90.0},
        "slos": [_slo("fast", True), _slo("steady-latency", True, 80.25)],
        "guard": None,
    }
    return {**base, **over}


BASELINE = {
    "ref": "last-pass",
    "run_id": "abc",
    "passed": False,
    "comparisons": [
        {
            "phase": "steady",
            "endpoint": "GET /api/checkout",
            "metric": "p99",
            "baseline": 40.0,
            "current": 92.0,
            "change": 1.3,
            "tolerance": 0.1,
            "p_value": 0.0001,
            "regressed": True,
            "message": "p99 of GET /api/checkout in steady: 92.0 ms vs 40.0 ms (+130%, tolerance 10%, p=0.0001)",
        },
        {
            "phase": "steady",
            "endpoint": "GET /api/products",
            "metric": "error_rate",
            "baseline": 0.001,
            "current": 0.001,
            "change": 0.0,
            "tolerance": 0.1,
            "p_value": 0.9,
            "regressed": False,
            "message": "error_rate of GET /api/products in steady: unchanged",
        },
    ],
}

TRIP = {"guard": "meltdown", "condition": "error_rate > 50% for 5s", "value": 0.9, "second": 41, "message": "90% > 50%"}

CASES: dict[str, tuple[dict[str, Any], list[tuple[str, str]]]] = {
    "passed with SLOs and guards": (_summary(), GUARDS),
    "failed SLO": (
        _summary(
            verdict="failed",
            reason="SLO failed: slow",
            exit_code=1,
            slos=[_slo("fast", True), _slo("slow", False, 400.0)],
        ),
        GUARDS,
    ),
    "tripped guard": (
        _summary(verdict="aborted", reason="guard meltdown tripped", exit_code=4, guard=TRIP),
        GUARDS,
    ),
    "SLO skipped for lack of data": (_summary(slos=[_slo("fast", True), _slo("empty", False, None)]), GUARDS),
    "never recovered": (
        _summary(
            verdict="failed",
            reason="SLO failed: payments-recovers",
            exit_code=1,
            slos=[
                {
                    **_slo("payments-recovers", False, None, status="never_recovered"),
                    "objective": "recovery_time < 10s",
                    "metric": "recovery_time",
                    "threshold": 10000.0,
                    "message": "never recovered after kill-payments (p99 < 500ms and error_rate < 1% for 3s)",
                },
                _slo("fast", True),
            ],
        ),
        GUARDS,
    ),
    "SLO without status (summary.json before SLO kinds)": (
        _summary(slos=[{k: v for k, v in _slo("old", False, 400.0).items() if k != "status"}]),
        GUARDS,
    ),
    "error run": (_summary(verdict="error", reason="internal error: <KeyError 'x'> & more", exit_code=3, slos=[]), []),
    "invalid run": (
        _summary(verdict="invalid", reason="load not delivered: 61% of arrivals started", exit_code=5),
        GUARDS,
    ),
    "interrupted run": (
        # An interrupted run may end before the load window: no timings, no SLO results.
        {"run_id": "r2", "scenario": "shop", "verdict": "interrupted", "reason": "interrupted", "exit_code": 130},
        GUARDS,
    ),
    "baseline section": (
        _summary(
            verdict="failed", reason="baseline regression: p99 of GET /api/checkout", exit_code=1, baseline=BASELINE
        ),
        GUARDS,
    ),
    "no SLOs, no guards, no timestamp": (_summary(slos=[], started=None, timings={}), []),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_junit_document_validates_against_the_common_schema(schema: xmlschema.XMLSchema, case: str) -> None:
    summary, guards = CASES[case]
    text = junit_xml(summary, guards)
    errors = [f"{error.path}: {error.reason}" for error in schema.iter_errors(text)]
    assert errors == []


def test_the_validated_documents_carry_what_the_cases_are_about(schema: xmlschema.XMLSchema) -> None:
    # The parametrized cases above must exercise failure and error elements, not only passes
    # (no-data SLOs fail the verdict, so they are failures too: nothing is written as skipped).
    kinds = set()
    for summary, guards in CASES.values():
        root = ET.fromstring(junit_xml(summary, guards).split("\n", 1)[1])
        kinds |= {element.tag for element in root.iter() if element.tag in ("failure", "skipped", "error")}
    assert kinds == {"failure", "error"}


def _valid_document() -> ET.Element:
    summary, guards = CASES["failed SLO"]
    return ET.fromstring(junit_xml(summary, guards).split("\n", 1)[1])


def test_the_schema_rejects_a_testcase_without_a_name(schema: xmlschema.XMLSchema) -> None:
    root = _valid_document()
    assert schema.is_valid(ET.tostring(root, encoding="unicode"))
    case = next(root.iter("testcase"))
    del case.attrib["name"]
    errors = list(schema.iter_errors(ET.tostring(root, encoding="unicode")))
    assert errors and "name" in str(errors[0].reason)


@pytest.mark.parametrize(
    ("mutate", "why"),
    [
        (lambda root: root.set("skipped", "1"), "'skipped' attribute not allowed for element"),
        (lambda root: root.find("testsuite").attrib.pop("tests"), "missing required attribute 'tests'"),
        (lambda root: ET.SubElement(next(root.iter("testcase")), "failed"), "failed"),
        (lambda root: root.find("testsuite").set("time", "thirty"), "thirty"),
    ],
    ids=["skipped on testsuites", "testsuite without tests", "unknown result element", "time not a number"],
)
def test_the_schema_rejects_what_consumers_reject(schema: xmlschema.XMLSchema, mutate: Any, why: str) -> None:
    root = _valid_document()
    mutate(root)
    reasons = " ".join(str(error.reason) for error in schema.iter_errors(ET.tostring(root, encoding="unicode")))
    assert why in reasons
