"""Clock offset estimation: the NTP rule (midpoint of the shortest round trip) on real calls."""

from __future__ import annotations

import threading
import time

import pytest

from harness.measure.clocks import ClockOffset, estimate, measure


def test_the_sample_with_the_shortest_round_trip_wins() -> None:
    # (sent, remote reading, received): the remote is 2.0 s ahead; slow samples mislead.
    samples = [(100.0, 102.9, 101.0), (200.0, 202.0005, 200.001), (300.0, 302.5, 300.2)]
    best = estimate(samples)
    assert best.offset_s == pytest.approx(2.0, abs=1e-9)
    assert best.rtt_s == pytest.approx(0.001)
    assert best.to_json() == {"offset_ms": 2000.0, "uncertainty_ms": 0.5}
    with pytest.raises(ValueError):
        estimate([])


def test_a_remote_clock_ahead_and_a_slow_path_are_measured_within_half_the_round_trip() -> None:
    """A remote 5 s ahead whose answers take 2-200 ms (a real sleep on another thread).

    The best sample (2 ms) is 98 ms ahead of the next: a busy or slow machine adds thread
    start-up and wake-up delays to every sample, and with 10 ms as the next best a few ms of
    that made the 2 ms sample lose its place (the estimator then rightly took another).
    """
    delays = iter([0.200, 0.002, 0.150, 0.100, 0.120])

    def remote() -> float:
        answer: list[float] = []
        delay = next(delays)

        def serve() -> None:
            time.sleep(delay / 2)
            answer.append(time.time() + 5.0)
            time.sleep(delay / 2)

        worker = threading.Thread(target=serve)
        worker.start()
        worker.join()
        return answer[0]

    found = measure(remote)
    assert isinstance(found, ClockOffset)
    assert abs(found.offset_s - 5.0) <= found.rtt_s / 2 + 0.001
    assert found.rtt_s < 0.050  # the 2 ms sample was chosen (plus thread start-up), not a 100 ms one
