"""Requests/s through the fault proxy with one process against N processes on one port (SO_REUSEPORT).

Starts Debian's nginx on loopback (one worker, access_log off, a 3-byte body: the helper of
``benchmarks/throughput.py``) and, in turn, three proxies in front of it:

* ``workers_1``: ``--workers 1``, idle (no fault);
* ``workers_N``: ``--workers N`` (default: the cores of this machine), idle;
* ``workers_N_rules``: the same with three HTTP rules that match no request of the load
  (``POST /api/checkout/*``, a ``path_regex`` and a header rule): every request is parsed and
  matched, then forwarded, which is what a proxy costs while route rules are active.

Each target gets ``wrk -t1 -c100`` for ``--duration`` seconds, alternating targets round by round
so machine drift cancels out. Requests/s are counted by nginx's stub_status (the same referee
for every target). wrk in C needs a few microseconds per request against the proxy's tens in
Python, so one wrk thread does not starve the proxy; on a 2-core machine all of wrk, nginx and
the proxy processes still share the two cores, so the figures are a floor.

    python benchmarks/proxy_workers.py                  # 3 rounds of 5 s
    python benchmarks/proxy_workers.py --rounds 1 --duration 3 --workers 2

Prints each run and the medians, and writes benchmarks/results/proxy-workers-<time>.json.
Bounded: every wrk run is ``--duration`` seconds (at most 60), rounds at most 10.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import free_port, handled, nginx  # the sibling benchmark's helpers

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RULES = [
    {"kind": "http.abort", "method": "POST", "path": "/api/checkout/*", "status": 503},
    {"kind": "http.delay", "path_regex": r"/api/products/\d+", "delay": 0.2},
    {"kind": "http.abort", "request_headers": {"X-Chaos": "on"}, "status": 500},
]


def _put(control: str, name: str, body: dict[str, Any]) -> None:
    request = urllib.request.Request(f"http://{control}/faults/{name}", data=json.dumps(body).encode(), method="PUT")
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status in (200, 201), response.status


def _cpu_seconds(pid: int) -> float:
    """CPU seconds of a proxy and its worker processes."""
    total = 0.0
    proc = psutil.Process(pid)
    for p in [proc, *proc.children()]:
        times = p.cpu_times()
        total += times.user + times.system
    return total


def measure(upstream: str, nginx_url: str, workers: int, rules: bool, duration: float, log: Any) -> dict[str, Any]:
    """One wrk run through a fresh proxy with ``workers`` processes; requests/s and the proxy's CPU."""
    listen, control = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    proxy = subprocess.Popen(
        [
            *(sys.executable, "-m", "harness.chaos.proxy_server", "--workers", str(workers)),
            *("--listen", listen, "--upstream", upstream, "--control", control),
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
        if rules:
            for i, rule in enumerate(RULES):
                _put(control, f"bench{i}", rule)
        subprocess.run(["wrk", "-t1", "-c100", "-d1s", f"http://{listen}/"], capture_output=True, timeout=30)
        cpu0, n0, t0 = _cpu_seconds(proxy.pid), handled(nginx_url), time.monotonic()
        subprocess.run(
            ["wrk", "-t1", "-c100", f"-d{duration:.0f}s", f"http://{listen}/"],
            capture_output=True,
            timeout=duration + 30,
            check=True,
        )
        n1, t1, cpu1 = handled(nginx_url), time.monotonic(), _cpu_seconds(proxy.pid)
    finally:
        proxy.send_signal(signal.SIGTERM)
        try:
            proxy.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proxy.kill()
            proxy.wait()
    seconds = t1 - t0
    requests = n1 - n0 - 1  # minus our own stub_status read
    return {"rps": round(requests / seconds, 1), "proxy_cpu_percent": round(100 * (cpu1 - cpu0) / seconds, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, choices=range(1, 11), metavar="1..10")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per wrk run (1..60)")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="N (default: the cores)")
    args = parser.parse_args()
    duration = min(60.0, max(1.0, args.duration))
    n = max(2, args.workers)
    targets = {"workers_1": (1, False), f"workers_{n}": (n, False), f"workers_{n}_rules": (n, True)}
    runs: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory(prefix="harness-bench-workers-") as tmp,
        nginx(free_port(), Path(tmp)) as url,
        open(Path(tmp) / "proxy.log", "w") as log,
    ):
        for round_ in range(1, args.rounds + 1):
            for target, (workers, rules) in targets.items():
                run = {"target": target, "round": round_, **measure(url[7:], url, workers, rules, duration, log)}
                runs.append(run)
                print(f"round {round_} {target:17} {run['rps']:9.0f} rps  proxy cpu {run['proxy_cpu_percent']}%")
    summary: dict[str, Any] = {"cores": len(os.sched_getaffinity(0)), "duration": duration, "rounds": args.rounds}
    for target in targets:
        summary[f"{target}_rps"] = statistics.median(r["rps"] for r in runs if r["target"] == target)
        summary[f"{target}_cpu_percent"] = statistics.median(
            r["proxy_cpu_percent"] for r in runs if r["target"] == target
        )
    summary[f"speedup_{n}_over_1"] = round(summary[f"workers_{n}_rps"] / summary["workers_1_rps"], 3)
    summary["command"] = "python benchmarks/proxy_workers.py " + " ".join(sys.argv[1:])
    print(json.dumps(summary, indent=2))
    out = HERE / "results" / f"proxy-workers-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"summary": summary, "runs": runs}, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
