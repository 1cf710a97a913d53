"""Checks that span several keys of a scenario: stages, fault windows, SLO windows, allow-lists."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from harness.scenario.expressions import (
    WindowKind,
)
from harness.scenario.faults import FaultContext
from harness.scenario.fields import KeyPath
from harness.scenario.model import RecoveryRule, Scenario, Slo, steady_thresholds


def cross_checks(scenario: Scenario) -> Iterator[tuple[KeyPath, str]]:
    target = scenario.target
    try:
        parts = urlsplit(target.base_url)
        port_error = ""
        try:
            parts.port  # noqa: B018 -- urlsplit checks the port only when asked
        except ValueError as exc:
            port_error = str(exc)
    except ValueError as exc:  # e.g. an unclosed IPv6 bracket
        yield ("target", "base_url"), f"'{target.base_url}' is not a valid URL: {exc}"
    else:
        if parts.scheme not in ("http", "https") or not parts.hostname:
            yield ("target", "base_url"), f"'{target.base_url}' is not an http(s) URL with a host"
        elif port_error:
            yield ("target", "base_url"), f"'{target.base_url}': {port_error}"
        elif target.allowed_hosts and parts.hostname not in target.allowed_hosts:
            yield ("target", "base_url"), f"host '{parts.hostname}' is not in target.allowed_hosts"

    stages = scenario.load.stages
    if len({type(s) for s in stages}) > 1:
        first_open = next(i for i, s in enumerate(stages) if type(s) is not type(stages[0]))
        yield ("load", "stages", first_open), "stages mix users and arrival_rate; use one load model per scenario"
    end = 0.0
    phase_names: set[str] = set()
    for i, stage in enumerate(stages):
        start = end if stage.at is None else stage.at
        if start < end - 1e-9:
            yield (
                ("load", "stages", i, "at"),
                f"stage starts at {start:g}s, before the previous stage ends at {end:g}s (stages overlap)",
            )
        if stage.duration <= 0:
            yield ("load", "stages", i, "duration"), "duration must be positive"
        phase = stage.name or f"stage-{i + 1}"  # as timeline.phase_name names it
        if phase in phase_names:
            where = ("load", "stages", i, "name") if stage.name else ("load", "stages", i)
            yield where, f"phase name '{phase}' is used twice (an unnamed stage N is called stage-N)"
        phase_names.add(phase)
        end = max(end, start) + stage.duration
    total = end

    if scenario.load.processes != "auto" and not 1 <= scenario.load.processes <= 256:
        yield ("load", "processes"), "processes must be 'auto' or between 1 and 256"

    locustfile, found = Path(), False
    try:
        locustfile = scenario.locustfile_path
        found = locustfile.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the file system, say
        yield ("load", "locustfile"), f"not a usable path: {getattr(exc, 'strerror', None) or exc}"
    else:
        if not found:
            yield ("load", "locustfile"), f"locustfile not found: {locustfile}"
    if found:
        defined = locust_classes(locustfile)
        if defined is None:
            yield ("load", "locustfile"), f"{locustfile} is not valid Python"
        else:
            for i, user in enumerate(scenario.load.user_classes):
                if user.class_name not in defined:
                    known = ", ".join(sorted(defined)) or "none"
                    yield (
                        ("load", "user_classes", i, "class"),
                        f"class '{user.class_name}' is not defined in {scenario.load.locustfile} (found: {known})",
                    )

    if scenario.load.node is not None and bool(scenario.load.node.labels) == (scenario.load.node.resource is not None):
        yield ("load", "node"), "give exactly one of labels or resource"
    fault_names: set[str] = set()
    context = FaultContext.of(scenario)
    for i, fault in enumerate(scenario.faults):
        if fault.node is not None and bool(fault.node.labels) == (fault.node.resource is not None):
            yield ("faults", i, "node"), "give exactly one of labels or resource"
        if fault.name in fault_names:
            yield ("faults", i, "name"), f"fault name '{fault.name}' is used twice"
        fault_names.add(fault.name)
        if fault.at + fault.duration > total + 1e-9:
            yield (
                ("faults", i, "at"),
                f"fault window {fault.at:g}s..{fault.at + fault.duration:g}s ends after the run ({total:g}s)",
            )
        for path, message in fault.checks(context):
            yield ("faults", i, *path), message

    names: set[str] = set()
    for i, slo in enumerate(scenario.slos):
        if slo.name in names:
            yield ("slos", i, "name"), f"SLO name '{slo.name}' is used twice"
        names.add(slo.name)
        window = slo.window
        if window.kind is WindowKind.PHASE and window.ref not in phase_names:
            yield ("slos", i, "window"), f"no stage is named '{window.ref}'"
        if window.kind in (WindowKind.DURING, WindowKind.AFTER) and window.ref not in fault_names:
            yield ("slos", i, "window"), f"no fault is named '{window.ref}'"
        if window.kind is WindowKind.LAST and window.seconds > total:
            yield ("slos", i, "window"), f"last {window.seconds:g}s is longer than the run ({total:g}s)"
        yield from _slo_metric_checks(i, slo, scenario.slos)
    for i, guard in enumerate(scenario.guards):
        if guard.name in names:
            yield ("guards", i, "name"), f"name '{guard.name}' is already used by an SLO or guard"
        names.add(guard.name)


def _slo_metric_checks(i: int, slo: Slo, slos: list[Slo]) -> Iterator[tuple[KeyPath, str]]:
    metric = slo.objective.metric
    if slo.errors and metric != "error_rate":
        yield ("slos", i, "errors"), f"errors filters an error_rate SLO, not {metric}"
    if slo.recovery is not None and metric != "recovery_time":
        yield ("slos", i, "recovery"), f"recovery applies to a recovery_time SLO, not {metric}"
    if slo.budget is not None and metric not in ("burn_rate", "budget_burn"):
        yield ("slos", i, "budget"), f"budget applies to burn_rate and budget_burn SLOs, not {metric}"
    if metric in ("burn_rate", "budget_burn") and slo.budget is None:
        yield ("slos", i, "objective"), f"{metric} needs budget: {{availability: 99.9%, period: 30d}}"
    if metric == "recovery_time":
        if slo.window.kind is not WindowKind.AFTER:
            yield ("slos", i, "window"), "recovery_time is measured from a fault's end: use window after:FAULT"
        rule = slo.recovery or RecoveryRule()
        p99, error_rate = steady_thresholds(slos)
        if rule.p99 is None and p99 is None:
            yield ("slos", i, "recovery"), "recovery_time needs recovery.p99 or a steady 'p99 <' SLO to compare with"
        if rule.error_rate is None and error_rate is None:
            yield (
                ("slos", i, "recovery"),
                "recovery_time needs recovery.error_rate or a steady 'error_rate <' SLO to compare with",
            )


def locust_classes(path: Path) -> set[str] | None:
    """Class names defined at the top level of a locustfile, read without importing it.

    Importing locust in the driver before Ray starts hangs (see DESIGN.md), and a scenario
    must be checkable without running user code.
    """
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, OSError):
        return None
    return {node.name for node in tree.body if isinstance(node, ast.ClassDef)}
