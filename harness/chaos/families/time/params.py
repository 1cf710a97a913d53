"""The time family's kind: ``time.skew``, as a scenario model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from harness.scenario.expressions import parse_duration
from harness.scenario.faults import FaultBase, FaultContext, ProcessTarget
from harness.scenario.fields import KeyPath, Model

__all__ = ["MAX_OFFSET", "TimeSkewFault", "TimeSkewParams", "signed_duration"]

#: The largest offset accepted: ten years either way (libfaketime takes any; a typo should not).
MAX_OFFSET = 10 * 366 * 86400.0


def signed_duration(value: object) -> float:
    """Seconds from ``-10m``, ``+2h``, ``90s`` or a number; negative means the clock is behind."""
    if isinstance(value, str):
        text = value.strip()
        sign = -1.0 if text.startswith("-") else 1.0
        return sign * parse_duration(text.lstrip("+-"), limit=MAX_OFFSET)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return (-1.0 if value < 0 else 1.0) * parse_duration(abs(value), limit=MAX_OFFSET)
    raise ValueError("expected an offset such as -10m, +2h or 90s")


SignedDuration = Annotated[
    float,
    BeforeValidator(signed_duration),
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string"}]}),
]


class TimeSkewParams(Model):
    offset: SignedDuration = Field(
        default=0.0,
        description="How far the target's wall clock (CLOCK_REALTIME) is moved: -10m (behind), +2h (ahead).",
    )
    rate: float = Field(
        default=1.0,
        gt=0,
        le=100,
        description=(
            "How fast the target's wall clock runs during the window, e.g. 1.01 (1% fast, a drift of 36 s an "
            "hour) or 0.5; 1 = normal speed. Its own sleeps and timeouts speed up or slow down with it."
        ),
    )
    mechanism: Literal["shim", "vdso", "auto"] = Field(
        default="shim",
        description=(
            "How the clock is moved: shim (a process started under harness's clock shim, libfaketime), "
            "vdso (any running x86-64 process, Go binaries included: its vDSO patched through ptrace; "
            "offset only, no rate), or auto (shim for a process started under it, vdso for one that was not)."
        ),
    )


class TimeSkewFault(FaultBase):
    """Shift (and optionally speed up or slow down) a process's wall clock for the fault window.

    The target must have been started under harness's clock shim (libfaketime reading a skew
    file); Chaos Mesh's TimeChaos ``timeOffset`` with ``clockIds: [CLOCK_REALTIME]``.
    """

    kind: Literal["time.skew"] = Field(description="Fault kind.")
    target: ProcessTarget = Field(description="Which process(es): started under harness's clock shim.")
    params: TimeSkewParams = Field(default_factory=TimeSkewParams, description="Offset and rate of the skew.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        if self.duration <= 0:
            yield ("duration",), "a clock skew needs a positive duration (it is reverted at its end)"
        problem = self.target.choice_problem()
        if problem:
            yield ("target",), problem
        if self.params.mechanism == "vdso" and self.params.rate != 1:
            yield ("params", "rate"), "mechanism vdso moves the clock by an offset only: leave rate at 1"
        if self.params.offset == 0 and self.params.rate == 1:
            yield ("params",), "give an offset (e.g. -10m) or a rate other than 1: this skew changes nothing"

    def with_base_dir(self, base: Path) -> TimeSkewFault:
        return self.model_copy(update={"target": self.target.with_base_dir(base)})
