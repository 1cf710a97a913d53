"""Probe samples as the judge receives them: one poll of one probe, a value or the reason it failed.

The run's probe poller (:mod:`harness.run.probes`) makes them; the SLO book and the guard watch
judge them, and the run summary keeps them. Pure: no I/O here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ProbeSample"]


@dataclass(frozen=True)
class ProbeSample:
    """One poll of probe ``name`` at ``at`` (epoch s): ``value`` (NaN when the query gave nothing,
    an empty vector say) or ``error`` (the poll failed: unreachable, an error answer, several series)."""

    name: str
    at: float
    value: float = math.nan
    error: str = ""

    @property
    def failed(self) -> bool:
        return bool(self.error)
