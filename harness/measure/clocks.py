"""Clock offsets between the driver and the nodes its actors run on.

Per-second windows are filed under the epoch second in which each request completed, and
fault and stage times are epoch times, all read on the node that saw them. Nodes whose
clocks disagree would file the same instant under different seconds, and a fault would seem
to start before or after the errors it caused. So the driver measures each actor's clock
once at start (the way NTP does: the remote reading against the midpoint of the round trip,
keeping the sample with the shortest round trip, whose error is at most half of it) and the
actor works in driver time from then on: ``time.time() - offset``.

An offset is measured, not assumed: on one machine it is a few microseconds, the round trip
of a Ray call. It does not follow drift during a run; NTP-disciplined clocks drift
microseconds per minute.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["CLOCK_OFFSET_ENV", "ClockOffset", "estimate", "measure", "offset_from_env"]

#: Set in a Locust process's environment: seconds its node's clock is ahead of the driver's.
CLOCK_OFFSET_ENV = "HARNESS_CLOCK_OFFSET"
SAMPLES = 5


@dataclass(frozen=True)
class ClockOffset:
    """How far a remote clock is ahead of the driver's (negative: behind), and how sure we are."""

    offset_s: float
    rtt_s: float  # round trip of the best sample; the offset is within half of it

    def to_json(self) -> dict[str, float]:
        return {"offset_ms": round(self.offset_s * 1000, 3), "uncertainty_ms": round(self.rtt_s * 500, 3)}


def estimate(samples: Sequence[tuple[float, float, float]]) -> ClockOffset:
    """From (driver send time, remote reading, driver receive time) triples: the best estimate."""
    if not samples:
        raise ValueError("no clock samples")
    sent, remote, received = min(samples, key=lambda s: s[2] - s[0])
    return ClockOffset(offset_s=remote - (sent + received) / 2, rtt_s=max(0.0, received - sent))


def measure(read_remote: Callable[[], float], samples: int = SAMPLES) -> ClockOffset:
    """Call ``read_remote`` (a blocking read of the remote ``time.time()``) and estimate."""
    taken = []
    for _ in range(samples):
        sent = time.time()
        remote = read_remote()
        taken.append((sent, remote, time.time()))
    return estimate(taken)


def offset_from_env() -> float:
    """The offset a Locust process was started with (0 when none: the driver's own node)."""
    try:
        value = float(os.environ.get(CLOCK_OFFSET_ENV, "0") or 0)
    except ValueError:
        return 0.0
    return value if abs(value) < 86_400 else 0.0
