"""The typed summary of a run (``summary.json``), assembled from the orchestrator's parts once it is judged."""

from __future__ import annotations

import dataclasses
import resource
from typing import TYPE_CHECKING

from harness.judge.slo import SloResult
from harness.judge.summary import (
    BaselineOutcome,
    DeliverySummary,
    EndpointTotals,
    EndpointTraces,
    FindingEntry,
    HealEntry,
    RunSummary,
    SecondCounts,
    Stats,
    StepTiming,
    Timings,
    from_json,
)
from harness.judge.verdict import Verdict
from harness.measure.delivery import SUSTAINED_SECONDS

if TYPE_CHECKING:
    from harness.run.orchestrator import Orchestrator

__all__ = ["run_summary"]


def run_summary(
    run: Orchestrator,
    verdict: Verdict,
    reason: str,
    started: float,
    ended: float,
    slos: list[SloResult],
    baseline: BaselineOutcome | None,
) -> RunSummary:
    """The run's ``summary.json``, from the parts of a run that has been judged."""
    live = run.live
    delivery = live.delivery if live is not None else None
    windows = live.ledger.window_table() if live is not None else {}
    return RunSummary(
        run_id=run.run_id,
        scenario=run.scenario.name,
        scenario_file=run.scenario.source,
        verdict=verdict.value,
        exit_code=verdict.exit_code,
        reason=reason,
        started=started,
        ended=ended,
        planned_duration_s=run.plan.duration,
        processes=list(run.fleet.process_ids),
        generators=list(run.fleet.report),
        chaos_agents=list(run.faults.report) if run.faults is not None else [],
        dead_processes=sorted(run.fleet.dead),
        seconds=SecondCounts(
            saturated=delivery.saturated_seconds() if delivery else 0,
            short=delivery.short_seconds() if delivery else 0,
            late=live.tally.late_seconds if live is not None else 0,
        ),
        late_windows=live.seconds.aggregator.late_count if live is not None else 0,
        late_requests_unwritten=live.writer.late_requests_unwritten if live is not None else 0,
        lost_generators=list(live.losses.lost_report) if live is not None else [],
        load_gaps=list(live.stages.load_gaps) if live is not None else [],
        delivery=DeliverySummary(
            SUSTAINED_SECONDS,
            [
                FindingEntry(f.condition.value, f.subject, round(f.offset, 3), f.seconds, f.text)
                for f in delivery.findings()
            ]
            if delivery
            else [],
        ),
        step_timing=[from_json(StepTiming, r.to_dict()) for r in live.stages.log.records] if live else [],
        totals=Stats.from_json(windows["run"]) if windows else None,
        endpoints=[EndpointTotals.from_json(row) for row in live.ledger.endpoint_table()] if live else [],
        trace_examples=[from_json(EndpointTraces, dataclasses.asdict(e)) for e in run.poller.examples.table()],
        windows={name: Stats.from_json(row) for name, row in windows.items()},
        slos=slos,
        guard=live.guard.trip if live is not None else None,
        heals=[HealEntry.of(heal) for heal in run.heal_times.values()] or None,
        baseline=baseline,
        probes=run.probes.poller.series() if run.probes is not None else [],
        events=list(run.recorder.events),
        timings=_timings(run),
        driver_peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    )


def _timings(run: Orchestrator) -> Timings:
    measured = {**run.timings, **run.fleet.timings, **run.poller.timings}
    if run.live is not None and run.live.tally.first_request_by_s is not None:
        measured["first_request_by_s"] = run.live.tally.first_request_by_s
    return from_json(Timings, measured)
