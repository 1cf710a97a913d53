"""Soak: does a long full-rate run keep the driver's memory bounded?

Runs ``harness run`` of a closed-model scenario at full rate (Debian nginx on loopback as the
target, benchmarks/locustfile.py's FastHttpUser ``Hammer`` with no think time, results into a
private local influxd) for ``--duration`` seconds, and every ``--interval`` seconds records the
RSS of:

* the driver: the ``harness run`` process itself, which also holds the aggregator (the exact
  merge), the SLO book and the results writer; the issue's target is that its RSS grows by less
  than 50 MB over 10 minutes;
* each LoadGenerator actor (``ray::_LoadGeneratorActor``, found as the parent of the run's Locust
  processes) and the Locust processes themselves, for information.

Growth is measured from the first sample after ``--warmup`` (imports, Ray, first windows and
HDR histograms are allocated by then) to the last sample, and as a least-squares slope over the
same samples, so one late spike does not pass for a leak. nginx's own request counter gives
the rate over each interval.

    python benchmarks/soak.py                         # 10 minutes, the issue's check
    python benchmarks/soak.py --duration 120 --warmup 30

Writes benchmarks/results/soak-<time>.json with every sample, the growth figures, the CPU split
by process group over the measured window, and what the run's summary.json said.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.table import Table
from throughput import (
    HERE,
    VENV_BIN,
    console,
    cpu_snapshot,
    cpu_split,
    full_rate_scenario,
    handled,
    stop,
    target_and_influx,
    wait_for_traffic,
)

from harness.results.embedded import EmbeddedInflux

MB = 1024 * 1024
TARGET_GROWTH_MB = 50.0


@dataclass
class Sample:
    """One look at the processes, ``t`` seconds after traffic started."""

    t: float
    rps: float  # nginx's count over the interval that ended here
    driver_mb: float
    actors_mb: dict[str, float] = field(default_factory=dict)  # actor pid -> RSS
    locust_mb: float = 0.0  # all Locust processes of the run together
    influxd_mb: float = 0.0


def _rss_mb(proc: psutil.Process) -> float:
    try:
        return round(proc.memory_info().rss / MB, 2)
    except psutil.Error:
        return 0.0


def _run_processes(run_id: str) -> tuple[list[psutil.Process], list[psutil.Process]]:
    """(generator actors, Locust processes) of this run: the children carry HARNESS_RUN_ID."""
    locust: list[psutil.Process] = []
    actors: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        with contextlib.suppress(psutil.Error):
            if "harness.load.runner" not in (proc.info["cmdline"] or []):
                continue
            if proc.environ().get("HARNESS_RUN_ID") != run_id:
                continue
            locust.append(proc)
            parent = proc.parent()
            if parent is not None:
                actors[parent.pid] = parent
    return list(actors.values()), locust


def _slope_mb_per_min(samples: list[Sample], value: Any) -> float:
    """Least-squares growth rate: robust against one high or low sample at either end."""
    if len(samples) < 3:
        return 0.0
    xs = [s.t / 60 for s in samples]
    ys = [value(s) for s in samples]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    denominator = sum((x - mean_x) ** 2 for x in xs)
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / denominator if denominator else 0.0


def soak(args: argparse.Namespace, workdir: Path, url: str, influx: EmbeddedInflux) -> dict[str, Any]:
    """Run harness once for warm-up + duration and sample every interval; return the record."""
    seconds = args.warmup + args.duration + 5
    scenario = workdir / "soak.yaml"
    scenario.write_text(full_rate_scenario("soak", url, influx.url, args.processes, args.users, seconds))
    influxd = psutil.Process(influx.pid) if influx.pid else None
    run_id = f"soak-{int(time.time())}"
    env = {**os.environ, "HARNESS_RUNS_DIR": str(workdir / "runs"), "HARNESS_DATA_DIR": str(workdir / "data")}
    log_path = workdir / "harness.log"
    samples: list[Sample] = []
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [str(VENV_BIN / "harness"), "run", str(scenario), "--run-id", run_id], stdout=log, stderr=log, env=env
        )
        try:
            driver = psutil.Process(proc.pid)
            startup = wait_for_traffic(url, 120, lambda: proc.poll() is None)
            began = time.monotonic()
            count, at = handled(url), began
            cpu0 = cpu_snapshot()
            measured_from = 0.0
            next_sample = began
            while time.monotonic() - began < args.warmup + args.duration and proc.poll() is None:
                time.sleep(max(0.0, next_sample - time.monotonic()))
                next_sample += args.interval
                now_count, now = handled(url), time.monotonic()
                actors, locust = _run_processes(run_id)
                sample = Sample(
                    t=round(now - began, 1),
                    rps=round((now_count - count - 1) / (now - at), 1) if now > at else 0.0,
                    driver_mb=_rss_mb(driver),
                    actors_mb={str(a.pid): _rss_mb(a) for a in actors},
                    locust_mb=round(sum(_rss_mb(p) for p in locust), 2),
                    influxd_mb=_rss_mb(influxd) if influxd else 0.0,
                )
                count, at = now_count, now
                samples.append(sample)
                console.print(
                    f"{sample.t:7.0f}s {sample.rps:9,.0f} req/s  driver {sample.driver_mb:7.1f} MB  "
                    f"actors {' '.join(f'{v:.1f}' for v in sample.actors_mb.values())} MB  "
                    f"locust {sample.locust_mb:.1f} MB  influxd {sample.influxd_mb:.1f} MB",
                    markup=False,
                )
                if not measured_from and sample.t >= args.warmup:
                    measured_from = sample.t
                    cpu0 = cpu_snapshot()
            cpu1, cpu_seconds = cpu_snapshot(), max(1e-9, time.monotonic() - began - measured_from)
            code = proc.wait(seconds + 120)
        finally:
            stop(proc)
    summary_path = workdir / "runs" / run_id / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    if not summary:
        console.print(log_path.read_text()[-3000:], markup=False)
    return {
        "run_id": run_id,
        "exit_code": code,
        "startup_to_traffic_s": round(startup, 2),
        "samples": samples,
        "measured_from_s": measured_from,
        "cpu": cpu_split(cpu0, cpu1, cpu_seconds),
        "summary": {
            "verdict": summary.get("verdict"),
            "reason": summary.get("reason"),
            "rps": round(summary.get("totals", {}).get("rps", 0.0), 1),
            "requests": summary.get("totals", {}).get("requests"),
            "driver_peak_rss_mb": summary.get("driver_peak_rss_mb"),
            "saturated_seconds": summary.get("seconds", {}).get("saturated"),
            "results": summary.get("results"),
        },
    }


def report(args: argparse.Namespace, record: dict[str, Any]) -> dict[str, Any]:
    samples: list[Sample] = record["samples"]
    measured = [s for s in samples if s.t >= record["measured_from_s"]] if record["measured_from_s"] else []
    table = Table(title=f"RSS (MB) every {args.interval:g}s; growth measured from {record['measured_from_s']:g}s")
    for column in ("t (s)", "req/s", "driver", "generator actors", "Locust (all)", "influxd"):
        table.add_column(column, justify="right")
    for s in samples:
        table.add_row(
            f"{s.t:g}" + ("" if s in measured else " (warm-up)"),
            f"{s.rps:,.0f}",
            f"{s.driver_mb:.1f}",
            " ".join(f"{v:.1f}" for v in s.actors_mb.values()),
            f"{s.locust_mb:.1f}",
            f"{s.influxd_mb:.1f}",
        )
    console.print(table)
    growth: dict[str, Any] = {}
    if len(measured) >= 2:
        first, last = measured[0], measured[-1]
        actor_ids = [pid for pid in first.actors_mb if pid in last.actors_mb]
        growth = {
            "window_s": round(last.t - first.t, 1),
            "driver_mb": round(last.driver_mb - first.driver_mb, 2),
            "driver_max_mb": round(max(s.driver_mb for s in measured) - first.driver_mb, 2),
            "driver_slope_mb_per_min": round(_slope_mb_per_min(measured, lambda s: s.driver_mb), 3),
            "actors_mb": {pid: round(last.actors_mb[pid] - first.actors_mb[pid], 2) for pid in actor_ids},
            "locust_mb": round(last.locust_mb - first.locust_mb, 2),
            "influxd_mb": round(last.influxd_mb - first.influxd_mb, 2),
        }
        passed = growth["driver_mb"] < TARGET_GROWTH_MB  # the aggregator and writer live in the driver
        console.print(
            f"growth over {growth['window_s']:g}s: driver {growth['driver_mb']:+.1f} MB "
            f"(max {growth['driver_max_mb']:+.1f}, slope {growth['driver_slope_mb_per_min']:+.2f} MB/min), "
            f"actors {', '.join(f'{v:+.1f}' for v in growth['actors_mb'].values())} MB, "
            f"Locust {growth['locust_mb']:+.1f} MB, influxd {growth['influxd_mb']:+.1f} MB; "
            f"target: driver (aggregator, writer) < {TARGET_GROWTH_MB:g} MB: {'met' if passed else 'NOT met'}",
            markup=False,
        )
    else:
        passed = False
        console.print("not enough samples after the warm-up to measure growth", markup=False)
    rates = [s.rps for s in measured]
    cpu = ", ".join(f"{g} {v:g}" for g, v in sorted(record["cpu"].items(), key=lambda kv: -kv[1]))
    console.print(
        f"rate (nginx): median {statistics.median(rates) if rates else 0:,.0f} req/s; "
        f"CPU % of one core: {cpu}; "
        f"run verdict {record['summary']['verdict']} (exit {record['exit_code']})",
        markup=False,
    )
    return {
        "created": datetime.now(UTC).isoformat(),
        "cores": os.cpu_count(),
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "interval_s": args.interval,
        "users": args.users,
        "processes": args.processes,
        "target_growth_mb": TARGET_GROWTH_MB,
        "passed": passed,
        "growth": growth,
        "median_rps": statistics.median(rates) if rates else 0.0,
        **{k: v for k, v in record.items() if k != "samples"},
        "samples": [asdict(s) for s in samples],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=600.0, help="measured seconds after the warm-up")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of load before the first measured sample")
    parser.add_argument("--interval", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="Locust processes")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="harness-soak-") as tmp, target_and_influx(Path(tmp)) as (url, influx):
        record = soak(args, Path(tmp), url, influx)
    result = report(args, record)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"soak-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    console.print(f"written to {path}", markup=False)
    return 0 if passed_and_valid(result) else 1


def passed_and_valid(result: dict[str, Any]) -> bool:
    """Exit 0 only when growth stayed under the target and the run itself ran to its end.

    A verdict of failed (1) or invalid (5) still ran to its end: at full rate the Locust
    processes are expected to be saturated, which makes the verdict invalid by design.
    """
    return bool(result["passed"]) and result["exit_code"] in (0, 1, 5)


if __name__ == "__main__":
    sys.exit(main())
