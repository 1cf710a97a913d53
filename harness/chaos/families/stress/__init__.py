"""The stress family: ``stress.cpu``, ``stress.memory``, ``stress.io`` (stress-ng) and ``stress.disk_fill``.

Pure of Ray, like the process family: the agent applies these faults, ``harness recover`` and
the watchdog revert them, tests call :func:`inject` and :func:`revert` directly.

* **Journal first.** ``injecting`` is written (fsynced) before stress-ng starts or the fill
  file is made, with what revert needs to find them without a PID: the private work
  directory, the fill file's path and the environment tag every stress-ng process of the
  fault inherits (:mod:`.stress_ng`). ``injected`` then adds the PID and its start time.
* **Idempotent.** A fault already injected or reverted is not started again; one left
  ``injecting`` by a crash is cleaned (tagged processes killed) and started afresh.
  Reverting twice does nothing the second time.
* **Undone when it fails.** An inject that cannot resolve its target, place or start
  stress-ng, or fill the disk undoes what it started (journaled ``reverted``) and raises
  ``FaultError``.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable

from harness.chaos import capabilities, cgroups, processes
from harness.chaos.families.stress import stress_ng
from harness.chaos.families.stress.params import (
    StressCpuFault,
    StressDiskFillFault,
    StressFault,
    StressIoFault,
    StressMemoryFault,
)
from harness.chaos.family import FaultFamily, HostContext, Leftover
from harness.chaos.journal import FaultRecord, Journal
from harness.chaos.kubelet import PodSite
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import ConfigError, FaultError

__all__ = ["FAMILY", "StressFamily", "StressFault", "describe", "inject", "revert"]

log = logging.getLogger(__name__)


def _realpath(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):  # a loop of links, say: judged as written
        return os.path.normpath(path)


class StressFamily(FaultFamily):
    """Load and fill on a node, optionally inside a target process's cgroups."""

    name = "stress"
    models = (StressCpuFault, StressMemoryFault, StressIoFault, StressDiskFillFault)
    undo_failed_inject = True

    def in_pod(self, fault: StressFault, site: PodSite) -> StressFault:
        """stress-ng joins the cgroups of the pod's (chosen) containers: the pod's limits bind it."""
        return fault.model_copy(update={"target": site.process_target()})

    def describe(self, fault: StressFault) -> str:
        """What load, for how long, in whose cgroups."""
        if isinstance(fault, StressCpuFault):
            what = f"stress-ng {fault.params.workers} CPU worker(s) at {fault.params.load}% load"
        elif isinstance(fault, StressMemoryFault):
            how = "held" if fault.params.hold else "rewritten continuously"
            if fault.params.bytes is not None:
                size = f"{fault.params.bytes} bytes"
            elif fault.target is not None:
                size = f"{fault.params.percent:g}% of the target's memory limit (of the node's memory without one)"
            else:
                size = f"{fault.params.percent:g}% of the node's total memory"
            what = f"stress-ng allocates {size}, {how}"
        elif isinstance(fault, StressIoFault):
            what = f"stress-ng {fault.params.workers} hdd worker(s) in {fault.params.path}"
        else:
            assert isinstance(fault, StressDiskFillFault)
            return f"fill {fault.params.path} with a {fault.params.bytes}-byte file for {fault.duration:g}s"
        where = f" in the cgroups of {processes.describe_target(fault.target)}" if fault.target is not None else ""
        return f"{what}{where} for {fault.duration:g}s"

    def requirements(self, fault: StressFault) -> list[str]:
        if isinstance(fault, StressDiskFillFault):
            return []
        return [capabilities.STRESS_NG] + ([capabilities.CGROUPS] if fault.target is not None else [])

    def resolve(self, fault: StressFault, context: HostContext) -> str:
        return processes.now_text(fault.target) if fault.target is not None else ""

    def refusal(self, fault: StressFault, context: HostContext) -> str | None:
        """A directory under ``safety.allowed_paths`` as written that leaves it once symbolic links
        are followed, or a pid file naming PID 1 now (faults on this node only)."""
        if fault.node is not None:
            return None
        if isinstance(fault, StressIoFault | StressDiskFillFault):
            allowed = [_realpath(d) for d in context.safety.allowed_paths]
            real = _realpath(fault.params.path)
            if not any(real == d or real.startswith(d.rstrip("/") + "/") for d in allowed):
                return (
                    f"fault '{fault.name}': {fault.params.path} is {real} once symbolic links are followed, "
                    f"which is not under safety.allowed_paths ({', '.join(context.safety.allowed_paths)})"
                )
        return processes.pid_file_refusal(fault.name, fault.target) if fault.target is not None else None

    def check(self, fault: StressFault, context: HostContext) -> None:
        if not isinstance(fault, StressDiskFillFault) and shutil.which("stress-ng") is None:
            raise ConfigError(  # the agent would fail at the fault, mid-run
                f"fault '{fault.name}' needs stress-ng, which is not installed here (Debian: apt-get install stress-ng)"
            )

    def warm_up(self, kinds: frozenset[str]) -> None:
        return None  # stress-ng is started per fault; nothing to load beforehand

    def prepare(self, fault: StressFault, ctx: InjectContext) -> Prepared:

        stress_ng.reap()
        cgroup_files: list[str] = []
        target_desc = "the agent's own cgroups"
        target_pid: int | None = None
        memory: tuple[int, str] = (0, "")
        try:
            if fault.target is not None and not isinstance(fault, StressDiskFillFault):
                target_pid = processes.resolve_targets(fault.target, protected=ctx.protected)[0].pid
                cgroup_files = cgroups.cgroup_procs_files(target_pid)
                target_desc = f"cgroups of pid {target_pid}"
            if isinstance(fault, StressMemoryFault):  # a percent becomes bytes here, journaled
                memory = stress_ng.memory_bytes(fault, target_pid)
        except FaultError as exc:
            raise FaultError(f"fault '{fault.name}': {exc}") from None
        fill = isinstance(fault, StressDiskFillFault)
        details: Details = {
            "target": target_desc,
            "tag": f"{ctx.run_id}/{fault.name}",
            "workdir": "" if fill else stress_ng.workdir_of(fault, ctx.run_id),
            "file": stress_ng.fill_path(fault, ctx.run_id) if isinstance(fault, StressDiskFillFault) else "",
            "cgroups": ",".join(cgroup_files),
        }
        if isinstance(fault, StressMemoryFault):
            details |= {"bytes": memory[0], "bytes_from": memory[1]}
        return Prepared(details)

    def apply(self, fault: StressFault, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:

        stress_ng.reap()
        if resumed:  # an earlier attempt died mid-way: clean up what it may have started
            stress_ng.kill(record)
        if isinstance(fault, StressDiskFillFault):
            stress_ng.fill(str(record.details["file"]), fault.params.bytes)
            done: Details = {"size": fault.params.bytes}
        else:
            assert isinstance(fault, StressCpuFault | StressMemoryFault | StressIoFault)
            workdir = str(record.details["workdir"])
            os.makedirs(workdir, exist_ok=True)
            cgroup_files = [f for f in str(record.details.get("cgroups", "")).split(",") if f]
            size = record.details.get("bytes")
            argv = stress_ng.stress_argv(fault, workdir, size if isinstance(size, int) and size > 0 else None)
            pid, ticks = stress_ng.start(argv, cgroup_files, str(record.details["tag"]), workdir)
            done = {"stress_pid": pid, "stress_start_ticks": ticks}
        log.info("run %s: fault %s: %s", ctx.run_id, fault.name, self.describe(fault))
        return done

    def undo(self, record: FaultRecord) -> Details:
        """Stop the stress and remove what it made; enough on a record left ``injecting`` (the tag
        and paths recorded then). Raises when a process survived SIGKILL or a file stayed."""

        killed = stress_ng.kill(record)
        removed: list[str] = []
        fill = str(record.details.get("file", ""))
        if fill and os.path.lexists(fill):
            os.unlink(fill)
            removed.append(fill)
        workdir = str(record.details.get("workdir", ""))
        if workdir and os.path.isdir(workdir):
            shutil.rmtree(workdir)
            removed.append(workdir)
        return {"killed": ",".join(str(p) for p in killed), "removed": ",".join(removed)}

    def reverted_text(self, before: FaultRecord, after: FaultRecord) -> str:
        return str(after.details.get("reverted") or f"marked {after.state.value}")

    def leftovers(self) -> list[Leftover]:
        """stress-ng processes carrying the stress tag, whatever run left them."""
        return [
            Leftover("", "process", f"pid {proc.pid} ({tag})", (proc.pid, proc.create_time()), self.name, order=5)
            for proc, tag in processes.tagged([stress_ng.TAG])
        ]

    def remove(self, leftover: Leftover) -> None:
        processes.kill_if_same(*leftover.key)


FAMILY = StressFamily()


def describe(fault: StressFault) -> str:
    """One line for ``harness plan``: what load, for how long, in whose cgroups. Touches nothing."""
    return FAMILY.describe(fault)


def inject(
    fault: StressFault,
    run_id: str,
    journal: Journal,
    *,
    protected: Iterable[tuple[int, float]] = (),
    lease_until: float | None = None,
) -> FaultRecord:
    """Start the stress now through the journal steps and return its ``injected`` record."""
    return FAMILY.inject(fault, InjectContext(run_id, journal, lease_until, tuple(protected)))


def revert(record: FaultRecord, journal: Journal) -> None:
    """Stop the stress ``record`` describes and remove what it made; journal the outcome."""
    FAMILY.revert(record, journal)
