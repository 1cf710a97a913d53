"""JUnit XML for CI: one testcase per SLO and per guard, so a pipeline's test report shows
which objective failed, with what value, against which threshold, over which window.

Pure: it reads the run's ``summary.json`` data (the same SLO results the terminal shows) and
the scenario's guards; it writes nothing itself. The layout is the common JUnit one that
Jenkins, GitLab, GitHub test reporters and junitparser read: ``<testsuites>`` holding one
``<testsuite name=scenario>`` whose ``<testcase classname="harness.<scenario>.slo|guard"
name=...>`` carries ``<failure message=... type=...>`` when it failed. A baseline comparison
adds one ``harness.<scenario>.baseline`` testcase per metric, endpoint and phase compared.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from harness.judge.objectives import format_metric

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


def _shown(metric: str, value: Any) -> str:
    """A value in the unit the scenario writes it in (``250.0ms``, ``1%``), as the terminal shows it."""
    if value is None:
        return "no data"
    return format_metric(metric, float(value)) if isinstance(value, int | float) else str(value)


def junit_xml(summary: Mapping[str, Any], guards: Iterable[tuple[str, str]] = ()) -> str:
    """The JUnit XML document for a finished run.

    ``summary`` is what ``summary.json`` holds (``run_id``, ``scenario``, ``verdict``,
    ``reason``, ``slos``, ``guard``, ``baseline``, ``timings``); ``guards`` are the scenario's
    guards as ``(name, condition text)``: a guard is a passing testcase unless it tripped.
    Every testcase that fails here is something that failed the verdict: an SLO without data
    fails the run, so it is a failure (type NoData), not a skip.
    """
    scenario = str(summary.get("scenario", "scenario"))
    seconds = float(summary.get("timings", {}).get("load_window_s") or 0.0)
    slos = list(summary.get("slos") or [])
    guard_list = list(guards)
    tripped: Mapping[str, Any] | None = summary.get("guard")
    baseline: Mapping[str, Any] | None = summary.get("baseline")
    root = ET.Element("testsuites", name=_text(f"harness run {summary.get('run_id', '')}"))
    suite = ET.SubElement(root, "testsuite", name=_text(scenario))
    if summary.get("started"):
        suite.set("timestamp", _timestamp(summary["started"]))
    properties = ET.SubElement(suite, "properties")
    for key in ("run_id", "verdict", "reason", "exit_code"):
        _sub(properties, "property", name=key, value=str(summary.get(key, "")))
    tests = failures = 0
    for slo in slos:
        tests += 1
        case = _case(suite, f"harness.{scenario}.slo", str(slo["name"]), seconds)
        where = f"window {slo.get('window')}, endpoint {slo.get('endpoint')}"
        status = slo.get("status") or ("no_data" if slo.get("measured") is None else "")
        metric = str(slo.get("metric", ""))
        if not slo.get("passed"):
            failures += 1
            measured = {"no_data": "no data", "never_recovered": "never"}.get(status) or _shown(
                metric, slo.get("measured")
            )
            kind = {"no_data": "NoData", "never_recovered": "NeverRecovered"}.get(status, "SloFailed")
            message = f"{slo['objective']} not met: measured {measured}, threshold {_shown(metric, slo['threshold'])}"
            detail = f"{slo.get('message', '')}\n{where}; {slo.get('requests', 0)} requests"
            _sub(case, "failure", detail, message=message, type=kind)
        _sub(case, "system-out", str(slo.get("message", "")))
    for name, condition in guard_list:
        tests += 1
        case = _case(suite, f"harness.{scenario}.guard", name, seconds)
        if tripped and tripped.get("guard") == name:
            failures += 1
            _sub(case, "failure", str(tripped.get("message", "")), message=f"aborted: {condition}", type="GuardTripped")
        else:
            _sub(case, "system-out", f"{condition}: did not trip")
    for comparison in (baseline or {}).get("comparisons") or []:
        tests += 1
        name = f"{comparison['metric']} of {comparison['endpoint']} in phase {comparison['phase']}"
        case = _case(suite, f"harness.{scenario}.baseline", name, seconds)
        if comparison.get("regressed"):
            failures += 1
            message = f"regressed against baseline run {baseline.get('run_id')}" if baseline else "regressed"
            _sub(case, "failure", str(comparison.get("message", "")), message=message, type="BaselineRegression")
        else:
            _sub(case, "system-out", str(comparison.get("message", "")))
    run_error = summary.get("verdict") in ("error", "invalid", "interrupted")
    if run_error:
        # The run itself gave no usable verdict: an error testcase, not SLO failures.
        tests += 1
        case = _case(suite, f"harness.{scenario}.run", "run", seconds)
        _sub(case, "error", message=str(summary.get("reason", "")), type=str(summary.get("verdict")))
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


def _timestamp(started: Any) -> str:
    """ISO 8601 in UTC, as JUnit reporters expect; summary.json keeps epoch seconds."""
    if isinstance(started, int | float):
        return datetime.fromtimestamp(started, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return _text(started)
