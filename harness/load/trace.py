"""W3C trace context for the requests a load process sends: ids, ``traceparent`` and ``baggage``.

Plain data and string building, no Locust (the hooks that put the headers on requests are
:mod:`harness.load.tracing`). Everything that runs per request is a list pop and a string
concatenation: ids are drawn from ``os.urandom`` a few thousand at a time and preformatted,
and the baggage string is rebuilt only when the run's phase or active faults change.

``traceparent`` (https://www.w3.org/TR/trace-context/): ``00-<trace-id>-<parent-id>-<flags>``,
32 and 16 lower-case hex digits, flags ``01`` (sampled) or ``00``. An all-zero id is invalid;
drawn from 128 (64) random bits it never occurs in practice, so it is not checked for.

``baggage`` (https://www.w3.org/TR/baggage/): ``harness.run_id=<run>,harness.phase=<phase>,
harness.faults=<a%2Cb>``; values are percent-encoded, so ``harness.faults`` decodes to the
comma-separated names of the faults active when the request was sent (the key is left out
when none is, and ``harness.phase`` before the first phase starts).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from urllib.parse import quote

__all__ = [
    "BAGGAGE",
    "TRACEPARENT",
    "IdPool",
    "TracePer",
    "TraceSettings",
    "baggage",
    "trace_id_of",
]

TRACEPARENT = "traceparent"
BAGGAGE = "baggage"
BATCH = 4096  # ids drawn per os.urandom call


class TracePer(Enum):
    """What a new trace id starts with."""

    REQUEST = "request"  # every request is its own trace
    ITERATION = "iteration"  # the requests of one task run (a Locust task) share a trace


@dataclass(frozen=True)
class TraceSettings:
    """How a load process traces its requests (``None`` where it does not)."""

    per: TracePer = TracePer.REQUEST
    sampled: bool = True

    def arg(self) -> str:
        """The runner's ``--trace`` value."""
        return f"per={self.per.value},sampled={int(self.sampled)}"

    @classmethod
    def parse(cls, text: str) -> TraceSettings:
        """The inverse of :meth:`arg`; raises ValueError on anything else."""
        values = dict(item.partition("=")[::2] for item in text.split(","))
        return cls(TracePer(values.get("per", "request")), values.get("sampled", "1") == "1")


class IdPool:
    """Random hex ids of ``digits`` digits, drawn in bulk; :meth:`take` is a list pop."""

    def __init__(self, digits: int) -> None:
        self.digits = digits
        self._ids: list[str] = []

    def take(self) -> str:
        try:
            return self._ids.pop()
        except IndexError:
            self._refill()
            return self._ids.pop()

    def _refill(self) -> None:
        d = self.digits
        text = os.urandom(d // 2 * BATCH).hex()
        self._ids = [text[i : i + d] for i in range(0, len(text), d)]


def baggage(run_id: str, phase: str, faults: Iterable[str]) -> str:
    """The ``baggage`` header value for a run, a phase and the faults active now."""
    members = [f"harness.run_id={quote(run_id, safe='')}"]
    if phase:
        members.append(f"harness.phase={quote(phase, safe='')}")
    active = ",".join(faults)
    if active:
        members.append(f"harness.faults={quote(active, safe='')}")
    return ",".join(members)


def trace_id_of(traceparent: object) -> str:
    """The trace id of a ``traceparent`` value ("" when it is not one)."""
    if not isinstance(traceparent, str):
        return ""
    parts = traceparent.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else ""
