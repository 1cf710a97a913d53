"""The Grafana SDK's edges: the panel, variable and annotation builders both dashboards use.

This is the only module that imports ``grafana_foundation_sdk`` builders directly (with
:mod:`.dashboards`). Every panel reads the datasource with uid ``harness-influxdb`` (provisioned by
``grafana/provisioning`` and by ``harness grafana push``) through raw InfluxQL targets.
"""

from __future__ import annotations

import json
from typing import Any

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import stat, table, timeseries, trend
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.cog.runtime import UnknownDataquery
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model

__all__ = [
    "DATASOURCE",
    "DATASOURCE_UID",
    "InfluxAnnotationTarget",
    "InfluxQL",
    "annotation",
    "legend",
    "link",
    "pos",
    "query_variable",
    "stat_panel",
    "table_panel",
    "timeseries_panel",
    "to_json",
    "trend_panel",
]

DATASOURCE_UID = "harness-influxdb"
DATASOURCE = model.DataSourceRef(type_val="influxdb", uid=DATASOURCE_UID)


class InfluxQL(cogbuilder.Builder[cogvariants.Dataquery]):
    """A raw InfluxQL target as Grafana's influxdb datasource stores it.

    The SDK has no typed InfluxDB query, so this builds the SDK's own escape hatch for query
    types it does not know (``UnknownDataquery``).
    """

    def __init__(self, ref_id: str, query: str, result_format: str = "time_series", alias: str = "") -> None:
        self._data: dict[str, Any] = {
            "datasource": {"type": "influxdb", "uid": DATASOURCE_UID},
            "query": query,
            "rawQuery": True,
            "refId": ref_id,
            "resultFormat": result_format,
        }
        if alias:
            self._data["alias"] = alias

    def build(self) -> cogvariants.Dataquery:
        return UnknownDataquery(dict(self._data))


class _InfluxAnnotationTarget(model.AnnotationTarget):
    """The SDK types an annotation target after the built-in Grafana datasource; InfluxQL
    annotations carry a raw query and the names of the columns Grafana maps."""

    def __init__(self, data: dict[str, Any]) -> None:
        super().__init__()
        self.data = data

    def to_json(self) -> dict[str, object]:
        return dict(self.data)


class InfluxAnnotationTarget(cogbuilder.Builder[model.AnnotationTarget]):
    """``text_column``/``tags_column``/``time_end_column`` name columns of the query's rows;
    a ``time_end_column`` (epoch ms) makes every row a region from ``time`` to it."""

    def __init__(self, query: str, text_column: str = "text", tags_column: str = "", time_end_column: str = "") -> None:
        self._data: dict[str, Any] = {
            "fromAnnotations": True,
            "query": query,
            "rawQuery": True,
            "refId": "Anno",
            "resultFormat": "table",
            "tagsColumn": tags_column,
            "textColumn": text_column,
            "textEditor": True,
            "timeEndColumn": time_end_column,
            "titleColumn": "",
        }

    def build(self) -> model.AnnotationTarget:
        return _InfluxAnnotationTarget(dict(self._data))


def annotation(name: str, color: str, target: InfluxAnnotationTarget) -> dash.AnnotationQuery:
    return dash.AnnotationQuery().name(name).datasource(DATASOURCE).enable(True).icon_color(color).target(target)


def query_variable(name: str, label: str, query: str, hidden: bool = False) -> dash.QueryVariable:
    variable = (
        dash.QueryVariable(name)
        .label(label)
        .query(query)
        .datasource(DATASOURCE)
        .refresh(model.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(model.VariableSort.DISABLED)
    )
    if hidden:
        variable = variable.hide(model.VariableHide.HIDE_VARIABLE)
    return variable


def legend() -> common_builders.VizLegendOptions:
    return (
        common_builders.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.TABLE)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
        .calcs(["mean", "max"])
    )


def pos(x: int, y: int, w: int, h: int) -> model.GridPos:
    return model.GridPos(h=h, w=w, x=x, y=y)


def timeseries_panel(
    title: str, description: str, unit: str, grid: model.GridPos, *targets: InfluxQL
) -> timeseries.Panel:
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .interval("1s")  # one point per second is what harness writes; never finer
        .grid_pos(grid)
        .line_width(1)
        .fill_opacity(10)
        .legend(legend())
    )
    for target in targets:
        panel = panel.with_target(target)
    return panel


def link(title: str, url: str, tooltip: str = "") -> dash.DashboardLink:
    """A link (dashboard link or a table's data link) to ``url``, which Grafana interpolates."""
    return dash.DashboardLink(title).type(model.DashboardLinkType.LINK).url(url).tooltip(tooltip or title)


def table_panel(
    title: str, description: str, grid: model.GridPos, target: InfluxQL, links: list[dash.DashboardLink] | None = None
) -> table.Panel:
    panel = table.Panel()
    if links:  # on every cell: ${__data.fields.<column>} is the clicked row's value
        panel = panel.data_links(list(links))
    return (
        panel.title(title)
        .description(description)
        .datasource(DATASOURCE)
        .grid_pos(grid)
        .with_target(target)
        # The per-series time column of a table result is the start of the range: noise here.
        .with_transformation(model.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}}))
    )


def stat_panel(title: str, description: str, unit: str, grid: model.GridPos, target: InfluxQL) -> stat.Panel:
    reduce = common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False)
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .grid_pos(grid)
        .reduce_options(reduce)
        .with_target(target)
    )


def to_json(builder: dash.Dashboard) -> dict[str, Any]:
    model_json: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return model_json


def trend_panel(title: str, description: str, unit: str, grid: model.GridPos, a: InfluxQL, b: InfluxQL) -> trend.Panel:
    return (
        trend.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .grid_pos(grid)
        .x_field("elapsed_s")
        .legend(legend())
        .with_target(a)
        .with_target(b)
        # A trend panel plots one frame: join run A and run B on their elapsed seconds.
        .with_transformation(
            model.DataTransformerConfig(id_val="joinByField", options={"byField": "elapsed_s", "mode": "outer"})
        )
        .with_transformation(model.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}}))
    )
