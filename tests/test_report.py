"""The HTML report: rendered from run directories written with the project's own encoders.

A synthetic 30 s run (phases ramp and steady, a fault from +15 s to +20 s with 2 s of recovery
left out of steady, failures of two kinds during it, one endpoint whose name is an HTML injection
attempt, a scenario named like one) is written as a real run leaves it: results.lp from
harness.results.points through harness.results.lineproto, summary.json and scenario.yaml. The
report must show its verdict, SLO, endpoint (with the all-endpoints row), failure-kind and
window rows, give its charts the fault, phases, SLO windows and the recovery where they were,
escape every hostile string, and reference nothing outside the file. ``harness report`` is run
as a user runs it. What the charts look like in a browser: tests/test_report_browser.py.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from harness.judge.slo import SloResult, SloStatus
from harness.measure.windows import ClosedSecond, EndpointStats, ProcessHealth
from harness.results.lineproto import Point, encode_many, parse
from harness.results.points import (
    event_point,
    failure_points,
    load_point,
    request_points,
    run_point,
    slo_points,
)
from harness.review import vendor
from harness.review.plots import chart_data, data_json
from harness.review.report import csp, render
from harness.review.report_data import RunNotFound, from_influx, from_run_dir, mixture_quantiles, write_report

T0 = 1_800_000_000
STARTED = T0 + 0.3
DURATION = 30.0
FAULT = (15.0, 20.0)
HOSTILE_SCENARIO = "shop <script>alert('scenario')</script>"
HOSTILE_ENDPOINT = '/api/<script>alert("endpoint")</script>'
PRODUCTS = ("GET", "/api/products")
CHECKOUT = ("POST", HOSTILE_ENDPOINT)
ENDPOINTS = [PRODUCTS, CHECKOUT]

SCENARIO_YAML = f"""\
# the scenario as run; </pre><script>alert('yaml')</script>
name: "{HOSTILE_SCENARIO}"
target:
  base_url: http://127.0.0.1:8700
slos:
  - {{name: fast, objective: p99 < 500ms, window: steady}}
  - {{name: checkout-errors, objective: error_rate < 1%, endpoint: '{HOSTILE_ENDPOINT}'}}
  - {{name: throughput, objective: rps >= 50, window: phase:ramp}}
  - {{name: recovered, objective: recovery_time < 10s, window: "after:kill-payments"}}
faults:
  - {{name: kill-payments, kind: process.kill, at: 15s, duration: 5s, recovery: 2s}}
guards:
  - {{name: meltdown, condition: error_rate > 50% for 5s}}
"""


def _stats(count: int, failures: int, low_ms: float, high_ms: float) -> EndpointStats:
    """``count`` requests spread evenly from low_ms to high_ms, the first ``failures`` failed."""
    stats = EndpointStats()
    for i in range(count):
        latency_ms = low_ms + (high_ms - low_ms) * i / max(count - 1, 1)
        failure = None if i >= failures else "http_503" if i % 2 == 0 else "ConnectionRefusedError"
        stats.record(int(latency_ms * 1000), 100, failure)
    return stats


def _second(second: int) -> ClosedSecond:
    offset = second - T0
    in_fault = FAULT[0] <= offset < FAULT[1]
    slow = 3.0 if in_fault else 1.0
    endpoints = {
        PRODUCTS: _stats(20, 0, 5.0 * slow, 30.0 * slow),
        CHECKOUT: _stats(5, 3 if in_fault else 0, 40.0 * slow, 60.0 * slow),
    }
    health = [ProcessHealth("g0.0", 0.2, 1.0, 25, 0.0)]
    return ClosedSecond(second, endpoints, health)


SLOS = [
    SloResult("fast", "p99 < 500ms", "steady", "all", "p99", 190.0, 500.0, True, 400, 20, "p99 met", SloStatus.MET),
    SloResult(
        "checkout-errors",
        "error_rate < 1%",
        "run",
        HOSTILE_ENDPOINT,
        "error_rate",
        0.1,
        0.01,
        False,
        150,
        30,
        "error_rate 10% breached",
        SloStatus.BREACHED,
    ),
    SloResult(
        "throughput",
        "rps >= 50",
        "phase:ramp",
        "all",
        "rps",
        float("nan"),
        50.0,
        False,
        0,
        0,
        "no data",
        SloStatus.NO_DATA,
    ),
    SloResult(
        "recovered",
        "recovery_time < 10s",
        "after:kill-payments",
        "all",
        "recovery_time",
        2.0,
        10.0,
        True,
        250,
        10,
        "recovery_time 2.0s after kill-payments",
        SloStatus.MET,
    ),
]


def _points(run_id: str, scenario: str) -> Iterator[Point]:
    ended = STARTED + DURATION
    yield event_point(run_id, "run", scenario, "start", f"run {run_id} started", STARTED)
    for name, begin, end in (("ramp", 0.0, 10.0), ("steady", 10.0, DURATION)):
        yield event_point(run_id, "phase", name, "start", f"phase {name} started", STARTED + begin)
        yield event_point(run_id, "phase", name, "end", f"phase {name} ended", STARTED + end)
    yield event_point(run_id, "fault", "kill-payments", "start", "payments <b>killed</b>", STARTED + FAULT[0], 15.0)
    yield event_point(run_id, "fault", "kill-payments", "end", "fault kill-payments reverted", STARTED + FAULT[1])
    for second in range(T0, T0 + int(DURATION) + 1):
        closed = _second(second)
        yield from request_points(run_id, scenario, closed, ENDPOINTS)
        yield from failure_points(run_id, scenario, closed)
        yield load_point(run_id, scenario, closed, 1, False)
    yield event_point(run_id, "run", scenario, "end", f"run {run_id} ended", ended)
    yield from slo_points(run_id, SLOS, ended + 0.5)
    yield run_point(run_id, scenario, "failed", STARTED, ended + 0.5, "SLO failed: checkout-errors, throughput")


def _summary(run_id: str, scenario: str, lp: str) -> dict[str, Any]:
    events = [
        {"time": t / 1e9, "kind": tags["kind"], "name": tags["name"], "state": f["state"], "text": f["text"]}
        for m, tags, f, t in parse(lp)
        if m == "harness_events"
    ]
    endpoint_rows = []
    for method, name in ENDPOINTS:
        merged = EndpointStats()
        for second in range(T0, T0 + int(DURATION) + 1):
            merged.merge(_second(second).endpoints[(method, name)])
        latency = merged.latency_ms()
        endpoint_rows.append(
            {
                "method": method,
                "name": name,
                "requests": merged.count,
                "failures": merged.failed,
                "error_rate": merged.error_rate,
                "rps": merged.count / 31,
                "failure_kinds": dict(merged.failures),
                **{f"{k}_ms": round(v, 3) for k, v in latency.items()},
            }
        )
    requests = sum(r["requests"] for r in endpoint_rows)
    failures = sum(r["failures"] for r in endpoint_rows)
    return {
        "run_id": run_id,
        "scenario": scenario,
        "verdict": "failed",
        "exit_code": 1,
        "reason": "SLO failed: checkout-errors, throughput",
        "started": STARTED,
        "ended": STARTED + DURATION + 0.5,
        "planned_duration_s": DURATION,
        "totals": {"requests": requests, "failures": failures, "rps": requests / 31, "p50_ms": 20.1, "p95_ms": 55.2}
        | {"p90_ms": 44.4, "p99_ms": 170.3, "p999_ms": 179.9, "max_ms": 180.0, "mean_ms": 28.6},
        "windows": {
            "run": {"requests": requests, "failures": failures, "rps": requests / 31, "p99_ms": 170.3},
            "steady": {"requests": 500, "failures": 0, "rps": 25.0, "p90_ms": 40.1, "p99_ms": 58.2},
        },
        "endpoints": endpoint_rows,
        "slos": [r.to_dict() for r in SLOS],
        "guard": None,
        "baseline": {
            "ref": "last-pass",
            "run_id": "before-1",
            "passed": False,
            "comparisons": [
                {"phase": "steady", "endpoint": "GET /api/products", "metric": "p99", "regressed": True}
                | {"message": "p99 of GET /api/products in phase steady rose 30.0 ms -> 90.0 ms (+200%)"},
                {"phase": "steady", "endpoint": "all", "metric": "rps", "regressed": False}
                | {"message": "rps of all endpoints in phase steady unchanged"},
            ],
        },
        "events": events,
    }


def write_run(runs: Path, run_id: str, scenario: str = HOSTILE_SCENARIO, summary: bool = True) -> Path:
    folder = runs / run_id
    folder.mkdir(parents=True)
    lp = "\n".join(encode_many(_points(run_id, scenario))) + "\n"
    (folder / "results.lp").write_text(lp, encoding="utf-8")
    if summary:
        (folder / "summary.json").write_text(json.dumps(_summary(run_id, scenario, lp)), encoding="utf-8")
    (folder / "scenario.yaml").write_text(SCENARIO_YAML, encoding="utf-8")
    return folder


# ---------------------------------------------------------------- reading the page back


class Page(HTMLParser):
    """The parts of a report a reader sees: tables by class, elements and their attributes, text."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str]]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.style = ""
        self.scripts: list[tuple[dict[str, str], str]] = []  # (attributes, text) of each <script>
        self.text: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None
        self._row: list[str] | None = None
        self._stack: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.elements.append((tag, attributes))
        self._stack.append(tag)
        if tag == "script":
            self.scripts.append((attributes, ""))
        if tag == "table":
            self._table = attributes.get("class", "")
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        if self._stack and self._stack[-1] == tag:
            self._stack.pop()
        if tag in ("td", "th") and self._cell is not None and self._row is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None and self._table is not None:
            self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._stack and self._stack[-1] == "style":
            self.style += data
        if self._stack and self._stack[-1] == "script":
            attributes, text = self.scripts[-1]
            self.scripts[-1] = (attributes, text + data)
            return  # code and data, not text a reader sees
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def rows(self, table: str) -> list[list[str]]:
        return self.tables[table][1:]  # without the header

    def chart_data(self) -> Any:
        """The JSON the charts draw, as the page carries it."""
        (text,) = [text for attributes, text in self.scripts if attributes.get("type") == "application/json"]
        return json.loads(text)


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    return write_run(tmp_path / "runs", "r1")


# ---------------------------------------------------------------- the report's content


def test_report_shows_verdict_slos_guards_baseline_and_endpoints(run_dir: Path) -> None:
    page_text = render(from_run_dir(run_dir))
    page = Page(page_text)
    text = " ".join(page.text)
    assert "FAILED" in text and "SLO failed: checkout-errors, throughput" in text
    assert f"{HOSTILE_SCENARIO}: r1" in text  # the heading, shown as text
    assert page.rows("slos") == [
        ["fast", "p99 < 500ms", "steady", "all", "190.0ms", "500.0ms", "pass"],
        ["checkout-errors", "error_rate < 1%", "run", HOSTILE_ENDPOINT, "10%", "1%", "FAIL"],
        ["throughput", "rps >= 50", "phase:ramp", "all", "no data", "50.0/s", "FAIL (no data)"],
        ["recovered", "recovery_time < 10s", "after:kill-payments", "all", "2s", "10s", "pass"],
    ]
    assert page.rows("guards") == [["meltdown", "error_rate > 50% for 5s", "held", ""]]
    assert page.rows("regressions") == [
        [
            "steady",
            "GET /api/products",
            "p99",
            "REGRESSED",
            "p99 of GET /api/products in phase steady rose 30.0 ms -> 90.0 ms (+200%)",
        ]
    ]
    assert "Compared with run before-1 (--baseline last-pass): 2 comparisons, 1 regression." in text
    endpoints = page.rows("endpoints")
    assert page.tables["endpoints"][0] == [
        "endpoint",
        *("requests", "failures", "error rate", "req/s", "avg ms", "p50 ms", "p90 ms", "p95 ms", "p99 ms"),
        *("p99.9 ms", "max ms"),
    ]
    assert [row[0] for row in endpoints] == ["GET /api/products", f"POST {HOSTILE_ENDPOINT}", "all endpoints"]
    assert endpoints[0][1:5] == ["620", "0", "0.00%", "20.0"]
    assert endpoints[1][1:4] == ["155", "15", "9.68%"]  # 5 faulted seconds x 3 failures
    products = _summary("r1", HOSTILE_SCENARIO, (run_dir / "results.lp").read_text())["endpoints"][0]
    assert endpoints[0][5:] == [
        f"{products[f'{k}_ms']:,.1f}" for k in ("mean", "p50", "p90", "p95", "p99", "p999", "max")
    ]
    # The all-endpoints row is the run's own figures (summary.json's totals), not a sum of the rows.
    assert endpoints[2][1:] == ["775", "15", "1.94%", "25.0", "28.6", "20.1", "44.4", "55.2", "170.3", "179.9", "180.0"]
    assert "Percentiles over the whole run, from the run's merged latency histograms." in text
    assert "avg 28.6 · p50 20.1 · p90 44.4 · p95 55.2 · p99 170.3 · p99.9 179.9 · max 180.0" in text
    assert page.rows("failures") == [
        [f"POST {HOSTILE_ENDPOINT}", "http_503", "10", "66.7%"],
        [f"POST {HOSTILE_ENDPOINT}", "ConnectionRefusedError", "5", "33.3%"],
    ]
    windows = page.rows("windows")
    assert [(w[0], w[1], w[9]) for w in windows] == [("run", "775", "170.3"), ("steady", "500", "58.2")]
    seconds = page.rows("seconds")
    assert len(seconds) == 31 and seconds[16][:4] == ["+15.7s", "25", "3", "12.00%"]
    assert seconds[16][-1] == "ConnectionRefusedError 1, http_503 2" and seconds[5][-1] == ""
    timeline = page.rows("events")
    assert ["+15.000s", "fault", "kill-payments", "start", "payments <b>killed</b>"] in timeline
    pre = re.search(r"<pre>(.*?)</pre>", page_text, re.S)
    assert pre is not None and "&lt;/pre&gt;&lt;script&gt;" in pre.group(1)
    assert "".join(page.text).count("name: \"shop <script>alert('scenario')</script>\"") == 1


def test_example_traces_are_listed_per_endpoint(run_dir: Path) -> None:
    assert "Example traces" not in render(from_run_dir(run_dir))  # a run without trace context: no section
    summary = json.loads((run_dir / "summary.json").read_text())
    slow = {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "latency_ms": 812.5, "second": int(STARTED) + 12}
    failed = {"trace_id": "0af7651916cd43dd8448eb211c80319c", "latency_ms": 2.0, "second": int(STARTED) + 3}
    summary["trace_examples"] = [
        {"method": "POST", "name": HOSTILE_ENDPOINT, "slowest": [slow], "failed": [failed | {"failure": "http_503"}]}
    ]
    (run_dir / "summary.json").write_text(json.dumps(summary))
    page = Page(render(from_run_dir(run_dir)))
    assert page.rows("traces") == [
        [f"POST {HOSTILE_ENDPOINT}", "slowest", slow["trace_id"], "812.5", "12", "\u2013"],
        [f"POST {HOSTILE_ENDPOINT}", "failed", failed["trace_id"], "2.0", "3", "http_503"],
    ]


def test_the_charts_get_the_fault_phases_slo_windows_and_recovery_where_they_were(run_dir: Path) -> None:
    data = from_run_dir(run_dir)
    chart = chart_data(data)
    assert chart is not None
    assert Page(render(data)).chart_data() == chart  # the page carries exactly these
    assert chart["end"] == 30.5  # summary.json's ended - started
    assert chart["t"] == [pytest.approx(s + 0.5 - 0.3) for s in range(31)]  # midpoints, since the start
    assert chart["faults"] == [{"from": 15.0, "to": 20.0, "text": "kill-payments"}]
    phases = [(m["at"], m["text"]) for m in chart["markers"] if m["kind"] == "phase"]
    assert phases == [(0.0, "ramp"), (10.0, "steady")]
    lanes = {lane["label"]: lane for lane in chart["lanes"]}
    slo_lanes = ["SLO fast", "SLO checkout-errors", "SLO throughput", "SLO recovered"]
    assert list(lanes) == ["phases", "fault kill-payments", *slo_lanes]

    def spans(label: str) -> list[tuple[float, float]]:
        return [(span["from"], span["to"]) for span in lanes[label]["spans"]]

    assert spans("phases") == [(0.0, 10.0), (10.0, 30.0)]
    # steady is the run (planned: 30 s) without the fault and its 2 s of recovery (the plan's rule)
    assert spans("SLO fast") == [(0.0, 15.0), (22.0, 30.0)] and lanes["SLO fast"]["kind"] == "pass"
    assert spans("SLO checkout-errors") == [(0.0, 30.0)] and lanes["SLO checkout-errors"]["kind"] == "fail"
    assert spans("SLO throughput") == [(0.0, 10.0)]
    assert spans("SLO recovered") == [(20.0, 30.0)]
    assert lanes["SLO recovered"]["recovery"] == {"from": 20.0, "to": 22.0, "recovered": True}
    assert {"at": 22.0, "kind": "recovery", "text": "SLO recovered"} in chart["markers"]
    # The first second (the run starts 0.3 s into it) and the last (the run ends 0.8 s into it)
    # are partial: no rate point, or they would read as drops; their latency is drawn.
    assert chart["partial"] == [pytest.approx(0.2), pytest.approx(30.2)]
    assert chart["requests"][0] is None and chart["requests"][-1] is None
    assert chart["requests"][1:-1] == [25] * 29
    assert chart["users"] == [25] * 31
    assert None not in chart["p99"] and chart["p99"][16] > 2.5 * chart["p99"][5]
    kinds = {k["label"]: k["values"] for k in chart["kinds"]}
    assert list(kinds) == ["http_503", "ConnectionRefusedError"]  # most failures first
    assert kinds["http_503"][16] == 2 and kinds["ConnectionRefusedError"][16] == 1 and kinds["http_503"][5] == 0
    assert sum(kinds["http_503"][1:-1]) == 10 and sum(kinds["ConnectionRefusedError"][1:-1]) == 5
    assert chart["error_rate"][16] == pytest.approx(0.12)
    endpoints = {e["label"]: e for e in chart["endpoints"]}
    assert list(endpoints) == ["GET /api/products", f"POST {HOSTILE_ENDPOINT}"]  # busiest first
    assert endpoints["GET /api/products"]["rps"][1:-1] == [20] * 29
    assert endpoints[f"POST {HOSTILE_ENDPOINT}"]["p99"][16] > endpoints["GET /api/products"]["p99"][16]


def test_a_recovery_that_never_came_is_drawn_to_the_windows_end(run_dir: Path) -> None:
    from dataclasses import replace

    data = from_run_dir(run_dir)
    never = tuple(
        replace(s, measured=None, passed=False, status="never_recovered") if s.name == "recovered" else s
        for s in data.slos
    )
    chart = chart_data(replace(data, slos=never))
    assert chart is not None
    (lane,) = [lane for lane in chart["lanes"] if lane["label"] == "SLO recovered"]
    assert lane["kind"] == "fail" and lane["recovery"] == {"from": 20.0, "to": 30.0, "recovered": False}
    assert not [m for m in chart["markers"] if m["kind"] == "recovery"]


def test_per_second_values_over_all_endpoints(run_dir: Path) -> None:
    data = from_run_dir(run_dir)
    by_offset = {s.second - T0: s for s in data.seconds}
    assert len(data.seconds) == 31
    quiet, faulted = by_offset[5], by_offset[16]
    assert (quiet.requests, quiet.failures, quiet.error_rate) == (25, 0, 0.0)
    assert (faulted.requests, faulted.failures) == (25, 3)
    assert faulted.error_rate == pytest.approx(0.12)
    # The mixture's percentiles lie between the endpoints' own for that second.
    for second in (quiet, faulted):
        own = [_second(second.second).endpoints[e].latency_ms() for e in ENDPOINTS]
        for key, value in (("p50", second.p50_ms), ("p95", second.p95_ms), ("p99", second.p99_ms)):
            assert value is not None
            assert min(o[key] for o in own) - 0.01 <= value <= max(o[key] for o in own) + 0.01
    assert faulted.p99_ms is not None and quiet.p99_ms is not None and faulted.p99_ms > 2.5 * quiet.p99_ms


def test_mixture_quantiles() -> None:
    uniform_a = [(0.0, 0.0), (10.0, 1.0)]
    uniform_b = [(10.0, 0.0), (20.0, 1.0)]
    assert mixture_quantiles([(1, uniform_a), (1, uniform_b)], [0.5, 0.75, 0.99]) == [10.0, 15.0, 19.8]
    assert mixture_quantiles([(3, uniform_a), (1, uniform_b)], [0.5, 0.9]) == [pytest.approx(6.667), 16.0]
    knots = [(0.0, 0.0), (12.0, 0.5), (15.0, 0.75), (20.0, 0.9), (22.0, 0.95), (30.0, 0.99), (31.0, 0.999), (31.0, 1)]
    assert mixture_quantiles([(7, knots)], [0.5, 0.95, 0.99, 1.0]) == [12.0, 22.0, 30.0, 31.0]
    assert mixture_quantiles([(7, knots), (2, knots)], [0.5, 0.99]) == [12.0, 30.0]
    assert mixture_quantiles([], [0.5]) == [None]
    assert mixture_quantiles([(0, knots)], [0.5, 0.9]) == [None, None]


def test_hostile_strings_are_escaped_and_nothing_external_is_referenced(run_dir: Path) -> None:
    """The page has scripts now (the charts), so instead of "no <script> at all": exactly three script
    elements, the ones render() puts there (uPlot, report.js and the charts' JSON, in which no run
    text can close its element), the CSP runs only those two by their hashes, and no hostile
    string shows up as markup anywhere."""
    text = render(from_run_dir(run_dir))
    assert "<script>alert" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;scenario&#x27;)&lt;/script&gt;" in text
    assert "&lt;script&gt;alert(&quot;endpoint&quot;)&lt;/script&gt;" in text
    page = Page(text)
    app = (Path(__file__).parents[1] / "harness" / "review" / "report.js").read_text()
    assert [(a, t) for a, t in page.scripts if "type" not in a] == [({}, vendor.script()), ({}, app)]
    ((data_attributes, data_text),) = [(a, t) for a, t in page.scripts if "type" in a]
    assert data_attributes == {"type": "application/json", "id": "report-data"}
    assert "<" not in data_text and ">" not in data_text and "&" not in data_text
    assert f"POST {HOSTILE_ENDPOINT}" in [e["label"] for e in page.chart_data()["endpoints"]]  # as data
    assert len(re.findall(r"<script\b", text)) == 3
    tags = {tag for tag, _ in page.elements}
    assert not tags & {"link", "img", "iframe", "object", "embed", "base", "form", "audio", "video"}
    for tag, attributes in page.elements:
        for name, value in attributes.items():
            assert not name.startswith("on"), (tag, name)
            assert "://" not in value and "url(" not in value.lower(), (tag, name, value)
            assert name not in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"), (tag, name)
    assert "url(" not in page.style and "@import" not in page.style
    (meta,) = page.find("meta", **{"http-equiv": "Content-Security-Policy"})
    assert meta["content"] == csp()
    directives = dict(d.strip().split(" ", 1) for d in meta["content"].split(";"))
    assert directives["default-src"] == "'none'"  # so no connect-src, frame-src, font-src...: nothing loads
    hashes = directives["script-src"].split()
    assert len(hashes) == 2 and all(h.startswith("'sha256-") for h in hashes)  # no 'unsafe-inline'
    for script in (vendor.script(), app):
        digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
        assert f"'sha256-{digest}'" in hashes
    # http:// appears only as text: the scenario's base_url inside the escaped <pre>; no https:// at all
    assert text.count("http://") == 1 and "base_url: http://127.0.0.1:8700" in text
    assert "https://" not in text and "//" not in data_json(chart_data(from_run_dir(run_dir)) or {})
    assert "Permission is hereby granted, free of charge" in text  # uPlot's MIT licence, as it asks


def test_without_per_second_rows_the_page_has_no_chart_script(run_dir: Path) -> None:
    from dataclasses import replace

    text = render(replace(from_run_dir(run_dir), seconds=()))
    assert "<script" not in text and "No per-second data" in text


def test_a_run_without_summary_is_reported_from_its_points(tmp_path: Path) -> None:
    """A run killed before its verdict: still a report, verdict unfinished, SLOs from harness_slo."""
    folder = write_run(tmp_path, "killed", summary=False)
    data = from_run_dir(folder)
    assert data.estimated
    assert data.verdict == "failed"  # harness_runs was written; without it the run is unfinished
    page = Page(render(data))
    assert page.rows("slos") == [
        ["fast", "p99 < 500ms", "steady", "all", "190.0ms", "500.0ms", "pass"],
        ["checkout-errors", "error_rate < 1%", "run", HOSTILE_ENDPOINT, "10%", "1%", "FAIL"],
        ["throughput", "rps >= 50", "phase:ramp", "all", "no data", "50.0/s", "FAIL (no data)"],
        ["recovered", "recovery_time < 10s", "after:kill-payments", "all", "2s", "10s", "pass"],
    ]
    endpoints = page.rows("endpoints")
    assert [row[:4] for row in endpoints] == [  # by name: '<' sorts before 'p'
        [f"POST {HOSTILE_ENDPOINT}", "155", "15", "9.68%"],
        ["GET /api/products", "620", "0", "0.00%"],
        ["all endpoints", "775", "15", "1.94%"],
    ]
    assert endpoints[1][-1] == "90.0"  # max is exact: the largest per-second max (30 ms x 3 in the fault)
    assert endpoints[1][5] == "23.1"  # and so is the mean: the per-second means weighted by their counts
    # harness_failures gives the same failure kinds as summary.json's
    assert page.rows("failures") == Page(render(from_run_dir(write_run(tmp_path / "full", "r1")))).rows("failures")
    assert "Percentiles estimated from per-second rows" in " ".join(page.text)
    lines = (folder / "results.lp").read_text().splitlines()
    (folder / "results.lp").write_text("\n".join(line for line in lines if "harness_runs" not in line) + "\n")
    assert from_run_dir(folder).verdict == "unfinished"


def test_a_truncated_results_file_is_read_up_to_the_break(run_dir: Path) -> None:
    path = run_dir / "results.lp"
    text = path.read_text()
    path.write_text(text[: len(text) // 2] + "\nharness_requests,broken")
    data = from_run_dir(run_dir)
    assert 0 < len(data.seconds) < 31
    assert any("read up to a broken record" in note for note in data.notes)


def test_unknown_run_dir_is_run_not_found(tmp_path: Path) -> None:
    with pytest.raises(RunNotFound, match=r"run nope: no summary\.json or results\.lp"):
        from_run_dir(tmp_path / "nope")


class RowsFromResultsLp:
    """InfluxQL ``SELECT * FROM m WHERE "run_id" = 'x'`` answered from results.lp as influxd answers it."""

    def __init__(self, *folders: Path) -> None:
        self.records = [r for f in folders for r in parse((f / "results.lp").read_text())]
        self.statements: list[str] = []
        self.url, self.database = "http://influx.test", "harness"

    def query(self, q: str) -> list[dict[str, Any]]:
        self.statements.append(q)
        match = re.fullmatch(r"SELECT \* FROM (\w+) WHERE \"run_id\" = '([^']*)'", q)
        assert match, q
        latest: dict[tuple[Any, ...], dict[str, Any]] = {}
        for measurement, tags, fields, time_ns in self.records:
            if measurement == match[1] and tags.get("run_id") == match[2]:
                latest[(tuple(sorted(tags.items())), time_ns)] = {"time": time_ns, **tags, **fields}
        return sorted(latest.values(), key=lambda row: row["time"])


def test_from_influx_matches_the_run_dir_where_influx_has_the_data(tmp_path: Path) -> None:
    folders = [write_run(tmp_path, "a"), write_run(tmp_path, "b")]
    query = RowsFromResultsLp(*folders)
    influx = from_influx(query, "b", SCENARIO_YAML)
    disk = from_run_dir(folders[1])
    assert query.statements[0] == "SELECT * FROM harness_runs WHERE \"run_id\" = 'b'"
    assert influx.seconds == disk.seconds
    assert influx.events == disk.events
    assert (influx.verdict, influx.reason, influx.scenario) == ("failed", disk.reason, HOSTILE_SCENARIO)
    assert [(s.name, s.objective, s.measured, s.passed, s.status) for s in influx.slos] == [
        (s.name, s.objective, None if s.status == "no_data" else s.measured, s.passed, s.status) for s in disk.slos
    ]
    assert influx.estimated and influx.source == "InfluxDB http://influx.test, database harness"
    assert sorted((e.name, e.requests, e.failures) for e in influx.endpoints) == sorted(
        (e.name, e.requests, e.failures) for e in disk.endpoints
    )
    with pytest.raises(RunNotFound, match="InfluxDB has no points with run_id 'x'"):
        from_influx(query, "x")


def test_write_report_replaces_the_file(run_dir: Path) -> None:
    path = write_report(run_dir)
    assert path == run_dir / "report.html"
    first = path.read_text()
    assert first.startswith("<!DOCTYPE html>") and first.endswith("</html>\n")
    assert write_report(run_dir) == path and path.read_text() == first
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------- harness report


def _cli(runs: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HARNESS_RUNS_DIR": str(runs), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "harness.cli", *args], env=env, capture_output=True, text=True, timeout=60
    )


def test_harness_report_reads_runs_dir_when_influx_is_unreachable(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    folder = write_run(runs, "r1")
    done = _cli(runs, "report", "r1", "--results-url", "http://127.0.0.1:9")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == str(folder / "report.html")
    assert done.stderr == ""  # the run's own record is read first: InfluxDB is not needed
    page = Page((folder / "report.html").read_text())
    assert len(page.rows("slos")) == 4
    other = tmp_path / "elsewhere" / "r1.html"
    done = _cli(runs, "report", "r1", "--results-url", "http://127.0.0.1:9", "--output", str(other))
    assert done.returncode == 0 and done.stdout.strip() == str(other) and other.is_file()


def test_harness_report_never_replaces_a_report_without_force_and_regenerates_it_identically(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    folder = write_run(runs, "r1")
    first = _cli(runs, "report", "r1", "--results-url", "http://127.0.0.1:9")
    assert first.returncode == 0, first.stderr
    original = (folder / "report.html").read_text()
    (folder / "report.html").write_text(original + "<!-- the reviewer's copy -->")
    again = _cli(runs, "report", "r1", "--results-url", "http://127.0.0.1:9")
    assert again.returncode == 2 and again.stdout == ""
    assert again.stderr.strip() == (
        f"error: {folder / 'report.html'} exists: pass --force to replace it, or --output FILE to write elsewhere"
    )
    assert (folder / "report.html").read_text().endswith("<!-- the reviewer's copy -->")
    forced = _cli(runs, "report", "r1", "--results-url", "http://127.0.0.1:9", "--force")
    assert forced.returncode == 0, forced.stderr
    assert (folder / "report.html").read_text() == original  # every figure, and every byte


def test_harness_report_of_an_unknown_run_is_exit_2_naming_it(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    runs.mkdir()
    done = _cli(runs, "report", "no-such-run", "--results-url", "http://127.0.0.1:9")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(
        f"error: run no-such-run: not found under {runs}/ nor in InfluxDB http://127.0.0.1:9 (database harness): "
    )
    assert "Traceback" not in done.stdout + done.stderr
    assert not (runs / "no-such-run").exists()
    done = _cli(runs, "report", "../etc", "--results-url", "http://127.0.0.1:9")
    assert done.returncode == 2 and "run '../etc': not a run id" in done.stderr


@pytest.mark.slow
def test_harness_report_from_a_real_influxd(tmp_path: Path, influxd: Any) -> None:
    from harness.results._http import http_request
    from harness.results.query import InfluxQuery

    db = influxd.create_database("report_test")
    elsewhere = write_run(tmp_path / "elsewhere", "ri")
    body = (elsewhere / "results.lp").read_bytes()
    status, payload = http_request("POST", f"{influxd.url}/write?db={db}&precision=ns", body=body, timeout=10)
    assert status == 204, payload
    data = from_influx(InfluxQuery(influxd.url, db), "ri", SCENARIO_YAML)
    disk = from_run_dir(elsewhere)
    assert data.seconds == disk.seconds and data.events == disk.events
    assert [(s.name, s.passed) for s in data.slos] == [(s.name, s.passed) for s in disk.slos]
    runs = tmp_path / "runs"
    done = _cli(runs, "report", "ri", "--results-url", influxd.url, "--database", db)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == str(runs / "ri" / "report.html") and done.stderr == ""
    page = Page((runs / "ri" / "report.html").read_text())
    assert f"Source: InfluxDB {influxd.url}, database {db}." in " ".join(page.text)
    charts = page.chart_data()  # what the charts draw is what the run's own record gives
    on_disk = chart_data(disk)
    assert on_disk is not None
    for key in ("t", "requests", "users", "p50", "p99", "error_rate", "kinds", "endpoints", "faults"):
        assert charts[key] == on_disk[key], key
    # without the scenario file the SLOs' windows are unknown, so no recovery instant: the rest is the same
    assert charts["markers"] == [m for m in on_disk["markers"] if m["kind"] != "recovery"]
