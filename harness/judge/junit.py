"""JUnit XML for CI: one testcase per SLO and per guard, so a pipeline's test report shows
which objective failed, with what value, against which threshold, over which window.

Pure: it reads the run's summary (:class:`~harness.judge.summary.RunSummary`, the same SLO
results the terminal shows) and the scenario's guards; it writes nothing itself. The layout is the common JUnit one that
Jenkins, GitLab, GitHub test reporters and junitparser read: ``<testsuites>`` holding one
``<testsuite name=scenario>`` whose ``<testcase classname="harness.<scenario>.slo|guard"
name=...>`` carries ``<failure message=... type=...>`` when it failed. A baseline comparison
adds one ``harness.<scenario>.baseline`` testcase per metric, endpoint and phase compared.
"""

from __future__ import annotations

import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from datetime import UTC, datetime

from harness.judge.objectives import format_metric
from harness.judge.slo import SloResult, SloStatus
from harness.judge.summary import RunSummary

__all__ = ["junit_xml"]


# XML 1.0 cannot carry these (a terminal colour code in a reason, say): they are dropped.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _text(value: object) -> str:
    return _NOT_XML.sub("", str(value))


def _case(suite: ET.Element, classname: str, name: str, seconds: float) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=_text(name), time=f"{seconds:.3f}")


def _sub(parent: ET.Element, tag: str, text: str = "", **attributes: str) -> ET.Element:
    element = ET.SubElement(parent, tag, {k: _text(v) for k, v in attributes.items()})
    if text:
        element.text = _text(text)
    return element


def _shown(metric: str, value: float) -> str:
    """A value in the unit the scenario writes it in (``250.0ms``, ``1%``), as the terminal shows it."""
    return "no data" if math.isnan(value) else format_metric(metric, value)


def _status(slo: SloResult) -> SloStatus | None:
    """How the SLO ended; for a failed SLO of a summary from before SLO kinds, told by its value."""
    if slo.status is not SloStatus.MET or slo.passed:
        return slo.status
    return SloStatus.NO_DATA if math.isnan(slo.measured) else None


def junit_xml(summary: RunSummary, guards: Iterable[tuple[str, str]] = ()) -> str:
    """The JUnit XML document for a finished run.

    ``guards`` are the scenario's guards as ``(name, condition text)``: a guard is a passing
    testcase unless it tripped. Every testcase that fails here is something that failed the
    verdict: an SLO without data fails the run, so it is a failure (type NoData), not a skip.
    """
    scenario = summary.scenario or "scenario"
    seconds = summary.timings.load_window_s or 0.0
    root = ET.Element("testsuites", name=_text(f"harness run {summary.run_id}"))
    suite = ET.SubElement(root, "testsuite", name=_text(scenario))
    if summary.started:
        suite.set("timestamp", _timestamp(summary.started))
    properties = ET.SubElement(suite, "properties")
    for key, value in (
        ("run_id", summary.run_id),
        ("verdict", summary.verdict),
        ("reason", summary.reason),
        ("exit_code", summary.exit_code),
    ):
        _sub(properties, "property", name=key, value=str(value))
    tests = failures = 0
    for slo in summary.slo_results():
        tests += 1
        failures += _slo_case(suite, scenario, slo, seconds)
    tripped = summary.guard
    for name, condition in guards:
        tests += 1
        case = _case(suite, f"harness.{scenario}.guard", name, seconds)
        if tripped and tripped.guard == name:
            failures += 1
            _sub(case, "failure", tripped.message, message=f"aborted: {condition}", type="GuardTripped")
        else:
            _sub(case, "system-out", f"{condition}: did not trip")
    baseline = summary.baseline
    for comparison in baseline.comparisons if baseline else []:
        tests += 1
        name = f"{comparison.metric} of {comparison.endpoint} in phase {comparison.phase}"
        case = _case(suite, f"harness.{scenario}.baseline", name, seconds)
        if comparison.regressed:
            failures += 1
            message = f"regressed against baseline run {baseline.run_id}" if baseline else "regressed"
            _sub(case, "failure", comparison.message, message=message, type="BaselineRegression")
        else:
            _sub(case, "system-out", comparison.message)
    run_error = summary.verdict in ("error", "invalid", "interrupted")
    if run_error:
        # The run itself gave no usable verdict: an error testcase, not SLO failures.
        tests += 1
        case = _case(suite, f"harness.{scenario}.run", "run", seconds)
        _sub(case, "error", message=summary.reason, type=summary.verdict)
    suite.set("tests", str(tests))
    suite.set("failures", str(failures))
    suite.set("errors", str(int(run_error)))
    suite.set("skipped", "0")
    suite.set("time", f"{seconds:.3f}")
    # No "skipped" on <testsuites>: the common schema (Jenkins xUnit junit-10.xsd) rejects it there.
    for key in ("tests", "failures", "errors", "time"):
        root.set(key, suite.get(key, "0"))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# How a failed SLO whose status decided it is shown: its measured value and its failure's type.
_MEASURED = {SloStatus.NO_DATA: "no data", SloStatus.NEVER_RECOVERED: "never", SloStatus.NEVER_HEALED: "never"}
_TYPES = {
    SloStatus.NO_DATA: "NoData",
    SloStatus.NEVER_RECOVERED: "NeverRecovered",
    SloStatus.NEVER_HEALED: "NeverHealed",
}


def _slo_case(suite: ET.Element, scenario: str, slo: SloResult, seconds: float) -> int:
    """One SLO's testcase; returns 1 when it failed."""
    case = _case(suite, f"harness.{scenario}.slo", slo.name, seconds)
    if not slo.passed:
        status = _status(slo)
        measured = _MEASURED.get(status) if status else None
        kind = _TYPES.get(status) if status else None
        message = (
            f"{slo.objective} not met: measured {measured or _shown(slo.metric, slo.measured)}, "
            f"threshold {_shown(slo.metric, slo.threshold)}"
        )
        detail = f"{slo.message}\nwindow {slo.window}, endpoint {slo.endpoint}; {slo.requests} requests"
        _sub(case, "failure", detail, message=message, type=kind or "SloFailed")
    _sub(case, "system-out", slo.message)
    return 0 if slo.passed else 1


def _timestamp(started: float) -> str:
    """ISO 8601 in UTC, as JUnit reporters expect; summary.json keeps epoch seconds."""
    return datetime.fromtimestamp(started, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
