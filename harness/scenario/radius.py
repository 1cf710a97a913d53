"""A fault's blast radius that grows: ``radius: {steps: [1, 2, 50%], hold: 10s}``.

A fault with a ``radius`` is applied to a growing number of the instances its target selects
(the processes its pattern matches, the pods its selector picks, ...), one step after another,
each step held for ``hold`` seconds, with the scenario's ``during:<fault>`` SLOs judged over each
step's window. The run stops escalating at the first step whose SLOs break. Which instances a
kind counts is its fault family's business (:meth:`FaultBase.instances_problem` says, at load,
whether a fault can count any); this module holds what a scenario says and the arithmetic that
turns a step into a number of instances, shared by ``harness plan`` and the run so they agree.

Pure: pydantic and the standard library.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, WithJsonSchema

from harness.scenario.fields import Duration, KeyPath, Model

__all__ = ["MAX_STEPS", "Radius", "RadiusStep", "instances_at", "radius_problems", "step_hold"]

#: The most steps a ladder may have: each step is a window judged on its own, seconds long.
MAX_STEPS = 20

_PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


def _step(value: Any) -> str:
    """A step as its canonical text: ``"2"`` (instances) or ``"25%"`` (a share of those found)."""
    if isinstance(value, bool):
        raise ValueError("a radius step is a number of instances (2) or a share of them (25%)")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        if value < 1:
            raise ValueError(f"a radius step counts instances: 1 or more, not {value}")
        return str(value)
    if isinstance(value, str) and (match := _PERCENT.fullmatch(value)):
        share = float(match.group(1))
        if not 0 < share <= 100:
            raise ValueError(f"a radius share is more than 0% and at most 100%, not {value.strip()}")
        return f"{share:g}%"
    raise ValueError(f"a radius step is a number of instances (2) or a share of them (25%), not {value!r}")


#: One step of a ladder, as written: a count of instances or a percentage of those found.
RadiusStep = Annotated[str, BeforeValidator(_step), WithJsonSchema({"type": ["integer", "string"]})]


def instances_at(step: str, found: int) -> int:
    """How many of ``found`` instances step ``step`` acts on: a count is capped at ``found``; a
    share is rounded up (25% of 3 is 1), so no step of a non-empty set acts on none."""
    if step.endswith("%"):
        return min(found, math.ceil(found * float(step[:-1]) / 100 - 1e-9))
    return min(found, int(step))


class Radius(Model):
    """A blast radius that grows: the steps, how long each is held, and what must hold for CI."""

    steps: list[RadiusStep] = Field(
        min_length=1,
        max_length=MAX_STEPS,
        description="The radii, smallest first: a number of instances (1, 2) or a share of those the target "
        "selects (25%, 50%); each step acts on the instances of the one before plus more.",
    )
    hold: Duration | None = Field(
        default=None,
        description="How long each step is held (e.g. 10s); steps x hold must equal the fault's duration. "
        "Default: the fault's duration split evenly over the steps.",
    )
    must_hold: RadiusStep | None = Field(
        default=None,
        description="The run fails (exit 1) unless every step up to and including this radius held. Default: "
        "none, the ladder only reports the largest radius that held and the first that broke.",
    )


def _order_problems(steps: list[str]) -> Iterator[tuple[KeyPath, str]]:
    last: dict[bool, tuple[float, str]] = {}
    for i, step in enumerate(steps):
        share = step.endswith("%")
        value = float(step.rstrip("%"))
        before = last.get(share)
        if before is not None and value <= before[0]:
            yield ("radius", "steps", i), f"step {step} does not grow from step {before[1]}: radii go smallest first"
        last[share] = (value, step)


def radius_problems(radius: Radius, duration: float) -> Iterator[tuple[KeyPath, str]]:
    """What is wrong with a fault's ladder given its duration: ``(key path, message)``, paths
    relative to the fault. (That the kind counts instances at all is the fault model's to say.)"""
    yield from _order_problems(radius.steps)
    if duration <= 0:
        yield ("duration",), "a fault with a radius needs a positive duration: each step is held for a while"
    elif radius.hold is not None and not math.isclose(radius.hold * len(radius.steps), duration, abs_tol=1e-6):
        total = radius.hold * len(radius.steps)
        yield (
            ("radius", "hold"),
            f"{len(radius.steps)} steps of {radius.hold:g}s last {total:g}s but the fault's duration is "
            f"{duration:g}s; make them equal (or leave hold out to split the duration evenly)",
        )
    if radius.must_hold is not None and radius.must_hold not in radius.steps:
        yield ("radius", "must_hold"), f"{radius.must_hold} is not one of the steps ({', '.join(radius.steps)})"


def step_hold(radius: Radius, duration: float) -> float:
    """Seconds each step is held."""
    return radius.hold if radius.hold is not None else duration / len(radius.steps)
