"""Fault injection: the fault families and their registry, the node-local journal, recovery and
the Ray chaos agent.

Importing this package imports no family and no Ray: :class:`ChaosAgent` is loaded from
:mod:`harness.chaos.agent` on first access, and families are found through their entry points
(:mod:`harness.chaos.family`), so ``harness plan`` and ``harness recover`` stay fast and work
where Ray is not running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.chaos.journal import FaultRecord, FaultState, Journal, all_outstanding

if TYPE_CHECKING:
    from harness.chaos.agent import ChaosAgent

__all__ = ["ChaosAgent", "FaultRecord", "FaultState", "Journal", "all_outstanding"]


def __getattr__(name: str) -> Any:
    if name == "ChaosAgent":
        from harness.chaos.agent import ChaosAgent

        return ChaosAgent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
