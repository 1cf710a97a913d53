"""What a clock read costs a target under each ``time.skew`` mechanism, in nanoseconds per
``time.time()`` (the figures docs/faults.md quotes).

Runs one small Python target per case, each timing its own loop of ``time.time()`` calls in
rounds and printing nanoseconds per call:

* ``plain``: no mechanism at all;
* ``shim``: started under harness's clock shim (libfaketime re-reading the skew file on every
  call, ``FAKETIME_NO_CACHE=1``, which is what lets a fault take effect at once);
* ``shim_cached``: the same with libfaketime's default cache (the file read at most every 10 s);
* ``vdso``: a plain target whose vDSO a ``time.skew`` fault (``mechanism: vdso``, x86-64, root)
  patched while it ran (every clock read becomes a system call); the inject's and the revert's
  own times are printed too (the target's threads are stopped for part of each).

    python benchmarks/clock_cost.py                 # 200,000 calls a round, 5 rounds
    python benchmarks/clock_cost.py --calls 50000 --rounds 3

Prints the median of the rounds per case. Bounded: at most 10 rounds of at most 10^6 calls.
Needs libfaketime (Debian's faketime) for the shim cases and root for the vdso case; a case that
cannot run here says why and is skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import TypeAdapter

from harness.chaos import clock_shim
from harness.chaos.family import family_of
from harness.chaos.journal import Journal
from harness.chaos.steps import InjectContext
from harness.scenario import Fault

TARGET = textwrap.dedent(
    """
    import json, sys, time
    calls, rounds = int(sys.argv[1]), int(sys.argv[2])
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()  # go
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for _ in range(calls):
            time.time()
        print(json.dumps({"ns": (time.perf_counter_ns() - start) / calls}), flush=True)
    """
)


Patch = Callable[[int], Callable[[], object]]  # acts on a target's PID; returns its undo


def _run(command: list[str], env: dict[str, str], before_go: Patch | None = None) -> list[float]:
    """Start the target, let ``before_go(pid)`` act on it, then collect its rounds."""
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if json.loads(proc.stdout.readline()) != {"ready": True}:
            raise SystemExit("the target did not start")
        undo = before_go(proc.pid) if before_go is not None else None
        proc.stdin.write("\n")
        proc.stdin.flush()
        figures = [json.loads(line)["ns"] for line in proc.stdout]
        if undo is not None:
            undo()
        return figures
    finally:
        proc.kill()
        proc.wait(5)


def _vdso(work: Path) -> Patch:
    def patch(pid: int) -> Callable[[], object]:
        pid_file = work / "target.pid"
        pid_file.write_text(f"{pid}\n")
        spec = {"name": "bench", "kind": "time.skew", "at": 0, "duration": 60, "target": {"pid_file": str(pid_file)}}
        fault = TypeAdapter(Fault).validate_python({**spec, "params": {"offset": "-10m", "mechanism": "vdso"}})
        family = family_of(fault.kind)
        journal = Journal("clock-cost", work / "journal")
        began = time.perf_counter()
        record = family.inject(fault, InjectContext("clock-cost", journal))
        print(f"vdso inject (journal, ptrace stop, patch, detach) took {(time.perf_counter() - began) * 1000:.1f} ms")

        def revert() -> None:
            began = time.perf_counter()
            family.revert(record, journal)
            print(f"vdso revert took {(time.perf_counter() - began) * 1000:.1f} ms")

        return revert

    return patch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000, help="time.time() calls a round (at most 10^6)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per case (at most 10)")
    args = parser.parse_args()
    calls, rounds = min(args.calls, 1_000_000), min(args.rounds, 10)
    with tempfile.TemporaryDirectory(prefix="harness-bench-clock-") as tmp:
        work = Path(tmp)
        script = work / "target.py"
        script.write_text(TARGET)
        plain = [sys.executable, str(script), str(calls), str(rounds)]
        env = dict(os.environ)
        cases: dict[str, tuple[list[str], dict[str, str], Patch | None]] = {"plain": (plain, env, None)}
        if clock_shim.library() is None:
            print("shim cases skipped: libfaketime is not installed (apt-get install faketime)")
        else:
            shimmed = clock_shim.shim_environment(work / "skew", env)  # what harness's clock shim execs with
            cached = {k: v for k, v in shimmed.items() if k != "FAKETIME_NO_CACHE"}
            cases["shim"] = (plain, shimmed, None)
            cases["shim_cached"] = (plain, cached, None)
        if os.geteuid() != 0:
            print("vdso case skipped: patching another process's vDSO needs root (ptrace)")
        else:
            cases["vdso"] = (plain, env, _vdso(work))
        for name, (command, case_env, before_go) in cases.items():
            figures = _run(command, case_env, before_go)
            rounds_text = ", ".join(f"{f:.1f}" for f in figures)
            print(f"{name:12} {statistics.median(figures):8.1f} ns per time.time()  (rounds: {rounds_text})")


if __name__ == "__main__":
    main()
