"""``harness grafana link``: the URL of the run dashboard, opened on one run and its time range.

``run_dashboard_url`` is pure. ``run_times`` finds a run's start and end: in
``runs/<run_id>/summary.json`` first (a finished run), else in the run's own ``results.lp``
(its ``harness_runs`` row, written as ``running`` when the load clock starts), else in
InfluxDB's ``harness_runs``. A run still going is opened from its start to now, refreshing.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, ResultsError
from harness.results import schema
from harness.results.influxql import Query, quote_identifier, run_filter
from harness.results.lineproto import parse

__all__ = ["DEFAULT_URL", "MARGIN_S", "RUN_DASHBOARD_SLUG", "RUN_DASHBOARD_UID", "run_dashboard_url", "run_times"]

DEFAULT_URL = "http://127.0.0.1:3000"
RUN_DASHBOARD_UID = "harness-run"
RUN_DASHBOARD_SLUG = "harness-run"
MARGIN_S = 10.0  # shown on each side of the run, so its first and last seconds are not at the edge
LIVE_REFRESH = "5s"  # how often Grafana refreshes the dashboard of a run still going


def run_dashboard_url(base_url: str, run_id: str, started: float, ended: float | None) -> str:
    """``<base_url>/d/harness-run/harness-run?var-run_id=<id>&from=<ms>&to=<ms>``.

    ``started`` and ``ended`` are epoch seconds; the range is widened by MARGIN_S on each side
    and rounded outwards to whole milliseconds. ``ended`` None is a run still going: the range
    is from its start to ``now``, refreshed every LIVE_REFRESH. The run id is percent-encoded
    (``+``, ``&``, ``#`` and spaces included), so Grafana receives it unchanged.
    """
    start_ms = math.floor((started - MARGIN_S) * 1000)
    params: dict[str, str | int] = {"var-run_id": run_id, "from": start_ms}
    if ended is None:
        params.update({"to": "now", "refresh": LIVE_REFRESH})
    else:
        params["to"] = math.ceil((ended + MARGIN_S) * 1000)
    query = urllib.parse.urlencode(params, quote_via=urllib.parse.quote, safe="")
    return f"{base_url.rstrip('/')}/d/{RUN_DASHBOARD_UID}/{RUN_DASHBOARD_SLUG}?{query}"


def run_times(run_id: str, runs_dir: Path, query: Query | None) -> tuple[float, float | None]:
    """(started, ended) in epoch seconds of ``run_id``; ended is None while the run is going.

    Looks in ``runs_dir/<run_id>/summary.json``, then in the run's own ``results.lp``, then
    (when ``query`` is given) in InfluxDB's ``harness_runs``. Raises ConfigError (exit 2)
    naming the run when none knows it, including when InfluxDB could not be asked.
    """
    if not run_id or "/" in run_id or run_id in (".", ".."):
        raise ConfigError(f"run {run_id!r}: not a run id")
    summary = runs_dir / run_id / "summary.json"
    if summary.is_file():
        return _from_summary(run_id, summary)
    rows = _rows_from_record(runs_dir / run_id / "results.lp")
    if not rows and query is None:
        raise ConfigError(f"run {run_id}: unknown (no {summary})")
    if not rows:
        try:
            columns = ", ".join(quote_identifier(c) for c in (schema.STARTED, schema.ENDED, schema.VERDICT))
            rows = query.query(f"SELECT {columns} FROM {schema.RUNS.name} WHERE {run_filter(run_id)}") if query else []
        except ResultsError as exc:
            raise ConfigError(f"run {run_id}: unknown (no {summary}, and InfluxDB could not be asked: {exc})") from None
    for row in rows:
        started, ended = _number(row.get(schema.STARTED)), _number(row.get(schema.ENDED))
        if started is not None and ended is not None:
            return started, None if row.get(schema.VERDICT) == schema.RUNNING else ended
    raise ConfigError(f"run {run_id}: unknown (no {summary}, and not in InfluxDB's {schema.RUNS.name})")


def _rows_from_record(path: Path) -> list[dict[str, Any]]:
    """The run's harness_runs row from its own results.lp (the last write wins, as in InfluxDB)."""
    prefix = schema.RUNS.name + ","
    try:
        with path.open(encoding="utf-8", errors="replace") as lines:
            mine = "".join(line for line in lines if line.startswith(prefix) and line.endswith("\n"))
        rows = [dict(p.fields) for p in parse(mine)]
    except (OSError, ValueError):
        return []
    return rows[-1:]


def _from_summary(run_id: str, path: Path) -> tuple[float, float]:
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"run {run_id}: {path} is not readable JSON: {exc}") from None
    started = _number(document.get("started")) if isinstance(document, dict) else None
    ended = _number(document.get("ended")) if isinstance(document, dict) else None
    if started is None or ended is None:
        raise ConfigError(f"run {run_id}: {path} has no numeric 'started' and 'ended'")
    return started, ended


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None
