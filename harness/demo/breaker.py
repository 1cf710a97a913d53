"""The gateway's circuit breaker: fail calls to a downstream fast once it keeps failing.

Closed, every call goes through; ``failures`` consecutive failed calls open it. Open, every
call fails at once (the caller's fallback answers instead) for ``reset`` seconds; then it is half-open: the next
call goes through as the one trial, while every other call still fails fast, and the trial's
outcome closes it (success) or opens it again for another ``reset`` seconds (failure).

Our own rather than a library's, because neither maintained one fits a gevent server: pybreaker
(1.4.1) holds its lock for the whole guarded call, so concurrent calls to payments would run one
at a time (measured: four concurrent 0.5 s calls through one breaker took 2.0 s), and times its
reset on the wall clock (a ``time.skew`` fault on the gateway would move it); circuitbreaker
(2.1.3) lets every call through while half-open (a partitioned payments would hold each of
them for the whole deadline) and tells nobody when its state changes, which a transitions
metric needs. This one is single-threaded by design (gevent: nothing here yields), times on
the monotonic clock, and tells its listeners every change of state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import TypeVar

__all__ = ["DEFAULT_BREAKER", "BreakerSettings", "CircuitBreaker", "State"]

T = TypeVar("T")
F = TypeVar("F")


class State(IntEnum):
    """A breaker's state; the value is what ``demo_circuit_breaker_state`` exports."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2

    @property
    def label(self) -> str:
        return self.name.lower().replace("_", "-")


@dataclass(frozen=True)
class BreakerSettings:
    """When a breaker opens and when it tries again (``harness demo up --breaker-*``)."""

    #: Consecutive failed calls that open the breaker; 0 (the default) means no breaker: every
    #: call goes through, as the demo's other example scenarios expect (`--breaker-failures 5`).
    failures: int = 0
    #: Seconds the breaker stays open before it lets one trial call through (half-open).
    reset: float = 2.0

    @property
    def enabled(self) -> bool:
        return self.failures > 0


#: No breaker (``harness demo up``'s default: the other demo scenarios show the faults' raw effect);
#: ``--breaker-failures 5`` opens it after 5 failed calls in a row, trying again after 2 s.
DEFAULT_BREAKER = BreakerSettings()


class CircuitBreaker:
    """One downstream's breaker. ``call`` runs a call through it; listeners hear every change.

    A call fails when it raises an exception (any: the gateway's calls raise only for a
    downstream that did not answer) or when ``failed(result)`` says so (a 5xx answer).
    """

    def __init__(self, name: str, settings: BreakerSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.settings = settings
        self.state = State.CLOSED
        self._clock = clock
        self._failures = 0  # consecutive, while closed
        self._opened_at = 0.0
        self._trial = False  # a half-open trial call is in flight
        self._on_change: list[Callable[[State, State], None]] = []
        self._on_reject: list[Callable[[], None]] = []

    def listen(self, on_change: Callable[[State, State], None], on_reject: Callable[[], None] | None = None) -> None:
        """Call ``on_change(old, new)`` at every change of state and ``on_reject()`` at every fast failure."""
        self._on_change.append(on_change)
        if on_reject is not None:
            self._on_reject.append(on_reject)

    def call(
        self, func: Callable[[], T], fallback: Callable[[], F], failed: Callable[[T], bool] = lambda _: False
    ) -> T | F:
        """``func()`` if the breaker lets it through, else ``fallback()`` at once (``func`` is not called)."""
        if not self.settings.enabled:
            return func()
        trial = self._admit()
        if trial is None:
            return fallback()
        try:
            result = func()
        except BaseException:
            self._record(trial, ok=False)
            raise
        self._record(trial, ok=not failed(result))
        return result

    def _admit(self) -> bool | None:
        """None: fail fast; else the call may go, and True says it is the half-open trial."""
        if self.state is State.OPEN and self._clock() - self._opened_at >= self.settings.reset:
            self._move(State.HALF_OPEN)
        if self.state is State.CLOSED:
            return False
        if self.state is State.HALF_OPEN and not self._trial:
            self._trial = True
            return True
        for listener in self._on_reject:
            listener()
        return None

    def _record(self, trial: bool, ok: bool) -> None:
        if trial:
            self._trial = False
            self._move(State.CLOSED if ok else State.OPEN)
        elif self.state is State.CLOSED:  # a call admitted while closed that ends after an opening counts not
            self._failures = 0 if ok else self._failures + 1
            if self._failures >= self.settings.failures:
                self._move(State.OPEN)

    def _move(self, new: State) -> None:
        old, self.state = self.state, new
        self._failures = 0
        if new is State.OPEN:
            self._opened_at = self._clock()
        for listener in self._on_change:
            listener(old, new)
