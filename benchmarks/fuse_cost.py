"""What the io family's FUSE passthrough costs by itself: operations per second in a directory
with an ``io.latency`` fault mounted over it that faults no file, against the same directory
without the mount (the figures docs/faults.md quotes).

The fault is a real one (``python -m harness.chaos.families.io.server`` mounted over a fresh
directory under /tmp through the family's inject, reverted at the end) whose ``path`` glob
matches none of the files used, so every operation passes through the server untouched. Each
case runs a fixed count of operations, timed in this process:

* ``write``: 4 KiB ``os.write`` to one open file;
* ``read``: 4 KiB ``os.pread`` from one open file;
* ``open_close``: ``os.open`` + ``os.close`` of one file;
* ``fsync``: ``os.fsync`` after a 4 KiB write (milliseconds per call).

    python benchmarks/fuse_cost.py                  # 20,000 operations a case (2,000 fsyncs)
    python benchmarks/fuse_cost.py --ops 5000

Needs root, /dev/fuse, libfuse3 and mfusepy (`harness doctor` says which is missing). Bounded:
at most 100,000 operations a case; the mount is reverted even when a case fails.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import TypeAdapter

from harness.chaos.family import family_of
from harness.chaos.journal import Journal
from harness.chaos.steps import InjectContext
from harness.scenario import Fault

BLOCK = b"x" * 4096


def _rate(ops: int, work: Callable[[], object]) -> float:
    began = time.perf_counter()
    for _ in range(ops):
        work()
    return ops / (time.perf_counter() - began)


def measure(directory: Path, ops: int) -> dict[str, float]:
    """Operations per second of each case in ``directory`` (fsync: milliseconds per call)."""
    path = str(directory / "bench.dat")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, BLOCK)
        figures = {
            "write": _rate(ops, lambda: os.write(fd, BLOCK)),
            "read": _rate(ops, lambda: os.pread(fd, 4096, 0)),
        }

        def write_fsync() -> None:
            os.write(fd, BLOCK)
            os.fsync(fd)

        figures["fsync_ms"] = 1000.0 / _rate(max(ops // 10, 1), write_fsync)
    finally:
        os.close(fd)
    figures["open_close"] = _rate(ops, lambda: os.close(os.open(path, os.O_RDONLY)))
    os.unlink(path)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=20_000, help="operations a case (at most 100,000)")
    args = parser.parse_args()
    ops = max(1, min(args.ops, 100_000))
    work = Path(tempfile.mkdtemp(prefix="harness-bench-io-", dir="/tmp"))
    try:
        volume = work / "volume"
        volume.mkdir()
        direct = measure(volume, ops)
        spec = {"name": "bench", "kind": "io.latency", "at": 0, "duration": 600}
        params = {"volume_path": str(volume), "path": "never-matches-*", "delay": "10ms"}
        fault = TypeAdapter(Fault).validate_python({**spec, "params": params})
        family = family_of(fault.kind)
        journal = Journal("fuse-cost", work / "journal")
        record = family.inject(fault, InjectContext("fuse-cost", journal))
        try:
            mounted = measure(volume, ops)
        finally:
            family.revert(record, journal)
        for case in ("write", "read", "open_close"):
            print(f"{case:11} {mounted[case]:11,.0f}/s through the mount  {direct[case]:11,.0f}/s directly")
        print(f"{'fsync':11} {mounted['fsync_ms']:10.2f} ms through the mount  {direct['fsync_ms']:10.2f} ms directly")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
