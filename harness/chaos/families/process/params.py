"""The process family's kinds: ``process.kill`` and ``process.pause``, as scenario models."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from harness.scenario.faults import FaultBase, FaultContext, ProcessTarget
from harness.scenario.fields import KeyPath, Model, signal_number
from harness.scenario.heal import HealCheck

__all__ = ["KillParams", "PauseParams", "ProcessFault", "ProcessKillFault", "ProcessPauseFault"]


class KillParams(Model):
    signal: Annotated[int, BeforeValidator(signal_number), WithJsonSchema({"type": ["integer", "string"]})] = Field(
        default=int(signal.SIGKILL), description="Signal to send, by name (SIGKILL, TERM) or number."
    )
    restart: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Command (argv list, no shell) that starts the target again at the end of the fault window; "
            "default: none, or `systemctl start UNIT` for a systemd_unit target."
        ),
    )
    restart_cwd: str | None = Field(default=None, description="Working directory of the restart command.")


class PauseParams(Model):
    pass


def _one_target(fault: FaultBase, target: ProcessTarget) -> Iterator[tuple[KeyPath, str]]:
    if fault.pods is not None:  # the pods' containers are the target, found on each node
        if target != ProcessTarget():
            yield ("target",), "with pods, the target is the pods' containers (narrow with pods.containers); remove it"
        return
    problem = target.choice_problem()
    if problem:
        yield ("target",), problem


class ProcessKillFault(FaultBase):
    """Send a signal (SIGKILL by default) to the target process(es) at ``at``."""

    HEALS_FROM_START: ClassVar[bool] = True  # a kill: its heal_time runs from the kill
    kind: Literal["process.kill"] = Field(description="Fault kind.")
    target: ProcessTarget = Field(
        default_factory=ProcessTarget, description="Which process(es) the fault acts on (none with pods)."
    )
    params: KillParams = Field(default_factory=KillParams, description="Kill parameters.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        if self.params.signal in (signal.SIGSTOP, signal.SIGTSTP):
            yield ("params", "signal"), f"a stop signal cannot be reverted by a kill; use kind {ProcessPauseFault.KIND}"
        yield from _one_target(self, self.target)
        if self.params.restart_cwd and not self.params.restart:
            yield ("params", "restart_cwd"), "restart_cwd needs params.restart"

    def with_base_dir(self, base: Path) -> ProcessKillFault:
        return self.model_copy(update={"target": self.target.with_base_dir(base)})

    def default_heal(self) -> HealCheck | None:
        """Killed by pattern: healed once the pattern matches a process again (its supervisor restarted it)."""
        return HealCheck(pattern=self.target.pattern) if self.target.pattern else None


class ProcessPauseFault(FaultBase):
    """SIGSTOP the target at ``at``, SIGCONT it at ``at + duration``."""

    kind: Literal["process.pause"] = Field(description="Fault kind.")
    target: ProcessTarget = Field(
        default_factory=ProcessTarget, description="Which process(es) the fault acts on (none with pods)."
    )
    params: PauseParams = Field(default_factory=PauseParams, description="No parameters.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        if self.duration <= 0:
            yield ("duration",), "a pause needs a positive duration"
        yield from _one_target(self, self.target)

    def with_base_dir(self, base: Path) -> ProcessPauseFault:
        return self.model_copy(update={"target": self.target.with_base_dir(base)})


ProcessFault = ProcessKillFault | ProcessPauseFault
