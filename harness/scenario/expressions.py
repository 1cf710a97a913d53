"""The small readable grammars used inside scenario files.

* durations: ``90``, ``90s``, ``1m30s``, ``500ms``, ``2h`` -> seconds (float)
* objectives: ``p99 < 250ms``, ``error_rate < 1%``, ``rps >= 100``, ``recovery_time < 20s``,
  ``budget_burn < 5%``, ``burn_rate < 2`` -> :class:`Objective`
* percentages: ``99.9%`` or a fraction ``0.999`` -> fraction
* guard conditions: ``error_rate > 50% for 5s`` -> :class:`Condition`
* SLO windows: ``run``, ``steady``, ``phase:NAME``, ``during:FAULT``, ``after:FAULT[:30s]``,
  ``last:30s`` -> :class:`WindowRef`

Parsers raise ``ValueError`` with a message meant for a user; the scenario module turns it
into a located problem. Values are normalised: latencies in milliseconds, rates as fractions.
Metric names, their units and how thresholds are normalised are rows of the objectives table
(:mod:`harness.judge.objectives`); the grammar here only splits an objective into its parts.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from enum import StrEnum

from harness.judge.objectives import lookup
from harness.judge.units import format_duration

__all__ = [
    "Condition",
    "Objective",
    "WindowKind",
    "WindowRef",
    "format_duration",
    "parse_condition",
    "parse_duration",
    "parse_objective",
    "parse_percent",
    "parse_steady_condition",
    "parse_window",
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|us|d|h|m|s)")
_UNIT_SECONDS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6}
WEEK = 7 * 86400.0


def parse_duration(value: object, limit: float = WEEK) -> float:
    """Seconds from a number (seconds) or a string like ``1m30s`` or ``30d``; never negative.

    ``limit`` keeps timeline durations sane (a week); an error-budget period may be longer.
    """
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 1m30s or 500ms")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if re.fullmatch(r"-?\d+(?:\.\d+)?", text):
            seconds = float(text)
        else:
            negative = text.startswith("-")
            body = text[1:] if negative else text
            parts = _DURATION_PART.findall(body)
            if not body or "".join(n + u for n, u in parts) != body:
                raise ValueError(f"'{value}' is not a duration; write e.g. 30s, 1m30s, 500ms or 2h")
            seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
            seconds = -seconds if negative else seconds
    else:
        raise ValueError("expected a duration such as 30s, 1m30s or 500ms")
    if not math.isfinite(seconds):
        raise ValueError("duration must be finite")
    if seconds < 0:
        raise ValueError(f"duration must not be negative (got {value})")
    if seconds > limit:
        raise ValueError(f"duration longer than {limit / 86400:g} days")
    return seconds


def parse_percent(value: object) -> float:
    """A share as a fraction, from ``99.9%`` or a plain fraction such as ``0.999``."""
    if isinstance(value, bool):
        raise ValueError("expected a percentage such as 99.9% or a fraction such as 0.999")
    if isinstance(value, int | float):
        share = float(value)
        if share > 1:
            raise ValueError(f"{value} is not a fraction; write a percentage with '%' (e.g. {value}%)")
        if share == 1:
            raise ValueError(f"{value} is ambiguous: write 1% or the fraction 0.01 (or 100% for all)")
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+(?:\.\d+)?\s*%\s*", value):
        share = float(value.strip().rstrip("%")) / 100.0
    elif isinstance(value, str) and re.fullmatch(r"\s*\d+(?:\.\d+)?\s*", value):
        return parse_percent(float(value))
    else:
        raise ValueError(f"'{value}' is not a percentage; write e.g. 99.9% or 0.999")
    if not 0 <= share <= 1:
        raise ValueError("a percentage must lie between 0% and 100%")
    return share


_OBJECTIVE = re.compile(r"^\s*((?:probe:)?[a-z_][a-z0-9_.]*)\s*(<=|>=|<|>)\s*([-+]?\d+(?:\.\d+)?)\s*([a-z%/]*)\s*$")


@dataclass(frozen=True)
class Objective:
    """``metric op value``; latency values in ms, error_rate as a fraction, rps in requests/s."""

    metric: str
    op: str
    value: float
    text: str

    def holds(self, measured: float) -> bool:
        if math.isnan(measured):
            return False
        return {
            "<": measured < self.value,
            "<=": measured <= self.value,
            ">": measured > self.value,
            ">=": measured >= self.value,
        }[self.op]

    def format_value(self, value: float) -> str:
        return lookup(self.metric).format(value)


def parse_objective(text: object) -> Objective:
    """Parse ``p99 < 250ms`` style objectives; the message names what is wrong."""
    if not isinstance(text, str):
        raise ValueError("expected an objective such as 'p99 < 250ms' or 'error_rate < 1%'")
    match = _OBJECTIVE.match(text.lower())
    if not match:
        raise ValueError(
            f"'{text}' is not an objective; write '<metric> <op> <value>', "
            "e.g. 'p99 < 250ms', 'error_rate < 1%', 'rps >= 100'"
        )
    name, op, number, unit = match.groups()
    if name == "probe":
        raise ValueError(f"'{text}' names no probe; write probe:NAME, NAME one of the scenario's probes")
    metric = lookup(name)
    value = float(number)
    if not math.isfinite(value):  # 400 digits are still digits
        raise ValueError(f"threshold in '{text}' is too large")
    value = metric.threshold(value, unit, text)
    if value < 0:
        raise ValueError("threshold must not be negative")
    # A probe objective keeps the probe's name: probe:inflight is the probe row, for probe inflight.
    return Objective(metric=name if metric.name == "probe" else metric.name, op=op, value=value, text=text.strip())


@dataclass(frozen=True)
class Condition:
    """A guard: the objective-shaped breach condition, held for ``for_seconds`` consecutive seconds."""

    breach: Objective
    for_seconds: int
    text: str


def parse_condition(text: object) -> Condition:
    """Parse ``error_rate > 50% for 5s``: the condition that aborts the run when it holds."""
    if not isinstance(text, str):
        raise ValueError("expected a condition such as 'error_rate > 50% for 5s'")
    head, sep, tail = text.partition(" for ")
    seconds = 1
    if sep:
        seconds = math.ceil(parse_duration(tail.strip()))
        if seconds < 1:
            raise ValueError("a guard must hold for at least 1s")
    breach = parse_objective(head)
    metric = lookup(breach.metric)
    if not metric.per_second:
        raise ValueError(f"{metric.name} cannot be judged second by second, so it cannot be a guard: {metric.why}")
    return Condition(breach=breach, for_seconds=seconds, text=text.strip())


def parse_steady_condition(text: object) -> Objective:
    """Parse one condition of a steady start (``p99 < 300ms``): what must hold on each second.

    Judged on one second at a time like a guard, so only metrics a guard may use; and with no
    extra keys beside it, so none that needs one (burn_rate needs a budget)."""
    objective = parse_objective(text)
    metric = lookup(objective.metric)
    if not metric.per_second:
        raise ValueError(
            f"{metric.name} cannot be judged second by second, so it cannot say when the load is steady; "
            "use a per-second metric (p50 .. max, mean, error_rate, rps) or probe:NAME"
        )
    if metric.needs:
        raise ValueError(f"{metric.name} needs {', '.join(metric.needs)}, which a steady condition cannot give")
    return objective


class WindowKind(StrEnum):
    RUN = "run"
    STEADY = "steady"
    PHASE = "phase"
    DURING = "during"
    AFTER = "after"
    LAST = "last"


@dataclass(frozen=True)
class WindowRef:
    """Which seconds of a run an SLO is judged on; ``ref`` names a phase or a fault."""

    kind: WindowKind
    ref: str = ""
    seconds: float = 0.0

    def __str__(self) -> str:
        if self.kind in (WindowKind.RUN, WindowKind.STEADY):
            return self.kind.value
        if self.kind is WindowKind.LAST:
            return f"last:{format_duration(self.seconds)}"
        if self.kind is WindowKind.AFTER and self.seconds:
            return f"after:{self.ref}:{format_duration(self.seconds)}"
        return f"{self.kind.value}:{self.ref}"


def parse_window(text: object) -> WindowRef:
    """Parse an SLO window reference; names are checked against the scenario elsewhere."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("expected a window: run, steady, phase:NAME, during:FAULT, after:FAULT[:30s], last:30s")
    kind_text, _, rest = text.strip().partition(":")
    try:
        kind = WindowKind(kind_text)
    except ValueError:
        close = difflib.get_close_matches(kind_text.lower(), [k.value for k in WindowKind], n=1)
        meant = f"did you mean '{close[0]}{':' + rest if rest else ''}'? " if close else ""
        raise ValueError(
            f"unknown window '{text}'; {meant}use run, steady, phase:NAME, during:FAULT, after:FAULT[:30s] or last:30s"
        ) from None
    if kind in (WindowKind.RUN, WindowKind.STEADY):
        if rest:
            raise ValueError(f"window '{kind.value}' takes no argument")
        return WindowRef(kind)
    if kind is WindowKind.LAST:
        seconds = parse_duration(rest)
        if seconds <= 0:
            raise ValueError("last:DURATION needs a positive duration")
        return WindowRef(kind, seconds=seconds)
    if not rest:
        raise ValueError(f"window '{kind.value}' needs a name, e.g. {kind.value}:NAME")
    if kind is WindowKind.AFTER:
        name, _, length = rest.partition(":")
        return WindowRef(kind, ref=name, seconds=parse_duration(length) if length else 0.0)
    return WindowRef(kind, ref=rest)
