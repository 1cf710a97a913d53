"""Example trace ids per endpoint: the slowest requests and the first failed ones, bounded.

A reviewer opens these in a tracing tool. Each Locust process keeps, per endpoint, the
``keep`` slowest requests and the first ``keep`` failed ones of the whole run, and reports
what newly entered (:meth:`ExampleKeeper.take_new`); the driver offers those to a keeper of
its own, which ends as the run's examples (the slowest over every process, the earliest
failures). The hot path asks only :meth:`ExampleKeeper.wanted`: one dict lookup and a
comparison per request.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["EXAMPLES_KEPT", "Example", "ExampleKeeper", "Examples"]

EXAMPLES_KEPT = 3  # per endpoint, of the slowest and of the failed requests

Endpoint = tuple[str, str]  # (method, name)


@dataclass(frozen=True, slots=True)
class Example:
    """One request a reviewer can look up by its trace id."""

    trace_id: str
    latency_ms: float
    second: int  # epoch second the request completed in
    failure: str = ""  # the failure kind ("" when it succeeded)


@dataclass(frozen=True)
class Examples:
    """One endpoint's examples: its slowest requests (slowest first) and its first failed ones."""

    method: str
    name: str
    slowest: tuple[Example, ...]
    failed: tuple[Example, ...]


class ExampleKeeper:
    """Per endpoint, the ``keep`` slowest requests and the first ``keep`` failed ones."""

    def __init__(self, keep: int = EXAMPLES_KEPT) -> None:
        self.keep = keep
        self._slowest: dict[Endpoint, list[Example]] = {}  # ascending latency, at most ``keep``
        self._failed: dict[Endpoint, list[Example]] = {}  # ascending second, at most ``keep``
        #: per endpoint, the latency (ms) a request must exceed to be one of the slowest; -1 until full
        self.floor: dict[Endpoint, float] = {}
        self._new: list[tuple[str, str, str, float, int, str]] = []

    def wanted(self, endpoint: Endpoint, latency_ms: float, failed: bool) -> bool:
        """Whether a request would be kept: the per-request question, kept cheap."""
        return latency_ms > self.floor.get(endpoint, -1.0) or (
            failed and len(self._failed.get(endpoint, ())) < self.keep
        )

    def offer(self, method: str, name: str, example: Example) -> bool:
        """Keep ``example`` if it is among its endpoint's slowest or first failed; True if kept."""
        endpoint = (method, name)
        kept = False
        slowest = self._slowest.setdefault(endpoint, [])
        if len(slowest) < self.keep or example.latency_ms > slowest[0].latency_ms:
            slowest.append(example)
            slowest.sort(key=lambda e: e.latency_ms)
            del slowest[: -self.keep]
            kept = True
            if len(slowest) == self.keep:
                self.floor[endpoint] = slowest[0].latency_ms
        if example.failure:
            failed = self._failed.setdefault(endpoint, [])
            if len(failed) < self.keep or example.second < failed[-1].second:
                failed.append(example)
                failed.sort(key=lambda e: e.second)
                del failed[self.keep :]
                kept = kept or example in failed
        if kept:
            e = example
            self._new.append((method, name, e.trace_id, e.latency_ms, e.second, e.failure))
        return kept

    def take_new(self) -> list[tuple[str, str, str, float, int, str]]:
        """What was kept since the last call, as ``(method, name, trace_id, ms, second, failure)``."""
        new, self._new = self._new, []
        return new

    def table(self) -> list[Examples]:
        """Every endpoint's examples, by method and name."""
        endpoints = sorted({*self._slowest, *self._failed})
        return [
            Examples(
                method,
                name,
                tuple(reversed(self._slowest.get((method, name), []))),
                tuple(self._failed.get((method, name), [])),
            )
            for method, name in endpoints
        ]
