"""The fault models of a scenario: each kind's target and params, and the ``Fault`` union."""

from __future__ import annotations

import signal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    Tag,
    WithJsonSchema,
)

from harness.scenario.fields import (
    BYTE_UNITS,
    Cidr,
    Duration,
    HostPort,
    IfName,
    KubeNamespace,
    KubeObjectName,
    Model,
    Name,
    NetnsName,
    NodeSelector,
    Port,
    parse_bytes,
    rate_bits,
    signal_number,
    label_selector,
    regex,
)


class ProcessTarget(Model):
    """Which process a process fault acts on: exactly one of pid_file, pattern or systemd_unit."""

    pid_file: str | None = Field(default=None, description="File holding the target's PID.")
    pattern: Annotated[str, AfterValidator(regex)] | None = Field(
        default=None, description="Regular expression matched against each process's full command line."
    )
    systemd_unit: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9:_.@\\-]+$",
        description="A systemd unit (e.g. nginx.service): every process in its control group.",
    )


class KillParams(Model):
    signal: Annotated[int, BeforeValidator(signal_number), WithJsonSchema({"type": ["integer", "string"]})] = Field(
        default=int(signal.SIGKILL), description="Signal to send, by name (SIGKILL, TERM) or number."
    )
    restart: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None,
        min_length=1,
        description=(
            "Command (argv list, no shell) that starts the target again at the end of the fault window; "
            "default: none, or `systemctl start UNIT` for a systemd_unit target."
        ),
    )
    restart_cwd: str | None = Field(default=None, description="Working directory of the restart command.")


class PauseParams(Model):
    pass


class FaultBase(Model):
    name: Name = Field(description="Fault name, unique in the scenario; SLO windows refer to it.")
    at: Duration = Field(description="Offset from the run start at which the fault is injected.")
    duration: Duration = Field(description="How long the fault window lasts; reverted at at + duration.")
    recovery: Duration = Field(
        default=0.0, description="Seconds after the fault window that are excluded from the steady window."
    )
    description: str = Field(default="", description="Free text shown in plans and Grafana annotations.")
    node: NodeSelector | None = Field(
        default=None,
        description="The Ray node whose chaos agent applies the fault, i.e. the host it acts on "
        "(e.g. {labels: {harness.io/host: db-1}}); must match exactly one node. Default: the driver's node.",
    )


class ProcessKillFault(FaultBase):
    """Send a signal (SIGKILL by default) to the target process(es) at ``at``."""

    kind: Literal["process.kill"] = Field(description="Fault kind.")
    target: ProcessTarget = Field(description="Which process(es) the fault acts on.")
    params: KillParams = Field(default_factory=KillParams, description="Kill parameters.")


class ProcessPauseFault(FaultBase):
    """SIGSTOP the target at ``at``, SIGCONT it at ``at + duration``."""

    kind: Literal["process.pause"] = Field(description="Fault kind.")
    target: ProcessTarget = Field(description="Which process(es) the fault acts on.")
    params: PauseParams = Field(default_factory=PauseParams, description="No parameters.")


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


class KubernetesPodKillFault(FaultBase):
    """Delete the selected pods with gracePeriodSeconds=0 at ``at``; their controller recreates them."""

    kind: Literal["kubernetes.pod_kill"] = Field(description="Fault kind.")
    target: PodTarget = Field(description="Namespace and label selector of the pods.")
    params: PodKillParams = Field(default_factory=PodKillParams, description="Which of the matching pods.")


class KubernetesScaleFault(FaultBase):
    """Scale a deployment to 0 replicas at ``at``, back to the recorded count at ``at + duration``."""

    kind: Literal["kubernetes.scale"] = Field(description="Fault kind.")
    target: DeploymentTarget = Field(description="Namespace and name of the deployment.")
    params: ScaleParams = Field(default_factory=ScaleParams, description="No parameters.")


BYTE_UNITS |= {"g": 1024**3, "gb": 1000**3, "gib": 1024**3, "t": 1024**4, "tb": 1000**4, "tib": 1024**4}


Bytes = Annotated[int, BeforeValidator(parse_bytes), WithJsonSchema({"type": ["integer", "string"]})]


class StressCpuParams(Model):
    workers: int = Field(default=1, ge=1, le=1024, description="stress-ng CPU workers (each loads at most one core).")
    load: int = Field(default=100, ge=1, le=100, description="Percent of one core each worker keeps busy.")


class StressMemoryParams(Model):
    bytes: Bytes = Field(gt=0, description="Memory to allocate and touch, e.g. 512M (resident, not just mapped).")
    hold: bool = Field(
        default=True,
        description="true: allocate once and hold it idle; false: keep rewriting it (costs a core too).",
    )


class StressIoParams(Model):
    workers: int = Field(default=1, ge=1, le=256, description="stress-ng hdd workers writing and reading files.")
    path: str = Field(default="/tmp", description="Directory the workers write in (a private subdirectory).")


class StressDiskFillParams(Model):
    path: str = Field(description="Directory on the file system to fill; a file harness-fill-<run>-<fault> is made.")
    bytes: Bytes = Field(gt=0, description="Size of the file (allocated blocks), e.g. 2G.")


class StressFault(FaultBase):
    target: ProcessTarget | None = Field(
        default=None,
        description="Process whose cgroups the stress-ng processes join; none: they stay in the agent's cgroups.",
    )


class StressCpuFault(StressFault):
    """CPU load with stress-ng at ``load`` percent per worker for ``duration``."""

    kind: Literal["stress.cpu"] = Field(description="Fault kind.")
    params: StressCpuParams = Field(default_factory=StressCpuParams, description="Workers and load.")


class StressMemoryFault(StressFault):
    """Allocate and hold ``bytes`` of memory with stress-ng for ``duration``."""

    kind: Literal["stress.memory"] = Field(description="Fault kind.")
    params: StressMemoryParams = Field(description="Bytes and hold.")


class StressIoFault(StressFault):
    """File IO with stress-ng hdd workers for ``duration``."""

    kind: Literal["stress.io"] = Field(description="Fault kind.")
    params: StressIoParams = Field(default_factory=StressIoParams, description="Workers and directory.")


class StressDiskFillFault(StressFault):
    """Fill a file system with one allocated file of ``bytes``; removed on revert."""

    kind: Literal["stress.disk_fill"] = Field(description="Fault kind.")
    params: StressDiskFillParams = Field(description="Directory and size.")


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
        default=0.0, ge=0, le=100, description="Percent by which each random value depends on the previous one."
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


class NetworkNetemFault(FaultBase):
    """Shape an interface's traffic with a netem qdisc (pyroute2 netlink); needs a kernel with sch_netem."""

    kind: Literal["network.netem"] = Field(description="Fault kind.")
    target: InterfaceTarget = Field(description="Namespace and the interface whose traffic is shaped.")
    params: NetemParams = Field(description="Delay, jitter, loss, duplicate, corrupt, reorder; direction; peers.")


class NetworkLinkDownFault(FaultBase):
    """Set an interface down for the fault window, up again on revert."""

    kind: Literal["network.link_down"] = Field(description="Fault kind.")
    target: InterfaceTarget = Field(description="Namespace and the interface set down.")
    params: LinkParams = Field(default_factory=LinkParams, description="No parameters.")


class NetworkPartitionFault(FaultBase):
    """Drop all traffic (or given ports) between the target and the peers, both directions (nftables)."""

    kind: Literal["network.partition"] = Field(description="Fault kind.")
    target: NetworkTarget = Field(default_factory=NetworkTarget, description="Namespace and interface.")
    params: PartitionParams = Field(description="Peers and optional ports.")


class NetworkLossFault(FaultBase):
    """Drop a random percent of packets to/from the peers (nftables numgen; the fallback where netem is missing)."""

    kind: Literal["network.loss"] = Field(description="Fault kind.")
    target: NetworkTarget = Field(default_factory=NetworkTarget, description="Namespace and interface.")
    params: LossParams = Field(description="Percent, peers, direction.")


class NetworkBandwidthFault(FaultBase):
    """Limit the egress rate of an interface with a tbf qdisc (pyroute2 netlink)."""

    kind: Literal["network.bandwidth"] = Field(description="Fault kind.")
    target: InterfaceTarget = Field(description="Namespace and the interface whose egress is limited.")
    params: BandwidthParams = Field(description="Rate, burst and latency.")


class ProxyTarget(Model):
    """Which fault proxy acts: a running ``harness proxy`` (by its control address) or a transparent one.

    Exactly one of ``control`` or ``service``. With ``service`` the agent starts a proxy for the
    fault window and redirects the service's port to it with an nftables rule (nat, marked
    upstream connections are exempt), so clients need no change; the rule and the proxy are
    removed on revert.
    """

    control: HostPort | None = Field(
        default=None, description="Control address of a running `harness proxy` already in the traffic's path."
    )
    service: HostPort | None = Field(
        default=None, description="Service address whose port is redirected through a proxy during the fault."
    )
    netns: NetnsName | None = Field(default=None, description="Network namespace of the service (transparent mode).")
    reset_established: bool = Field(
        default=True,
        description=(
            "Transparent mode: abort clients' established connections to the service at inject, so pooled "
            "keep-alive connections reconnect through the proxy (nat redirects new connections only)."
        ),
    )


class ProxyLatencyParams(Model):
    latency: Duration = Field(description="Delay added to each response, e.g. 50ms.")
    jitter: Duration = Field(default=0.0, description="Uniform random variation (+/-) of the delay.")


class ProxyBandwidthParams(Model):
    rate: Annotated[int, BeforeValidator(rate_bits), WithJsonSchema({"type": ["integer", "string"]})] = Field(
        description="Rate per connection and direction: 1mbit, 500kbit, 2mbps (bytes/s) or bits/s."
    )


class ProxyResetParams(Model):
    percent: float = Field(default=100.0, gt=0, le=100, description="Percent of requests answered by a TCP reset.")


class ProxyAbortParams(Model):
    status: int = Field(ge=100, le=599, description="HTTP status returned instead of forwarding, e.g. 503.")
    percent: float = Field(gt=0, le=100, description="Percent of requests aborted.")


class ProxyFault(FaultBase):
    target: ProxyTarget = Field(description="The proxy: its control address, or the service to intercept.")


class ProxyLatencyFault(ProxyFault):
    """Delay every response through the proxy."""

    kind: Literal["proxy.latency"] = Field(description="Fault kind.")
    params: ProxyLatencyParams = Field(description="Latency and jitter.")


class ProxyBandwidthFault(ProxyFault):
    """Limit the bytes per second each proxied connection carries, each way."""

    kind: Literal["proxy.bandwidth"] = Field(description="Fault kind.")
    params: ProxyBandwidthParams = Field(description="Rate.")


class ProxyResetFault(ProxyFault):
    """Close a share of connections with a TCP reset when a request arrives."""

    kind: Literal["proxy.reset"] = Field(description="Fault kind.")
    params: ProxyResetParams = Field(default_factory=ProxyResetParams, description="Percent of requests.")


class ProxyAbortFault(ProxyFault):
    """Answer a share of HTTP requests with a chosen status instead of forwarding them."""

    kind: Literal["proxy.abort"] = Field(description="Fault kind.")
    params: ProxyAbortParams = Field(description="Status and percent.")


FAULT_KINDS: dict[str, type[FaultBase]] = {
    "network.partition": NetworkPartitionFault,
    "network.loss": NetworkLossFault,
    "network.bandwidth": NetworkBandwidthFault,
    "network.netem": NetworkNetemFault,
    "network.link_down": NetworkLinkDownFault,
    "proxy.latency": ProxyLatencyFault,
    "proxy.bandwidth": ProxyBandwidthFault,
    "proxy.reset": ProxyResetFault,
    "proxy.abort": ProxyAbortFault,
    "process.kill": ProcessKillFault,
    "process.pause": ProcessPauseFault,
    "kubernetes.pod_kill": KubernetesPodKillFault,
    "kubernetes.scale": KubernetesScaleFault,
    "stress.cpu": StressCpuFault,
    "stress.memory": StressMemoryFault,
    "stress.io": StressIoFault,
    "stress.disk_fill": StressDiskFillFault,
}


Fault = Annotated[
    Annotated[NetworkPartitionFault, Tag("network.partition")]
    | Annotated[NetworkLossFault, Tag("network.loss")]
    | Annotated[NetworkBandwidthFault, Tag("network.bandwidth")]
    | Annotated[NetworkNetemFault, Tag("network.netem")]
    | Annotated[NetworkLinkDownFault, Tag("network.link_down")]
    | Annotated[ProxyLatencyFault, Tag("proxy.latency")]
    | Annotated[ProxyBandwidthFault, Tag("proxy.bandwidth")]
    | Annotated[ProxyResetFault, Tag("proxy.reset")]
    | Annotated[ProxyAbortFault, Tag("proxy.abort")]
    | Annotated[ProcessKillFault, Tag("process.kill")]
    | Annotated[ProcessPauseFault, Tag("process.pause")]
    | Annotated[KubernetesPodKillFault, Tag("kubernetes.pod_kill")]
    | Annotated[KubernetesScaleFault, Tag("kubernetes.scale")]
    | Annotated[StressCpuFault, Tag("stress.cpu")]
    | Annotated[StressMemoryFault, Tag("stress.memory")]
    | Annotated[StressIoFault, Tag("stress.io")]
    | Annotated[StressDiskFillFault, Tag("stress.disk_fill")],
    Field(discriminator="kind"),
]
