"""Ground truth for "one set of numbers": every request as Locust's request event gave it, and
what a window's figures must be from those requests alone.

A run's locustfile (:func:`logging_locustfile`) wraps the demo shop's users and adds one
module-level ``@events.request`` listener, as any user's locustfile could, that appends each
request to a file: when the event fired (epoch s), method, name, response time (ms) and whether
it failed. That log is independent of everything harness does with a request after the event
(HDR histograms, per-second windows, merging, the ledger, the writers).

Which second a request belongs to: harness takes the clock when its own listener runs, just
after this one, so a request that completed within a few microseconds of a second's boundary
may be counted by harness in the next second. Such requests are *ambiguous* here when they
sit within ``EDGE_S`` of a boundary that separates two windows; a window's count may differ
from the log's by at most its ambiguous requests, and its percentiles must match the log's for
some assignment of them (:func:`window_truth` enumerates them: there are a handful at most).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.ground_truth import hdr_close, nearest_rank

#: Seconds either side of a second's boundary within which the log's clock and harness's may
#: put a request in different seconds (two time.time() calls microseconds apart, and the
#: node's clock offset, which is 0 on one machine but measured, so not exactly 0).
EDGE_S = 0.010

LISTENER = '''"""The demo shop's users, plus a request listener that logs every request (a test's ground truth)."""

import os
import sys
import time

sys.path.insert(0, {shop_dir!r})

import shop
from locust import events


class Shopper(shop.Shopper):
    """The demo shop's shopper, unchanged (defined here: harness validate reads the file)."""

_log = open({log!r} + "." + str(os.getpid()), "a", buffering=1)


@events.request.add_listener
def _logged(request_type, name, response_time, response_length, exception=None, **kwargs):
    failed = int(exception is not None)
    _log.write(f"{{time.time():.6f}}\\t{{request_type}}\\t{{name}}\\t{{response_time!r}}\\t{{failed}}\\n")
'''


def logging_locustfile(path: Path, shop_dir: Path, log: Path) -> Path:
    """Write the locustfile whose Locust processes log each request to ``log.<pid>``."""
    path.write_text(LISTENER.format(shop_dir=str(shop_dir), log=str(log)))
    return path


@dataclass(frozen=True)
class Request:
    at: float  # epoch s, when the request event fired
    method: str
    name: str
    latency_us: int  # as harness records it: int(response_time * 1000), clamped to HDR's range
    failed: bool


def read_log(directory: Path, stem: str) -> list[Request]:
    out = []
    for file in sorted(directory.glob(stem + ".*")):
        for line in file.read_text().splitlines():
            at, method, name, response_time, failed = line.split("\t")
            latency = min(max(int(float(response_time) * 1000), 1), 60_000_000)
            out.append(Request(float(at), method, name, latency, failed == "1"))
    return out


@dataclass(frozen=True)
class Truth:
    """A window's figures from the log: counts (with how many requests are ambiguous) and the
    latency sets the window may hold (one per assignment of its ambiguous requests)."""

    requests: int  # sure to be in the window; harness may count up to ``ambiguous`` more
    failures: int  # likewise, up to ``ambiguous_failures`` more
    ambiguous: int
    ambiguous_failures: int
    variants: tuple[tuple[int, ...], ...]  # sorted latencies (us) of each possible membership

    def percentile_ok(self, reported_ms: float, percentile: float) -> bool:
        """HDR's precision (3 significant digits: within 1/1024 of the value, + 1 us of rounding)
        against the nearest-rank percentile of some possible membership of the window."""
        return any(hdr_close(reported_ms, nearest_rank(list(v), percentile)) for v in self.variants)

    def counts_ok(self, requests: int, failures: int) -> bool:
        """harness's counts: the sure requests and some of the ambiguous ones, nothing else."""
        return (
            self.requests <= requests <= self.requests + self.ambiguous
            and self.failures <= failures <= self.failures + self.ambiguous_failures
        )

    def max_ok(self, reported_ms: float) -> bool:
        return any(hdr_close(reported_ms, v[-1] / 1000.0) for v in self.variants)


def window_truth(requests: Iterable[Request], started: float, spans: Iterable[tuple[float, float]]) -> Truth:
    """The figures of a window covering ``spans`` (offsets from ``started``): a second belongs to
    it when its midpoint lies inside (as harness and docs/scenarios.md say)."""
    spans = list(spans)

    def inside(second: int) -> bool:
        offset = second + 0.5 - started
        return any(a <= offset < b for a, b in spans)

    sure: list[Request] = []
    maybe: list[Request] = []
    for r in requests:
        second = math.floor(r.at)
        here = inside(second)
        near = r.at - second  # how far past its second's start
        neighbour = second - 1 if near < EDGE_S else second + 1 if near > 1 - EDGE_S else None
        if neighbour is not None and inside(neighbour) != here:
            maybe.append(r)  # harness may have put it in the neighbouring second
        elif here:
            sure.append(r)
    # The run's first users start together, so the boundary after the partial first second can
    # hold a burst (a CI run had 9 within 10 ms); 2**12 memberships still enumerate in about a second.
    assert len(maybe) <= 12, f"{len(maybe)} requests at a window's edge: too many to enumerate"
    variants = []
    for chosen in itertools.product((False, True), repeat=len(maybe)):
        members = sure + [r for r, take in zip(maybe, chosen, strict=True) if take]
        if members:
            variants.append(tuple(sorted(r.latency_us for r in members)))
    failures = sum(r.failed for r in sure)
    return Truth(len(sure), failures, len(maybe), sum(r.failed for r in maybe), tuple(variants))
