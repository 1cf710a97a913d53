"""CPU time of the calling thread, so the driver can say what its clock, aggregator and writer cost.

The issue's rule is that the harness around Locust must cost almost nothing; these figures
(in summary.json) are how a run shows it, without a profiler.
"""

from __future__ import annotations

import resource

__all__ = ["thread_cpu_seconds"]


def thread_cpu_seconds() -> float:
    """User plus system CPU seconds the calling thread has used (Linux ``RUSAGE_THREAD``)."""
    usage = resource.getrusage(resource.RUSAGE_THREAD)
    return usage.ru_utime + usage.ru_stime
