"""harness.results.schema is the one owner of the InfluxDB names.

* No module of ``harness/`` other than the schema writes a measurement name as a literal.
* Every point harness writes carries only the tags and fields its measurement declares.
* Every Grafana dashboard query reads only names the schema declares (or its own aliases).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.judge.slo import SloResult, SloStatus
from harness.judge.summary import HealEntry
from harness.judge.verdict import stats_dict
from harness.measure.windows import ClosedSecond, EndpointStats, ProcessHealth, new_histogram
from harness.results import schema
from harness.results.lineproto import Point
from harness.results.points import (
    endpoint_points,
    event_point,
    failure_points,
    fault_end_point,
    heal_points,
    load_point,
    probe_point,
    request_points,
    run_point,
    running_point,
    slo_points,
    totals_point,
    window_points,
)
from harness.review.grafana.dashboards import build_all

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_MODULE = ROOT / "harness" / "results" / "schema.py"
NAMES = {m.name for m in schema.MEASUREMENTS}


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are docstrings (they may name measurements: prose)."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                found.add(id(body[0].value))
    return found


def _literal_names(path: Path, root: Path = ROOT) -> Iterator[str]:
    """``file:line: name in text`` for each string (not a docstring) that holds a measurement name."""
    tree = ast.parse(path.read_text(), str(path))
    docstrings = _docstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings:
            for name in sorted(NAMES):
                if re.search(rf"\b{name}\b", node.value):
                    yield f"{path.relative_to(root)}:{node.lineno}: {name!r} in {node.value[:60]!r}"


def test_measurement_names_are_written_only_in_the_schema() -> None:
    modules = [path for path in sorted((ROOT / "harness").rglob("*.py")) if path != SCHEMA_MODULE]
    found = [hit for path in modules for hit in _literal_names(path)]
    assert not found, "use harness.results.schema instead of:\n" + "\n".join(found)


def test_the_literal_check_finds_a_measurement_name(tmp_path: Path) -> None:
    module = tmp_path / "stray.py"
    module.write_text('"""Reads harness_requests (prose is fine)."""\nQ = "SELECT * FROM harness_requests"\n')
    hits = list(_literal_names(module, tmp_path))
    assert hits == ["stray.py:2: 'harness_requests' in 'SELECT * FROM harness_requests'"]


# ---------------------------------------------------------------- what is written


def _every_kind_of_point() -> list[Point]:
    closed = EndpointStats()
    closed.record(12_000, 100, None)
    open_model = EndpointStats(service=new_histogram())
    open_model.record(30_000, 50, "http_503")
    assert open_model.service is not None
    open_model.service.record_value(2_000)
    second = ClosedSecond(
        1_800_000_000,
        {("GET", "/a"): closed, ("POST", "/b"): open_model},
        [ProcessHealth("g0.0", 0.5, 2.0, 10, 5.0)],
    )
    slo = SloResult("fast", "p99 < 1s", "run", "all", "p99", 12.0, 1000.0, True, 2, 1, "met", SloStatus.MET)
    return [
        *request_points("r", "shop", second, [("GET", "/a"), ("POST", "/b"), ("GET", "/idle")]),
        load_point("r", "shop", second, 1, False),
        totals_point("r", "shop", second.second, second.total()),
        *failure_points("r", "shop", second),
        *window_points(
            "r",
            {
                "run": {
                    "requests": 2,
                    "failures": 1,
                    "error_rate": 0.5,
                    "rps": 2.0,
                    "seconds": 1,
                    **{f"{k}_ms": 1.0 for k in schema.LATENCY_FIELDS},
                }
            },
            1.0,
        ),
        # an endpoint's row of summary.json, as the run ledger makes it
        *endpoint_points("r", [{"method": "GET", "name": "/a", **stats_dict(closed, 1)}], 1.0),
        event_point("r", schema.EventKind.FAULT, "slow", schema.EventState.START, "t", 1.0, 10.0, 3.0, until=4.0),
        fault_end_point("r", "slow", 1.0, 3.5),
        *slo_points("r", [slo], 2.0),
        probe_point("r", "shop", "inflight", 1.5, 3.0),
        *heal_points("r", [HealEntry("kill", "a process matching 'x' runs", "kill", 1.0, 3.1, 2.1, 14, "")], 2.0),
        running_point("r", "shop", 1.0, 3.0),
        run_point("r", "shop", "passed", 1.0, 2.0, "ok", 3.0),
    ]


def test_every_point_carries_only_the_names_its_measurement_declares() -> None:
    points = _every_kind_of_point()
    by_name = {m.name: m for m in schema.MEASUREMENTS}
    assert {p.measurement for p in points} == set(by_name)
    for point in points:
        measurement = by_name[point.measurement]
        assert set(point.tags) <= set(measurement.tags), point
        assert schema.RUN_ID in point.tags, point
        assert set(point.fields) <= set(measurement.fields), point
    written = {(p.measurement, f) for p in points for f in p.fields}
    declared = {(m.name, f) for m in schema.MEASUREMENTS for f in m.fields}
    assert declared == written, "declared in the schema but never written: " + str(sorted(declared - written))


# ---------------------------------------------------------------- what the dashboards read

_IDENTIFIER = re.compile(r'"((?:[^"\\]|\\.)*)"')
_ALIAS = re.compile(r'\bAS\s+"((?:[^"\\]|\\.)*)"')


def _queries(node: Any) -> Iterator[str]:
    """Every InfluxQL text in a dashboard model: targets, annotations and variables."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "query" and isinstance(value, str):
                yield value
            else:
                yield from _queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from _queries(item)


def _unknown_identifiers(query: str) -> set[str]:
    known = NAMES | {n for m in schema.MEASUREMENTS for n in (*m.tags, *m.fields)}
    aliases = set(_ALIAS.findall(query))
    return set(_IDENTIFIER.findall(query)) - known - aliases


def test_dashboard_queries_read_only_schema_names() -> None:
    queries = [q for model in build_all().values() for q in _queries(model)]
    assert len(queries) > 20
    unknown = {q: names for q in queries if (names := _unknown_identifiers(q))}
    assert not unknown, unknown
    read = {name for q in queries for name in _IDENTIFIER.findall(q)}
    assert read >= NAMES, "every measurement has a panel"


def test_the_dashboard_check_finds_a_name_outside_the_schema() -> None:
    assert _unknown_identifiers('SELECT max("p99") AS "x", last("x") FROM "harness_requests"') == set()
    assert _unknown_identifiers('SELECT max("latency_p99") FROM "harness_requests"') == {"latency_p99"}
    assert _unknown_identifiers('SELECT "count" FROM "harness_request"') == {"harness_request"}
