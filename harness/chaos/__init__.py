"""Fault injection: process faults, the node-local journal, recovery and the Ray chaos agent.

Importing this package does not import Ray: :class:`ChaosAgent` is loaded from
:mod:`harness.chaos.agent` on first access, so ``harness plan`` and ``harness recover`` stay
fast and work where Ray is not running.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from harness.chaos.journal import FaultRecord, FaultState, Journal, all_outstanding
from harness.chaos.process import ResolvedProcess, describe, inject, resolve_targets, revert
from harness.chaos.recover import RecoverFailed, recover

if TYPE_CHECKING:
    from harness.chaos.agent import ChaosAgent

__all__ = [
    "ChaosAgent",
    "FaultRecord",
    "FaultState",
    "Journal",
    "RecoverFailed",
    "ResolvedProcess",
    "all_outstanding",
    "describe",
    "inject",
    "recover",
    "resolve_targets",
    "revert",
]


def __getattr__(name: str) -> Any:
    if name == "ChaosAgent":
        from harness.chaos.agent import ChaosAgent

        return ChaosAgent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
