"""A fault's ladder, on the chaos side: which instances each step of a growing radius acts on.

A fault with a ``radius`` (:mod:`harness.scenario.radius`) is applied step by step. Its family
lists the instances its target selects (the ``instances`` hook, in a stable order) once, when the
ladder starts; step i then acts on the first ``instances_at(radius_i, found)`` of that list, as a
fault of its own (the ``narrowed`` hook) journaled under the name :func:`step_name`. So every step
acts on the instances of the one before plus more, ``harness plan`` (which lists them the same
way) and the run agree, and the watchdog, ``harness recover`` and the sweep see an ordinary fault.
Nothing here names a kind.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.chaos.family import family_of
from harness.errors import FaultError, HarnessError
from harness.scenario.faults import FaultBase
from harness.scenario.radius import instances_at

__all__ = ["LadderStep", "instances", "now_text", "pod_step", "step_fault", "step_name"]


@dataclass(frozen=True)
class LadderStep:
    """One step's fault, and how many of the instances found it acts on."""

    fault: FaultBase
    acts_on: int
    found: int
    ids: tuple[str, ...]

    @property
    def text(self) -> str:
        return f"{self.acts_on} of {self.found} instances"


def step_name(fault_name: str, index: int) -> str:
    """The journal name of step ``index`` (1-based) of a ladder: ``<fault>.step<index>``."""
    return f"{fault_name}.step{index}"


def instances(fault: FaultBase) -> list[str]:
    """The ordered ids of the instances ``fault``'s target selects now (its family's ``instances``);
    ``FaultError`` when the family counts none or the target selects nothing."""
    found = family_of(fault.kind).instances(fault)
    if found is None:
        raise FaultError(f"fault '{fault.name}': fault family of {fault.kind} counts no instances for a radius")
    if not found:
        raise FaultError(f"fault '{fault.name}': its target selects no instance now")
    return found


def step_fault(fault: FaultBase, ids: list[str] | tuple[str, ...], index: int) -> LadderStep:
    """Step ``index`` (1-based) of ``fault``'s ladder over the instances ``ids`` found at its start."""
    assert fault.radius is not None
    radius = fault.radius.steps[index - 1]
    count = instances_at(radius, len(ids))
    chosen = tuple(ids[:count])
    narrowed = family_of(fault.kind).narrowed(fault, chosen)
    named = narrowed.model_copy(update={"name": step_name(fault.name, index), "radius": None})
    return LadderStep(named, count, len(ids), chosen)


def pod_step(fault: FaultBase, keys: list[str] | tuple[str, ...], index: int) -> LadderStep:
    """Step ``index`` of the ladder of ``fault`` with ``pods``: the same fault, acting in the first
    so many of the pods chosen for it (``keys``, ``namespace/name`` in name order). Its member
    faults are journaled per pod under the step's name (:mod:`harness.chaos.pods`)."""
    assert fault.radius is not None
    count = instances_at(fault.radius.steps[index - 1], len(keys))
    named = fault.model_copy(update={"name": step_name(fault.name, index), "radius": None})
    return LadderStep(named, count, len(keys), tuple(keys[:count]))


def now_text(fault: FaultBase) -> str:
    """For ``harness plan``: how many instances the target selects now and what each step takes
    (a fault with pods: the pods chosen, which the plan lists, in name order)."""
    if fault.radius is None:
        return ""
    if fault.pods is not None:
        return "; ladder: over the chosen pods, in name order"
    try:
        ids = instances(fault)
    except HarnessError as exc:
        return f"; ladder now: {exc}"
    steps = ", ".join(f"{r} -> {instances_at(r, len(ids))}" for r in fault.radius.steps)
    return f"; ladder now: {len(ids)} instances ({steps}), first: {ids[0]}"
