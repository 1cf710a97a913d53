"""The HTML report: rendered from run directories written with the project's own encoders.

A synthetic 30 s run (phases ramp and steady, a fault from +15 s to +20 s, one endpoint whose
name is an HTML injection attempt, a scenario named like one) is written as a real run leaves
it: results.lp from harness.results.points through harness.results.lineproto, summary.json and
scenario.yaml. The report must show its verdict, SLO and endpoint rows, shade the fault and
mark the phases on every plot, escape every hostile string, and reference nothing outside
the file. ``harness report`` is run as a user runs it.
"""

from __future__ import annotations

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
from harness.results.points import event_point, load_point, request_points, run_point, slo_points
from harness.review.plots import LATENCY_CAPTION, Frame
from harness.review.report import render
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
guards:
  - {{name: meltdown, condition: error_rate > 50% for 5s}}
"""


def _stats(count: int, failures: int, low_ms: float, high_ms: float) -> EndpointStats:
    """``count`` requests spread evenly from low_ms to high_ms, the first ``failures`` failed."""
    stats = EndpointStats()
    for i in range(count):
        latency_ms = low_ms + (high_ms - low_ms) * i / max(count - 1, 1)
        stats.record(int(latency_ms * 1000), 100, "http_503" if i < failures else None)
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
        | {"p99_ms": 170.3, "max_ms": 180.0},
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
        self.text.append(data)
        if self._cell is not None:
            self._cell.append(data)

    def find(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [a for t, a in self.elements if t == tag and all(a.get(k) == v for k, v in attrs.items())]

    def rows(self, table: str) -> list[list[str]]:
        return self.tables[table][1:]  # without the header


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
    assert [row[0] for row in endpoints] == ["GET /api/products", f"POST {HOSTILE_ENDPOINT}"]
    assert endpoints[0][1:5] == ["620", "0", "0.00%", "20.0"]
    assert endpoints[1][1:4] == ["155", "15", "9.68%"]  # 5 faulted seconds x 3 failures
    assert "Percentiles over the whole run, from the run's merged latency histograms." in text
    timeline = page.rows("events")
    assert ["+15.000s", "fault", "kill-payments", "start", "payments <b>killed</b>"] in timeline
    pre = re.search(r"<pre>(.*?)</pre>", page_text, re.S)
    assert pre is not None and "&lt;/pre&gt;&lt;script&gt;" in pre.group(1)
    assert "".join(page.text).count("name: \"shop <script>alert('scenario')</script>\"") == 1


def test_every_plot_shades_the_fault_and_marks_the_phases(run_dir: Path) -> None:
    data = from_run_dir(run_dir)
    page = Page(render(data))
    plots = page.find("svg", **{"class": "plot"})
    assert [p["id"] for p in plots] == ["plot-rps", "plot-latency", "plot-errors"]
    faults = page.find("rect", **{"class": "fault"})
    assert [f["data-fault"] for f in faults] == ["kill-payments"] * 3
    # The axis runs to the end of the last second with rows (T0 + 31), which is after the run's end.
    frame = Frame(T0 + 31 - STARTED, 1.0)
    for rect in faults:
        assert float(rect["x"]) == pytest.approx(frame.x(FAULT[0]), abs=0.1)
        assert float(rect["width"]) == pytest.approx(frame.x(FAULT[1]) - frame.x(FAULT[0]), abs=0.2)
    phases = page.find("line", **{"class": "phase"})
    assert [p["data-phase"] for p in phases] == ["ramp", "steady"] * 3
    assert [float(p["x1"]) for p in phases[:2]] == pytest.approx([frame.x(0.0), frame.x(10.0)], abs=0.1)
    series = page.find("polyline", **{"class": "series"})
    assert [s["data-series"] for s in series] == ["requests/s", "p50", "p95", "p99", "error rate"]
    assert all(len(s["points"].split()) == 31 for s in series)  # one point per second of the run
    assert LATENCY_CAPTION in " ".join(page.text)


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
    text = render(from_run_dir(run_dir))
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&#x27;scenario&#x27;)&lt;/script&gt;" in text
    assert "&lt;script&gt;alert(&quot;endpoint&quot;)&lt;/script&gt;" in text
    page = Page(text)
    tags = {tag for tag, _ in page.elements}
    assert not tags & {"script", "link", "img", "iframe", "object", "embed", "base", "form", "audio", "video"}
    for tag, attributes in page.elements:
        for name, value in attributes.items():
            assert not name.startswith("on"), (tag, name)
            assert "://" not in value and "url(" not in value.lower(), (tag, name, value)
            assert name not in ("src", "href", "xlink:href", "action", "srcset", "poster", "data"), (tag, name)
    assert "url(" not in page.style and "@import" not in page.style
    (csp,) = page.find("meta", **{"http-equiv": "Content-Security-Policy"})
    assert csp["content"].startswith("default-src 'none';")
    # http:// appears only as text: the scenario's base_url inside the escaped <pre>
    assert text.count("http://") == 1 and "base_url: http://127.0.0.1:8700" in text


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
    ]
    endpoints = page.rows("endpoints")
    assert [row[:4] for row in endpoints] == [  # by name: '<' sorts before 'p'
        [f"POST {HOSTILE_ENDPOINT}", "155", "15", "9.68%"],
        ["GET /api/products", "620", "0", "0.00%"],
    ]
    assert endpoints[1][-1] == "90.0"  # max is exact: the largest per-second max (30 ms x 3 in the fault)
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
    assert len(page.rows("slos")) == 3
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
    assert len(page.find("polyline", **{"class": "series"})) == 5
