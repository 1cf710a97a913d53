"""JUnit XML for CI: one testcase per SLO and per guard, so a pipeline's test report shows
which objective failed, with what value, against which threshold, over which window.

Pure: it reads the run's ``summary.json`` data (the same SLO results the terminal shows) and
the scenario's guards; it writes nothing itself. The layout is the common JUnit one that
Jenkins, GitLab, GitHub test reporters and junitparser read: ``<testsuites>`` holding one
``<testsuite name=scenario>`` whose ``<testcase classname="harness.<scenario>.slo|guard"
name=...>`` carries ``<failure message=... type=...>`` when it failed, and ``<skipped>``
when the run ended before it could be judged (no request in its window).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["junit_xml"]


def _case(suite: ET.Element, classname: str, name: str, seconds: float) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=name, time=f"{seconds:.3f}")


def junit_xml(summary: Mapping[str, Any], guards: Iterable[tuple[str, str]] = ()) -> str:
    """The JUnit XML document for a finished run.

    ``summary`` is what ``summary.json`` holds (``run_id``, ``scenario``, ``verdict``,
    ``reason``, ``slos``, ``guard``, ``timings``); ``guards`` are the scenario's guards as
    ``(name, condition text)``: a guard is a passing testcase unless it tripped.
    """
    scenario = str(summary.get("scenario", "scenario"))
    seconds = float(summary.get("timings", {}).get("load_window_s") or 0.0)
    slos = list(summary.get("slos") or [])
    guard_list = list(guards)
    tripped: Mapping[str, Any] | None = summary.get("guard")
    root = ET.Element("testsuites", name=f"harness run {summary.get('run_id', '')}")
    suite = ET.SubElement(root, "testsuite", name=scenario, timestamp=str(summary.get("started", "")))
    properties = ET.SubElement(suite, "properties")
    for key in ("run_id", "verdict", "reason", "exit_code"):
        ET.SubElement(properties, "property", name=key, value=str(summary.get(key, "")))
    failures = skipped = 0
    for slo in slos:
        case = _case(suite, f"harness.{scenario}.slo", str(slo["name"]), seconds)
        where = f"window {slo.get('window')}, endpoint {slo.get('endpoint')}"
        status = slo.get("status") or ("no_data" if slo.get("measured") is None else "")
        if status == "no_data":
            skipped += 1
            ET.SubElement(case, "skipped", message=f"{slo['objective']}: no request in {where}")
        elif not slo.get("passed"):
            failures += 1
            measured = "never" if slo.get("measured") is None else f"{slo['measured']:g}"
            failure = ET.SubElement(
                case,
                "failure",
                message=f"{slo['objective']} not met: measured {measured}, threshold {slo['threshold']:g}",
                type="NeverRecovered" if status == "never_recovered" else "SloFailed",
            )
            failure.text = f"{slo.get('message', '')}\n{where}; {slo.get('requests', 0)} requests"
        ET.SubElement(case, "system-out").text = str(slo.get("message", ""))
    for name, condition in guard_list:
        case = _case(suite, f"harness.{scenario}.guard", name, seconds)
        if tripped and tripped.get("guard") == name:
            failures += 1
            failure = ET.SubElement(case, "failure", message=f"aborted: {condition}", type="GuardTripped")
            failure.text = str(tripped.get("message", ""))
        else:
            ET.SubElement(case, "system-out").text = f"{condition}: did not trip"
    run_error = summary.get("verdict") in ("error", "invalid", "interrupted")
    if run_error:
        # The run itself gave no usable verdict: an error testcase, not SLO failures.
        case = _case(suite, f"harness.{scenario}.run", "run", seconds)
        ET.SubElement(case, "error", message=str(summary.get("reason", "")), type=str(summary.get("verdict")))
    suite.set("tests", str(len(slos) + len(guard_list) + int(run_error)))
    suite.set("failures", str(failures))
    suite.set("errors", str(int(run_error)))
    suite.set("skipped", str(skipped))
    suite.set("time", f"{seconds:.3f}")
    # No "skipped" on <testsuites>: the common schema (Jenkins xUnit junit-10.xsd) rejects it there.
    for key in ("tests", "failures", "errors", "time"):
        root.set(key, suite.get(key, "0"))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
