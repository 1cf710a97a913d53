"""CPU time of the calling thread, so the driver can say what its clock, aggregator and writer cost.

The issue's rule is that the harness around Locust must cost almost nothing; these figures
(in summary.json) are how a run shows it, without a profiler.
"""

from __future__ import annotations

import math
import os
import resource
from pathlib import Path

__all__ = ["thread_cpu_seconds", "usable_cores"]


def thread_cpu_seconds() -> float:
    """User plus system CPU seconds the calling thread has used (Linux ``RUSAGE_THREAD``)."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may really use: its CPU affinity, capped by its cgroup's CPU quota.

    ``os.cpu_count()`` counts the host's cores; in a container limited to 4 CPUs on a 32-core
    node it would start 32 Locust processes that the quota then throttles. cgroup v2's
    ``cpu.max`` ("max 100000" or "400000 100000") gives the quota of the process's own cgroup.
    """
    cores = len(os.sched_getaffinity(0)) or os.cpu_count() or 1
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
        relative = next(line[3:] for line in lines if line.startswith("0::")).lstrip("/")
        quota, period = (cgroup_root / relative / "cpu.max").read_text().split()[:2]
        if quota != "max" and float(period) > 0:
            cores = min(cores, max(1, math.ceil(float(quota) / float(period))))
    except (OSError, StopIteration, ValueError):
        pass  # no cgroup v2 or no quota: the affinity is the limit
    return cores
