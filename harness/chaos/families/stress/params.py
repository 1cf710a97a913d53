"""The stress family's kinds: ``stress.cpu``, ``stress.memory``, ``stress.io`` and ``stress.disk_fill``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal, Self

from pydantic import Field

from harness.scenario.faults import FaultBase, FaultContext, ProcessTarget
from harness.scenario.fields import Bytes, KeyPath, Model

__all__ = [
    "StressCpuFault",
    "StressCpuParams",
    "StressDiskFillFault",
    "StressDiskFillParams",
    "StressFault",
    "StressIoFault",
    "StressIoParams",
    "StressMemoryFault",
    "StressMemoryParams",
]


class StressCpuParams(Model):
    workers: int = Field(default=1, ge=1, le=1024, description="stress-ng CPU workers (each loads at most one core).")
    load: int = Field(default=100, ge=1, le=100, description="Percent of one core each worker keeps busy.")


class StressMemoryParams(Model):
    bytes: Bytes | None = Field(
        default=None,
        gt=0,
        description="Memory to allocate and touch, e.g. 512M (resident, not just mapped). Give this or percent.",
    )
    percent: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description=(
            "Memory to allocate as a percentage of the target's memory limit (the smallest limit on its "
            "memory cgroup and that cgroup's ancestors), or of the node's total memory when there is no "
            "target or no limit; resolved when the fault is injected. Give this or bytes."
        ),
    )
    hold: bool = Field(
        default=True,
        description="true: allocate once and hold it idle; false: keep rewriting it (costs a core too).",
    )


class StressIoParams(Model):
    workers: int = Field(default=1, ge=1, le=256, description="stress-ng hdd workers writing and reading files.")
    path: str = Field(default="/tmp", description="Directory the workers write in (a private subdirectory).")


class StressDiskFillParams(Model):
    path: str = Field(description="Directory on the file system to fill; a file harness-fill-<run>-<fault> is made.")
    bytes: Bytes = Field(gt=0, description="Size of the file (allocated blocks), e.g. 2G.")


class StressFault(FaultBase):
    target: ProcessTarget | None = Field(
        default=None,
        description="Process whose cgroups the stress-ng processes join; none: they stay in the agent's cgroups.",
    )

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        if self.pods is not None and self.target is not None:
            yield ("target",), "with pods, stress-ng joins the pods' containers' cgroups; remove target"

    def with_base_dir(self, base: Path) -> Self:
        if self.target is None:
            return self
        return self.model_copy(update={"target": self.target.with_base_dir(base)})


class StressCpuFault(StressFault):
    """CPU load with stress-ng at ``load`` percent per worker for ``duration``."""

    kind: Literal["stress.cpu"] = Field(description="Fault kind.")
    params: StressCpuParams = Field(default_factory=StressCpuParams, description="Workers and load.")


class StressMemoryFault(StressFault):
    """Allocate and hold ``bytes`` (or ``percent`` of the target's memory limit) with stress-ng for ``duration``."""

    kind: Literal["stress.memory"] = Field(description="Fault kind.")
    params: StressMemoryParams = Field(description="Bytes or percent, and hold.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        yield from super().checks(context)
        if (self.params.bytes is None) == (self.params.percent is None):
            yield ("params",), "give exactly one of bytes or percent"


class StressIoFault(StressFault):
    """File IO with stress-ng hdd workers for ``duration``."""

    kind: Literal["stress.io"] = Field(description="Fault kind.")
    params: StressIoParams = Field(default_factory=StressIoParams, description="Workers and directory.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        yield from super().checks(context)
        problem = context.path_problem(self.params.path)
        if problem:
            yield ("params", "path"), problem


class StressDiskFillFault(StressFault):
    """Fill a file system with one allocated file of ``bytes``; removed on revert."""

    kind: Literal["stress.disk_fill"] = Field(description="Fault kind.")
    params: StressDiskFillParams = Field(description="Directory and size.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        yield from super().checks(context)
        problem = context.path_problem(self.params.path)
        if problem:
            yield ("params", "path"), problem
