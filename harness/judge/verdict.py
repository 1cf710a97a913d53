"""The verdict of a run and the summary that CI pipelines and reviewers read.

Pure. The orchestrator feeds every closed second to a :class:`RunLedger`, which keeps the
totals per endpoint and per window (run, each phase, each fault window, steady); the
verdict follows from the SLO results and how the run ended.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from harness.errors import (
    EXIT_ABORTED,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_PASSED,
)
from harness.judge.ladder import LadderResult, ladder_failures
from harness.judge.slo import SloResult
from harness.measure.windows import ClosedSecond, EndpointStats, WindowTotals
from harness.plan import Plan, Span
from harness.scenario.expressions import WindowKind, WindowRef

__all__ = ["RunLedger", "Verdict", "decide", "stats_dict"]


class Verdict(StrEnum):
    PASSED = "passed"
    FAILED = "failed"
    ABORTED = "aborted"
    INVALID = "invalid"
    INTERRUPTED = "interrupted"
    ERROR = "error"

    @property
    def exit_code(self) -> int:
        return {
            Verdict.PASSED: EXIT_PASSED,
            Verdict.FAILED: EXIT_FAILED,
            Verdict.ABORTED: EXIT_ABORTED,
            Verdict.INVALID: EXIT_INVALID,
            Verdict.INTERRUPTED: EXIT_INTERRUPTED,
            Verdict.ERROR: EXIT_INTERNAL,
        }[self]


def decide(
    slos: list[SloResult],
    *,
    error: str = "",
    interrupted: bool = False,
    aborted: str = "",
    invalid: str = "",
    regression: str = "",
    ladders: list[LadderResult] | None = None,
) -> tuple[Verdict, str]:
    """Verdict and its one-line reason. Precedence: error, interrupted, aborted, invalid, then
    SLOs, a baseline ``regression`` (the summary line of what regressed) and ``ladders`` whose
    ``must_hold`` was not met, which all fail. A ladder's own message ends the reason either way:
    where the radius held and where it broke is what the run found out."""
    if error:
        return Verdict.ERROR, error
    if interrupted:
        return Verdict.INTERRUPTED, "interrupted by signal; faults reverted and load stopped"
    if aborted:
        return Verdict.ABORTED, aborted
    if invalid:
        return Verdict.INVALID, invalid
    failed = [r for r in slos if not r.passed]
    reasons = ["SLO failed: " + ", ".join(r.name for r in failed)] if failed else []
    reasons += [regression] if regression else []
    found = [ladder.message for ladder in ladders or []]
    if reasons or ladder_failures(ladders or []):
        return Verdict.FAILED, "; ".join([*reasons, *found])
    met = f"all {len(slos)} SLOs met" if slos else "no SLOs defined; run completed"
    return Verdict.PASSED, "; ".join([met, *found])


def stats_dict(stats: EndpointStats, seconds: int) -> dict[str, Any]:
    latency = stats.latency_ms()
    service = stats.service_ms()
    extra = {} if service is None else {f"service_{k}_ms": _ms(v) for k, v in service.items()}
    return {
        "requests": stats.count,
        "failures": stats.failed,
        "failure_kinds": dict(sorted(stats.failures.items())),
        "error_rate": stats.error_rate,
        "bytes": stats.bytes,
        "rps": stats.count / seconds if seconds else 0.0,
        "seconds": seconds,
        **{f"{k}_ms": _ms(v) for k, v in latency.items()},
        **extra,
    }


def _ms(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 3)


@dataclass
class RunLedger:
    """Totals per endpoint for the run and for each named window of the plan."""

    plan: Plan
    start_epoch: float
    windows: dict[str, WindowTotals] = field(default_factory=dict)
    first_second: int | None = None
    last_second: int | None = None

    def __post_init__(self) -> None:
        self._refs = self._spans(self.plan)
        self.windows = {name: WindowTotals() for name in self._refs}

    @staticmethod
    def _spans(plan: Plan) -> dict[str, tuple[Span, ...]]:
        refs = [WindowRef(WindowKind.RUN), WindowRef(WindowKind.STEADY)]
        refs += [WindowRef(WindowKind.PHASE, name) for name in plan.phases]
        refs += [WindowRef(WindowKind.DURING, name) for name in plan.faults]
        refs += [WindowRef(WindowKind.AFTER, name) for name in plan.faults]
        return {str(ref): plan.spans(ref) for ref in refs}

    def retime(self, plan: Plan) -> None:
        """A fault that waited for a steady state started: its windows (and steady's) moved."""
        self.plan = plan
        self._refs = self._spans(plan)

    def observe(self, closed: ClosedSecond) -> None:
        offset = closed.second + 0.5 - self.start_epoch
        if not closed.revision:
            if self.first_second is None:
                self.first_second = closed.second
            self.last_second = closed.second
        for name, spans in self._refs.items():
            # The run window takes every second, including a partial last one.
            if name == "run" or any(span.contains(offset) for span in spans):
                self.windows[name].add(closed)

    def window_ends(self) -> list[float]:
        """Every offset (s from the run's start) at which a window other than the run ends, in
        order: once a second whose midpoint lies at or past it closed, that window is final."""
        return sorted({span.end for name, spans in self._refs.items() if name != "run" for span in spans})

    def endpoint_table(self) -> list[dict[str, Any]]:
        run = self.windows["run"]
        rows = []
        for (method, name), stats in sorted(run.endpoints.items(), key=lambda kv: (kv[0][1], kv[0][0])):
            rows.append({"method": method, "name": name, **stats_dict(stats, run.seconds)})
        return rows

    def window_table(self) -> dict[str, dict[str, Any]]:
        return {name: stats_dict(totals.total(), totals.seconds) for name, totals in self.windows.items()}
