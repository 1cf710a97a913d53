"""A fault's ``at`` as a condition: start once the system is steady, not at a fixed offset.

A ramp's end is often not known in advance (a service that warms its caches, an autoscaler that
adds replicas): a fault injected at a fixed offset then lands on a system that is still settling,
and the run measures the settling as much as the fault. Written as a mapping instead of an
offset, ``at`` waits::

    at:
      steady: [p99 < 300ms, rps >= 100]   # every second, all of these hold (client metrics or probes)
      for: 5s                             # for this many seconds in a row
      after: 10s                          # seconds before this offset do not count
      deadline: 60s                       # not steady by then: the fault never starts, the run is invalid

The plan places the fault at its deadline (the latest it can start); the run moves it, and
its windows, to when the condition held (:mod:`harness.judge.steady` judges it each second).
"""

from __future__ import annotations

import math
from typing import Annotated

from pydantic import BeforeValidator, Field, model_validator

from harness.scenario.expressions import Objective, format_duration, parse_steady_condition
from harness.scenario.fields import AsText, Duration, Model

__all__ = ["SteadyStart"]


class SteadyStart(Model):
    """Start the fault once every condition has held for ``for`` seconds in a row, at the
    earliest at ``after`` and at the latest at ``deadline`` (else the run ends invalid)."""

    steady: list[Annotated[Objective, BeforeValidator(parse_steady_condition), AsText]] = Field(
        min_length=1,
        max_length=16,
        description="Conditions that must all hold on each second, e.g. ['p99 < 300ms', 'rps >= 100'] on the "
        "requests of that second (all endpoints), or 'probe:ready >= 3' on a probe's latest value: any metric "
        "a guard may use (p50..max, mean, error_rate, rps, probe:NAME).",
    )
    for_: Duration = Field(
        default=5.0,
        alias="for",
        description="How long, in whole seconds, the conditions must hold in a row before the fault starts.",
    )
    after: Duration = Field(
        default=0.0, description="Offset from the run start before which seconds do not count (default 0s)."
    )
    deadline: Duration = Field(
        description="Offset from the run start by which the conditions must have held; if they have not, the "
        "fault never starts and the run ends invalid ('never steady')."
    )

    @model_validator(mode="after")
    def _fits(self) -> SteadyStart:
        if self.after > self.deadline:
            raise ValueError(f"after ({self.after:g}s) is later than deadline ({self.deadline:g}s)")
        if self.seconds < 1:
            raise ValueError("the conditions must hold for at least 1s")
        if self.after + self.seconds > self.deadline:
            raise ValueError(
                f"the conditions cannot hold for {self.seconds}s between after ({self.after:g}s) "
                f"and deadline ({self.deadline:g}s)"
            )
        return self

    @property
    def seconds(self) -> int:
        """The streak the conditions need, in whole seconds."""
        return math.ceil(self.for_)

    def text(self) -> str:
        """``p99 < 300ms and rps >= 100 for 5s``: the condition as plans and events say it."""
        return " and ".join(c.text for c in self.steady) + f" for {self.seconds}s"

    def describe(self) -> str:
        """The whole start rule, for the plan."""
        after = f", from {format_duration(self.after)}" if self.after else ""
        return f"when {self.text()}{after}, by {format_duration(self.deadline)} at the latest"
