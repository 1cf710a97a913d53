"""Which Ray node each actor of a run goes to: selectors matched against the cluster's nodes.

Pure: the orchestrator reads the nodes from Ray (``ray.nodes()``) and hands them over as
:class:`Node` records, so the matching rules and their error messages are tested without a
cluster. A fault acts on the host its chaos agent runs on (a partition is set in that node's
network stack, a process is found in that node's process table), so a fault's selector must
name exactly one live node: zero is a scenario written for another cluster, two would leave
the choice of host to chance. Generators may use every matching node. A fault with ``pods``
acts on every node that holds one of its chosen pods: a pod's ``spec.nodeName`` is matched to the
Ray node whose :data:`HOST_LABEL` carries that name (``ray_cluster/`` runs one Ray worker per
Kubernetes node so labelled); a pod on a node without one is an error before anything starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from harness.chaos.kubelet import PodRef
from harness.errors import ConfigError
from harness.scenario import NodeSelector, Scenario

#: The label the files in ``ray_cluster/`` give every node: the host (machine, Kubernetes node) it runs on.
HOST_LABEL = "harness.io/host"

__all__ = ["HOST_LABEL", "FaultPlacement", "Node", "generator_nodes", "matches", "place_faults", "plan_rows"]


@dataclass(frozen=True)
class Node:
    """A live Ray node as the placement rules see it."""

    node_id: str
    ip: str
    hostname: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    resources: Mapping[str, float] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """How events and plans name the node: its host label, else its address."""
        return self.labels.get(HOST_LABEL) or self.ip or self.hostname or self.node_id[:8]

    def describe(self) -> str:
        labels = ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()) if not k.startswith("ray.io/"))
        custom = ",".join(sorted(k for k in self.resources if _custom(k)))
        parts = [self.hostname or self.ip, self.ip, self.node_id[:8]]
        if labels:
            parts.append(f"labels {labels}")
        if custom:
            parts.append(f"resources {custom}")
        return " ".join(parts)


def _custom(resource: str) -> bool:
    """A resource an operator declared, not one Ray adds to every node."""
    return not (
        resource in {"CPU", "GPU", "memory", "object_store_memory"}
        or resource.startswith("node:")
        or resource.startswith("accelerator_type:")
    )


def matches(selector: NodeSelector, node: Node) -> bool:
    if selector.resource is not None:
        return node.resources.get(selector.resource, 0.0) > 0
    return all(node.labels.get(key) == value for key, value in selector.labels.items())


#: Where a fault acts: each node, with the pods there it acts inside (none for a fault on the node itself).
Sites = tuple[tuple["Node", tuple[PodRef, ...]], ...]


@dataclass(frozen=True)
class FaultPlacement:
    """Fault name -> the node whose agent applies it; ``default`` for faults without a selector;
    ``in_pods``: a fault with ``pods`` -> each node holding chosen pods, with those pods."""

    by_fault: Mapping[str, Node]
    default: Node
    in_pods: Mapping[str, Sites] = field(default_factory=dict)

    def node_of(self, fault: str) -> Node:
        return self.by_fault.get(fault, self.default)

    def sites(self, fault: str) -> Sites:
        """Every node ``fault`` acts on and, for a fault with pods, its pods there."""
        if fault in self.in_pods:
            return self.in_pods[fault]
        return ((self.node_of(fault), ()),)

    def nodes(self) -> list[Node]:
        """Every node that needs an agent, the default node only when some fault uses it."""
        seen: dict[str, Node] = {}
        for node in self.by_fault.values():
            seen.setdefault(node.node_id, node)
        for sites in self.in_pods.values():
            for node, _pods in sites:
                seen.setdefault(node.node_id, node)
        return list(seen.values())


def _listing(nodes: Iterable[Node]) -> str:
    return "; ".join(node.describe() for node in nodes) or "none"


def _pod_sites(index: int, fault: str, pods: Sequence[PodRef], nodes: Sequence[Node]) -> tuple[Sites, list[str]]:
    """The nodes holding ``pods`` (by :data:`HOST_LABEL` = ``spec.nodeName``), and a problem per pod
    on a node that has no Ray node."""
    by_host: dict[str, Node] = {}
    for node in sorted(nodes, key=lambda n: n.node_id):  # several Ray nodes on one host: the same one each time
        if HOST_LABEL in node.labels:
            by_host.setdefault(node.labels[HOST_LABEL], node)
    grouped: dict[str, list[PodRef]] = {}
    problems = []
    for pod in pods:
        if pod.node not in by_host:
            problems.append(
                f"faults[{index}].pods ({fault}): pod {pod.key} is on Kubernetes node {pod.node}, which has no "
                f"Ray node (no live node has label {HOST_LABEL}={pod.node}), so no chaos agent can act there"
            )
            continue
        grouped.setdefault(pod.node, []).append(pod)
    return tuple((by_host[host], tuple(group)) for host, group in sorted(grouped.items())), problems


def place_faults(
    scenario: Scenario, nodes: Sequence[Node], driver: Node, pods: Mapping[str, Sequence[PodRef]] | None = None
) -> FaultPlacement:
    """Resolve each fault's node, or raise ``ConfigError`` naming every fault that has none.

    Faults without a selector act on the driver's node, as on one machine. ``pods``: each fault
    with a pod selector -> the pods chosen for it; they are placed on their nodes' agents.
    """
    by_fault: dict[str, Node] = {}
    in_pods: dict[str, Sites] = {}
    problems: list[str] = []
    for index, fault in enumerate(scenario.faults):
        if fault.pods is not None:
            sites, gaps = _pod_sites(index, fault.name, (pods or {}).get(fault.name, ()), nodes)
            in_pods[fault.name] = sites
            problems += gaps
            continue
        if fault.node is None:
            by_fault[fault.name] = driver
            continue
        found = [node for node in nodes if matches(fault.node, node)]
        if len(found) == 1:
            by_fault[fault.name] = found[0]
        elif not found:
            problems.append(f"faults[{index}].node ({fault.name}): no live Ray node has {fault.node.describe()}")
        else:
            problems.append(
                f"faults[{index}].node ({fault.name}): {len(found)} Ray nodes have {fault.node.describe()} "
                f"({_listing(found)}); a fault acts on one host, so name one"
            )
    if problems:
        raise ConfigError(
            f"{scenario.source or scenario.name}: " + "; ".join(problems) + f". Live nodes: {_listing(nodes)}"
        )
    return FaultPlacement(by_fault=by_fault, default=driver, in_pods=in_pods)


def generator_nodes(scenario: Scenario, nodes: Sequence[Node]) -> list[Node]:
    """The nodes generators may use (every live node without a selector); ``ConfigError`` if none."""
    selector = scenario.load.node
    if selector is None:
        return list(nodes)
    found = [node for node in nodes if matches(selector, node)]
    if not found:
        raise ConfigError(
            f"{scenario.source or scenario.name}: load.node: no live Ray node has {selector.describe()}. "
            f"Live nodes: {_listing(nodes)}"
        )
    return found


def plan_rows(
    scenario: Scenario,
    nodes: Sequence[Node] | None = None,
    driver: Node | None = None,
    pods: Mapping[str, Sequence[PodRef]] | None = None,
) -> list[tuple[str, str]]:
    """(actor, where it will run) for ``harness plan``: from the selectors alone, or on a cluster.

    On a cluster the generators are shown where Ray's ``SPREAD`` strategy will put them (one
    per matching node with a CPU, round robin); Ray decides at run time and summary.json
    records where they really ran. Raises ``ConfigError`` like the run would. ``pods``: the
    pods chosen for each fault with a pod selector, shown on their nodes.
    """
    load = scenario.load
    rows: list[tuple[str, str]] = []
    if nodes is None or driver is None:
        where = f"nodes with {load.node.describe()}" if load.node else "any node with a CPU"
        for index in range(load.generators):
            rows.append((f"generator g{index}", f"{where}, spread (one per node while nodes last)"))
        for fault in scenario.faults:
            at = f"the one node with {fault.node.describe()}" if fault.node else "the driver's node"
            if fault.pods is not None:
                at = f"the node of each chosen pod (Ray node labelled {HOST_LABEL}=<the pod's spec.nodeName>)"
            rows.append((f"chaos agent for {fault.name}", at))
        return rows
    candidates = [n for n in generator_nodes(scenario, nodes) if n.resources.get("CPU", 0.0) >= 0.01]
    if not candidates:
        raise ConfigError(
            f"{scenario.source or scenario.name}: no live Ray node that may run generators has a CPU "
            f"(a node started with --num-cpus=0 takes none). Live nodes: {_listing(nodes)}"
        )
    for index in range(load.generators):
        node = candidates[index % len(candidates)]
        rows.append((f"generator g{index}", f"{node.name} ({node.ip}, node {node.node_id[:8]})"))
    placement = place_faults(scenario, nodes, driver, pods)
    for fault in scenario.faults:
        places: list[str] = []
        for node, on_node in placement.sites(fault.name):
            mine = " (the driver's node)" if node.node_id == driver.node_id else ""
            inside = f" for pods {', '.join(p.name for p in on_node)}" if on_node else ""
            places.append(f"{node.name} ({node.ip}, node {node.node_id[:8]}){mine}{inside}")
        rows.append((f"chaos agent for {fault.name}", "; ".join(places) or "no node (no pod chosen)"))
    return rows
