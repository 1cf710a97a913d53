"""When the system is whole again after a fault: a fault's ``heal:`` key, for the ``heal_time`` metric.

``heal_time`` is measured from the system's side, not from requests: from a fault's end (or,
for a kill, which has nothing to revert, from the kill) until the condition below holds. The
condition is one of four, each polled by the run every :data:`POLL_INTERVAL` seconds until the
run ends:

* ``url``: an HTTP(S) health URL answers 2xx (asked from the driver; its host must be a load
  host or inside ``safety.allowed_networks``, as every fault's target);
* ``pattern``: a process whose command line matches the regular expression runs on the fault's
  node again (asked of that node's chaos agent);
* ``pods``: ``count`` pods matching ``selector`` in ``namespace`` are Ready (default: as many as
  were Ready when the run started), read through the Kubernetes API from the driver;
* ``deployment``: a Deployment's ``status.availableReplicas`` is back at its ``spec.replicas``.

A fault kind may derive a default from its own target (:meth:`FaultBase.default_heal
<harness.scenario.faults.FaultBase.default_heal>`): a pod kill heals when its selector has as
many Ready pods again, a scale when its deployment's replicas are available again, a process
kill by pattern when the pattern matches again. Pure: models only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Annotated, Self

from pydantic import AfterValidator, Field, model_validator

from harness.judge.objectives import lookup
from harness.scenario.fields import KubeNamespace, KubeObjectName, Model, label_selector, regex

if TYPE_CHECKING:
    from harness.scenario.faults import FaultBase
    from harness.scenario.model import Slo

__all__ = ["POLL_INTERVAL", "DeploymentHeal", "HealCheck", "PodsHeal", "watched_faults"]

#: Seconds between two polls of a heal condition: a heal_time is known to about this much.
POLL_INTERVAL = 0.15


class PodsHeal(Model):
    """Pods whose readiness says the fault healed."""

    namespace: KubeNamespace = Field(description="Namespace of the pods.")
    selector: Annotated[str, AfterValidator(label_selector)] = Field(
        description="Label selector of the pods, as the API takes it, e.g. 'app=payments'."
    )
    count: int | None = Field(
        default=None,
        ge=1,
        le=100_000,
        description="Healed when at least this many matching pods are Ready; default: as many as were Ready "
        "when the run started.",
    )

    def describe(self) -> str:
        want = f"{self.count}" if self.count is not None else "as many as at the start of the run"
        return f"pods '{self.selector}' in {self.namespace} Ready ({want})"


class DeploymentHeal(Model):
    """A Deployment whose available replicas say the fault healed."""

    namespace: KubeNamespace = Field(description="Namespace of the deployment.")
    deployment: KubeObjectName = Field(description="Name of the Deployment.")

    def describe(self) -> str:
        return f"deployment {self.namespace}/{self.deployment} availableReplicas back at spec.replicas"


class HealCheck(Model):
    """What "whole again" means after a fault: exactly one of url, pattern, pods or deployment."""

    url: str | None = Field(
        default=None,
        min_length=1,
        max_length=2000,
        description="Healed when this http(s) URL answers 2xx (asked from the driver, 1 s timeout per poll).",
    )
    pattern: Annotated[str, AfterValidator(regex)] | None = Field(
        default=None,
        description="Healed when a process whose full command line matches this regular expression runs on "
        "the fault's node.",
    )
    pods: PodsHeal | None = Field(default=None, description="Healed when enough matching pods are Ready.")
    deployment: DeploymentHeal | None = Field(
        default=None, description="Healed when the deployment's available replicas are back at the desired count."
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        given = [k for k in ("url", "pattern", "pods", "deployment") if getattr(self, k) is not None]
        if len(given) != 1:
            shown = ", ".join(given) or "none"
            raise ValueError(f"give exactly one of url, pattern, pods or deployment (given: {shown})")
        return self

    @property
    def kubernetes(self) -> bool:
        """Whether the condition is read through the Kubernetes API."""
        return self.pods is not None or self.deployment is not None

    def describe(self) -> str:
        """The condition in a few words, for plans, events and messages."""
        if self.url is not None:
            return f"{self.url} answers 2xx"
        if self.pattern is not None:
            return f"a process matching '{self.pattern}' runs"
        if self.pods is not None:
            return self.pods.describe()
        assert self.deployment is not None
        return self.deployment.describe()


def watched_faults(faults: Iterable[FaultBase], slos: Iterable[Slo]) -> list[FaultBase]:
    """The faults whose healing a run measures: those with a ``heal:`` key, and those a metric
    measured from the system's side (``heal_time``) names, with their kind's default condition."""
    named = {s.window.ref for s in slos if lookup(s.objective.metric).from_system}
    return [f for f in faults if f.heal_check() is not None and (f.heal is not None or f.name in named)]
