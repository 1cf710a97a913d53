"""The run dashboard's panel of the scenario's probes: the servers' own metrics, beside the client's.

Each probe is one line (``harness_probes``, grouped by its name), on the dashboard's time axis,
so the fault regions the dashboard draws over every panel fall on it too.
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.models import dashboard as model

from harness.results import schema
from harness.results.influxql import quote_identifier as _q
from harness.review.grafana.panels import InfluxQL, timeseries_panel

__all__ = ["PROBES_QUERY", "probes_panel"]

PROBES_QUERY = (
    f'SELECT last({_q(schema.VALUE)}) AS "value" FROM {_q(schema.PROBES.name)} WHERE {{run}} AND $timeFilter '
    f"GROUP BY time($__interval), {_q(schema.PROBE)} fill(none)"
)


def probes_panel(run: str, grid: model.GridPos) -> timeseries.Panel:
    """Every probe's values over the run (``run``: the InfluxQL filter on the run id)."""
    return timeseries_panel(
        "Probes (server-side metrics)",
        "The scenario's probes: each PromQL or InfluxQL query's value at every poll, in the query's own unit. "
        "A gap is a poll that failed or gave nothing (the run's events of kind probe say why).",
        "short",
        grid,
        InfluxQL("A", PROBES_QUERY.format(run=run), alias="$tag_probe"),
    )
