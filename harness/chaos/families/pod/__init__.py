"""The pod family: ``kubernetes.container_kill`` and ``kubernetes.pod_failure``, on the pods' own nodes.

Both need ``pods``: the driver chooses the pods, the chaos agent on each pod's node finds it
(:mod:`harness.chaos.kubelet`) and this family's ``in_pod`` makes the fault concrete there:

* **container kill** becomes a ``process.kill`` (SIGKILL) of the named containers' processes,
  found by their cgroups (``pods.containers``, as Chaos Mesh's ``containerNames``); it is
  journaled, leased and reverted as that process fault (a kill has nothing to undo: the
  kubelet restarts the container under its restart policy).
* **pod failure** freezes the pod's cgroup for the fault window: cgroup v2 ``cgroup.freeze``
  = 1 (the kernel stops every process of the pod and its sub-groups), or the cgroup v1
  freezer's ``freezer.state`` = FROZEN; revert writes it back (0 / THAWED). The file is
  journaled first, so the watchdog and ``harness recover`` thaw the pod with the record alone.
  Chaos Mesh's PodFailure swaps the containers' images for a pause image instead, so the
  containers restart and the kubelet marks them not ready; a frozen pod keeps its containers,
  its IP and its Ready condition (probes time out only after their failure threshold), and every
  connection to it hangs rather than being refused.
"""

from __future__ import annotations

from pathlib import Path

from harness.chaos import capabilities
from harness.chaos.families.pod.params import (
    FreezeTarget,
    KubernetesContainerKillFault,
    KubernetesPodFailureFault,
    PodFault,
)
from harness.chaos.families.process.params import ProcessKillFault
from harness.chaos.family import FaultFamily, HostContext, Leftover
from harness.chaos.journal import FaultRecord
from harness.chaos.kubelet import PodSite
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import FaultError
from harness.scenario.faults import FaultBase

__all__ = ["FAMILY", "PodFamily"]

#: (file, value that freezes, value that thaws) for cgroup v2 and the v1 freezer.
_V2 = ("cgroup.freeze", "1", "0")
_V1 = ("freezer.state", "FROZEN", "THAWED")


def _freeze_file(site: PodSite, fault_name: str) -> str:
    """The pod's cgroup v2 ``cgroup.freeze``, else its v1 ``freezer.state``."""
    if not any(Path(d).is_dir() for d in site.pod_dirs):  # a pod not looked at yet (the plan's words)
        return f"{site.pod_dirs[0]}/{_V2[0]} (or {_V1[0]})"
    for directory in site.pod_dirs:
        for name, _freeze, _thaw in (_V2, _V1):
            if (Path(directory) / name).is_file():
                return str(Path(directory) / name)
    raise FaultError(
        f"fault '{fault_name}': pod {site.pod.key} has no cgroup.freeze (cgroup v2) nor freezer.state "
        f"(cgroup v1 freezer) under {', '.join(site.pod_dirs)}"
    )


def _values(path: str) -> tuple[str, str]:
    """(freeze, thaw) values of the freeze file ``path``."""
    return (_V2[1], _V2[2]) if path.endswith(_V2[0]) else (_V1[1], _V1[2])


class PodFamily(FaultFamily):
    """Containers killed and pods frozen on the pods' own nodes."""

    name = "pod"
    models = (KubernetesContainerKillFault, KubernetesPodFailureFault)
    undo_failed_inject = True

    def in_pod(self, fault: PodFault, site: PodSite) -> FaultBase:
        if isinstance(fault, KubernetesContainerKillFault):
            return ProcessKillFault.model_validate(
                {
                    "name": fault.name,
                    "kind": ProcessKillFault.KIND,
                    "at": fault.at,
                    "duration": fault.duration,
                    "description": fault.description,
                    "target": site.process_target().model_dump(exclude_none=True),
                }
            )
        return fault.model_copy(update={"target": FreezeTarget(freeze=_freeze_file(site, fault.name))})

    def describe(self, fault: PodFault) -> str:
        if isinstance(fault, KubernetesContainerKillFault):  # only before in_pod (it is a process.kill then)
            return "SIGKILL the named containers' processes"
        where = fault.target.freeze or "each pod's cgroup"
        return f"freeze {where} (every process of the pod stops), thaw it after {fault.duration:g}s"

    def requirements(self, fault: PodFault) -> list[str]:
        return [capabilities.CGROUPS]

    def resolve(self, fault: PodFault, context: HostContext) -> str:
        return ""  # the pods are resolved on the driver and on their nodes (harness.chaos.pods)

    def refusal(self, fault: PodFault, context: HostContext) -> str | None:
        return None

    def check(self, fault: PodFault, context: HostContext) -> None:
        return None

    def warm_up(self, kinds: frozenset[str]) -> None:
        return None

    def prepare(self, fault: PodFault, ctx: InjectContext) -> Prepared:
        path = fault.target.freeze if isinstance(fault, KubernetesPodFailureFault) else None
        if path is None:
            raise FaultError(f"fault '{fault.name}': {fault.kind} acts only inside pods (give pods)")
        freeze, _thaw = _values(path)
        try:
            before = Path(path).read_text(encoding="ascii").strip()
        except OSError as exc:
            raise FaultError(f"fault '{fault.name}': cannot read {path}: {exc.strerror or exc}") from None
        if before == freeze:
            raise FaultError(f"fault '{fault.name}': {path} is frozen already (by someone else); leaving it alone")
        return Prepared({"freeze": path, "before": before, "target": str(Path(path).parent)})

    def apply(self, fault: PodFault, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:
        path = str(record.details["freeze"])
        Path(path).write_text(_values(path)[0], encoding="ascii")
        return {"frozen": path}

    def undo(self, record: FaultRecord) -> Details:
        path = str(record.details.get("freeze", ""))
        if not path or not Path(path).exists():
            return {"gone": path}  # the pod (and its cgroup) went away: nothing is frozen any more
        Path(path).write_text(_values(path)[1], encoding="ascii")
        return {"thawed": path}

    def applied_text(self, record: FaultRecord) -> str:
        return f"froze cgroup {record.details.get('target', '')}"

    def reverted_text(self, before: FaultRecord, after: FaultRecord) -> str:
        if after.details.get("gone") is not None and "thawed" not in after.details:
            return f"{after.details.get('gone')} is gone (the pod went away); nothing to thaw"
        return f"thawed {after.details.get('thawed', '')}"

    def leftovers(self) -> list[Leftover]:
        return []  # a frozen cgroup carries no tag of ours: only the journal (and the lease) know it

    def remove(self, leftover: Leftover) -> None:
        raise FaultError(f"the pod family leaves no tagged objects ({leftover.describe()})")


FAMILY = PodFamily()
