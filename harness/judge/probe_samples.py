"""Probe samples as the judge receives them: one poll of one probe, a value or the reason it failed.

The run's probe poller (:mod:`harness.run.probes`) makes them; the SLO book, the guard watch and
the steady-start watch judge them, and the run summary keeps them. Pure: no I/O here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["LatestProbes", "ProbeSample"]


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


@dataclass
class LatestProbes:
    """Each probe's latest sample, as a judge of one second at a time sees it (guards, steady starts).

    A failed poll, or a sample older than ``stale_after`` seconds at the end of the second
    judged, is no value: it breaks a streak like a second without requests.
    """

    stale_after: float = 5.0
    _latest: dict[str, ProbeSample] = field(default_factory=dict)

    def observe(self, sample: ProbeSample) -> None:
        self._latest[sample.name] = sample

    def value(self, name: str, second: int) -> float:
        """Probe ``name``'s value for epoch second ``second``; NaN when there is none fresh."""
        sample = self._latest.get(name)
        fresh = sample is not None and not sample.failed and second + 1 - sample.at <= self.stale_after
        return sample.value if sample is not None and fresh else math.nan
