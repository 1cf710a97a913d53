"""What the requests' W3C ``baggage`` says of the run: its phase and the faults active now.

The load processes build the header themselves (:mod:`harness.load.tracing`) and rebuild it
only when told: every live process gets one small ``SetContext`` command when a phase starts
or ends and after a fault is injected or reverted, never per request. A fault is named in the
baggage from the moment its inject returned until its revert did (plus the few milliseconds a
command takes to reach the processes).

The commands go out from a thread of their own, not from the clock thread that reports the
changes: that thread is where Ctrl-C lands, and a Ray call it makes at that instant can
swallow the KeyboardInterrupt (seen: a run went on after its Ctrl-C, right after a fault
started), while the clock thread's own steps must not wait on Ray either.
"""

from __future__ import annotations

import logging
import threading

from harness.load.protocol import SetContext
from harness.run.fleet import Fleet

__all__ = ["Baggage"]

log = logging.getLogger(__name__)


class Baggage:
    """Tracks the phase and active faults and tells the load processes when they change.

    Does nothing when the run does not trace its requests (``enabled`` false).
    """

    def __init__(self, fleet: Fleet, enabled: bool) -> None:
        self.fleet = fleet
        self.enabled = enabled
        self.phase = ""
        self.faults: list[str] = []
        self._wake = threading.Condition()
        self._pending: SetContext | None = None  # the latest context not sent yet
        self._stopped = False
        self._thread: threading.Thread | None = None

    def phase_started(self, name: str) -> None:
        self.phase = name
        self._send()

    def phase_ended(self, name: str) -> None:
        if self.phase == name:  # the next phase may have started first, at the same instant
            self.phase = ""
            self._send()

    def fault_started(self, name: str) -> None:
        if name not in self.faults:
            self.faults.append(name)
            self._send()

    def fault_ended(self, name: str) -> None:
        if name in self.faults:
            self.faults.remove(name)
            self._send()

    def stop(self) -> None:
        """Send nothing more (the load is stopping); waits up to a second for a send in progress."""
        with self._wake:
            self._stopped = True
            self._wake.notify()
        if self._thread is not None:
            self._thread.join(1.0)

    def _send(self) -> None:
        """Hand the new context to the sender thread (started on first use); never waits on Ray."""
        if not self.enabled:
            return
        with self._wake:
            if self._stopped:
                return
            self._pending = SetContext(self.phase, tuple(self.faults))
            self._wake.notify()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="harness-baggage", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            with self._wake:
                while self._pending is None and not self._stopped:
                    self._wake.wait()
                command, self._pending = self._pending, None
                if self._stopped or command is None:
                    return
            try:
                self.fleet.send({p: command for p in self.fleet.live_processes()}, "trace context")
            except Exception:  # a lost context is a stale baggage, never a failed run
                log.warning("could not send the trace context to the load processes", exc_info=True)
