"""Paced UDP probes (run in the UML guest) and the statistics the host asserts on.

:func:`paced_probe` sends numbered datagrams at a fixed interval, whatever comes back, and
records each one's round trip and the order the echoes arrived in. Pacing (not one probe at
a time) keeps a run short -- 300 probes 10 ms apart take 3 s although each is delayed ~100
ms -- and it is what lets netem reorder: every packet leaves netem at its own drawn time
(netem's tfifo queue is sorted by time to send), so a probe's round trip is its own delay
whatever order the probes come back in, and the arrival order is a measurement of its own.

The statistics are pure functions of those lists, used by tests/test_chaos_netem.py.
"""

from __future__ import annotations

import itertools
import math
import random
import socket
import statistics
import threading
import time
from typing import Any

#: Not exported by Python's socket module; as root it lifts the receive buffer over rmem_max.
SO_RCVBUFFORCE = 33
#: Bytes before the UDP payload on a veth: Ethernet 14, IPv4 20, UDP 8.
FRAME_OVERHEAD = 14 + 20 + 8


def _payload(seq: int, size: int) -> bytes:
    head = f"{seq:08d}".encode()
    return head + bytes((seq + i) & 0xFF for i in range(size - len(head)))


def paced_probe(host: str, port: int, n: int, interval: float, size: int = 16, tail: float = 0.6) -> dict[str, Any]:
    """Send ``n`` datagrams of ``size`` bytes, one every ``interval`` s, to a UDP echo server.

    Returns ``rtt_ms`` (per sequence number, None when no echo came back), ``arrival`` (the
    sequence numbers in the order their first echo arrived), ``echoes`` (every echo, duplicates
    included) and ``bad`` (echoes whose payload was not exactly what was sent). Bounded: the
    receiver stops ``tail`` s after the last send.
    """
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
    u.settimeout(0.05)
    sent_at: list[float] = [0.0] * n
    rtt: list[float | None] = [None] * n
    arrival: list[int] = []
    counts = {"echoes": 0, "bad": 0}
    done = threading.Event()

    def receive() -> None:
        while not done.is_set():
            try:
                data = u.recv(size + 64)
            except TimeoutError:
                continue
            now = time.perf_counter()
            counts["echoes"] += 1
            try:
                seq = int(data[:8])
            except ValueError:
                counts["bad"] += 1
                continue
            if not 0 <= seq < n or data != _payload(seq, size):
                counts["bad"] += 1
                continue
            if rtt[seq] is None:
                rtt[seq] = (now - sent_at[seq]) * 1000
                arrival.append(seq)

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    try:
        start = time.perf_counter()
        for seq in range(n):
            pause = start + seq * interval - time.perf_counter()
            if pause > 0:
                time.sleep(pause)
            sent_at[seq] = time.perf_counter()
            u.sendto(_payload(seq, size), (host, port))
        time.sleep(tail)
    finally:
        done.set()
        receiver.join(timeout=5)
        u.close()
    return {"sent": n, "interval": interval, "size": size, "rtt_ms": rtt, "arrival": arrival, **counts}


def ahead(arrival: list[int]) -> int:
    """How many probes arrived before at least one probe sent earlier (they overtook it)."""
    count = 0
    lowest_later = math.inf
    for seq in reversed(arrival):
        if lowest_later < seq:
            count += 1
        lowest_later = min(lowest_later, seq)
    return count


def lag1(xs: list[float]) -> float:
    """Lag-1 autocorrelation of a series (consecutive values, in send order)."""
    mean = statistics.fmean(xs)
    var = sum((x - mean) ** 2 for x in xs)
    return sum((a - mean) * (b - mean) for a, b in itertools.pairwise(xs)) / var


def percentile(xs: list[float], p: float) -> float:
    """The ``p``-th percentile (0-100), linear between closest ranks."""
    s = sorted(xs)
    k = (len(s) - 1) * p / 100
    lo = math.floor(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def simulated_ahead(n: int, interval: float, low: float, high: float, runs: int = 400) -> tuple[float, float]:
    """Mean and standard deviation of :func:`ahead` when ``n`` probes ``interval`` apart are each
    delayed uniformly in [low, high) (netem's jitter without a table): a seeded Monte Carlo."""
    rng = random.Random(4853)
    counts = []
    for _ in range(runs):
        leave = [i * interval + rng.uniform(low, high) for i in range(n)]
        counts.append(ahead(sorted(range(n), key=leave.__getitem__)))
    return statistics.fmean(counts), statistics.stdev(counts)
