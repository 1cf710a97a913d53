"""A heal time as measured: when a fault's healing began and when the system was first seen whole.

The run (:mod:`harness.run.heal`) polls each fault's heal condition on the driver's clock and
hands the judge one :class:`HealTime` per fault it watched; the ``heal_time`` row of the
objectives table (:mod:`harness.judge.objectives`) reads it. Pure: a dataclass and arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["HealTime"]


@dataclass(frozen=True)
class HealTime:
    """One fault's healing, on the driver's clock (epoch seconds).

    ``began`` is the fault's end, or its injection for a kind with nothing to revert (a kill:
    ``from_start``). ``healed`` is when the first poll that found the condition holding was
    sent (the condition held by the time it answered, and had not at the poll before, at most
    one poll interval earlier); None when no poll found it before the run ended, at
    ``watched_until``. ``last_error`` is why the last failing poll failed (a refused
    connection, 1 of 3 pods Ready), for the message of a heal that never came.
    """

    fault: str
    check: str
    began: float
    healed: float | None
    watched_until: float
    polls: int
    from_start: bool = False
    last_error: str = ""

    @property
    def seconds(self) -> float | None:
        """Seconds from ``began`` to ``healed``; None when it never healed within the run."""
        return None if self.healed is None else max(0.0, self.healed - self.began)

    @property
    def watched(self) -> float:
        """Seconds the condition was watched for."""
        return max(0.0, self.watched_until - self.began)
