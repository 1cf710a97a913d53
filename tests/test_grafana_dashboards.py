"""The committed Grafana dashboards are what the code generates, and are complete.

Fast: no Grafana and no InfluxDB here (tests/test_grafana_queries.py runs every query).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from harness.review.grafana.dashboards import DATASOURCE_UID, build_all, render

ROOT = Path(__file__).resolve().parents[1]
DASHBOARDS = ROOT / "grafana" / "dashboards"
REGENERATE = "python -m harness.review.grafana.dashboards --write"


def _panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


def test_committed_json_is_what_the_code_generates() -> None:
    generated = build_all()
    committed = {p.name for p in DASHBOARDS.glob("*.json")}
    assert committed == set(generated), f"grafana/dashboards differs from build_all(): run `{REGENERATE}`"
    for name, model in generated.items():
        text = (DASHBOARDS / name).read_text()
        assert text == render(model), f"grafana/dashboards/{name} is stale: run `{REGENERATE}` and commit it"


@pytest.mark.parametrize("name", ["harness-run.json", "harness-compare.json"])
def test_every_panel_has_the_datasource_and_targets(name: str) -> None:
    model = build_all()[name]
    assert model["schemaVersion"] >= 36 and model["uid"] == name.removesuffix(".json")
    panels = [p for p in _panels(model) if p.get("type") != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"] == {"type": "influxdb", "uid": DATASOURCE_UID}, panel["title"]
        assert panel.get("description"), panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == DATASOURCE_UID
            assert target["rawQuery"] is True and target["query"].startswith("SELECT"), target
            assert target["resultFormat"] in ("time_series", "table")
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_run_dashboard_variables_and_annotations() -> None:
    model = build_all()["harness-run.json"]
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert set(variables) == {"run_id", "reports_url"}
    assert "harness_runs" in variables["run_id"]["query"] and variables["run_id"].get("hide", 0) == 0
    assert variables["reports_url"]["type"] == "textbox"
    annotations = {a["name"]: a for a in model["annotations"]["list"]}
    assert {"Faults", "Phases", "Aborts", "Heals"} <= set(annotations)
    faults = annotations["Faults"]["target"]
    assert faults["timeEndColumn"] == "timeEnd" and faults["textColumn"] == "text"
    assert "'fault'" in faults["query"]
    assert "'phase'" in annotations["Phases"]["target"]["query"]
    assert "'abort'" in annotations["Aborts"]["target"]["query"]
    assert "'heal'" in annotations["Heals"]["target"]["query"]
    for annotation in annotations.values():
        assert annotation["datasource"]["uid"] == DATASOURCE_UID and annotation["enable"]
    titles = {p["title"] for p in _panels(model)}
    assert {"Requests/s", "Error rate", "Generator health", "Endpoints", "SLOs"} <= titles


def test_run_dashboard_links_follow_a_run_and_reach_the_compare_dashboard_and_the_report() -> None:
    run = build_all()["harness-run.json"]
    panels = {p["title"]: p for p in _panels(run)}
    follow = panels["Running"]["fieldConfig"]["defaults"]["links"][0]["url"]
    assert "'running'" in panels["Running"]["targets"][0]["query"]
    assert follow == (
        "/d/harness-run/harness-run?var-run_id=${__data.fields.run_id}&from=${__data.fields.from_ms}&to=now&refresh=5s"
    )
    recent = panels["Recent runs"]["fieldConfig"]["defaults"]["links"][0]["url"]
    assert recent.endswith("&to=${__data.fields.to_ms}")
    # No panel overlaps another (the lists sit above everything else).
    cells = set()
    for panel in _panels(run):
        grid = panel["gridPos"]
        mine = {
            (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & mine, panel["title"]
        cells |= mine
    links = {link["title"]: link["url"] for link in run["links"]}
    assert links == {
        "Compare with another run": "/d/harness-compare/harness-compare?var-run_a=${run_id}",
        "Run report": "${reports_url}/${run_id}/report.html",
    }
    compare = {link["title"]: link["url"] for link in build_all()["harness-compare.json"]["links"]}
    assert (
        compare["Open run B"]
        == "/d/harness-run/harness-run?var-run_id=${run_b}&from=${run_b_start_ms}&to=${run_b_end_ms}"
    )


def test_compare_dashboard_overlays_two_runs_on_elapsed_seconds() -> None:
    model = build_all()["harness-compare.json"]
    variables = {v["name"] for v in model["templating"]["list"]}
    assert {"run_a", "run_b", "run_a_start_ms", "run_b_start_ms"} <= variables
    trends = [p for p in _panels(model) if p["type"] == "trend"]
    assert trends
    for panel in trends:
        assert panel["options"]["xField"] == "elapsed_s"
        assert panel["transformations"][0]["id"] == "joinByField"
        queries = [t["query"] for t in panel["targets"]]
        assert any("$run_a" in q for q in queries) and any("$run_b" in q for q in queries)


def test_provisioning_points_at_the_datasource_and_dashboards() -> None:
    datasources = yaml.safe_load((ROOT / "grafana/provisioning/datasources/harness.yaml").read_text())
    (source,) = datasources["datasources"]
    assert source["uid"] == DATASOURCE_UID and source["type"] == "influxdb"
    assert source["jsonData"]["version"] == "InfluxQL"
    # Secrets and addresses come from the environment, never from the file.
    assert source["url"].startswith("${") and source["jsonData"]["dbName"].startswith("${")
    assert "${HARNESS_INFLUX_TOKEN}" in source["secureJsonData"]["httpHeaderValue1"]
    providers = yaml.safe_load((ROOT / "grafana/provisioning/dashboards/harness.yaml").read_text())
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "grafana/docker-compose.yml").read_text())
    mounts = {m.split(":")[1]: m.split(":")[0] for m in compose["services"]["grafana"]["volumes"] if m.startswith(".")}
    assert mounts.get(provider["options"]["path"]) == "./dashboards"


def test_docker_compose_parses_and_mounts_only_paths_that_exist() -> None:
    compose = yaml.safe_load((ROOT / "grafana/docker-compose.yml").read_text())
    assert {"influxdb", "grafana"} <= set(compose["services"])
    assert compose["services"]["influxdb"]["image"].startswith("influxdb:1.8")
    named = set(compose.get("volumes") or {})
    host_paths = []
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source in named:
                continue
            host_paths.append(source)
            assert (ROOT / "grafana" / source).exists(), f"docker-compose.yml mounts {source}, missing in the repo"
    assert len(host_paths) == 3
    # Every dashboard file parses as JSON (what the file provider reads).
    for path in DASHBOARDS.glob("*.json"):
        assert json.loads(path.read_text())["uid"]
