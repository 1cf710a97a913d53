"""The kubernetes family's kinds: ``kubernetes.pod_kill`` and ``kubernetes.scale``, as scenario models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, ClassVar, Literal

from pydantic import AfterValidator, Field

from harness.scenario.faults import FaultBase, FaultContext
from harness.scenario.fields import KeyPath, KubeNamespace, KubeObjectName, Model, label_selector
from harness.scenario.heal import DeploymentHeal, HealCheck, PodsHeal

__all__ = [
    "DeploymentTarget",
    "KubernetesFault",
    "KubernetesPodKillFault",
    "KubernetesScaleFault",
    "PodKillParams",
    "PodTarget",
    "ScaleParams",
]


class PodTarget(Model):
    """The pods a ``kubernetes.pod_kill`` chooses from: a label selector in one namespace."""

    namespace: KubeNamespace = Field(
        description="Namespace of the pods; it must carry the opt-in label harness.io/chaos=enabled."
    )
    selector: Annotated[str, AfterValidator(label_selector)] = Field(
        description="Label selector as the API takes it, e.g. 'app=payments,tier in (web,api)'; not empty."
    )


class DeploymentTarget(Model):
    """The deployment a ``kubernetes.scale`` fault scales to zero and back."""

    namespace: KubeNamespace = Field(
        description="Namespace of the deployment; it must carry the opt-in label harness.io/chaos=enabled."
    )
    deployment: KubeObjectName = Field(description="Name of the Deployment.")


class PodKillParams(Model):
    """How many of the matching pods are deleted (with gracePeriodSeconds=0)."""

    mode: Literal["one", "all", "fixed", "percent"] = Field(
        default="one",
        description="one pod, all pods, a fixed count (params.count) or a percent of them (params.percent).",
    )
    count: int | None = Field(
        default=None, ge=1, le=100_000, description="Pods to delete with mode fixed (all of them if fewer match)."
    )
    percent: float | None = Field(
        default=None,
        gt=0,
        le=100,
        description="Share of matching pods to delete with mode percent, rounded up: 50% of 3 pods is 2.",
    )
    seed: str | None = Field(
        default=None,
        max_length=200,
        description="Seed of the pod choice (the same seed and pods give the same choice); default: the fault name.",
    )


class ScaleParams(Model):
    pass


class KubernetesFault(FaultBase):
    """What both kinds share: they act through the API server in an allowed kube context."""

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        if self.node is not None:
            yield ("node",), "Kubernetes faults act through the API server, not on a node; remove node"
        if (
            context.safety is not None
            and not context.safety.allowed_contexts
            and context.is_first(self, KubernetesFault)
        ):
            need = "kubernetes faults need safety.allowed_contexts: the kube contexts this scenario may act in"
            yield ("kind",), need


class KubernetesPodKillFault(KubernetesFault):
    """Delete the selected pods with gracePeriodSeconds=0 at ``at``; their controller recreates them."""

    HEALS_FROM_START: ClassVar[bool] = True  # a kill: its heal_time runs from the deletion
    kind: Literal["kubernetes.pod_kill"] = Field(description="Fault kind.")
    target: PodTarget = Field(description="Namespace and label selector of the pods.")
    params: PodKillParams = Field(default_factory=PodKillParams, description="Which of the matching pods.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        yield from super().checks(context)
        params = self.params
        if params.mode == "fixed" and params.count is None:
            yield ("params", "mode"), "mode 'fixed' needs params.count"
        if params.mode == "percent" and params.percent is None:
            yield ("params", "mode"), "mode 'percent' needs params.percent"
        if params.count is not None and params.mode != "fixed":
            yield ("params", "count"), f"count is only used with mode 'fixed' (mode is '{params.mode}')"
        if params.percent is not None and params.mode != "percent":
            yield ("params", "percent"), f"percent is only used with mode 'percent' (mode is '{params.mode}')"

    def default_heal(self) -> HealCheck | None:
        """Healed once the selector has as many Ready pods as when the run started (replacements Ready)."""
        return HealCheck(pods=PodsHeal(namespace=self.target.namespace, selector=self.target.selector))


class KubernetesScaleFault(KubernetesFault):
    """Scale a deployment to 0 replicas at ``at``, back to the recorded count at ``at + duration``."""

    kind: Literal["kubernetes.scale"] = Field(description="Fault kind.")
    target: DeploymentTarget = Field(description="Namespace and name of the deployment.")
    params: ScaleParams = Field(default_factory=ScaleParams, description="No parameters.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        yield from super().checks(context)
        if self.duration <= 0:
            yield ("duration",), "a scale to zero needs a positive duration (it is scaled back after it)"

    def default_heal(self) -> HealCheck | None:
        """Healed once the deployment, scaled back, has all its replicas available again."""
        target = self.target
        return HealCheck(deployment=DeploymentHeal(namespace=target.namespace, deployment=target.deployment))


KubeFault = KubernetesPodKillFault | KubernetesScaleFault
