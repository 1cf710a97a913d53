"""The pods a fault's ``pods`` selector chooses, listed through the API server on the driver.

Sends only GET requests, through the official client (:mod:`.api` connects): the kube context
must be in ``safety.allowed_contexts`` and the namespace must carry the opt-in label
``harness.io/chaos=enabled``, as for every Kubernetes fault. The candidates are the pods that
match the selector, are not terminating and are scheduled (``spec.nodeName``); the choice is
:func:`.api.select_pods`'s (the first ``k`` of an order shuffled by the seed, sorted by name), so
the same pods and seed give the same choice in ``harness plan`` and in the run, and a larger
count's choice holds a smaller one's. Each chosen pod becomes a
:class:`~harness.chaos.kubelet.PodRef` the agent on its node can find it by.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException

from harness.chaos.families.kubernetes import api
from harness.chaos.kubelet import PodRef
from harness.errors import FaultError
from harness.scenario.faults import FaultBase

__all__ = ["PodChoice", "choose", "choose_pods"]

_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class PodChoice:
    """The pods chosen for one fault, in the context they were listed in."""

    fault: str
    context: str
    pods: tuple[PodRef, ...]
    matching: int

    def describe(self) -> str:
        listed = ", ".join(f"{p.name} on {p.node}" for p in self.pods)
        return f"{len(self.pods)} of {self.matching} matching pods (context {self.context}): {listed}"


def _container_id(raw: str | None) -> str:
    """``containerd://<id>`` (or ``cri-o://``, ``docker://``) -> ``<id>``."""
    return (raw or "").partition("://")[2] or (raw or "")


def _listed(kube: api.KubeApi, fault: FaultBase) -> list[PodRef]:
    assert fault.pods is not None
    selector = fault.pods
    what = f"listing pods '{selector.selector}' in {selector.namespace}"
    try:
        found = api.call(
            what,
            fault.name,
            lambda: kube.core.list_namespaced_pod(
                selector.namespace, label_selector=selector.selector, _request_timeout=_TIMEOUT_S
            ),
        )
    except ApiException as exc:
        raise api.api_error(fault.name, what, exc) from None
    out = []
    for pod in found.items:
        meta, spec, status = pod.metadata, pod.spec, pod.status
        if meta is None or not meta.name or meta.deletion_timestamp is not None or spec is None or not spec.node_name:
            continue  # terminating, or not scheduled: nowhere to act
        statuses = (status.container_statuses if status else None) or []
        containers = tuple((c.name, _container_id(c.container_id)) for c in statuses if c.container_id)
        ip = (status.pod_ip if status else None) or ""
        out.append(PodRef(selector.namespace, meta.name, meta.uid or "", spec.node_name, ip, containers))
    return out


def choose(kube: api.KubeApi, fault: FaultBase) -> PodChoice:
    """The pods ``fault`` acts inside now; ``ConfigError`` for a refused context or namespace,
    ``FaultError`` when no scheduled pod matches."""
    assert fault.pods is not None
    selector = fault.pods
    api.check_context(kube, fault.name)
    api.check_namespace(kube, selector.namespace, fault.name)
    pods = _listed(kube, fault)
    if not pods:
        raise FaultError(
            f"fault '{fault.name}': no running, scheduled pod matches '{selector.selector}' "
            f"in namespace {selector.namespace}"
        )
    by_name = {p.name: p for p in pods}
    resolved = [api.ResolvedPod(p.name, p.uid) for p in pods]
    chosen = api.select_pods(resolved, selector, selector.seed or fault.name)
    return PodChoice(fault.name, kube.context, tuple(by_name[p.name] for p in chosen), len(pods))


def choose_pods(faults: Iterable[FaultBase], allowed_contexts: Iterable[str]) -> dict[str, PodChoice]:
    """:func:`choose` for every fault with ``pods``, by fault name (one connection)."""
    wanted = [f for f in faults if f.pods is not None]
    if not wanted:
        return {}
    kube = api.connect(allowed_contexts)
    return {fault.name: choose(kube, fault) for fault in wanted}
