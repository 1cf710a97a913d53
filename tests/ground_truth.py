"""Ground truth for percentile checks: nearest rank over every raw latency, and HDR's tolerance.

Runs started with ``HARNESS_RAW_LATENCY_DIR`` log every request's latency (one file per
Locust process); the tests compare what harness reports (merged HdrHistograms) with the
percentiles computed here from those raw values.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

# Field name (as in InfluxDB; summary.json adds "_ms") and percentile.
PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))


def nearest_rank(values: list[int], percentile: float) -> float:
    """The nearest-rank percentile of microsecond values, in milliseconds."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percentile / 100 * len(ordered)))
    return ordered[rank - 1] / 1000.0


def hdr_close(hdr_ms: float, truth_ms: float) -> bool:
    """HDR with 3 significant digits: a value's bucket is within 1/1024 of it (plus 1 us of rounding)."""
    return abs(hdr_ms - truth_ms) <= truth_ms * 0.002 + 0.002


def read_raw(
    files: Iterable[Path],
) -> tuple[dict[tuple[int, str, str], list[int]], dict[tuple[str, str], list[int]]]:
    """Every raw latency (microseconds, clamped to HDR's range as the recorder does), by
    (second, method, name) and by (method, name)."""
    per_second: dict[tuple[int, str, str], list[int]] = defaultdict(list)
    per_endpoint: dict[tuple[str, str], list[int]] = defaultdict(list)
    for file in files:
        for line in file.read_text().splitlines():
            second, method, name, latency = line.split("\t")[:4]  # then the service time (open model)
            value = min(max(int(latency), 1), 60_000_000)
            per_second[(int(second), method, name)].append(value)
            per_endpoint[(method, name)].append(value)
    return per_second, per_endpoint
