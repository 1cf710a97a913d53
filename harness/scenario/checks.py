"""Checks that span several keys of a scenario, one function per section: target, stages, load, faults
(their windows, then each fault's own checks, allow-lists included), SLOs and guards."""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

from harness.judge.objectives import EXTRA_KEYS, Metric, key_problems, lookup, probe_name
from harness.scenario.draft import Draft
from harness.scenario.expressions import WindowKind
from harness.scenario.faults import FaultBase, FaultContext
from harness.scenario.fields import KeyPath
from harness.scenario.locustfile import argument_name, outline
from harness.scenario.model import Guard, RecoveryRule, Slo, Target, steady_thresholds
from harness.scenario.radius import radius_problems

#: A problem a check found: where in the file (a key path) and what is wrong.
Found = tuple[KeyPath, str]


def cross_checks(draft: Draft) -> Iterator[Found]:
    """Every check that spans keys, each run on what it reads when that validated (see ``Draft``).

    A check that needs what did not validate is skipped rather than guessed: without every
    stage the run's end is unknown, so no fault is said to end after it.
    """
    if draft.target is not None:
        yield from _target_checks(draft.target)
    yield from _stage_checks(draft)
    yield from _load_checks(draft)
    yield from _fault_checks(draft)
    yield from _slo_checks(draft)
    yield from _guard_checks(draft)


def _target_checks(target: Target) -> Iterator[Found]:
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


def _stage_checks(draft: Draft) -> Iterator[Found]:
    """One load model; stages in order, each of positive length; phase names unique."""
    stages = [(i, s) for i, s in enumerate(draft.stages or ()) if s is not None]
    if len({type(s) for _, s in stages}) > 1:
        first_open = next(i for i, s in stages if type(s) is not type(stages[0][1]))
        yield ("load", "stages", first_open), "stages mix users and arrival_rate; use one load model per scenario"
    end = 0.0
    for i, stage in enumerate(draft.stages or ()):
        if stage is None:
            break  # where the stages after it start is unknown
        start = end if stage.at is None else stage.at
        if start < end - 1e-9:
            yield (
                ("load", "stages", i, "at"),
                f"stage starts at {start:g}s, before the previous stage ends at {end:g}s (stages overlap)",
            )
        end = max(end, start) + stage.duration
    for i, stage in stages:
        if stage.duration <= 0:
            yield ("load", "stages", i, "duration"), "duration must be positive"
    seen: set[str] = set()
    for i, phase in enumerate(draft.phase_names or ()):
        if phase in seen:
            stage = (draft.stages or ())[i]
            named = stage.name is not None if stage is not None else phase != f"stage-{i + 1}"
            where = ("load", "stages", i, "name") if named else ("load", "stages", i)
            yield where, f"phase name '{phase}' is used twice (an unnamed stage N is called stage-N)"
        if phase is not None:
            seen.add(phase)


def _load_checks(draft: Draft) -> Iterator[Found]:
    if draft.shape is not None and draft.stages:
        yield ("load", "shape"), "give load.stages or load.shape (a LoadTestShape drives the users), not both"
    elif draft.shape is None and draft.stages is not None and not draft.stages:
        yield ("load", "stages"), "give at least one stage, or name a LoadTestShape class in load.shape"
    if draft.processes != "auto" and not 1 <= draft.processes <= 256:
        yield ("load", "processes"), "processes must be 'auto' or between 1 and 256"
    if draft.locustfile is not None:
        yield from _locustfile_checks(draft, draft.locustfile)
    node = draft.load_node
    if node is not None and bool(node.labels) == (node.resource is not None):
        yield ("load", "node"), "give exactly one of labels or resource"


def _locustfile_checks(draft: Draft, written: str) -> Iterator[Found]:
    """The locustfile exists, is Python, and defines every user class named (read, not imported)."""
    try:
        locustfile = (Path(draft.source).parent / written).resolve()
        found = locustfile.is_file()
    except (OSError, ValueError) as exc:  # a name too long for the file system, say
        yield ("load", "locustfile"), f"not a usable path: {getattr(exc, 'strerror', None) or exc}"
        return
    if not found:
        yield ("load", "locustfile"), f"locustfile not found: {locustfile}"
        return
    declared = outline(locustfile)
    if declared is None:
        yield ("load", "locustfile"), f"{locustfile} is not valid Python"
        return
    defined = declared.classes
    for i, user in enumerate(draft.user_classes):
        if user is not None and user.class_name not in defined:
            known = ", ".join(sorted(defined)) or "none"
            yield (
                ("load", "user_classes", i, "class"),
                f"class '{user.class_name}' is not defined in {written} (found: {known})",
            )
    if not draft.user_classes and not defined:
        yield ("load", "locustfile"), f"{written} defines no class, so no User class to run"
    if draft.shape is not None and draft.shape not in declared.shapes:
        known = ", ".join(declared.shapes) or "none"
        yield ("load", "shape"), f"class '{draft.shape}' is not a LoadTestShape defined in {written} (found: {known})"
    for name in draft.arguments:
        if argument_name(name) not in declared.arguments:
            known = ", ".join(f"--{a.replace('_', '-')}" for a in declared.arguments) or "none"
            yield (
                ("load", "arguments", name),
                f"{written} declares no argument --{name.lstrip('-')} (declared with "
                f"init_command_line_parser: {known})",
            )


def _fault_checks(draft: Draft) -> Iterator[Found]:
    """Names unique, windows inside the run, then what each kind of fault needs (its model's
    :meth:`~harness.scenario.faults.FaultBase.checks`, given the allow-lists when they validated)."""
    total = draft.total_seconds()
    context = FaultContext.of(draft.safety, draft.target, draft.faults)
    seen: set[str] = set()
    for i, fault in enumerate(draft.faults):
        name = draft.fault_names[i] if draft.fault_names else None
        node = fault.node if fault is not None else None
        if node is not None and bool(node.labels) == (node.resource is not None):
            yield ("faults", i, "node"), "give exactly one of labels or resource"
        if name in seen:
            yield ("faults", i, "name"), f"fault name '{name}' is used twice"
        if name is not None:
            seen.add(name)
        if fault is None:
            continue
        if total is not None and fault.start + fault.duration > total + 1e-9:
            latest = " (started at its deadline, the latest it may)" if fault.waits_for is not None else ""
            yield (
                ("faults", i, "at", *(("deadline",) if fault.waits_for is not None else ())),
                f"fault window {fault.start:g}s..{fault.start + fault.duration:g}s{latest} "
                f"ends after the run ({total:g}s)",
            )
        if fault.waits_for is not None:
            for j, condition in enumerate(fault.waits_for.steady):
                yield from _probe_checks(("faults", i, "at", "steady", j), condition.metric, draft.probe_names)
        for path, message in fault.checks(context):
            yield ("faults", i, *path), message
        for path, message in fault.pod_checks(context):
            yield ("faults", i, *path), message
        for path, message in _heal_checks(fault, context):
            yield ("faults", i, "heal", *path), message
        if fault.radius is not None:
            yield from ((("faults", i, *path), message) for path, message in _ladder_checks(draft, fault))


def _ladder_checks(draft: Draft, fault: FaultBase) -> Iterator[tuple[KeyPath, str]]:
    """A radius: the kind counts instances, its steps grow and fit the duration, and an SLO
    judges each step (its window is during:<fault>)."""
    assert fault.radius is not None
    problem = fault.instances_problem()
    if problem is not None:
        yield ("radius",), problem
    yield from radius_problems(fault.radius, fault.duration)
    slos = [s for s in draft.slos if s is not None]
    if (
        draft.slos is not None
        and None not in draft.slos
        and not any(s.window.kind is WindowKind.DURING and s.window.ref == fault.name for s in slos)
    ):
        yield (
            ("radius",),
            f"a radius needs an SLO with window during:{fault.name} to judge each step by "
            f"(e.g. {{name: holds, objective: error_rate < 1%, window: during:{fault.name}}})",
        )


def _slo_checks(draft: Draft) -> Iterator[Found]:
    """SLO names unique; each window names a stage or fault the file has and fits in the run."""
    total = draft.total_seconds()
    seen: set[str] = set()
    parsed = [s for s in draft.slos if s is not None]
    for i, slo in enumerate(draft.slos):
        name = draft.slo_names[i] if draft.slo_names else None
        if name in seen:
            yield ("slos", i, "name"), f"SLO name '{name}' is used twice"
        if name is not None:
            seen.add(name)
        if slo is None:
            continue
        window = slo.window
        if window.kind is WindowKind.PHASE and not _may_name(window.ref, draft.phase_names):
            yield ("slos", i, "window"), f"no stage is named '{window.ref}'{_meant(window.ref, draft.phase_names)}"
        if window.kind in (WindowKind.DURING, WindowKind.AFTER) and not _may_name(window.ref, draft.fault_names):
            yield ("slos", i, "window"), f"no fault is named '{window.ref}'{_meant(window.ref, draft.fault_names)}"
        if window.kind is WindowKind.LAST and total is not None and window.seconds > total:
            yield ("slos", i, "window"), f"last {window.seconds:g}s is longer than the run ({total:g}s)"
        yield from _slo_metric_checks(i, slo, parsed)
        yield from _probe_checks(("slos", i, "objective"), slo.objective.metric, draft.probe_names)
        yield from _slo_heal_checks(i, slo, draft)


def _meant(ref: str, names: tuple[str | None, ...] | None) -> str:
    """ "; did you mean 'x'?" for the name ``ref`` most resembles, else the names there are."""
    known = [n for n in names or () if n is not None]
    close = difflib.get_close_matches(ref, known, n=1)
    if close:
        return f"; did you mean '{close[0]}'?"
    return f" (there are: {', '.join(known)})" if known else " (there are none)"


def _may_name(ref: str, names: tuple[str | None, ...] | None) -> bool:
    """Whether ``ref`` may name one of ``names``: it does, or a name (or the list) is unreadable."""
    return names is None or ref in names or None in names


def _heal_checks(fault: FaultBase, context: FaultContext) -> Iterator[Found]:
    """A heal URL is asked only of a host faults may act on; a Kubernetes heal needs an allowed context."""
    heal = fault.heal
    if heal is None:
        return
    if heal.kubernetes and context.safety is not None and not context.safety.allowed_contexts:
        yield (), "a pods or deployment heal is read through the Kubernetes API: it needs safety.allowed_contexts"
    if heal.url is None:
        return
    try:
        parts = urlsplit(heal.url)
        host = (parts.hostname or "").lower()
    except ValueError as exc:
        yield ("url",), f"'{heal.url}' is not a valid URL: {exc}"
        return
    if parts.scheme not in ("http", "https") or not host:
        yield ("url",), f"'{heal.url}' is not an http(s) URL with a host"
        return
    address = "127.0.0.1" if host == "localhost" else host
    try:
        ipaddress.ip_address(address)
    except ValueError:
        yield ("url",), f"write the host of '{heal.url}' as an IP address (names are not resolved)"
        return
    outside = context.outside(address)
    if outside is not None:
        yield ("url",), f"{host} {outside}"


def _slo_heal_checks(i: int, slo: Slo, draft: Draft) -> Iterator[Found]:
    """A metric measured from the system's side (heal_time) needs a heal condition on its fault, and
    is not measured per endpoint."""
    metric = lookup(slo.objective.metric)
    if not metric.from_system:
        return
    if slo.endpoint is not None:
        yield ("slos", i, "endpoint"), f"{metric.name} is measured from the system's side, not per endpoint"
    names = draft.fault_names or ()
    if slo.window.ref not in names:
        return  # reported on the window
    fault = draft.faults[names.index(slo.window.ref)]
    if fault is not None and fault.heal_check() is None:
        yield (
            ("slos", i, "objective"),
            f"{metric.name} needs a heal condition on fault '{fault.name}': give it heal: {{url: ...}}, "
            f"{{pattern: ...}}, {{pods: ...}} or {{deployment: ...}} ({fault.kind} derives none from its target)",
        )


def _guard_checks(draft: Draft) -> Iterator[Found]:
    """A guard's name is used by no SLO and no other guard (a trip names it in the verdict); its
    extra keys are those its metric's row of the objectives table takes. (That the metric can be
    judged per second at all is the condition's grammar: the model refuses the others.)"""
    names = {n for n in draft.slo_names or () if n is not None}
    for i, name in enumerate(draft.guard_names or ()):
        if name in names:
            yield ("guards", i, "name"), f"name '{name}' is already used by an SLO or guard"
        if name is not None:
            names.add(name)
    for i, guard in enumerate(draft.guards):
        if guard is not None:
            yield from _extra_key_checks(("guards", i), guard, lookup(guard.condition.breach.metric), guard=True)
            yield from _probe_checks(("guards", i, "condition"), guard.condition.breach.metric, draft.probe_names)


def _probe_checks(where: KeyPath, metric: str, names: tuple[str | None, ...] | None) -> Iterator[Found]:
    """``probe:NAME`` names one of the scenario's probes."""
    name = probe_name(metric)
    if name is not None and not _may_name(name, names):
        yield where, f"no probe is named '{name}'{_meant(name, names)}: declare it under probes.queries"


def _slo_metric_checks(i: int, slo: Slo, slos: list[Slo]) -> Iterator[Found]:
    """The SLO's extra keys and window, as the objectives table's row for its metric says."""
    metric = lookup(slo.objective.metric)
    yield from _extra_key_checks(("slos", i), slo, metric, guard=False)
    if metric.window is not None and slo.window.kind.value != metric.window.kind:
        yield ("slos", i, "window"), f"{metric.name} {metric.window.why}"
    if "recovery" in metric.takes:  # a recovery rule's thresholds default to the steady SLOs'
        rule = slo.recovery or RecoveryRule()
        p99, error_rate = steady_thresholds(slos)
        if rule.p99 is None and p99 is None:
            yield ("slos", i, "recovery"), f"{metric.name} needs recovery.p99 or a steady 'p99 <' SLO to compare with"
        if rule.error_rate is None and error_rate is None:
            yield (
                ("slos", i, "recovery"),
                f"{metric.name} needs recovery.error_rate or a steady 'error_rate <' SLO to compare with",
            )


def _extra_key_checks(where: KeyPath, item: Slo | Guard, metric: Metric, guard: bool) -> Iterator[Found]:
    """Keys beside the objective (errors, recovery, budget) that its metric does not take, or needs
    and lacks; a missing key is reported on the objective (a guard's condition)."""
    given = {key.name for key in EXTRA_KEYS if getattr(item, key.name, None) not in (None, [])}
    for key, message in key_problems(metric, given, guard=guard):
        yield (*where, key or ("condition" if guard else "objective")), message
