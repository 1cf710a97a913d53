"""InfluxQL text: quoting, the run filter, time ranges, and what a reader of InfluxDB needs.

Every statement harness sends (reports, the baseline, ``grafana link``, the dashboards, the
writer's ``CREATE DATABASE``) quotes through these helpers, so a run id or a database name with
a quote or a backslash in it can never change a statement's meaning. :class:`Query` is the one
shape of "something that answers InfluxQL": :class:`harness.results.query.InfluxQuery`, or a
test's stand-in.
"""

from __future__ import annotations

from typing import Any, Protocol

from harness.results.schema import RUN_ID

__all__ = ["Query", "quote_identifier", "quote_string", "run_filter", "time_range_ms"]


class Query(Protocol):
    """Runs one InfluxQL statement: rows as dicts keyed by column and GROUP BY tag.

    ``time`` is an int of nanoseconds (``InfluxQuery.query``'s default epoch). Raises
    :class:`harness.errors.ResultsError` when InfluxDB cannot be asked.
    """

    def query(self, q: str) -> list[dict[str, Any]]: ...


def quote_identifier(name: str) -> str:
    """A double-quoted identifier (measurement, tag, field, database): any name is safe."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def quote_string(text: str) -> str:
    """A single-quoted string literal (a tag value)."""
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_filter(run_id: str) -> str:
    """``"run_id" = '<run_id>'``: the condition that picks one run's points (every point has the tag).

    A Grafana variable such as ``$run_id`` goes in as it is: Grafana replaces it inside the quotes.
    """
    return f"{quote_identifier(RUN_ID)} = {quote_string(run_id)}"


def time_range_ms(start: str, end: str) -> str:
    """``time >= <start>ms AND time <= <end>ms`` for epoch milliseconds (numbers or Grafana variables)."""
    return f"time >= {start}ms AND time <= {end}ms"
