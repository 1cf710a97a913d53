"""A fault with ``pods``, made concrete pod by pod on the node that holds them, through its family's ``in_pod``.

The driver chooses the pods and sends each node's agent its own (:class:`~harness.chaos.kubelet.PodRef`);
the agent calls :func:`member_faults`: each pod is found on the node (:func:`harness.chaos.kubelet.locate`)
and the family's ``in_pod`` hook gives the same fault aimed at that pod, named
``<fault>.<namespace>.<pod>`` (:func:`member_name`: characters every family takes in a fault
name, in file names, nft chains and proxy control calls) and without ``pods``. Each member is an ordinary fault:
journaled, leased, reverted and recovered on its own, from its record alone. No kind is named here.
"""

from __future__ import annotations

from typing import Any

from harness.chaos.family import FaultFamily, family_of
from harness.chaos.kubelet import PodRef, PodSite, locate
from harness.errors import FaultError
from harness.scenario.faults import FaultBase

__all__ = ["describe", "member_faults", "member_name", "placeholder", "pod_of_member"]


def member_name(fault_name: str, pod: PodRef) -> str:
    """``<fault>.<namespace>.<pod>`` (a namespace is a DNS label: it holds no dot)."""
    return f"{fault_name}.{pod.namespace}.{pod.name}"


def pod_of_member(fault_name: str, member: str) -> str:
    """``namespace/pod`` of a member of ``fault_name``."""
    return member.removeprefix(fault_name + ".").replace(".", "/", 1)


def _hook(fault: FaultBase) -> tuple[FaultFamily, Any]:
    family = family_of(fault.kind)
    if family.in_pod is None:
        raise FaultError(f"fault '{fault.name}': kind {fault.kind} cannot act inside a pod")
    return family, family.in_pod


def concrete(fault: FaultBase, site: PodSite) -> FaultBase:
    """``fault`` aimed at the pod at ``site``: its family's ``in_pod``, renamed, without ``pods``."""
    _family, in_pod = _hook(fault)
    made: FaultBase = in_pod(fault, site)
    return made.model_copy(update={"name": member_name(fault.name, site.pod), "pods": None})


def member_faults(fault: FaultBase, pods: list[PodRef]) -> list[FaultBase]:
    """Every pod of ``pods`` found on this node, and ``fault`` made concrete for it; ``FaultError``
    (naming the pod) before any is applied when one cannot be found or cannot take it."""
    if fault.pods is None:
        raise FaultError(f"fault '{fault.name}' has no pods")
    containers = fault.pods.containers
    return [concrete(fault, locate(pod, containers)) for pod in pods]


def placeholder(fault: FaultBase) -> FaultBase:
    """``fault`` made concrete for a pod not looked at yet, for the plan's words and requirements."""
    pod = PodRef("<namespace>", "<pod>", "", "", ip="0.0.0.0")
    site = PodSite(pod, ("/<pod cgroup>",), ("/<each pod's containers' cgroups>",), netns="<each pod's netns>")
    _family, in_pod = _hook(fault)
    made: FaultBase = in_pod(fault, site)
    return made.model_copy(update={"pods": None})


def describe(fault: FaultBase) -> str:
    """The plan's line for a fault with ``pods``: which pods, then what it does inside each."""
    assert fault.pods is not None
    try:
        made = placeholder(fault)  # of another kind when the family applies it so (a container kill)
        inside = family_of(made.kind).describe(made)
    except FaultError as exc:
        inside = str(exc)
    return f"inside {fault.pods.describe()}: {inside}"
