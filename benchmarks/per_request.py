"""CPU per request of one harness Locust process (H) against one plain Locust process (L).

The throughput benchmark judges whole pipelines; this one isolates the per-request path:
the same locustfile (benchmarks/locustfile.py), the same user count, one process each,
alternating H L H L ... against Debian's nginx on loopback. Each run is measured over the
same window after a warm-up: requests counted by nginx, CPU seconds of that one process
from /proc. CPU per request is far steadier than requests/s on a shared virtual machine,
so this is the figure to compare before and after a change to harness/load/runner.py or
the window recorder.

    python benchmarks/per_request.py                # 4 pairs, 8 s windows
    python benchmarks/per_request.py --pairs 6 --duration 10
    python benchmarks/per_request.py --listener     # harness without / with a module-level request listener
    python benchmarks/per_request.py --trace        # harness without / with W3C trace context (load.trace)

``--listener`` runs the harness process twice per pair instead, on benchmarks/locustfile.py and on
benchmarks/locustfile_listener.py (the same user plus one ``@events.request.add_listener``
counter): the difference is what one module-level listener costs per request.

``--trace`` runs the harness process twice per pair as well, without and with ``--trace
per=request,sampled=1`` (a ``traceparent`` and a ``baggage`` header on every request and the
example-trace listener, as a run with the default ``load.trace`` does): the difference is
what trace context costs per request.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from throughput import HERE, VENV_BIN, free_port, handled, nginx, stop

from harness.load.protocol import KEEPALIVE_INTERVAL, Keepalive, Ready, SetUsers, Stop, decode_as, encode_command

LOCUSTFILE = HERE / "locustfile.py"
LISTENER_LOCUSTFILE = HERE / "locustfile_listener.py"


def _cpu(proc: subprocess.Popen[bytes]) -> float:
    times = psutil.Process(proc.pid).cpu_times()
    return times.user + times.system


def _window(url: str, proc: subprocess.Popen[bytes], warmup: float, duration: float) -> tuple[int, float, float]:
    """Requests, CPU seconds of ``proc`` and wall seconds over one measured window."""
    time.sleep(warmup)
    if proc.poll() is not None:
        raise RuntimeError("the load process exited during the warm-up")
    cpu0, n0, t0 = _cpu(proc), handled(url), time.monotonic()
    time.sleep(duration)
    cpu1, n1, t1 = _cpu(proc), handled(url), time.monotonic()
    return n1 - n0 - 1, cpu1 - cpu0, t1 - t0


def run_harness_process(
    url: str, users: int, warmup: float, duration: float, locustfile: Path = LOCUSTFILE, extra: tuple[str, ...] = ()
) -> tuple[int, float, float]:
    """One ``harness.load.runner`` process, driven over its pipe protocol as a generator actor would."""
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "python"),
            "-m",
            "harness.load.runner",
            "--process-id",
            "bench",
            "--locustfile",
            str(locustfile),
            "--classes",
            "Hammer:1",
            "--host",
            url,
            "--report-fd",
            str(write_fd),
            *extra,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        pass_fds=(write_fd,),
    )
    os.close(write_fd)
    ready = threading.Event()

    def read_reports() -> None:
        with os.fdopen(read_fd, "rb") as reports:
            for line in reports:
                if decode_as(line, Ready) is not None:
                    ready.set()

    threading.Thread(target=read_reports, daemon=True).start()
    assert proc.stdin is not None
    stdin = proc.stdin
    lock = threading.Lock()
    done = threading.Event()

    def send(line: bytes) -> None:
        with lock:
            stdin.write(line)
            stdin.flush()

    def keepalive() -> None:
        # As a generator actor does: a runner that hears nothing from its actor for
        # ACTOR_SILENCE seconds stops its users and exits (it was cut off from the run).
        while not done.wait(KEEPALIVE_INTERVAL):
            send(encode_command(Keepalive()))

    threading.Thread(target=keepalive, daemon=True).start()
    try:
        if not ready.wait(60):
            raise RuntimeError("the harness load process did not become ready")
        send(encode_command(SetUsers(users=users, spawn_rate=users)))
        return _window(url, proc, warmup, duration)
    finally:
        done.set()
        send(encode_command(Stop()))
        stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run_locust_process(url: str, users: int, warmup: float, duration: float, workdir: Path) -> tuple[int, float, float]:
    """One plain ``locust --headless`` process (no --processes: one interpreter, like H)."""
    proc = subprocess.Popen(
        [
            str(VENV_BIN / "locust"),
            "-f",
            str(LOCUSTFILE),
            "--headless",
            "-u",
            str(users),
            "-r",
            str(users),
            "--run-time",
            f"{warmup + duration + 10:.0f}s",
            "--host",
            url,
            "--only-summary",
            "--loglevel",
            "WARNING",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=workdir,
    )
    try:
        return _window(url, proc, warmup + 1.0, duration)  # + Locust's own start-up
    finally:
        stop(proc)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=4, help="H L pairs to run")
    parser.add_argument("--duration", type=float, default=8.0, help="measured window per run, seconds")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument(
        "--listener", action="store_true", help="harness without and with one module-level request listener"
    )
    parser.add_argument("--trace", action="store_true", help="harness without and with W3C trace context")
    args = parser.parse_args()
    tools = ("harness", "listener") if args.listener else ("harness", "trace") if args.trace else ("harness", "locust")
    costs: dict[str, list[float]] = {tool: [] for tool in tools}
    with tempfile.TemporaryDirectory(prefix="harness-per-request-") as tmp, nginx(free_port(), Path(tmp)) as url:
        for pair in range(1, args.pairs + 1):
            for tool in tools:
                if tool == "harness":
                    requests, cpu, wall = run_harness_process(url, args.users, args.warmup, args.duration)
                elif tool == "trace":
                    requests, cpu, wall = run_harness_process(
                        url, args.users, args.warmup, args.duration, extra=("--trace", "per=request,sampled=1")
                    )
                elif tool == "listener":
                    requests, cpu, wall = run_harness_process(
                        url, args.users, args.warmup, args.duration, LISTENER_LOCUSTFILE
                    )
                else:
                    requests, cpu, wall = run_locust_process(url, args.users, args.warmup, args.duration, Path(tmp))
                costs[tool].append(cpu / requests * 1e6)
                print(
                    f"pair {pair} {tool:7}: {requests / wall:8,.0f} req/s, CPU {100 * cpu / wall:5.1f}% of a core, "
                    f"{costs[tool][-1]:6.1f} us/request",
                    flush=True,
                )
    for tool, values in costs.items():
        print(
            f"{tool:7} median {statistics.median(values):6.1f} us/request (range {min(values):.1f}-{max(values):.1f})"
        )
    if args.listener:
        extra = statistics.median(costs["listener"]) - statistics.median(costs["harness"])
        print(f"one module-level request listener costs {extra:.1f} us/request (median difference)")
        return 0
    if args.trace:
        base, traced = statistics.median(costs["harness"]), statistics.median(costs["trace"])
        print(
            f"trace context costs {traced - base:.2f} us/request ({100 * (traced / base - 1):+.1f}%, median difference)"
        )
        return 0
    ratio = statistics.median(costs["locust"]) / statistics.median(costs["harness"])
    print(f"plain Locust / harness CPU per request = {ratio:.3f} (above 1: the harness process is leaner)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
