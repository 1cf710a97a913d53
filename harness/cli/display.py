"""Everything harness prints to a terminal: plan, verdict, runs and comparison tables.

With :mod:`harness.cli.progress` (a run's live progress), the only modules that import rich.
"""

from __future__ import annotations

import math
import sys
import time

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import ScenarioError
from harness.judge.baseline import BaselineReport
from harness.judge.ladder import LadderResult
from harness.judge.objectives import format_metric
from harness.judge.slo import SloResult
from harness.judge.summary import RunSummary
from harness.judge.units import format_duration
from harness.plan import Ladder, Plan
from harness.review.runs import RunInfo
from harness.scenario import describe_load
from harness.scenario.expressions import WindowKind, WindowRef
from harness.scenario.redact import Loaded
from harness.scenario.source import dotted

__all__ = [
    "console",
    "err_console",
    "print_comparison",
    "print_plan",
    "print_plan_of",
    "print_problems",
    "print_runs",
    "print_verdict",
    "print_verdict_line",
]

# CI logs are not terminals: give tables room instead of rich's 80-column default.
console = Console(highlight=False, width=None if sys.stdout.isatty() else 132)
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)


def print_problems(error: ScenarioError) -> None:
    for problem in error.problems:
        err_console.print(str(problem), markup=False, soft_wrap=True)
    count = len(error.problems)
    err_console.print(f"{count} problem{'s' if count != 1 else ''} found; nothing was started.", markup=False)


def print_plan_of(loaded: Loaded, targets: dict[str, str], placement: list[tuple[str, str]]) -> None:
    """``harness plan``: the variables the file used and what the flags set, then the plan; no
    secret value is printed (each is ``***``)."""
    from harness.plan import compile_plan

    with console.capture() as captured:
        if loaded.variables:
            table = Table(title="variables")
            for column in ("variable", "value", "from", "used at"):
                table.add_column(column)
            for use in loaded.variables:
                where = f"{use.line}:{use.column} {dotted(use.path)}"
                table.add_row(*map(escape, (use.name, use.value, use.origin, where)))
            console.print(table)
        if loaded.settings:
            table = Table(title="set on the command line")
            for column in ("key", "value", "flag"):
                table.add_column(column)
            for setting in loaded.settings:
                table.add_row(*map(escape, (dotted(setting.path), str(setting.value), setting.flag)))
            console.print(table)
        print_plan(compile_plan(loaded.scenario), targets, placement)
    console.out(loaded.redact(captured.get()), end="", highlight=False)


def print_plan(
    plan: Plan, targets: dict[str, str] | None = None, placement: list[tuple[str, str]] | None = None
) -> None:
    scenario = plan.scenario
    console.print(
        f"[bold]{escape(scenario.name)}[/] — {format_duration(plan.duration)}, "
        f"target {escape(scenario.target.base_url)}"
    )
    if scenario.description:
        console.print(scenario.description.strip(), markup=False)
    what = Table(title="load (what each Locust process runs)", show_header=False)
    what.add_column("key")
    what.add_column("value")
    for key, value in describe_load(scenario):
        what.add_row(key, escape(value))
    console.print(what)
    table = Table(title="timeline")
    for column in ("offset", "step", "name", "detail"):
        table.add_column(column)
    for step in plan.steps:
        detail = step.detail
        if step.fault_index is not None and targets and step.name in targets and step.kind.value == "fault start":
            detail = f"{detail}: {targets[step.name]}"
        table.add_row(f"{step.offset:7.1f}s", step.kind.value, escape(step.name), escape(detail))
    console.print(table)
    if scenario.slos:
        slos = Table(title="SLO windows")
        for column in ("SLO", "objective", "window", "endpoint", "covers"):
            slos.add_column(column)
        waiting = plan.waiting()
        for slo in scenario.slos:
            spans = ", ".join(f"{s.start:g}s..{s.end:g}s" for s in plan.windows[slo.name]) or "nothing"
            ladder = plan.ladders.get(slo.window.ref or "")
            if ladder is not None and slo.name in ladder.slos:
                spans = "each step: " + ", ".join(f"{r.span.start:g}s..{r.span.end:g}s" for r in ladder.rungs)
            spans += _moves_with(slo.window, waiting)
            slos.add_row(*map(escape, (slo.name, slo.objective.text, str(slo.window), slo.endpoint or "all", spans)))
        console.print(slos)
    for ladder in plan.ladders.values():
        _print_ladder(ladder)
    if scenario.guards:
        guards = Table(title="guards (abort conditions)")
        guards.add_column("guard")
        guards.add_column("condition")
        for guard in scenario.guards:
            guards.add_row(escape(guard.name), escape(guard.condition.text))
        console.print(guards)
    if scenario.probes:
        probes = Table(
            title=f"probes (polled every {format_duration(scenario.probes.every)}; SLOs name them probe:NAME)"
        )
        for column in ("probe", "language", "source", "query"):
            probes.add_column(column)
        for probe in scenario.probes.queries:
            source = scenario.probes.source_of(probe)
            probes.add_row(*map(escape, (probe.name, probe.language, source, probe.query)))
        console.print(probes)
    if placement:
        where = Table(title="placement (where each actor runs)")
        where.add_column("actor")
        where.add_column("node")
        for actor, node in placement:
            where.add_row(escape(actor), escape(node))
        console.print(where)


def _moves_with(window: WindowRef, waiting: dict[str, float]) -> str:
    """What an SLO window's spans are when faults wait for a steady state: the latest placement,
    to move with the faults it depends on (during:/after: of one of them, steady of all)."""
    if window.kind in (WindowKind.DURING, WindowKind.AFTER):
        faults = [window.ref] if window.ref in waiting else []
    else:
        faults = list(waiting) if window.kind is WindowKind.STEADY else []
    if not faults:
        return ""
    which = f"fault {faults[0]} starts" if len(faults) == 1 else f"faults {', '.join(faults)} start"
    return f" (at the latest: moves to when {which})"


def _print_ladder(ladder: Ladder) -> None:
    """A fault's ladder in ``harness plan``: each step, its window, and what stops the escalation."""
    table = Table(
        title=f"ladder of fault {escape(ladder.fault)}", caption="widening stops at the first step that breaks"
    )
    for column in ("step", "radius", "held", "judged by"):
        table.add_column(column)
    for rung in ladder.rungs:
        judged = ", ".join(ladder.slos)
        table.add_row(str(rung.index), rung.radius, f"{rung.span.start:g}s..{rung.span.end:g}s", escape(judged))
    console.print(table)
    if ladder.must_hold is not None:
        console.print(f"the run fails unless every step up to radius {ladder.must_hold} holds")


def _shown(result: SloResult) -> str:
    if math.isnan(result.measured):
        return "no data"
    if math.isinf(result.measured):
        return "never"  # a recovery that never came
    return format_metric(result.metric, result.measured)


def print_verdict(summary: RunSummary) -> None:
    totals = summary.totals
    if totals is not None:
        console.print(
            f"requests {totals.requests}, failures {totals.failures} "
            f"({totals.error_rate * 100:.2f}%), {totals.rps:.1f} req/s, "
            f"p50 {totals.latency.p50_ms} ms, p99 {totals.latency.p99_ms} ms"
        )
    slos = summary.slo_results()
    if slos:
        table = Table(title=f"verdict for {summary.run_id}")
        for column in ("SLO", "window", "endpoint", "measured", "threshold", "result"):
            table.add_column(column)
        for r in slos:
            measured = _shown(r)
            threshold = f"{r.metric} {r.objective.split(maxsplit=2)[1]} {format_metric(r.metric, r.threshold)}"
            result = "[green]pass[/]" if r.passed else "[red]FAIL[/]"
            table.add_row(*map(escape, (r.name, r.window, r.endpoint, measured, threshold)), result)
        console.print(table)
    for ladder in summary.ladders:
        print_ladder_result(ladder)
    print_verdict_line(summary)


_STATE_COLOURS = {"held": "green", "broke": "red", "skipped": "yellow"}


def print_ladder_result(ladder: LadderResult) -> None:
    """A ladder's steps after a run: what each acted on, its SLOs, and held / broke / skipped."""
    table = Table(title=f"ladder of fault {escape(ladder.fault)}", caption=escape(ladder.message))
    for column in ("step", "radius", "instances", "SLOs (measured)", "result"):
        table.add_column(column)
    for step in ladder.steps:
        on = f"{step.instances} of {step.found}" if step.instances is not None else "-"
        measured = ", ".join(f"{r.name} {_shown(r)}" for r in step.slos) or escape(step.reason)
        colour = _STATE_COLOURS.get(step.state.value, "magenta")
        table.add_row(str(step.step), step.radius, on, escape(measured), f"[{colour}]{escape(step.state.value)}[/]")
    console.print(table)


def print_verdict_line(summary: RunSummary, with_run_id: bool = False) -> None:
    """The last line of every run, ``PASSED: <reason>``; ``--quiet`` prints only this line,
    with ``(run <id>)`` after it since nothing else names the run."""
    verdict = summary.verdict
    colour = {"passed": "green", "failed": "red", "aborted": "red", "invalid": "yellow"}.get(verdict, "magenta")
    console.print(f"[bold {colour}]{escape(verdict.upper())}[/]: ", end="")
    console.print(summary.reason + (f" (run {summary.run_id})" if with_run_id else ""), markup=False)


_RUNS_TABLE_ROOM = 80  # what the other columns need besides the run id before a table reads well


def print_runs(runs: list[RunInfo]) -> None:
    """The runs as a table; on a terminal too narrow for one, one plain line per run.

    A run id is what users copy into ``report``, ``compare`` and ``grafana link``: it is never
    folded or cut, whatever the width (the other columns give way, then the table does).
    """
    widest = max((len(run.run_id) for run in runs), default=6)
    rows = []
    for run in runs:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(run.started)) if run.started else "?"
        duration = format_duration(round(run.duration_s)) if run.duration_s is not None else "-"
        rows.append((run, started, duration))
    if console.width < widest + _RUNS_TABLE_ROOM:
        for run, started, duration in rows:
            line = f"{run.run_id:<{widest}}  {run.verdict:<10}  {started}  {duration:>8}  {run.scenario}"
            console.print(line, markup=False, soft_wrap=True)
        return
    table = Table(title="runs, newest first")
    table.add_column("run id", no_wrap=True, min_width=widest)
    for column in ("scenario", "started (UTC)", "duration", "verdict"):
        table.add_column(column)
    table.add_column("reason", ratio=1)
    for run, started, duration in rows:
        colour = {"passed": "green", "failed": "red", "aborted": "red", "invalid": "yellow"}.get(run.verdict, "magenta")
        table.add_row(
            *map(escape, (run.run_id, run.scenario, started, duration)),
            f"[{colour}]{escape(run.verdict)}[/]",
            escape(run.reason[:100]),
        )
    console.print(table)


def print_comparison(report: BaselineReport, before: str, after: str) -> None:
    """Every comparison of ``after`` against ``before``, regressions first, then a one-line verdict."""
    table = Table(title=f"{after} against {before}")
    for column in ("phase", "endpoint", "metric", before, after, "change", "tolerance", "p", "result"):
        table.add_column(column)
    ordered = sorted(report.comparisons, key=lambda c: (not c.regressed, c.phase, c.endpoint, c.metric.value))
    for c in ordered:
        relative = c.metric.value != "error_rate"  # the baseline's rule: error rates change in points
        change = "n/a" if not math.isfinite(c.change) else f"{c.change * 100:+.1f}{'%' if relative else ' pts'}"
        tolerance = f"{c.tolerance * 100:+g}{'%' if relative else ' pts'}"
        if c.floor:
            tolerance += f", min +{c.floor:g} ms"
        result = "[red]REGRESSED[/]" if c.regressed else "ok"
        cells = (
            c.phase,
            c.endpoint,
            c.metric.value,
            format_metric(c.metric.value, c.baseline),
            format_metric(c.metric.value, c.current),
            change,
            tolerance,
            f"{c.p_value:.2g}",
        )
        table.add_row(*map(escape, cells), result)
    console.print(table)
    for line in report.skipped:
        console.print(f"not compared: {line}", markup=False)
    console.print(report.summary_line(), markup=False)
