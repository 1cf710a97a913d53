"""The kubernetes family: ``kubernetes.pod_kill`` and ``kubernetes.scale``, on the node's journal.

:mod:`.api` talks to the API server (the official client, imported on first use) and knows
nothing of the journal; this family puts the journal steps around it (:mod:`harness.chaos.steps`):

* ``injecting`` is written (fsynced) before any change, with what a revert needs: the kube
  context and namespace, and for a scale the deployment and its replica count before the
  fault. A crash at any later point leaves enough on disk to restore it.
* ``injected`` follows with what was done (the pods deleted, or the recorded replicas); a pod
  kill that deleted some pods and not others is journaled ``injected`` with both, then raised.
* A revert patches a scale back to the recorded count, in the kube context the fault was
  journaled with (``harness recover`` and the watchdog have no scenario at hand); a pod kill
  has nothing to undo (the pods' controller recreates them) and is only marked reverted.
"""

from __future__ import annotations

from collections.abc import Iterable

from harness.chaos import capabilities
from harness.chaos.families.kubernetes.params import KubeFault, KubernetesPodKillFault, KubernetesScaleFault
from harness.chaos.family import FaultFamily, HostContext, Leftover
from harness.chaos.journal import FaultRecord, Journal
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import ConfigError, FaultError, HarnessError

__all__ = ["FAMILY", "KubernetesFamily", "inject", "revert"]


class KubernetesFamily(FaultFamily):
    """Pods deleted and deployments scaled to zero, only in allowed contexts and opted-in namespaces."""

    name = "kubernetes"
    models = (KubernetesPodKillFault, KubernetesScaleFault)

    def describe(self, fault: KubeFault) -> str:
        from harness.chaos.families.kubernetes import api

        return api.describe(fault)

    def requirements(self, fault: KubeFault) -> list[str]:
        return [capabilities.KUBE_CONTEXTS]

    def resolve(self, fault: KubeFault, context: HostContext) -> str:
        """Sends only GET requests; a fault that cannot be resolved says why instead."""
        from harness.chaos.families.kubernetes import api

        try:
            return f"; now: {api.resolve(fault, api.connect(context.safety.allowed_contexts)).describe()}"
        except HarnessError as exc:
            return f"; not resolved: {exc}"

    def refusal(self, fault: KubeFault, context: HostContext) -> str | None:
        return None  # nothing about the target is decided locally beyond the allow-lists

    def check(self, fault: KubeFault, context: HostContext) -> None:
        """No kubeconfig, a context the scenario does not allow, a namespace without the opt-in
        label, an API server that does not answer, nothing to act on."""
        from harness.chaos.families.kubernetes import api

        kube = api.connect(context.safety.allowed_contexts)
        try:
            api.resolve(fault, kube)
        except ConfigError:
            raise
        except HarnessError as exc:
            raise ConfigError(f"fault '{fault.name}' cannot be applied: {exc}") from None

    def warm_up(self, kinds: frozenset[str]) -> None:
        from harness.chaos.families.kubernetes import api  # noqa: F401 - the client costs its import once

    def prepare(self, fault: KubeFault, ctx: InjectContext) -> Prepared:
        from harness.chaos.families.kubernetes import api

        resolution = api.resolve(fault, api.connect(ctx.allowed_contexts))  # context and opt-in checks first
        details: Details = {"target": api.describe(fault), "context": resolution.context}
        details["namespace"] = resolution.namespace
        if resolution.kind == KubernetesScaleFault.KIND and resolution.replicas is not None:
            details.update(deployment=resolution.deployment or "", replicas=resolution.replicas)
        else:
            details["selected"] = ",".join(p.name for p in resolution.pods)
        return Prepared(details)

    def apply(self, fault: KubeFault, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:
        """A scale keeps the replica count recorded first; a resumed pod kill deletes nothing more."""
        from harness.chaos.families.kubernetes import api

        kube = api.connect(ctx.allowed_contexts)
        known = resumed or "replicas" in record.details
        prior = api.KubeRecord.from_details(fault.name, fault.kind, record.details) if known else None
        return api.inject(fault, kube, previous=prior).details()

    def undo(self, record: FaultRecord) -> Details:
        from harness.chaos.families.kubernetes import api

        done = api.KubeRecord.from_details(record.fault_name, record.kind, record.details)
        if done.kind == KubernetesPodKillFault.KIND:
            return {}
        api.revert(done, api.connect([done.context], context=done.context))
        return {"restored": done.replicas if done.replicas is not None else -1}

    def reverted_text(self, before: FaultRecord, after: FaultRecord) -> str:
        if "restored" in after.details:
            where = f"{after.details.get('namespace', '')}/{after.details.get('deployment', '')}"
            return f"scaled deployment {where} back to {after.details['restored']} replicas"
        return str(after.details.get("reverted") or f"marked {after.state.value}")

    def leftovers(self) -> list[Leftover]:
        return []  # a deployment left at zero carries no tag of ours: only the journal knows it

    def remove(self, leftover: Leftover) -> None:
        raise FaultError(f"the kubernetes family leaves no tagged objects ({leftover.describe()})")


FAMILY = KubernetesFamily()


def inject(
    fault: KubeFault,
    run_id: str,
    journal: Journal,
    *,
    allowed_contexts: Iterable[str],
    lease_until: float | None = None,
) -> FaultRecord:
    """Apply ``fault`` now through the journal steps and return its ``injected`` record."""
    ctx = InjectContext(run_id, journal, lease_until, allowed_contexts=tuple(allowed_contexts))
    return FAMILY.inject(fault, ctx)


def revert(record: FaultRecord, journal: Journal) -> None:
    """Undo the fault ``record`` describes, in the context it was injected in; journal the outcome."""
    FAMILY.revert(record, journal)
