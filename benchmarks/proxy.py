"""What the idle fault proxy costs: wrk straight to nginx vs wrk through ``harness.chaos.proxy_server``.

Starts Debian's nginx on loopback (the helper of ``benchmarks/throughput.py``: one worker,
access_log off, a 3-byte body), one fault proxy (one process, ``--workers 1``; see
``benchmarks/proxy_workers.py`` for several) in front of it, and runs wrk against each
in turn, alternating (direct, proxy, proxy with a fault, direct, ...) so that machine drift
cancels out. Two loads per target:

* ``saturate``: ``wrk -t1 -c50`` for ``--duration`` seconds: requests/s, counted by nginx's
  own stub_status over the window (the same referee for every target), and wrk's latency
  percentiles;
* ``single``: ``wrk -t1 -c1``: one request at a time, so the per-request latency the proxy
  adds shows without queueing.

``proxy_fault_path`` is the proxy with a 0 ms latency fault in place: nothing is delayed,
but every request takes the fault path (head parsed, a decision made per request), which
is what a proxy costs while *some* fault is active. On a 2-core machine wrk, nginx and the
proxy share the cores, so the saturated figures are a floor for the proxy, not a ceiling.

    python benchmarks/proxy.py                   # 3 rounds, 5 s per run
    python benchmarks/proxy.py --rounds 1 --duration 3

Writes benchmarks/results/proxy-<time>.json with the medians, the ratios to direct and the
raw runs. Bounded: every wrk run is ``--duration`` seconds, rounds at most 10.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import free_port, handled, nginx  # the sibling benchmark's helpers

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TARGETS = ("direct", "proxy", "proxy_fault_path")
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


@dataclass
class Run:
    target: str
    load: str
    round: int
    rps: float
    requests: int
    seconds: float
    latency_ms: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)  # percent of one core


def _latency(text: str) -> dict[str, float]:
    """wrk --latency's distribution (50/75/90/99%) in milliseconds."""
    out = {}
    for pct, value, unit in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s)\s*$", text, re.MULTILINE):
        out[f"p{pct}"] = round(float(value) * _UNITS[unit], 4)
    return out


def _cpu(pids: dict[str, int]) -> dict[str, float]:
    out = {}
    for name, pid in pids.items():
        try:
            times = psutil.Process(pid).cpu_times()
            out[name] = times.user + times.system
        except psutil.Error:
            continue
    return out


def run_wrk(
    url: str, nginx_url: str, target: str, load: str, round_: int, duration: float, pids: dict[str, int]
) -> Run:
    connections = 50 if load == "saturate" else 1
    cpu0, n0, t0 = _cpu(pids), handled(nginx_url), time.monotonic()
    done = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{duration:.0f}s", "--latency", f"{url}/"],
        capture_output=True,
        text=True,
        timeout=duration + 30,
        check=True,
    )
    n1, t1, cpu1 = handled(nginx_url), time.monotonic(), _cpu(pids)
    seconds = t1 - t0
    requests = n1 - n0 - 1  # minus our own stub_status read
    cpu = {k: round(100 * (cpu1[k] - cpu0[k]) / seconds, 1) for k in cpu1 if k in cpu0}
    return Run(target, load, round_, requests / seconds, requests, seconds, _latency(done.stdout), cpu)


def _control(control: str, method: str, path: str, body: Any = None) -> int:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://{control}{path}", data=data, method=method)
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 11), metavar="1..10")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (1..60)")
    args = parser.parse_args()
    duration = min(60.0, max(1.0, args.duration))
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="harness-bench-proxy-") as tmp, nginx(free_port(), Path(tmp)) as url:
        nginx_pid = int((Path(tmp) / "nginx" / "nginx.pid").read_text().split()[0])
        workers = [p.pid for p in psutil.Process(nginx_pid).children()]
        listen, control = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
        log = open(Path(tmp) / "proxy.log", "w")  # noqa: SIM115 - closed in finally
        proxy = subprocess.Popen(
            [
                *(sys.executable, "-m", "harness.chaos.proxy_server", "--workers", "1", "--listen", listen),
                *("--upstream", url.removeprefix("http://"), "--control", control),
            ],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            cwd=ROOT,
        )
        try:
            assert proxy.stdout is not None
            if not proxy.stdout.readline():
                sys.exit("the proxy did not start")
            pids = {"proxy": proxy.pid, "nginx": workers[0] if workers else nginx_pid}
            for round_ in range(1, args.rounds + 1):
                for target in TARGETS:
                    if target == "proxy_fault_path":
                        _control(control, "PUT", "/faults/bench", {"kind": "proxy.latency", "latency": 0})
                    for load in ("saturate", "single"):
                        address = url if target == "direct" else f"http://{listen}"
                        run = run_wrk(address, url, target, load, round_, duration, pids)
                        runs.append(run)
                        print(
                            f"round {round_} {target:17} {load:8} {run.rps:9.0f} rps  "
                            f"p50 {run.latency_ms.get('p50', 0):.3f} ms  p99 {run.latency_ms.get('p99', 0):.3f} ms  "
                            f"cpu {run.cpu}",
                            flush=True,
                        )
                    if target == "proxy_fault_path":
                        _control(control, "DELETE", "/faults/bench")
        finally:
            proxy.send_signal(signal.SIGTERM)
            try:
                proxy.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proxy.kill()
                proxy.wait()
            log.close()

    summary: dict[str, Any] = {"cores": os.cpu_count(), "duration": duration, "rounds": args.rounds}
    for load in ("saturate", "single"):
        for target in TARGETS:
            chosen = [r for r in runs if r.target == target and r.load == load]
            summary[f"{target}_{load}_rps"] = round(statistics.median(r.rps for r in chosen), 1)
            summary[f"{target}_{load}_p50_ms"] = round(statistics.median(r.latency_ms.get("p50", 0) for r in chosen), 4)
            summary[f"{target}_{load}_p99_ms"] = round(statistics.median(r.latency_ms.get("p99", 0) for r in chosen), 4)
        direct = summary[f"direct_{load}_rps"]
        for target in TARGETS[1:]:
            summary[f"ratio_{target}_{load}"] = round(summary[f"{target}_{load}_rps"] / direct, 4) if direct else None
        summary[f"added_p50_ms_proxy_{load}"] = round(
            summary[f"proxy_{load}_p50_ms"] - summary[f"direct_{load}_p50_ms"], 4
        )
    proxy_cpu = [r.cpu.get("proxy", 0.0) for r in runs if r.target != "direct" and r.load == "saturate"]
    summary["proxy_cpu_percent_saturated"] = round(statistics.median(proxy_cpu), 1) if proxy_cpu else None
    print(json.dumps(summary, indent=2))
    out = HERE / "results" / f"proxy-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "runs": [asdict(r) for r in runs]}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
