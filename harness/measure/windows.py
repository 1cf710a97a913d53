"""Per-second windows of request statistics, and their exact merge across processes.

Pure (hdrhistogram is the only third-party import). A Locust subprocess records every request into a window per
(second, method, name): count, failures by kind, bytes and HdrHistograms of latency in microseconds (of all requests,
and of the failed ones). Windows travel as :class:`harness.load.protocol.Window` reports with the histograms encoded;
the aggregator merges the histograms themselves, so every percentile it reports is computed from all samples of all
processes and never averaged.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram

from harness.load.protocol import Health, Window, decode_as

__all__ = [
    "PERCENTILES",
    "ClosedSecond",
    "Endpoint",
    "EndpointStats",
    "ProcessHealth",
    "ProcessWindow",
    "WindowRecorder",
    "new_histogram",
    "parse_window",
    "process_window",
]

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3
PERCENTILES = {"p50": 50.0, "p75": 75.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}

Endpoint = tuple[str, str]  # (method, name)


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def percentile_values(hist: HdrHistogram, percentiles: Iterable[float]) -> dict[float, int]:
    """Nearest-rank percentiles in microseconds: the smallest recorded value (to HDR precision)
    with at least ``p`` percent of all samples at or below it.

    HdrHistogram's own lookup rounds the rank to the nearest integer instead of up, which
    picks the sample one below the nearest rank for many counts; at a tail percentile of a
    small window that can be a very different value, so the rank is computed here.
    """
    return _scan(hist, percentiles)[0]


def _scan(hist: HdrHistogram, percentiles: Iterable[float]) -> tuple[dict[float, int], float]:
    """Percentiles (as above) and the mean, in one pass over the recorded range of counts.

    The driver summarises every endpoint every second, so this is on its hot path: the
    counts between the lowest and highest recorded value are copied out in one slice and
    only non-zero entries are converted to values. (hdrh's ``get_mean_value`` walks its
    Python iterator over every bucket and cost the driver most of its CPU at 10K req/s.)
    """
    total = hist.get_total_count()
    targets = sorted((max(1, math.ceil(p * total / 100.0 - 1e-9)), p) for p in percentiles)
    if not total:
        return {p: 0 for _, p in targets}, 0.0
    low = max(0, hist._counts_index_for(hist.get_min_value()))
    high = min(hist.counts_len - 1, hist._counts_index_for(hist.get_max_value()))
    result: dict[float, int] = {}
    running = 0
    position = 0
    weighted = 0.0
    for offset, count in enumerate(hist.counts[low : high + 1]):
        if not count:
            continue
        value = hist.get_value_from_index(low + offset)
        running += count
        weighted += count * hist._hdr_median_equiv_value(value)
        while position < len(targets) and running >= targets[position][0]:
            result[targets[position][1]] = hist.get_highest_equivalent_value(value)
            position += 1
    return result, weighted / total


@dataclass
class EndpointStats:
    """Counts and latency distribution of one endpoint over some set of seconds.

    ``hist`` is the latency the SLOs judge. In the open model it is measured from each
    iteration's intended start (coordinated-omission corrected) and ``service`` keeps the raw
    service time beside it; in the closed model the two are the same and ``service`` is None.
    ``failed_hist``: the failed requests' latency alone (None until one fails; how fast they fail).
    """

    count: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    bytes: int = 0
    hist: HdrHistogram = field(default_factory=new_histogram)
    service: HdrHistogram | None = None
    failed_hist: HdrHistogram | None = None

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    @property
    def error_rate(self) -> float:
        return self.failed / self.count if self.count else 0.0

    def record(self, latency_us: int, size: int, failure: str | None) -> None:
        self.count += 1
        self.bytes += size
        if failure:
            self.failures[failure] += 1
            self.failed_hist = self.failed_hist or new_histogram()
            self.failed_hist.record_value(_clamp(latency_us))
        self.hist.record_value(_clamp(latency_us))

    def merge(self, other: EndpointStats) -> None:
        self.count += other.count
        self.failures.update(other.failures)
        self.bytes += other.bytes
        if other.hist.get_total_count():
            self.hist.add(other.hist)
        if other.service is not None and other.service.get_total_count():
            if self.service is None:
                self.service = new_histogram()
            self.service.add(other.service)
        if other.failed_hist is not None and other.failed_hist.get_total_count():
            self.failed_hist = self.failed_hist or new_histogram()
            self.failed_hist.add(other.failed_hist)

    def latency_ms(self) -> dict[str, float]:
        """p50..p999, max and mean in milliseconds; NaN when there were no requests."""
        return _latency_ms(self.hist)

    def service_ms(self) -> dict[str, float] | None:
        """The same figures for the raw service time (open model only), else None."""
        return None if self.service is None else _latency_ms(self.service)

    def failed_ms(self) -> dict[str, float]:
        """The same figures for the failed requests alone; NaN when none failed."""
        return _latency_ms(self.failed_hist if self.failed_hist is not None else new_histogram())

    def to_wire(self, method: str, name: str) -> dict[str, Any]:
        data = {
            "m": method,
            "n": name,
            "c": self.count,
            "f": dict(self.failures),
            "b": self.bytes,
            "h": self.hist.encode().decode("ascii") if self.hist.get_total_count() else "",
        }
        if self.service is not None and self.service.get_total_count():
            data["hs"] = self.service.encode().decode("ascii")
        if self.failed_hist is not None and self.failed_hist.get_total_count():
            data["hf"] = self.failed_hist.encode().decode("ascii")
        return data

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> EndpointStats:
        hist = HdrHistogram.decode(data["h"]) if data.get("h") else new_histogram()
        service = HdrHistogram.decode(data["hs"]) if data.get("hs") else None
        failed = HdrHistogram.decode(data["hf"]) if data.get("hf") else None
        return cls(int(data["c"]), Counter(data.get("f") or {}), int(data["b"]), hist, service, failed)


def _clamp(latency_us: int) -> int:
    return min(max(latency_us, LOWEST_US), HIGHEST_US)


def _latency_ms(hist: HdrHistogram) -> dict[str, float]:
    if not hist.get_total_count():
        return {key: math.nan for key in (*PERCENTILES, "max", "mean")}
    values, mean = _scan(hist, PERCENTILES.values())
    out = {key: values[p] / 1000.0 for key, p in PERCENTILES.items()}
    out["max"] = hist.get_max_value() / 1000.0
    out["mean"] = mean / 1000.0
    return out


@dataclass(frozen=True)
class ProcessHealth:
    """How a generator process was doing in one second: CPU share (0..1), event-loop lag, users.

    ``started`` counts open-model iterations started in that second (0 in the closed model),
    so the run can tell an arrival rate that was asked for from one that was delivered.
    """

    process: str
    cpu: float
    lag_ms: float
    users: int
    target_rate: float
    started: int = 0
    wait: float = 0.0  # share of the second the event loop was runnable but waiting for a core

    @property
    def demand(self) -> float:
        """CPU the process wanted: what it used plus what it waited for (1.0 = a whole core)."""
        return self.cpu + self.wait


@dataclass
class ProcessWindow:
    """One process's statistics for one epoch second."""

    process: str
    second: int
    health: ProcessHealth
    endpoints: dict[Endpoint, EndpointStats]


def parse_window(line: str | bytes) -> ProcessWindow | None:
    """Decode one report line; returns None for reports that are not windows.

    Raises ValueError for a line that is not JSON or a window without its fields.
    """
    report = decode_as(line, Window)
    return None if report is None else process_window(report)


def process_window(report: Window) -> ProcessWindow:
    """A window report with its histograms decoded."""
    h = report.health
    health = ProcessHealth(
        process=report.process,
        cpu=h.cpu,
        lag_ms=h.lag_ms,
        users=h.users,
        target_rate=h.rate,
        started=report.started,
        wait=h.wait,
    )
    endpoints = {(e["m"], e["n"]): EndpointStats.from_wire(e) for e in report.endpoints}
    return ProcessWindow(process=report.process, second=report.second, health=health, endpoints=endpoints)


class _Tally:
    """One endpoint's requests in one second, as the process records them.

    The hot path only counts: latencies go into a dict of exact microsecond values (a dict
    increment costs a tenth of HdrHistogram's ``record_value`` in pure Python) and become a
    histogram once per second when the window is sent. The histogram is the same either way.
    """

    __slots__ = ("bytes", "count", "failed", "failures", "latencies", "service")

    def __init__(self) -> None:
        self.count = 0
        self.bytes = 0
        self.failures: dict[str, int] = {}
        self.latencies: dict[int, int] = {}
        self.service: dict[int, int] | None = None
        self.failed: dict[int, int] = {}  # the failed requests' latencies (a success costs nothing more)

    def stats(self) -> EndpointStats:
        return EndpointStats(
            count=self.count,
            failures=Counter(self.failures),
            bytes=self.bytes,
            hist=_histogram(self.latencies),
            service=None if self.service is None else _histogram(self.service),
            failed_hist=_histogram(self.failed) if self.failed else None,
        )


def _histogram(values: dict[int, int]) -> HdrHistogram:
    hist = new_histogram()
    for value, count in values.items():
        hist.record_value(_clamp(value), count)
    return hist


class WindowRecorder:
    """Process-side recorder: requests in, one window report line per finished second out.

    Requests are filed under the epoch second in which they completed, so a window is final
    as soon as its second is over. ``flush(upto)`` emits every second before ``upto`` (and
    an empty window for seconds without requests, so the aggregator knows the process was
    alive and done with that second). Open-model iteration starts are counted per second
    too (``count_start``) and travel as the window's ``a``.
    """

    def __init__(self, process: str, first_second: int) -> None:
        self.process = process
        self._next = first_second
        self._open: dict[int, dict[Endpoint, _Tally]] = {}
        self._starts: dict[int, int] = {}

    def record(
        self,
        second: int,
        method: str,
        name: str,
        latency_us: int,
        size: int,
        failure: str | None,
        service_us: int | None = None,
    ) -> int:
        """File one request; returns the second it was filed under. Called once per request."""
        if second < self._next:  # a straggler for a second already sent: file it under the next one
            second = self._next
        bucket = self._open.get(second)
        if bucket is None:
            bucket = self._open[second] = {}
        tally = bucket.get((method, name))
        if tally is None:
            tally = bucket[(method, name)] = _Tally()
        tally.count += 1
        tally.bytes += size
        if failure:
            tally.failures[failure] = tally.failures.get(failure, 0) + 1
            tally.failed[latency_us] = tally.failed.get(latency_us, 0) + 1
        latencies = tally.latencies
        latencies[latency_us] = latencies.get(latency_us, 0) + 1
        if service_us is not None:
            service = tally.service
            if service is None:
                service = tally.service = {}
            service[service_us] = service.get(service_us, 0) + 1
        return second

    def count_start(self, second: int) -> None:
        """One open-model iteration started in ``second``."""
        if second < self._next:
            second = self._next
        self._starts[second] = self._starts.get(second, 0) + 1

    def flush(self, upto: int, health: Health) -> Iterator[str]:
        """The encoded window of every second before ``upto`` not sent yet, each with ``health``."""
        while self._next < upto:
            second = self._next
            bucket = self._open.pop(second, {})
            endpoints = [tally.stats().to_wire(m, n) for (m, n), tally in bucket.items()]
            yield Window(self.process, second, health, self._starts.pop(second, 0), endpoints).encode()
            self._next += 1


@dataclass
class ClosedSecond:
    """All processes' statistics for one epoch second, merged."""

    second: int
    endpoints: dict[Endpoint, EndpointStats]
    health: list[ProcessHealth]
    late: bool = False
    # A late window's requests for a second that was already observed: totals take its
    # requests but do not count the second again.
    revision: bool = False

    def total(self, endpoint: str | None = None) -> EndpointStats:
        out = EndpointStats()
        for key, stats in self.endpoints.items():
            if endpoint is None or matches_endpoint(key, endpoint):
                out.merge(stats)
        return out

    @property
    def users(self) -> int:
        return sum(h.users for h in self.health)

    @property
    def target_rate(self) -> float:
        return sum(h.target_rate for h in self.health)


def matches_endpoint(key: Endpoint, selector: str) -> bool:
    """``selector`` is an endpoint name, or 'METHOD name'."""
    method, name = key
    return selector == name or selector == f"{method} {name}"


@dataclass
class WindowTotals:
    """Statistics merged over a chosen set of seconds (an SLO window, a phase, the run)."""

    endpoints: dict[Endpoint, EndpointStats] = field(default_factory=dict)
    seconds: int = 0

    def add(self, closed: ClosedSecond) -> None:
        if not closed.revision:
            self.seconds += 1
        for key, stats in closed.endpoints.items():
            mine = self.endpoints.get(key)
            if mine is None:
                mine = self.endpoints[key] = EndpointStats()
            mine.merge(stats)

    def total(self, endpoint: str | None = None) -> EndpointStats:
        out = EndpointStats()
        for key, stats in self.endpoints.items():
            if endpoint is None or matches_endpoint(key, endpoint):
                out.merge(stats)
        return out
