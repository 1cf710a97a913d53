"""What the requests' W3C ``baggage`` says of the run: its phase and the faults active now.

The load processes build the header themselves (:mod:`harness.load.tracing`) and rebuild it
only when told: the clock thread sends every live process one small ``SetContext`` command
when a phase starts or ends and after a fault is injected or reverted, never per request.
A fault is named in the baggage from the moment its inject returned until its revert did
(plus the few milliseconds a command takes to reach the processes).
"""

from __future__ import annotations

from harness.load.protocol import SetContext
from harness.run.fleet import Fleet

__all__ = ["Baggage"]


class Baggage:
    """Tracks the phase and active faults and tells the load processes when they change.

    Does nothing when the run does not trace its requests (``enabled`` false).
    """

    def __init__(self, fleet: Fleet, enabled: bool) -> None:
        self.fleet = fleet
        self.enabled = enabled
        self.phase = ""
        self.faults: list[str] = []

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

    def _send(self) -> None:
        if not self.enabled:
            return
        command = SetContext(self.phase, tuple(self.faults))
        self.fleet.send({p: command for p in self.fleet.live_processes()}, "trace context")
