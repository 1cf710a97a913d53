"""Throughput benchmark: wrk (A) vs plain Locust (B) vs harness through its whole pipeline (C).

Starts Debian's nginx on loopback (worker_processes 1, access_log off, a tiny body) and an
influxd for harness's results, then runs A B C A B C ... so that machine drift cancels out.
Every figure is counted by nginx itself (stub_status) over the same measured window after a
warm-up, so the three tools are judged by one referee. CPU use is split by process group
from /proc over the same window.

    python benchmarks/throughput.py                 # 3 rounds, 30 s windows (make bench)
    python benchmarks/throughput.py --rounds 1 --duration 10 --only C

Writes benchmarks/results/throughput-<time>.json with wrk_rps, locust_rps, harness_rps
(medians), ratio_harness_locust, ratio_harness_wrk, cores, cpu and the raw runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from rich.console import Console
from rich.table import Table

from harness.results.embedded import EmbeddedInflux, ensure_local_influx, stop_local_influx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV_BIN = Path(sys.executable).parent
console = Console(highlight=False, width=None if sys.stdout.isatty() else 140)

GROUPS = (
    ("nginx", re.compile(r"^nginx")),
    ("wrk", re.compile(r"^wrk\b|/wrk\b")),
    ("harness-locust", re.compile(r"harness\.load\.runner")),
    ("harness-driver", re.compile(r"harness(\.cli)? run|bin/harness run")),
    ("harness-actors", re.compile(r"ray::_LoadGeneratorActor|ray::_ChaosAgentActor")),
    ("ray", re.compile(r"raylet|gcs_server|ray::|ray/dashboard|default_worker|ray/_private|ray\.util")),
    ("influxd", re.compile(r"influxd")),
    ("locust", re.compile(r"locust")),
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Run:
    tool: str
    round: int
    rps: float
    requests: int
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)  # percent of one core, by process group
    detail: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- nginx, the referee


@contextmanager
def nginx(port: int, workdir: Path) -> Iterator[str]:
    prefix = workdir / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /nginx_status {{ stub_status; }}
        location / {{ default_type text/plain; return 200 "ok\\n"; }}
    }}
}}
"""
    )
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(prefix)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                handled(url)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("nginx did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.send_signal(signal.SIGQUIT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def handled(url: str) -> int:
    """Requests nginx has handled so far (its stub_status counter)."""
    with urllib.request.urlopen(f"{url}/nginx_status", timeout=5) as response:
        text = response.read().decode()
    return int(text.splitlines()[2].split()[2])


@contextmanager
def target_and_influx(workdir: Path) -> Iterator[tuple[str, EmbeddedInflux]]:
    """nginx on a free loopback port (the target and referee) and a private influxd for harness's results."""
    influx_dir = workdir / "influx"
    influx = ensure_local_influx(f"http://127.0.0.1:{free_port()}", influx_dir, rpc_port=free_port())
    if influx is None:
        sys.exit("influxd is not installed: run 'make setup'")
    try:
        with nginx(free_port(), workdir) as url:
            yield url, influx
    finally:
        stop_local_influx(influx_dir)


# --------------------------------------------------------------------------- CPU by process group


def _group(cmdline: str) -> str:
    for name, pattern in GROUPS:
        if pattern.search(cmdline):
            return name
    return "other"


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    snapshot = {}
    for proc in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        try:
            times = proc.info["cpu_times"]
            cmdline = " ".join(proc.info["cmdline"] or [])
            if times is None or not cmdline:
                continue
            snapshot[proc.info["pid"]] = (_group(cmdline), times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return snapshot


def cpu_split(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], seconds: float
) -> dict[str, float]:
    """Percent of one core used by each group between two snapshots (new processes count from 0)."""
    used: dict[str, float] = {}
    for pid, (group, total) in after.items():
        start = before.get(pid, (group, 0.0))[1]
        used[group] = used.get(group, 0.0) + max(0.0, total - start)
    return {group: round(100 * value / seconds, 1) for group, value in sorted(used.items()) if value > 0.01}


def measure(url: str, warmup: float, duration: float, alive: Any) -> tuple[int, float, dict[str, float]]:
    """Wait out the warm-up, then count nginx's requests and everyone's CPU over ``duration``."""
    time.sleep(warmup)
    if not alive():
        raise RuntimeError("load tool exited during warm-up")
    cpu0, n0, t0 = cpu_snapshot(), handled(url), time.monotonic()
    time.sleep(duration)
    n1, t1, cpu1 = handled(url), time.monotonic(), cpu_snapshot()
    if not alive():
        raise RuntimeError("load tool exited before the end of the window")
    seconds = t1 - t0
    return n1 - n0 - 1, seconds, cpu_split(cpu0, cpu1, seconds)


def wait_for_traffic(url: str, timeout: float, alive: Any) -> float:
    """Seconds until requests start arriving (harness starts Ray first)."""
    began = time.monotonic()
    first = handled(url)
    while time.monotonic() - began < timeout:
        time.sleep(0.2)
        if handled(url) > first + 100:
            return time.monotonic() - began
        if not alive():
            raise RuntimeError("load tool exited before sending load")
    raise RuntimeError("no traffic arrived")


def stop(proc: subprocess.Popen[bytes], sig: int = signal.SIGINT, timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --------------------------------------------------------------------------- the three tools


def run_wrk(url: str, args: argparse.Namespace, round_: int) -> Run:
    total = args.warmup + args.duration + 2
    proc = subprocess.Popen(
        ["wrk", f"-t{args.cores}", f"-c{args.users}", f"-d{total:.0f}s", f"{url}/"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        requests, seconds, cpu = measure(url, args.warmup, args.duration, lambda: proc.poll() is None)
    finally:
        stop(proc)
    return Run("wrk", round_, requests / seconds, requests, seconds, cpu)


def run_locust(url: str, args: argparse.Namespace, round_: int, workdir: Path) -> Run:
    total = args.warmup + args.duration + 5
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "locust"),
            "-f",
            str(HERE / "locustfile.py"),
            "--headless",
            "--processes",
            str(args.cores),
            "-u",
            str(args.users),
            "-r",
            str(args.users),
            "--run-time",
            f"{total:.0f}s",
            "--host",
            url,
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(workdir / f"locust-{round_}.log", "w"),  # noqa: SIM115
        cwd=workdir,
    )
    try:
        wait_for_traffic(url, 60, lambda: proc.poll() is None)
        requests, seconds, cpu = measure(url, args.warmup, args.duration, lambda: proc.poll() is None)
    finally:
        stop(proc, signal.SIGTERM)
    return Run("locust", round_, requests / seconds, requests, seconds, cpu)


def full_rate_scenario(name: str, url: str, influx_url: str, processes: int, users: int, seconds: float) -> str:
    """The harness scenario equivalent to plain Locust with the same users: Hammer, no think
    time, with the SLOs, guard and InfluxDB writes a real run has (so their cost is counted)."""
    return f"""
name: {name}
target: {{base_url: "{url}"}}
load:
  locustfile: {HERE / "locustfile.py"}
  user_classes: [{{class: Hammer}}]
  processes: {processes}
  stages:
    - {{name: full, duration: {seconds:.0f}s, users: {users}, spawn_rate: {users}}}
slos:
  - {{name: latency, objective: "p99 < 1s", window: run}}
  - {{name: errors, objective: "error_rate < 1%", window: steady}}
guards:
  - {{name: meltdown, condition: "error_rate > 50% for 5s"}}
results: {{url: "{influx_url}", database: {name}}}
""".lstrip()


def run_harness(url: str, args: argparse.Namespace, round_: int, workdir: Path, influx_url: str) -> Run:
    total = args.warmup + args.duration + 8
    scenario = workdir / f"bench-{round_}.yaml"
    scenario.write_text(full_rate_scenario("bench", url, influx_url, args.cores, args.users, total))
    env = {**os.environ, "HARNESS_RUNS_DIR": str(workdir / "runs"), "HARNESS_DATA_DIR": str(workdir / "data")}
    run_id = f"bench-{round_}-{int(time.time())}"
    log = open(workdir / f"harness-{round_}.log", "w")  # noqa: SIM115
    began = time.monotonic()
    proc = subprocess.Popen(
        [str(VENV_BIN / "harness"), "run", str(scenario), "--run-id", run_id], stdout=log, stderr=log, env=env
    )
    try:
        startup = wait_for_traffic(url, 90, lambda: proc.poll() is None)
        requests, seconds, cpu = measure(url, args.warmup, args.duration, lambda: proc.poll() is None)
        code = proc.wait(total + 60)
    finally:
        stop(proc)
        log.close()
    summary = json.loads((workdir / "runs" / run_id / "summary.json").read_text())
    detail = {
        "exit_code": code,
        "verdict": summary["verdict"],
        "startup_to_traffic_s": round(startup, 2),
        "wall_s": round(time.monotonic() - began, 1),
        "summary_rps": round(summary["totals"]["rps"], 1),
        "points_written": summary["results"]["points_written"],
        "points_dropped": summary["results"]["points_dropped"],
        "saturated_seconds": summary["seconds"]["saturated"],
        "driver_cpu": driver_cpu(summary),
    }
    return Run("harness", round_, requests / seconds, requests, seconds, cpu, detail)


def driver_cpu(summary: dict[str, Any]) -> dict[str, float]:
    """What the driver's parts cost while the load ran, in percent of one core (from summary.json).

    The driver process holds the clock thread, the poll thread (aggregator: window merges,
    percentiles, SLOs and guards) and the results writer's thread.
    """
    timings = summary.get("timings", {})
    window = timings.get("load_window_s") or 0.0
    if not window:
        return {}
    parts = {
        "driver_total": timings.get("driver_cpu_s", 0.0),
        "clock": timings.get("clock_thread_cpu_s", 0.0),
        "aggregator": timings.get("poll_thread_cpu_s", 0.0),
        "writer": summary.get("results", {}).get("cpu_s", 0.0),
    }
    return {name: round(100 * seconds / window, 2) for name, seconds in parts.items()}


# --------------------------------------------------------------------------- report


def _median(runs: list[Run]) -> float:
    return statistics.median(r.rps for r in runs) if runs else 0.0


def report(runs: list[Run], args: argparse.Namespace) -> dict[str, Any]:
    by_tool = {tool: [r for r in runs if r.tool == tool] for tool in ("wrk", "locust", "harness")}
    medians = {tool: _median(rs) for tool, rs in by_tool.items()}
    table = Table(
        title=f"requests/s counted by nginx, {args.duration:g}s windows, {args.cores} cores, {args.users} users"
    )
    for column in ("tool", "median", "range", "runs", "CPU % of one core by process group (median run)"):
        table.add_column(column)
    for tool, rs in by_tool.items():
        if not rs:
            continue
        middle = sorted(rs, key=lambda r: r.rps)[len(rs) // 2]
        cpu = ", ".join(f"{g} {v:g}" for g, v in sorted(middle.cpu.items(), key=lambda kv: -kv[1]))
        table.add_row(
            {"wrk": "A wrk", "locust": "B locust", "harness": "C harness"}[tool],
            f"{medians[tool]:,.0f}",
            f"{min(r.rps for r in rs):,.0f}-{max(r.rps for r in rs):,.0f}",
            str(len(rs)),
            cpu,
        )
    console.print(table)
    for run in by_tool["harness"]:
        if run.detail.get("driver_cpu"):
            shares = ", ".join(f"{k} {v:g}" for k, v in run.detail["driver_cpu"].items())
            console.print(f"round {run.round} harness driver, % of one core over the load window: {shares}")
    ratio_hl = medians["harness"] / medians["locust"] if medians["locust"] else None
    ratio_hw = medians["harness"] / medians["wrk"] if medians["wrk"] else None
    if ratio_hl is not None:
        console.print(f"C/B (harness / plain Locust) = {ratio_hl:.3f}")
    if ratio_hw is not None:
        console.print(f"C/A (harness / wrk)          = {ratio_hw:.3f}")
    return {
        "created": datetime.now(UTC).isoformat(),
        "cores": args.cores,
        "users": args.users,
        "duration_s": args.duration,
        "warmup_s": args.warmup,
        "rounds": args.rounds,
        "wrk_rps": round(medians["wrk"], 1),
        "locust_rps": round(medians["locust"], 1),
        "harness_rps": round(medians["harness"], 1),
        "ratio_harness_locust": None if ratio_hl is None else round(ratio_hl, 4),
        "ratio_harness_wrk": None if ratio_hw is None else round(ratio_hw, 4),
        "runs": [asdict(r) for r in runs],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=30.0, help="measured window per run, seconds")
    parser.add_argument("--warmup", type=float, default=5.0)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--users", type=int, default=100, help="users (B, C) and connections (A)")
    parser.add_argument("--only", default="A,B,C", help="which of A (wrk), B (locust), C (harness)")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: run 'make setup'")
    only = {x.strip().upper() for x in args.only.split(",")}
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="harness-bench-") as tmp:
        workdir = Path(tmp)
        with target_and_influx(workdir) as (url, influx):
            for round_ in range(1, args.rounds + 1):
                for tool in ("A", "B", "C"):
                    if tool not in only:
                        continue
                    if tool == "A":
                        run = run_wrk(url, args, round_)
                    elif tool == "B":
                        run = run_locust(url, args, round_, workdir)
                    else:
                        run = run_harness(url, args, round_, workdir, influx.url)
                    console.print(f"round {round_} {run.tool}: {run.rps:,.0f} req/s  {run.detail or ''}")
                    runs.append(run)
                    time.sleep(2)
    result = report(runs, args)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"throughput-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
