"""Third-party files the HTML report embeds: uPlot 1.6.32 (MIT), the charting library.

Why uPlot: the report must stay one file that works offline, so the library is inlined into
every report. uPlot's minified build is 51 KB (Chart.js is ~200 KB, ECharts ~1 MB, Plotly
~3.5 MB), it draws time series on a canvas fast enough for hour-long runs at one point per
second, and it has what a reviewer needs out of the box: log scales, a legend that shows the
values under the cursor, drag to zoom (double-click resets), and cursors synchronised across
charts. MIT licensed, no dependencies, maintained by Leon Sorokin (1.6.32 released
2025-05-11, checked with ``npm view uplot time``).

The files are ``dist/uPlot.iife.min.js``, ``dist/uPlot.min.css`` and ``LICENSE`` of the npm
package ``uplot@1.6.32`` (``npm pack uplot@1.6.32``), unchanged; setup.py ships ``*.js``,
``*.css`` and ``*.txt`` of every harness package. The report shows the licence text and
drops the script's first line, a banner comment with the project's URL, so that no URL appears
in a report (:func:`script` says so).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["UPLOT_VERSION", "licence", "script", "stylesheet"]

UPLOT_VERSION = "1.6.32"
_HERE = files(__name__)


@cache
def script() -> str:
    """uPlot's minified IIFE build (defines ``uPlot``), without its banner comment (a URL)."""
    text = _HERE.joinpath("uPlot.iife.min.js").read_text(encoding="utf-8")
    first, _, rest = text.partition("\n")
    body = rest if first.startswith("/*!") and first.endswith("*/") else text
    return f"/*! uPlot v{UPLOT_VERSION}, MIT licence (in the page) */\n{body.strip()}"


@cache
def stylesheet() -> str:
    """uPlot's stylesheet (legend and cursor)."""
    return _HERE.joinpath("uPlot.min.css").read_text(encoding="utf-8").strip()


@cache
def licence() -> str:
    """uPlot's licence text (MIT), shown in every report that embeds it."""
    return _HERE.joinpath("uPlot.LICENSE.txt").read_text(encoding="utf-8").strip()
