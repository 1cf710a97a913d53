"""summary.json through the typed RunSummary: the same JSON back, and forgiving reads.

The summary is written by the session and read back by the JUnit report, the HTML report,
the baseline lookup and ``harness runs``; users and CI scripts read the file too, so its keys
and their meaning must not move. Pure: no run is started here (tests/test_e2e.py checks a
real run's summary).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from harness.judge.slo import SloStatus
from harness.judge.summary import LoadGap, RunEvent, RunSummary, Stats, Timings, to_json

STATS = {
    "requests": 120,
    "failures": 3,
    "failure_kinds": {"HTTPError 503": 3},
    "error_rate": 0.025,
    "bytes": 4096,
    "rps": 12.0,
    "seconds": 10,
    "p50_ms": 1.2,
    "p75_ms": 1.5,
    "p90_ms": 2.0,
    "p95_ms": 2.5,
    "p99_ms": 9.1,
    "p999_ms": 12.0,
    "max_ms": 12.3,
    "mean_ms": 1.4,
}

#: A summary as a run of this version writes it: every key, nested shapes included.
WRITTEN: dict[str, Any] = {
    "run_id": "shop-1",
    "scenario": "shop",
    "scenario_file": "/tmp/shop.yaml",
    "verdict": "failed",
    "exit_code": 1,
    "reason": "SLO failed: fast",
    "started": 1700000000.25,
    "ended": 1700000030.5,
    "planned_duration_s": 30.0,
    "processes": ["g0.0", "g0.1"],
    "generators": [
        {
            "id": "g0",
            "node": "abc",
            "node_ip": "127.0.0.1",
            "hostname": "h",
            "processes": ["g0.0", "g0.1"],
            "offset_ms": 0.01,
            "uncertainty_ms": 0.2,
        }
    ],
    "chaos_agents": [
        {"node": "abc", "node_ip": "127.0.0.1", "hostname": "h", "faults": ["kill"], "offset_ms": 0.0}
        | {"uncertainty_ms": 0.1}
    ],
    "dead_processes": ["g0.1"],
    "seconds": {"saturated": 2, "short": 0, "late": 1},
    "late_windows": 1,
    "late_requests_unwritten": 0,
    "lost_generators": [
        {"id": "g1", "offset": 4.5, "time": 1700000004.75, "why": "its actor died (ActorDiedError)"}
        | {"actor_pid": 42, "processes": ["g1.0"], "load": "its share of stage s moves to 2 processes (g0.0, g0.1)"}
    ],
    "load_gaps": [
        {
            "subject": "g0.1",
            "processes": ["g0.1"],
            "cause": "load process g0.1 died (killed by SIGKILL)",
            "lost_at": 1700000010.0,
            "lost_offset": 9.75,
            "detected_at": 1700000010.5,
            "detected_after_s": 0.5,
            "moved_to": ["g0.0"],
            "restored_at": None,
            "gap_s": None,
            "note": "the new shares were not all acknowledged (1 missing)",
        }
    ],
    "delivery": {
        "sustained_seconds": 5,
        "findings": [{"condition": "died", "subject": "g0.1", "offset": 9.75, "seconds": 0, "text": "died"}],
    },
    "step_timing": [
        {"step": "run start", "name": "shop", "planned_s": 0.0, "executed_s": 0.0001, "done_s": None, "late_ms": 0.1},
        {"step": "stage", "name": "s", "planned_s": 1.0, "executed_s": 0.5, "done_s": 1.002, "late_ms": 2.0}
        | {"lead_s": 0.5, "acknowledged": 2, "unacknowledged": []},
    ],
    "totals": STATS,
    "endpoints": [{"method": "GET", "name": "/", **STATS} | {f"service_{k}": 1.0 for k in STATS if k.endswith("_ms")}],
    "trace_examples": [
        {
            "method": "GET",
            "name": "/",
            "slowest": [
                {
                    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
                    "latency_ms": 812.5,
                    "second": 1800000003,
                    "failure": "",
                }
            ],
            "failed": [
                {
                    "trace_id": "0af7651916cd43dd8448eb211c80319c",
                    "latency_ms": 2.1,
                    "second": 1800000001,
                    "failure": "http_503",
                }
            ],
        }
    ],
    "windows": {"run": STATS, "steady": {**STATS, "requests": 0, "p50_ms": None}},
    "slos": [
        {
            "name": "fast",
            "objective": "p99 < 5ms",
            "window": "run",
            "endpoint": "all",
            "metric": "p99",
            "measured": 9.1,
            "threshold": 5.0,
            "passed": False,
            "requests": 120,
            "seconds": 10,
            "message": "p99 9.1ms over run (120 requests): missed < 5.0ms",
            "status": "breached",
        },
        {
            "name": "recovers",
            "objective": "recovery_time < 10s",
            "window": "after:kill",
            "endpoint": "all",
            "metric": "recovery_time",
            "measured": None,
            "threshold": 10000.0,
            "passed": False,
            "requests": 0,
            "seconds": 0,
            "message": "never recovered",
            "status": "never_recovered",
        },
    ],
    "guard": {"guard": "meltdown", "condition": "error_rate > 50% for 5s", "value": 0.9, "second": 41, "message": "m"},
    "baseline": {
        "ref": "last-pass",
        "run_id": "shop-0",
        "passed": False,
        "comparisons": [
            {"phase": "steady", "endpoint": "all", "metric": "p99", "baseline": 4.0, "current": 9.0, "change": None}
            | {"tolerance": 0.1, "floor": 2.0, "p_value": 0.001, "regressed": True, "message": "p99 rose"}
        ],
        "summary_line": "baseline last-pass: 1 regression: p99 of all endpoints in phase steady (+125%)",
    },
    "probes": [
        {"name": "inflight", "language": "promql", "query": "sum(demo_in_flight)", "failures": 1}
        | {"values": [{"offset": 2.0, "value": 3.0}, {"offset": 4.0, "value": None}]},
    ],
    "events": [
        {"time": 1700000000.25, "offset": 0.0, "kind": "run", "name": "shop", "state": "start", "text": "run started"},
        {"time": 1700000001.0, "offset": 0.75, "kind": "stage", "name": "s", "state": "start", "text": "stage s"}
        | {"planned_offset": 1.0, "late_ms": 2.0, "done_offset": 1.002},
        {"time": 1700000002.0, "offset": 1.75, "kind": "stage", "name": "t", "state": "start", "text": "stage t"}
        | {"planned_offset": 2.0, "late_ms": 1.0, "done_offset": None},
        {"time": 1700000005.0, "offset": 4.75, "kind": "fault", "name": "kill", "state": "start", "text": "kill"}
        | {"planned_offset": 5.0, "late_ms": -250.0},
    ],
    "timings": {
        "ray_init_s": 2.5,
        "placement_s": 0.1,
        "generators_start_s": 3.0,
        "load_start_s": 6.0,
        "first_request_by_s": 7.0,
        "max_poll_work_ms": 12.5,
        "poll_thread_cpu_s": 0.5,
        "clock_thread_cpu_s": 0.05,
        "driver_cpu_s": 0.9,
        "load_window_s": 30.0,
        "max_step_late_ms": 2.0,
        "max_step_exec_late_ms": 1.0,
        "verdict_s": 0.8,
    },
    "driver_peak_rss_mb": 130.5,
    "results": {
        "url": "http://127.0.0.1:8086",
        "api": "v1",
        "database": "harness",
        "line_protocol_file": "runs/shop-1/results.lp",
        "embedded_influxdb": False,
        "points_total": 100,
        "points_written": 100,
        "points_spooled": 0,
        "points_replayed": 0,
        "points_rejected": 0,
        "points_dropped": 0,
        "points_pending": 0,
        "points_inherited": 0,
        "queue_peak_points": 12,
        "queue_max_points": 100000,
        "transport": "v1",
        "lp_path": "runs/shop-1/results.lp",
        "spool_path": "runs/shop-1/spool.lp",
        "last_error": None,
        "cpu_s": 0.1,
        "close_s": 0.2,
    },
}


def test_a_written_summary_reads_back_to_the_same_json(tmp_path: Path) -> None:
    summary = RunSummary.from_json(WRITTEN)
    assert summary.to_json() == WRITTEN
    assert list(summary.to_json()) == list(WRITTEN)  # the keys in the order they were always written
    summary.write(tmp_path)
    assert json.loads((tmp_path / "summary.json").read_text()) == WRITTEN
    assert RunSummary.read(tmp_path) == summary


def test_the_typed_summary_says_what_the_json_means() -> None:
    summary = RunSummary.from_json(WRITTEN)
    assert summary.totals is not None and summary.totals.latency.p99_ms == 9.1
    assert summary.endpoints[0].stats.service is not None and summary.endpoints[0].stats.service.p50_ms == 1.0
    assert summary.windows["steady"].latency.p50_ms is None
    slos = summary.slo_results()
    assert slos[0].status is SloStatus.BREACHED and slos[0].measured == 9.1
    assert slos[1].status is SloStatus.NEVER_RECOVERED and math.isnan(slos[1].measured)
    assert summary.guard is not None and summary.guard.guard == "meltdown"
    assert summary.baseline is not None and summary.baseline.comparisons[0].regressed
    assert summary.baseline.comparisons[0].change is None
    assert [e.finished for e in summary.events] == [False, True, True, False]
    assert summary.load_gaps[0].gap_s is None and summary.lost_generators[0].actor_pid == 42
    assert summary.results is not None and summary.results.points_written == 100
    assert summary.duration_s == 30.25


def test_a_summary_without_totals_writes_an_empty_object_and_leaves_out_absent_keys() -> None:
    summary = RunSummary(run_id="r", verdict="error", exit_code=3, reason="LoadError: x", slos=[])
    data = summary.to_json()
    assert data["totals"] == {} and data["guard"] is None and data["baseline"] is None
    assert "results" not in data  # added once the results writer closed
    assert data["timings"] == {}  # nothing was measured: no key, as before
    assert RunSummary.from_json(data).totals is None
    results = RunSummary.from_json(WRITTEN).results
    assert results is not None
    later = summary.finished(results, 0.5)
    assert later.to_json()["timings"] == {"verdict_s": 0.5} and later.to_json()["results"] == WRITTEN["results"]


def test_odd_and_old_summaries_are_read_without_raising(tmp_path: Path) -> None:
    # Hand-written, cut short, from older versions: a missing key takes its default, a wrong type too.
    odd = RunSummary.from_json(
        {
            "run_id": 7,
            "verdict": "passed",
            "started": "2026-11-22T04:00:00Z",
            "ended": True,
            "totals": {"requests": "many", "rps": 2},
            "slos": [{"name": "old", "measured": 400.0, "passed": False}],
            "events": ["not an event", {"time": 1.0}],
            "timings": {"load_window_s": 30, "unknown_s": 1.0},
            "guard": "tripped",
        }
    )
    assert (odd.run_id, odd.verdict, odd.started, odd.ended) == ("7", "passed", 1795320000.0, None)
    assert odd.totals == Stats(rps=2.0)
    [old] = odd.slo_results()
    assert (old.name, old.measured, old.status, old.objective) == ("old", 400.0, SloStatus.MET, "")
    assert odd.events == [RunEvent(1.0, 0.0, "", "", "", "")]
    assert odd.timings == Timings(load_window_s=30.0)
    assert odd.guard is None
    assert RunSummary.from_json({}).slos is None
    (tmp_path / "summary.json").write_text("[1, 2]")
    assert RunSummary.read(tmp_path) is None
    (tmp_path / "summary.json").write_text("{broken")
    assert RunSummary.read(tmp_path) is None
    assert RunSummary.read(tmp_path / "nope") is None


def test_non_finite_figures_are_written_as_null() -> None:
    gap = LoadGap("g0.1", ["g0.1"], "died", 1.0, 0.5, 1.5, 0.5, gap_s=math.inf)
    assert to_json(gap)["gap_s"] is None and "note" not in to_json(gap)
