"""Ctrl-C and SIGTERM during a run: the first one ends the run cleanly, a second one leaves at once.

SIGTERM ends a run the way Ctrl-C does (:func:`terminate_as_interrupt`): both raise
``KeyboardInterrupt`` in the main thread, the run reverts its faults, stops its load, flushes
its results and exits 130. During that teardown a second signal of either kind exits at
once (:func:`deferred_interrupts`); what the driver then leaves behind is covered as when it
is killed (:func:`exit_at_once`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.review.runs import note_driver_exit

__all__ = ["deferred_interrupts", "exit_at_once", "terminate_as_interrupt"]

EXIT_AT_ONCE = 130


def terminate_as_interrupt() -> None:
    """SIGTERM raises KeyboardInterrupt in the main thread, as Ctrl-C does (no-op in another thread).

    Called when a run begins, and again once Ray is up: ``ray.init`` installs its own SIGTERM
    handler in the driver.
    """
    with contextlib.suppress(ValueError):  # not the main thread: leave SIGTERM alone
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def exit_at_once(run_dir: Path, active_faults: list[str]) -> None:
    """A second interrupt: leave now, without reverting or stopping anything.

    What the driver leaves is covered the same way as when it is killed: every fault is a
    lease that lapses within ``LEASE_TTL`` and the node's watchdog reverts it; the generators
    stop their load when the driver is gone (Ray ends with a driver that started it; an actor
    cut off from its driver stops its processes); the run is listed as aborted by
    ``harness runs``.
    """
    from harness.chaos.agent import LEASE_TTL  # imports Ray: not before the run needs it

    faults = ", ".join(active_faults) or "none"
    note_driver_exit(run_dir, "interrupted twice: the driver exited at once")
    with contextlib.suppress(Exception):
        sys.stderr.write(
            f"\ninterrupted twice: exiting now; active faults ({faults}) are reverted by the fault "
            f"watchdog when their lease lapses (within {LEASE_TTL:g} s); `harness recover` says whether "
            "anything is left\n"
        )
        sys.stderr.flush()
    os._exit(EXIT_AT_ONCE)


@contextlib.contextmanager
def deferred_interrupts(interrupted: bool, exit_now: Callable[[], None], note: Callable[[str], None]) -> Iterator[None]:
    """Teardown under a first interrupt; a second one (SIGINT or SIGTERM) calls ``exit_now``.

    ``interrupted``: the run was already interrupted once (that was the first). When it was
    not, the first signal during teardown is only noted and teardown goes on, so that a
    user's one Ctrl-C never leaves faults to the watchdog; the next one exits.
    """
    received: list[int] = [1] if interrupted else []

    def on_signal(signum: int, frame: object) -> None:
        if received:
            exit_now()
        received.append(signum)
        note("interrupted: still reverting faults and stopping load (interrupt again to exit at once)")

    watched = (signal.SIGINT, signal.SIGTERM)
    previous = {signum: signal.getsignal(signum) for signum in watched}
    try:
        for signum in watched:
            signal.signal(signum, on_signal)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
