"""The journal steps of every inject and revert, written once: every fault family goes through here.

A family says what to record, how to apply and how to undo (:class:`Applier`); these steps put
that around the node's journal (:mod:`harness.chaos.journal`) in the one order that makes a
crash at any point recoverable:

* **inject**: a fault this run already injected or reverted is not applied again (its record is
  returned); one left ``injecting`` by a crash is applied again from its record
  (``resumed=True``: the family cleans up what the dead attempt may have left). Otherwise the
  family's :meth:`~Applier.prepare` says what a revert will need, that is journaled
  ``injecting`` (fsynced), and only then :meth:`~Applier.apply` changes anything; its details
  are journaled ``injected``. An apply that ends with nothing changed raises
  :class:`~harness.errors.FaultNotApplied` (journaled ``reverted``), one that applied part of
  the fault :class:`~harness.errors.FaultPartlyApplied` (journaled ``injected``). With
  ``undo_failed_inject``, any other ``FaultError`` or ``OSError`` from apply reverts the fault
  at once; without it the fault stays ``injecting`` for the next revert (the end of the run,
  the watchdog or ``harness recover``).
* **revert**: the fault's latest record is read first (already ``reverted``: nothing to do),
  the family's :meth:`~Applier.undo` runs with nothing but that record (no scenario at hand),
  and ``reverted`` is journaled with what it did, or ``revert_failed`` with why (then
  ``FaultError`` is raised, and the next recover retries).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.chaos.journal import FaultRecord, FaultState, Journal
from harness.errors import FaultError, FaultNotApplied, FaultPartlyApplied, HarnessError, RevertFailed
from harness.scenario.faults import FaultBase

__all__ = ["Applier", "Details", "InjectContext", "Prepared", "inject", "revert"]

log = logging.getLogger(__name__)

#: What a journal record carries: strings and integers only.
Details = dict[str, str | int]


@dataclass(frozen=True)
class InjectContext:
    """Everything an inject may need besides the fault: the run, the node's journal, the lease,
    the processes never to touch (the driver and its ancestors) and the kube contexts allowed."""

    run_id: str
    journal: Journal
    lease_until: float | None = None
    protected: tuple[tuple[int, float], ...] = ()
    allowed_contexts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Prepared:
    """What is journaled ``injecting`` before anything changes: enough for a revert from the
    record alone, and the PIDs the fault acts on."""

    details: Details
    pids: list[int] = field(default_factory=list)


class Applier(Protocol):
    """The three things a family does to a host; the steps here do the journaling around them."""

    #: Revert at once when apply fails part-way (``FaultError``/``OSError``), instead of leaving
    #: the fault ``injecting`` for the next revert.
    undo_failed_inject: bool

    def prepare(self, fault: Any, ctx: InjectContext) -> Prepared:
        """Resolve what the fault acts on and what a revert will need; change nothing."""
        ...

    def apply(self, fault: Any, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:
        """Put the fault into effect as ``record`` says; details to add to the ``injected`` record."""
        ...

    def undo(self, record: FaultRecord) -> Details:
        """Undo exactly what ``record`` names; details to add to the ``reverted`` record."""
        ...


def inject(applier: Applier, fault: FaultBase, ctx: InjectContext) -> FaultRecord:
    """Apply ``fault`` and return its ``injected`` record; idempotent per fault name (module docstring)."""
    journal = ctx.journal
    previous, settled = journal.previous_inject(ctx.run_id, fault.name, fault.kind)
    if settled:
        assert previous is not None
        return previous
    if previous is None:
        prepared = applier.prepare(fault, ctx)
        record = journal.begin(fault.name, fault.kind, prepared.details, ctx.lease_until, prepared.pids)
    else:
        record = previous
    try:
        details = applier.apply(fault, record, ctx, resumed=previous is not None)
    except FaultNotApplied as exc:
        journal.append(record.advance(FaultState.REVERTED, **exc.details))
        raise
    except FaultPartlyApplied as exc:
        journal.append(record.advance(FaultState.INJECTED, **exc.details))
        raise
    except (FaultError, OSError) as exc:
        if not applier.undo_failed_inject:
            raise
        with contextlib.suppress(FaultError):
            revert(applier, record, journal)
        raise FaultError(f"fault '{fault.name}': {exc}") from None
    injected = record.advance(FaultState.INJECTED, **details)
    journal.append(injected)
    return injected


def revert(applier: Applier, record: FaultRecord, journal: Journal) -> None:
    """Undo the fault ``record`` describes and journal the outcome; safe to call any number of times.

    Raises ``FaultError`` after journaling ``revert_failed`` when the fault may still be in effect.
    """
    latest = journal.latest(record.fault_name) or record
    if latest.state is FaultState.REVERTED:
        return
    try:
        details = applier.undo(latest)
    except RevertFailed as exc:  # the family said what failed and what to journal
        journal.append(latest.advance(FaultState.REVERT_FAILED, **exc.details))
        raise
    except (HarnessError, OSError, KeyError, ValueError) as exc:
        journal.append(latest.advance(FaultState.REVERT_FAILED, error=str(exc)))
        raise FaultError(f"fault '{latest.fault_name}': revert failed: {exc}") from None
    except Exception as exc:  # a netlink or API client error
        journal.append(latest.advance(FaultState.REVERT_FAILED, error=f"{type(exc).__name__}: {exc}"))
        raise FaultError(f"fault '{latest.fault_name}': revert failed: {type(exc).__name__}: {exc}") from None
    journal.append(latest.advance(FaultState.REVERTED, **details))
    log.info("run %s: fault %s: reverted (%s)", latest.run_id, latest.fault_name, details)
