"""The process family: ``process.kill`` (any signal, optionally restarted by a command) and
``process.pause`` (SIGSTOP, then SIGCONT).

Pure of Ray: the chaos agent applies these faults inside its actor, ``harness recover`` and the
watchdog revert them from the journal, and tests call :func:`inject` and :func:`revert` on
processes they started. Targets are resolved by :mod:`harness.chaos.processes` (never harness
itself, its ancestors, PID 1 or a kernel thread).

What callers may rely on:

* **Journal first.** An inject journals ``injecting`` with the resolved PIDs and their start
  times, fsynced, before sending any signal; ``injected`` follows (:mod:`harness.chaos.steps`).
* **Idempotent.** Injecting a fault whose name is already journaled as injected or reverted
  in this run signals nothing and returns the existing record; one left ``injecting`` by a
  crash signals the recorded PIDs again rather than resolving anew. Reverting a fault that is
  already reverted does nothing; reverting a kill without a restart command sends nothing
  and is journaled as reverted.
* **No recycled PIDs.** A PID is signalled only while its start time matches the one
  recorded at resolution, so a PID the kernel gave to a new process is never touched.
* **A pause is all or nothing.** If some target cannot be stopped, the ones already stopped
  are resumed and the fault is journaled as reverted; a kill (which cannot be undone) that
  reached only some targets is journaled as injected with the errors. Either way
  ``FaultError`` names the fault and the reason.
* **A restart runs at most once** (:mod:`.restart`).
"""

from __future__ import annotations

import logging
import shlex
import signal
from collections.abc import Iterable

from harness.chaos import capabilities
from harness.chaos.families.process.params import ProcessFault, ProcessKillFault, ProcessPauseFault
from harness.chaos.families.process.restart import restart_command, restart_details, undo_kill
from harness.chaos.families.process.signals import pid_list, send, signal_name
from harness.chaos.family import FaultFamily, HostContext, Leftover
from harness.chaos.journal import FaultRecord, Journal
from harness.chaos.kubelet import PodSite
from harness.chaos.processes import describe_target, now_text, pid_file_refusal, resolve_targets
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import FaultError, FaultNotApplied, FaultPartlyApplied, RevertFailed

__all__ = ["FAMILY", "ProcessFamily", "describe", "inject", "revert"]

log = logging.getLogger(__name__)


def _signal_for(fault: ProcessFault) -> int:
    return fault.params.signal if isinstance(fault, ProcessKillFault) else int(signal.SIGSTOP)


def _pids(value: str | int | None) -> list[str]:
    return [p for p in str(value or "").split(",") if p]


class ProcessFamily(FaultFamily):
    """Signals to processes found by pid file, command-line pattern or systemd unit."""

    name = "process"
    models = (ProcessKillFault, ProcessPauseFault)

    def describe(self, fault: ProcessFault) -> str:
        """e.g. ``SIGKILL processes matching /harness\\.demo\\.services payments/``,
        ``SIGKILL the processes of systemd unit x.service (its control group), run
        `systemctl start x.service` after 5s`` or
        ``SIGSTOP the process whose PID is in /run/x.pid, SIGCONT it after 10s``."""

        what = describe_target(fault.target)
        if isinstance(fault, ProcessKillFault):
            restart = restart_command(fault)
            again = f", run `{shlex.join(restart)}` after {fault.duration:g}s" if restart else ""
            return f"{signal_name(fault.params.signal)} {what}{again}"
        it = "it" if fault.target.pid_file is not None else "them"
        return f"SIGSTOP {what}, SIGCONT {it} after {fault.duration:g}s"

    def requirements(self, fault: ProcessFault) -> list[str]:
        return [capabilities.SYSTEMD] if fault.target.systemd_unit is not None else []

    def resolve(self, fault: ProcessFault, context: HostContext) -> str:
        return now_text(fault.target)

    def refusal(self, fault: ProcessFault, context: HostContext) -> str | None:
        return pid_file_refusal(fault.name, fault.target) if fault.node is None else None

    def check(self, fault: ProcessFault, context: HostContext) -> None:
        return None  # targets are resolved when the fault fires (they may start after the run does)

    def warm_up(self, kinds: frozenset[str]) -> None:
        return None  # psutil only, imported with the agent

    def prepare(self, fault: ProcessFault, ctx: InjectContext) -> Prepared:

        try:
            targets = resolve_targets(fault.target, protected=ctx.protected)
        except FaultError as exc:
            raise FaultError(f"fault '{fault.name}': {exc}") from None
        number = _signal_for(fault)
        details: Details = {
            "signal": number,
            "signal_name": signal_name(number),
            "target": describe_target(fault.target),
        }
        if isinstance(fault, ProcessKillFault):
            details.update(restart_details(fault, ctx.run_id, ctx.journal))
        for proc in targets:
            details[f"create_time.{proc.pid}"] = repr(proc.create_time)
            if proc.start_ticks is not None:
                details[f"start_ticks.{proc.pid}"] = proc.start_ticks
        return Prepared(details, [p.pid for p in targets])

    def apply(self, fault: ProcessFault, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:

        number = _signal_for(fault)
        sent = send(record, number)
        outcome = sent.details("signalled")
        if sent.errors and isinstance(fault, ProcessPauseFault):
            resumed_pids = send(record, int(signal.SIGCONT), only=sent.signalled)
            raise FaultNotApplied(
                f"fault '{fault.name}': could not stop {sent.error_text()}; the pause was undone",
                **outcome,
                resumed=pid_list(resumed_pids.signalled),
            )
        if not sent.signalled and not sent.errors:
            raise FaultNotApplied(f"fault '{fault.name}': every target exited before it could be signalled", **outcome)
        log.info("run %s: fault %s: sent %s to %s", ctx.run_id, fault.name, signal_name(number), outcome["signalled"])
        if sent.errors:
            raise FaultPartlyApplied(f"fault '{fault.name}': could not signal {sent.error_text()}", **outcome)
        return outcome

    def undo(self, record: FaultRecord) -> Details:
        """A kill is restarted by its journaled command (:mod:`.restart`); a pause gets SIGCONT, but
        only on recorded PIDs whose start time still matches (a process that exited, or whose PID
        now belongs to another process, is left alone and listed under ``gone``)."""

        if record.kind == ProcessKillFault.KIND:
            return undo_kill(record)
        sent = send(record, int(signal.SIGCONT))
        outcome = sent.details("resumed")
        if sent.errors:
            raise RevertFailed(f"fault '{record.fault_name}': could not resume {sent.error_text()}", **outcome)
        return outcome

    def reverted_text(self, before: FaultRecord, after: FaultRecord) -> str:
        if before.kind == ProcessKillFault.KIND:
            sent_name = after.details.get("signal_name", "signal")
            pids = ", ".join(str(p) for p in before.pids) or "no process"
            command = after.details.get("restart_command")
            if command and after.details.get("restarted_pid"):
                restarted = after.details["restarted_pid"]
                log_path = after.details.get("restart_log", "")
                return f"{sent_name} sent to {pids}; restarted with `{command}` (pid {restarted}, log {log_path})"
            if command:
                return f"{sent_name} sent to {pids}; {after.details.get('note', 'restart not run')}"
            return f"{sent_name} sent to {pids} cannot be undone; marked reverted"
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

    def applied_text(self, record: FaultRecord) -> str:
        return f"on {len(record.pids)} process(es) {list(record.pids)}"

    def in_pod(self, fault: ProcessFault, site: PodSite) -> ProcessFault:
        """The pod's chosen containers' processes (their cgroups), never its sandbox."""
        return fault.model_copy(update={"target": site.process_target()})

    def leftovers(self) -> list[Leftover]:
        return []  # a stopped process carries no tag of ours: only the journal knows it

    def remove(self, leftover: Leftover) -> None:
        raise FaultError(f"the process family leaves no tagged objects ({leftover.describe()})")


FAMILY = ProcessFamily()


def describe(fault: ProcessFault) -> str:
    """What the fault will do, in one line, for ``harness plan`` and dry runs. Touches nothing."""
    return FAMILY.describe(fault)


def inject(
    fault: ProcessFault,
    run_id: str,
    journal: Journal,
    *,
    protected: Iterable[tuple[int, float]] = (),
    lease_until: float | None = None,
) -> FaultRecord:
    """Apply ``fault`` now through the journal steps and return its ``injected`` record.

    ``lease_until`` (epoch seconds) leases the fault: the node's watchdog reverts it once the
    lease (renewed through :meth:`Journal.renew`) lapses. Without it the fault is not leased.
    """
    return FAMILY.inject(fault, InjectContext(run_id, journal, lease_until, tuple(protected)))


def revert(record: FaultRecord, journal: Journal) -> None:
    """Undo the fault ``record`` describes and journal the outcome; safe to call any number of times."""
    FAMILY.revert(record, journal)
