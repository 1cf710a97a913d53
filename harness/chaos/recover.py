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

from harness.chaos import process, stress
from harness.chaos.journal import FaultRecord, FaultState, Journal, journals
from harness.chaos.process import KILL, PAUSE
from harness.errors import FaultError

__all__ = ["RecoverFailed", "recover", "revert_outstanding", "revert_record"]

KUBE_PREFIX = "kubernetes."
NETWORK_PREFIX = "network."
PROXY_PREFIX = "proxy."


class RecoverFailed(FaultError):
    """Some outstanding fault could not be reverted; ``lines`` says what was and was not done.

    Those faults stay journaled (as ``revert_failed``) so the next ``recover`` retries them.
    """

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__("\n".join(lines))


def recover(journal_dir: str | Path | None = None) -> list[str]:
    """Revert every outstanding journaled fault and return one human-readable line per fault.

    An empty list means nothing was outstanding. Every fault is attempted even if an earlier
    one fails; if any failed, :class:`RecoverFailed` (a ``FaultError``) is raised at the end
    carrying all the lines, failed ones included.
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
    revert_record(record, journal)
    final = journal.latest(record.fault_name) or record
    return f"{_name(record)}: {_what_was_done(record, final)}"


def revert_record(record: FaultRecord, journal: Journal) -> None:
    """Revert one journaled fault with its family's code: the agent, recover and the watchdog all
    come through here. Kubernetes is imported only when a Kubernetes fault is journaled."""
    if record.kind.startswith(KUBE_PREFIX):
        from harness.chaos import kube_journal

        kube_journal.revert(record, journal)
    elif stress.is_stress_kind(record.kind):
        stress.revert(record, journal)
    elif record.kind.startswith(NETWORK_PREFIX):
        from harness.chaos import network  # imports pyroute2

        network.revert(record, journal)
    elif record.kind.startswith(PROXY_PREFIX):
        from harness.chaos import proxy  # the fault proxy's control API and nftables redirect

        proxy.revert(record, journal)
    else:
        process.revert(record, journal)


def _name(record: FaultRecord) -> str:
    interrupted = " (interrupted while injecting)" if record.state is FaultState.INJECTING else ""
    return f"run {record.run_id}: {record.kind} '{record.fault_name}'{interrupted}"


def _pids(value: str | int | None) -> list[str]:
    return [p for p in str(value or "").split(",") if p]


def _what_was_done(before: FaultRecord, after: FaultRecord) -> str:
    if before.kind == KILL:
        signal_name = after.details.get("signal_name", "signal")
        pids = ", ".join(str(p) for p in before.pids) or "no process"
        command = after.details.get("restart_command")
        if command and after.details.get("restarted_pid"):
            restarted = after.details["restarted_pid"]
            log_path = after.details.get("restart_log", "")
            return f"{signal_name} sent to {pids}; restarted with `{command}` (pid {restarted}, log {log_path})"
        if command:
            return f"{signal_name} sent to {pids}; {after.details.get('note', 'restart not run')}"
        return f"{signal_name} sent to {pids} cannot be undone; marked reverted"
    if before.kind.startswith(KUBE_PREFIX) and "restored" in after.details:
        where = f"{after.details.get('namespace', '')}/{after.details.get('deployment', '')}"
        return f"scaled deployment {where} back to {after.details['restored']} replicas"
    if before.kind != PAUSE:  # network and proxy reverts say what they deleted
        return str(after.details.get("reverted") or f"marked {after.state.value}")
    parts: list[str] = []
    resumed = _pids(after.details.get("resumed"))
    if resumed:
        parts.append(f"sent SIGCONT to pid {', '.join(resumed)}")
    gone = _pids(after.details.get("gone"))
    if gone:
        parts.append(f"pid {', '.join(gone)} had exited")
    reused = _pids(after.details.get("pid_reused"))
    if reused:
        parts.append(f"pid {', '.join(reused)} now belongs to another process (start time differs); not signalled")
    return "; ".join(parts) if parts else "no recorded process to resume"
