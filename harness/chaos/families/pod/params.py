"""The pod family's kinds: ``kubernetes.container_kill`` and ``kubernetes.pod_failure``, as scenario models.

Both act on the nodes of the pods a fault's ``pods`` selector chooses, so ``pods`` is required.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import Field

from harness.scenario.faults import FaultBase, FaultContext
from harness.scenario.fields import KeyPath, Model

__all__ = ["FreezeTarget", "KubernetesContainerKillFault", "KubernetesPodFailureFault", "NoParams", "PodFault"]


class NoParams(Model):
    pass


class FreezeTarget(Model):
    """Filled in on each node, one pod at a time; a scenario leaves it out."""

    freeze: Annotated[str, Field(min_length=2, pattern=r"^/")] | None = Field(
        default=None,
        description="Set by the agent: the pod's cgroup v2 cgroup.freeze file, or its v1 freezer.state. "
        "Not written in a scenario (give pods).",
    )


class _PodKind(FaultBase):
    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        if self.pods is None:
            yield ("pods",), f"{self.KIND} acts on pods: give pods (namespace, selector, mode)"


class KubernetesContainerKillFault(_PodKind):
    """SIGKILL the named containers' processes in the chosen pods at ``at`` (their kubelet restarts them)."""

    kind: Literal["kubernetes.container_kill"] = Field(description="Fault kind.")
    params: NoParams = Field(default_factory=NoParams, description="No parameters.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        yield from super().checks(context)
        if self.pods is not None and not self.pods.containers:
            yield (
                ("pods", "containers"),
                "name the containers to kill (pods.containers), as Chaos Mesh's containerNames",
            )


class KubernetesPodFailureFault(_PodKind):
    """Freeze the chosen pods' cgroups for the fault window (every process of the pod stops), thaw at revert."""

    kind: Literal["kubernetes.pod_failure"] = Field(description="Fault kind.")
    target: FreezeTarget = Field(default_factory=FreezeTarget, description="Left out: each pod's cgroup.")
    params: NoParams = Field(default_factory=NoParams, description="No parameters.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        yield from super().checks(context)
        if self.duration <= 0:
            yield ("duration",), "a pod failure needs a positive duration (the pod is thawed after it)"
        if self.target.freeze is not None:
            yield ("target", "freeze"), "the agent finds each pod's cgroup; remove target"


PodFault = KubernetesContainerKillFault | KubernetesPodFailureFault
