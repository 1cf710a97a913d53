"""Units of objective thresholds: what a threshold may be written in, how it is normalised, and
how values are shown to users (the terminal, the report, JUnit and SLO messages alike).

Each :class:`Quantity` is used by the rows of the objectives table (:mod:`.objectives`) that
measure in it. Pure, and imports nothing of harness: the scenario grammar imports it through the
table, and re-exports :func:`format_duration` beside its ``parse_duration``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["FACTOR", "MILLISECONDS", "NUMBER", "PER_SECOND", "SECONDS", "SHARE", "Quantity", "format_duration"]


def format_duration(seconds: float) -> str:
    """Short human form used in plans and verdicts (``1m30s``, ``250ms``); the scenario grammar
    re-exports it beside ``parse_duration``."""
    if seconds < 1 and seconds != 0:
        return f"{seconds * 1000:g}ms"
    if seconds >= 86400 and seconds % 86400 == 0:
        return f"{int(seconds // 86400)}d"
    minutes, secs = divmod(seconds, 60)
    if minutes >= 60 and secs == 0 and minutes % 60 == 0:
        return f"{int(minutes // 60)}h"
    if minutes:
        return f"{int(minutes)}m{secs:g}s" if secs else f"{int(minutes)}m"
    return f"{secs:g}s"


def _same(value: float) -> float:
    return value


def _times(factor: float) -> Callable[[float], float]:
    return lambda value: value * factor


def _over(divisor: float) -> Callable[[float], float]:
    return lambda value: value / divisor


@dataclass(frozen=True)
class Quantity:
    """What a threshold is measured in: the units it may be written with, and how values are shown.

    ``units`` maps each unit a threshold may carry ("" for a bare number) to the function that
    normalises a number written with it; ``wrong`` is the message for any other unit (it may
    name ``{metric}``, ``{unit}`` and ``{text}``, the objective as written). A ``share`` must lie
    between 0 and 1 once normalised.
    """

    units: Mapping[str, Callable[[float], float]]
    wrong: str
    show: Callable[[float], str]
    share: bool = False

    def normalise(self, metric: str, number: float, unit: str, text: str) -> float:
        scale = self.units.get(unit)
        if scale is None:
            raise ValueError(self.wrong.format(metric=metric, unit=unit, text=text))
        if self.share and unit == "" and number >= 1:  # is "< 1" one percent or all requests?
            raise ValueError(
                f"'{text.strip()}' is ambiguous: write the threshold as a percentage ({number:g}%) "
                f"or as a fraction below 1 ({number / 100:g})"
            )
        value = scale(number)
        if self.share and not 0 <= value <= 1:
            raise ValueError(f"{metric} threshold must lie between 0% and 100%")
        return value


MILLISECONDS = Quantity(
    units={"us": _times(1e-3), "ms": _times(1.0), "s": _times(1000.0)},
    wrong="latency threshold '{text}' needs a unit: ms, s or us (e.g. '{metric} < 250ms')",
    show=lambda ms: f"{ms:.1f}ms" if ms < 10_000 else f"{ms / 1000:.2f}s",
)
SHARE = Quantity(
    units={"%": _over(100.0), "": _same},
    wrong="{metric} threshold takes a percentage or a fraction, not '{unit}'",
    show=lambda share: f"{share * 100:.3g}%",
    share=True,
)
PER_SECOND = Quantity(
    units={"": _same, "/s": _same},
    wrong="{metric} threshold takes a plain number or '/s', not '{unit}'",
    show=lambda rate: f"{rate:.1f}/s",
)
FACTOR = Quantity(
    units={"": _same, "x": _same},
    wrong="{metric} threshold takes a plain factor or 'x' (e.g. '{metric} < 2x'), not '{unit}'",
    show=lambda factor: f"{factor:.3g}x",
)
SECONDS = Quantity(
    units={"ms": _times(1e-3), "s": _times(1.0), "m": _times(60.0)},
    wrong="{metric} threshold '{text}' needs a unit: s, ms or m (e.g. '{metric} < 20s')",
    show=lambda seconds: format_duration(round(seconds, 1)) if seconds < 3600 else f"{seconds:.0f}s",
)
NUMBER = Quantity(
    units={"": _same},
    wrong="{metric} threshold is a plain number in the query's own unit, not '{unit}'",
    show=lambda value: f"{value:.4g}",
)
