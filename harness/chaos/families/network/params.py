"""The network family's kinds: ``network.partition``, ``network.loss``, ``network.bandwidth``,
``network.netem`` and ``network.link_down``, as scenario models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema

from harness.scenario.faults import FaultBase, FaultContext
from harness.scenario.fields import Cidr, Duration, IfName, KeyPath, Model, NetnsName, Port, rate_bits

__all__ = [
    "BandwidthParams",
    "InterfaceTarget",
    "LinkParams",
    "LossParams",
    "NetemParams",
    "NetworkBandwidthFault",
    "NetworkFault",
    "NetworkLinkDownFault",
    "NetworkLossFault",
    "NetworkNetemFault",
    "NetworkPartitionFault",
    "NetworkTarget",
    "PartitionParams",
]


class NetworkTarget(Model):
    """Where a network fault acts: a network namespace (default: the host's) and an interface."""

    netns: NetnsName | None = Field(default=None, description="Network namespace name (ip netns); default the host.")
    interface: IfName | None = Field(
        default=None, description="Interface; required by network.bandwidth, narrows partition and loss."
    )


class InterfaceTarget(Model):
    """A network namespace (default: the host's) and an interface in it, which must be named."""

    netns: NetnsName | None = Field(default=None, description="Network namespace name (ip netns); default the host.")
    interface: IfName = Field(description="Interface whose egress the fault shapes.")


class PartitionParams(Model):
    """Traffic between the target and these peers is dropped, both directions."""

    peers: list[Cidr] = Field(min_length=1, max_length=256, description="Peer networks (CIDR) cut off from the target.")
    ports: list[Port] = Field(
        default_factory=list,
        max_length=64,
        description="Only TCP/UDP traffic to these peer ports (and its replies) is dropped; default all traffic.",
    )
    method: Literal["nftables", "blackhole"] = Field(
        default="nftables",
        description="nftables drop (both directions, ports allowed) or blackhole routes to the peers (no ports).",
    )


class LossParams(Model):
    """A random share of the packets between the target and the peers is dropped (nftables numgen)."""

    percent: int = Field(ge=1, le=100, description="Percent of packets dropped, per direction it applies to.")
    peers: list[Cidr] = Field(min_length=1, max_length=256, description="Peer networks (CIDR) whose traffic is hit.")
    ports: list[Port] = Field(
        default_factory=list,
        max_length=64,
        description="Only TCP/UDP traffic to these peer ports (and its replies); nftables only; default all traffic.",
    )
    direction: Literal["egress", "ingress", "both"] = Field(
        default="egress",
        description="Packets leaving the target, arriving at it, or both (a round trip then loses 1-(1-p)^2).",
    )
    method: Literal["auto", "netem", "nftables"] = Field(
        default="auto",
        description=(
            "netem (needs the interface and a kernel with sch_netem), nftables numgen drop, "
            "or auto: netem where the kernel has it and an interface is named, else nftables."
        ),
    )


class BandwidthParams(Model):
    """A tbf qdisc at the root of the target interface's egress."""

    rate: Annotated[int, BeforeValidator(rate_bits), WithJsonSchema({"type": ["integer", "string"]})] = Field(
        description="Rate: 1mbit, 500kbit (bits/s), 2mbps (bytes/s, as tc spells it) or a number of bits/s."
    )
    burst: int | None = Field(
        default=None, ge=1600, le=64 * 1024 * 1024, description="Bucket size in bytes; default 10 ms of rate, >= 5000."
    )
    latency: Duration = Field(default=0.05, description="Longest a packet may wait in the queue before tbf drops it.")


class NetemParams(Model):
    """A netem qdisc on the target interface: delay with jitter and correlation, loss, duplicate, corrupt, reorder.

    Percentages are of packets, per direction the qdisc is on. At least one effect must be set.
    """

    delay: Duration = Field(default=0.0, description="Added one-way delay per packet, e.g. 100ms.")
    jitter: Duration = Field(default=0.0, description="Random variation of the delay (+/-), e.g. 10ms.")
    correlation: float = Field(
        default=0.0,
        ge=0,
        le=100,
        description=(
            "Percent by which each random value depends on the previous one (netem's correlation; Linux's "
            "uniform jitter takes it modulo 2 x jitter, so delays stay uncorrelated: see docs/faults.md)."
        ),
    )
    distribution: Literal["uniform"] = Field(
        default="uniform",
        description="Jitter distribution; only uniform (tc's normal/pareto tables cannot be sent through pyroute2).",
    )
    loss: float = Field(default=0.0, ge=0, le=100, description="Percent of packets dropped.")
    duplicate: float = Field(default=0.0, ge=0, le=100, description="Percent of packets sent twice.")
    corrupt: float = Field(default=0.0, ge=0, le=100, description="Percent of packets with one bit flipped.")
    reorder: float = Field(
        default=0.0, ge=0, le=100, description="Percent of packets sent at once, ahead of delayed ones (needs delay)."
    )
    limit: int = Field(default=10_000, ge=1, le=10_000_000, description="Packets the netem queue holds.")
    direction: Literal["egress", "ingress", "both"] = Field(
        default="egress", description="Egress of the interface, its ingress (through an ifb device), or both."
    )
    peers: list[Cidr] = Field(
        default_factory=list,
        max_length=64,
        description="Only packets to (egress) or from (ingress) these networks; default every packet.",
    )


class LinkParams(Model):
    pass


class _NetworkFault(FaultBase):
    """What every network fault checks: an interface of the host's own namespace must be allowed."""

    if TYPE_CHECKING:  # each kind declares its own (a field here would move it before ``kind``)
        target: NetworkTarget | InterfaceTarget

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        if self.pods is not None:  # each pod's own network namespace confines it
            if self.target.netns is not None:
                yield ("target", "netns"), "with pods, the fault acts in each pod's network namespace; remove netns"
            return
        problem = context.interface_problem(self.target.netns, self.target.interface)
        if problem:
            yield ("target", "interface"), problem


def _peer_checks(peers: list[str], context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
    for j, peer in enumerate(peers):
        outside = context.outside(peer)
        if outside:
            yield ("params", "peers", j), f"{peer} {outside}"


class NetworkNetemFault(_NetworkFault):
    """Shape an interface's traffic with a netem qdisc (pyroute2 netlink); needs a kernel with sch_netem."""

    kind: Literal["network.netem"] = Field(description="Fault kind.")
    target: InterfaceTarget = Field(description="Namespace and the interface whose traffic is shaped.")
    params: NetemParams = Field(description="Delay, jitter, loss, duplicate, corrupt, reorder; direction; peers.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        params = self.params
        if not (params.delay or params.loss or params.duplicate or params.corrupt or params.reorder):
            yield ("params",), "netem needs at least one of delay, loss, duplicate, corrupt or reorder"
        if params.reorder and not params.delay:
            yield ("params", "reorder"), "reorder needs a delay (the packets not reordered are the delayed ones)"
        if params.jitter and not params.delay:
            yield ("params", "jitter"), "jitter needs a delay"
        yield from super().checks(context)


class NetworkLinkDownFault(_NetworkFault):
    """Set an interface down for the fault window, up again on revert."""

    kind: Literal["network.link_down"] = Field(description="Fault kind.")
    target: InterfaceTarget = Field(description="Namespace and the interface set down.")
    params: LinkParams = Field(default_factory=LinkParams, description="No parameters.")


class NetworkPartitionFault(_NetworkFault):
    """Drop all traffic (or given ports) between the target and the peers, both directions (nftables)."""

    kind: Literal["network.partition"] = Field(description="Fault kind.")
    target: NetworkTarget = Field(default_factory=NetworkTarget, description="Namespace and interface.")
    params: PartitionParams = Field(description="Peers and optional ports.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        if self.params.method == "blackhole" and self.params.ports:
            yield ("params", "ports"), "a blackhole route cannot match ports; use method nftables"
        yield from _peer_checks(self.params.peers, context)
        yield from super().checks(context)


class NetworkLossFault(_NetworkFault):
    """Drop a random percent of packets to/from the peers (nftables numgen; the fallback where netem is missing)."""

    kind: Literal["network.loss"] = Field(description="Fault kind.")
    target: NetworkTarget = Field(default_factory=NetworkTarget, description="Namespace and interface.")
    params: LossParams = Field(description="Percent, peers, direction.")

    def checks(self, context: FaultContext) -> Iterator[tuple[KeyPath, str]]:
        if self.params.method == "netem" and not self.target.interface:
            yield ("target", "interface"), "method netem needs the interface to put the qdisc on"
        if self.params.method == "netem" and self.params.ports:
            yield ("params", "ports"), "netem cannot match ports; use method nftables"
        yield from _peer_checks(self.params.peers, context)
        yield from super().checks(context)


class NetworkBandwidthFault(_NetworkFault):
    """Limit the egress rate of an interface with a tbf qdisc (pyroute2 netlink)."""

    kind: Literal["network.bandwidth"] = Field(description="Fault kind.")
    target: InterfaceTarget = Field(description="Namespace and the interface whose egress is limited.")
    params: BandwidthParams = Field(description="Rate, burst and latency.")


NetworkFault = (
    NetworkPartitionFault | NetworkLossFault | NetworkBandwidthFault | NetworkNetemFault | NetworkLinkDownFault
)
