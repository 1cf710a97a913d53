"""The report's plots over time: inline SVG, one shared time axis, faults shaded, phases marked.

Each per-second value is drawn at the midpoint of its second, on seconds since the run's start.
Fault windows are shaded (``<rect class="fault">``) and phase starts and aborts are marked
(``<line class="phase">``, ``<line class="abort">``) on every plot. Long runs are drawn with one
point per bucket of seconds. Every text from the run is HTML-escaped. Pure.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from harness.judge.objectives import format_duration
from harness.results import schema
from harness.review.report_model import Event, ReportData, Second

__all__ = [
    "ERRORS_COLOUR",
    "LATENCY_CAPTION",
    "P50_COLOUR",
    "P95_COLOUR",
    "P99_COLOUR",
    "REQUESTS_COLOUR",
    "TARGET_COLOUR",
    "Frame",
    "plots",
]

LATENCY_CAPTION = (
    "Latency percentiles of all endpoints together, per second. Each endpoint's per-second "
    "percentiles (p50 ... max) are read as a piecewise-linear distribution; the endpoints' "
    "distributions are mixed in proportion to their request counts and the percentile of the "
    "mixture is drawn. It always lies between the lowest and the highest endpoint's percentile "
    "for that second, and equals it when one endpoint served the second."
)


# Line colours: unique on the page, so a screenshot test can find each plot's lines.
REQUESTS_COLOUR = "#1f77b4"
TARGET_COLOUR = "#8c8c8c"
P50_COLOUR = "#2ca02c"
P95_COLOUR = "#ff7f0e"
P99_COLOUR = "#d62728"
ERRORS_COLOUR = "#9467bd"
_FAULT_FILL = "#f6c8c0"
_PHASE_COLOUR = "#4a5560"
_ABORT_COLOUR = "#b42318"

# Longer runs are drawn with one point per bucket of seconds: a plot is ~900 px wide.
_MAX_POINTS = 900


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


@dataclass(frozen=True)
class _Line:
    label: str
    colour: str
    values: Sequence[float | None]  # one per second of the run, None for a gap
    dashed: bool = False
    bucket: Callable[[list[float]], float] = max


@dataclass(frozen=True)
class _Axis:
    """The run's time axis: epoch second -> x offset (seconds since the start)."""

    start: float
    duration: float
    seconds: Sequence[int]

    def offset(self, second: int) -> float:
        return second + 0.5 - self.start


def _nice_step(span: float, ticks: int = 5) -> float:
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _buckets(xs: Sequence[float], line: _Line, size: int) -> list[tuple[float, float | None]]:
    """Points of one line, ``size`` seconds per point (1: as is)."""
    if size <= 1:
        return list(zip(xs, line.values, strict=True))
    out: list[tuple[float, float | None]] = []
    for begin in range(0, len(xs), size):
        chunk_x = xs[begin : begin + size]
        values = [v for v in line.values[begin : begin + size] if v is not None]
        out.append((sum(chunk_x) / len(chunk_x), line.bucket(values) if values else None))
    return out


class Frame:
    """Pixel geometry of one plot."""

    width, height = 1000, 230
    left, right, top, bottom = 64, 16, 22, 30

    def __init__(self, duration: float, y_max: float) -> None:
        self.duration = max(duration, 1.0)
        self.y_max = y_max

    def x(self, offset: float) -> float:
        inner = self.width - self.left - self.right
        return self.left + inner * min(max(offset, 0.0), self.duration) / self.duration

    def y(self, value: float) -> float:
        inner = self.height - self.top - self.bottom
        return self.top + inner * (1 - min(max(value, 0.0), self.y_max) / self.y_max)


def _fault_spans(events: Sequence[Event], start: float, end: float) -> list[tuple[str, float, float]]:
    """(fault name, start offset, end offset); a fault never reverted is shaded to the run's end."""
    spans = []
    for event in sorted(events, key=lambda e: e.time):
        if event.kind != "fault" or event.state != "start":
            continue
        ends = [e.time for e in events if e.kind == "fault" and e.name == event.name and e.state == "end"]
        until = min((t for t in ends if t >= event.time), default=end)
        spans.append((event.name, event.time - start, until - start))
    return spans


def _plot(
    key: str,
    title: str,
    axis: _Axis,
    lines: Sequence[_Line],
    events: Sequence[Event],
    fmt: Callable[[float], str],
    caption: str,
    y_floor: float,
) -> str:
    frame_max = max([y_floor, *(v for line in lines for v in line.values if v is not None)])
    step = _nice_step(frame_max)
    y_max = step * math.ceil(frame_max / step) if frame_max > 0 else y_floor
    frame = Frame(axis.duration, y_max)
    xs = [axis.offset(s) for s in axis.seconds]
    size = math.ceil(len(xs) / _MAX_POINTS) if xs else 1
    series, drawn = _series(frame, xs, lines, size)
    parts = [
        f'<svg class="plot" id="plot-{_e(key)}" role="img" aria-label="{_e(title)}" width="{frame.width}" '
        f'height="{frame.height}" viewBox="0 0 {frame.width} {frame.height}">',
        f"<title>{_e(title)}</title>",
        *_fault_rects(frame, axis, events),  # fault windows under everything else
        *_grid(frame, axis, step, fmt),
        *_markers(frame, axis, events),
        *series,
    ]
    if not drawn:
        middle = (frame.top + frame.height - frame.bottom) / 2
        parts.append(f'<text x="{frame.width / 2}" y="{middle}" text-anchor="middle">no data</text>')
    parts.append("</svg>")
    legend = "".join(f'<span><i style="background:{line.colour}"></i>{_e(line.label)}</span>' for line in lines) + (
        f'<span><i style="background:{_FAULT_FILL}"></i>fault window</span>' if _has(events, "fault") else ""
    )
    if size > 1:
        caption += f" Each point covers {size} seconds."
    return (
        f'<figure id="fig-{_e(key)}"><h3>{_e(title)}</h3>{"".join(parts)}'
        f'<div class="legend">{legend}</div><figcaption>{_e(caption)}</figcaption></figure>'
    )


def _fault_rects(frame: Frame, axis: _Axis, events: Sequence[Event]) -> list[str]:
    bottom, top = frame.height - frame.bottom, frame.top
    parts = []
    for name, begin, end in _fault_spans(events, axis.start, axis.start + axis.duration):
        x0, x1 = frame.x(begin), frame.x(end)
        parts.append(
            f'<rect class="fault" data-fault="{_e(name)}" x="{x0:.1f}" y="{top}" width="{max(x1 - x0, 1.0):.1f}" '
            f'height="{bottom - top}" fill="{_FAULT_FILL}" fill-opacity="0.55"><title>fault {_e(name)}: '
            f"+{begin:.1f}s to +{end:.1f}s</title></rect>"
            f'<text x="{x0 + 3:.1f}" y="{top + 11}">{_e(name)}</text>'
        )
    return parts


def _grid(frame: Frame, axis: _Axis, step: float, fmt: Callable[[float], str]) -> list[str]:
    """Horizontal grid lines with their values, the time ticks, and the x axis."""
    bottom = frame.height - frame.bottom
    parts = []
    tick = 0.0
    while tick <= frame.y_max + 1e-9:
        y = frame.y(tick)
        parts.append(
            f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e6e9ec"/>'
            f'<text x="{frame.left - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(fmt(tick))}</text>'
        )
        tick += step
    x_step = _nice_step(axis.duration, 8)
    x_step = max(x_step, 1.0)
    tick = 0.0
    while tick <= axis.duration + 1e-9:
        x = frame.x(tick)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{bottom}" y2="{bottom + 4}" stroke="#9aa3ab"/>'
            f'<text x="{x:.1f}" y="{bottom + 16}" text-anchor="middle">{_e(format_duration(round(tick, 1)))}</text>'
        )
        tick += x_step
    parts.append(
        f'<line x1="{frame.left}" x2="{frame.width - frame.right}" y1="{bottom}" y2="{bottom}" stroke="#9aa3ab"/>'
    )
    return parts


def _markers(frame: Frame, axis: _Axis, events: Sequence[Event]) -> list[str]:
    """Phase starts and aborts as dashed vertical lines with their names."""
    bottom, top = frame.height - frame.bottom, frame.top
    parts = []
    for event in events:
        if (event.kind, event.state) not in (("phase", "start"), ("abort", "start")):
            continue
        x = frame.x(event.time - axis.start)
        colour = _PHASE_COLOUR if event.kind == "phase" else _ABORT_COLOUR
        label = event.name if event.kind == "phase" else f"abort: {event.name}"
        parts.append(
            f'<line class="{event.kind}" data-{event.kind}="{_e(event.name)}" x1="{x:.1f}" x2="{x:.1f}" y1="{top}" '
            f'y2="{bottom}" stroke="{colour}" stroke-width="1" stroke-dasharray="4 3"><title>{_e(label)} at '
            f"+{event.time - axis.start:.1f}s</title></line>"
            f'<text x="{x + 3:.1f}" y="{bottom - 4}" fill="{colour}">{_e(label)}</text>'
        )
    return parts


def _series(frame: Frame, xs: Sequence[float], lines: Sequence[_Line], size: int) -> tuple[list[str], int]:
    """The lines (a gap splits a line in segments; a lone point is a dot), and how many were drawn."""
    parts = []
    drawn = 0
    for line in lines:
        segment: list[str] = []
        segments: list[list[str]] = []
        for x_offset, value in _buckets(xs, line, size):
            if value is None:
                if segment:
                    segments.append(segment)
                segment = []
                continue
            segment.append(f"{frame.x(x_offset):.1f},{frame.y(value):.1f}")
        if segment:
            segments.append(segment)
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        for points in segments:
            drawn += 1
            if len(points) == 1:
                cx, cy = points[0].split(",")
                parts.append(f'<circle cx="{cx}" cy="{cy}" r="2" fill="{line.colour}"/>')
            else:
                parts.append(
                    f'<polyline class="series" data-series="{_e(line.label)}" fill="none" stroke="{line.colour}" '
                    f'stroke-width="2" stroke-linejoin="round"{dash} points="{" ".join(points)}"/>'
                )
    return parts, drawn


def _has(events: Sequence[Event], kind: str) -> bool:
    return any(e.kind == kind for e in events)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values)


def plots(data: ReportData) -> str:
    if not data.seconds:
        return f'<p class="note">No per-second data: the run has no {schema.REQUESTS.name} points.</p>'
    first, last = data.seconds[0].second, data.seconds[-1].second
    start = data.started if data.started is not None else float(first)
    end = data.ended if data.ended is not None else float(last + 1)
    end = max(end, last + 1.0)
    by_second = {s.second: s for s in data.seconds}
    seconds = list(range(first, last + 1))
    axis = _Axis(start, end - start, seconds)
    rows = [by_second.get(s) for s in seconds]

    def values(get: Callable[[Second], float | None]) -> list[float | None]:
        return [get(r) if r is not None else None for r in rows]

    rate = _Line("requests/s", REQUESTS_COLOUR, values(lambda r: float(r.requests)), bucket=_mean)
    rate_lines = [rate]
    if any(r is not None and r.target_rate for r in rows):
        rate_lines.append(_Line("target rate", TARGET_COLOUR, values(lambda r: r.target_rate), True, _mean))
    latency = [
        _Line("p50", P50_COLOUR, values(lambda r: r.p50_ms)),
        _Line("p95", P95_COLOUR, values(lambda r: r.p95_ms)),
        _Line("p99", P99_COLOUR, values(lambda r: r.p99_ms)),
    ]
    errors = [_Line("error rate", ERRORS_COLOUR, values(lambda r: r.error_rate))]
    events = data.events
    return "".join(
        (
            _plot(
                "rps",
                "Requests per second",
                axis,
                rate_lines,
                events,
                lambda v: f"{v:g}",
                "Requests completed per second over all endpoints (failures included)"
                + ("; dashed: the open model's target arrival rate." if len(rate_lines) > 1 else "."),
                1.0,
            ),
            _plot("latency", "Latency (ms)", axis, latency, events, lambda v: f"{v:g}", LATENCY_CAPTION, 1.0),
            _plot(
                "errors",
                "Error rate",
                axis,
                errors,
                events,
                lambda v: f"{v * 100:g}%",
                "Failed requests / completed requests per second over all endpoints (no point: no request completed).",
                0.01,
            ),
        )
    )
