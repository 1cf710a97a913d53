"""``harness recover``: undo every fault still journaled on this node.

Run it after a crash, a lost Ray node or a killed orchestrator. It reads every live journal
file, reverts each outstanding fault (a pause gets SIGCONT, but only on recorded PIDs whose
start time still matches; a kill is restarted by its recorded command, or, without one, has
nothing to undo and is just marked reverted; kernel objects are deleted), and
retires each journal whose faults are all reverted. It is safe to run any number of times,
and safe to run when nothing is outstanding. It does not ask whether a run is still going:
recovering during a live run reverts that run's faults early, which is what an operator
pulling the emergency brake wants.
"""

from __future__ import annotations

from pathlib import Path

from harness.chaos.family import FaultFamily, find_family
from harness.chaos.journal import FaultRecord, FaultState, Journal, journals
from harness.errors import FaultError, RecoverFailed

__all__ = ["RecoverFailed", "recover", "revert_outstanding", "revert_record"]


def recover(journal_dir: str | Path | None = None) -> list[str]:
    """Revert every outstanding journaled fault and return one human-readable line per fault.

    An empty list means nothing was outstanding. Every fault is attempted even if an earlier
    one fails; if any failed, :class:`~harness.errors.RecoverFailed` (a ``FaultError``) is
    raised at the end carrying all the lines, failed ones included.
    """
    lines: list[str] = []
    failed = False
    for journal in journals(journal_dir):
        for record in journal.outstanding():
            try:
                lines.append(revert_outstanding(record, journal))
            except FaultError as exc:
                failed = True
                lines.append(f"{_name(record)}: FAILED to revert: {exc}")
        journal.retire()
    if failed:
        raise RecoverFailed(lines)
    return lines


def revert_outstanding(record: FaultRecord, journal: Journal) -> str:
    """Revert one outstanding fault, journal it, and say what was done in one line.

    The one revert path of ``harness recover`` and the watchdog. Raises ``FaultError`` when
    the fault could not be reverted (it is then journaled as ``revert_failed``).
    """
    family = _family(record)
    family.revert(record, journal)
    final = journal.latest(record.fault_name) or record
    return f"{_name(record)}: {family.reverted_text(record, final)}"


def revert_record(record: FaultRecord, journal: Journal) -> None:
    """Revert one journaled fault with its family's code: the agent, recover and the watchdog all
    come through here. A family's heavy imports load only when one of its faults is journaled."""
    _family(record).revert(record, journal)


def _family(record: FaultRecord) -> FaultFamily:
    family = find_family(record.kind)
    if family is None:  # journaled by a family whose package is gone: nothing here can undo it
        raise FaultError(
            f"fault '{record.fault_name}': no fault family is registered for kind {record.kind} "
            "(is the package that provides it installed?)"
        )
    return family


def _name(record: FaultRecord) -> str:
    interrupted = " (interrupted while injecting)" if record.state is FaultState.INJECTING else ""
    return f"run {record.run_id}: {record.kind} '{record.fault_name}'{interrupted}"
