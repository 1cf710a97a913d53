"""What a network fault asks for, in words and in kernel units: the plan's lines, netem's options,
and whether a fault is applied as netem. Touches nothing; imports no pyroute2.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from harness.chaos import netem_probe
from harness.chaos.families.network.params import (
    NetworkBandwidthFault,
    NetworkFault,
    NetworkLinkDownFault,
    NetworkLossFault,
    NetworkNetemFault,
    NetworkPartitionFault,
)

__all__ = [
    "BLACKHOLE_METRIC",
    "NetemFault",
    "Spec",
    "burst",
    "describe",
    "describe_netem",
    "ifb_name",
    "netem_options",
    "problem",
    "spec",
    "uses_netem",
    "where",
]

NetemFault = NetworkNetemFault | NetworkLossFault

#: Metric of every blackhole route harness adds: with the destination and the type it names
#: exactly our route, so revert never deletes an operator's blackhole to the same network.
BLACKHOLE_METRIC = 4852


def where(netns: str | None, interface: str | None) -> str:
    ns = f"netns {netns}" if netns else "the host netns"
    return f"{ns}, interface {interface}" if interface else ns


def uses_netem(fault: NetworkFault, netem_ok: bool | None = None) -> bool:
    """Whether ``fault`` is applied as a netem qdisc: a netem fault, or a loss whose method is
    netem, or auto where this kernel has netem and an interface is named.

    ``netem_ok`` is the probe's answer when the caller already has it; otherwise the kernel is
    probed (only for ``auto``), so the choice is made on the node that applies the fault.
    """
    if isinstance(fault, NetworkNetemFault):
        return True
    if not isinstance(fault, NetworkLossFault) or fault.params.method == "nftables" or fault.params.ports:
        return False
    if fault.params.method == "netem":
        return True
    if not fault.target.interface:
        return False
    if netem_ok is None:
        netem_ok = netem_probe.available(fault.target.netns)[0]
    return netem_ok


@dataclass(frozen=True)
class Spec:
    """The netem options and placement of either fault kind, in kernel-friendly units."""

    delay_us: int
    jitter_us: int
    correlation: float
    distribution: str
    loss: float
    duplicate: float
    corrupt: float
    reorder: float
    limit: int
    direction: str
    peers: tuple[str, ...]

    @property
    def egress(self) -> bool:
        return self.direction in ("egress", "both")

    @property
    def ingress(self) -> bool:
        return self.direction in ("ingress", "both")

    def pieces(self) -> list[str]:
        """The kernel objects this netem needs, netem first (as :mod:`harness.chaos.netem_probe` names them)."""
        need = ["netem"]
        if self.egress and self.peers:
            need += ["prio", "u32"]
        if self.ingress:
            need += ["ifb", "ingress", "u32", "mirred"]
        return need


def spec(fault: NetemFault) -> Spec:
    if isinstance(fault, NetworkLossFault):
        p = fault.params
        return Spec(0, 0, 0.0, "uniform", float(p.percent), 0.0, 0.0, 0.0, 10_000, p.direction, tuple(p.peers))
    q = fault.params
    return Spec(
        delay_us=round(q.delay * 1e6),
        jitter_us=round(q.jitter * 1e6),
        correlation=q.correlation,
        distribution=q.distribution,
        loss=q.loss,
        duplicate=q.duplicate,
        corrupt=q.corrupt,
        reorder=q.reorder,
        limit=q.limit,
        direction=q.direction,
        peers=tuple(q.peers),
    )


def problem(fault: NetemFault) -> str | None:
    """Why the parameters cannot make a netem qdisc, or None."""
    if fault.target.interface is None:
        return "netem needs the target interface"
    s = spec(fault)
    if s.reorder and not s.delay_us:
        return "reorder needs a delay (packets are sent ahead of delayed ones)"
    if s.jitter_us and s.distribution != "uniform":
        # pyroute2 0.9 cannot send the delay table (TCA_NETEM_DELAY_DIST) that tc reads from
        # /usr/lib/*/tc/<name>.dist, so only netem's built-in uniform jitter is offered.
        return f"jitter distribution '{s.distribution}' is not supported (only uniform)"
    if s.delay_us >= 2**32 // 16:
        return "delay too large for netem"
    return None


def netem_options(s: Spec) -> dict[str, Any]:
    """Keyword arguments of pyroute2's netem plugin: microseconds, percents."""
    opts: dict[str, Any] = {"limit": s.limit}
    if s.delay_us:
        opts["delay"] = s.delay_us
    if s.jitter_us:
        opts["jitter"] = s.jitter_us
    if s.loss:
        opts["loss"] = s.loss
    if s.duplicate:
        opts["duplicate"] = s.duplicate
    if s.corrupt:
        opts["prob_corrupt"] = s.corrupt
    if s.reorder:
        opts["prob_reorder"] = s.reorder
    if s.correlation:
        # one correlation for every random value, as the scenario model has it; netem keeps one per effect
        if s.delay_us and s.jitter_us:
            opts["delay_corr"] = s.correlation
        if s.loss:
            opts["loss_corr"] = s.correlation
        if s.duplicate:
            opts["dup_corr"] = s.correlation
        if s.corrupt:
            opts["corr_corrupt"] = s.correlation
        if s.reorder:
            opts["corr_reorder"] = s.correlation
    return opts


def ifb_name(run_id: str, fault_name: str) -> str:
    """``hb`` + 10 hex digits of the run and fault: the ifb of an ingress netem (IFNAMSIZ is 15)."""
    return "hb" + hashlib.sha1(f"{run_id}\0{fault_name}".encode()).hexdigest()[:10]


def _ms(us: int) -> str:
    return f"{us / 1000:g}ms"


def describe_netem(fault: NetemFault) -> str:
    """What the netem will do, and where (a loss applied as netem is described as one)."""
    s = spec(fault)
    effects: list[str] = []
    if s.delay_us:
        effects.append(f"delay {_ms(s.delay_us)}" + (f" ±{_ms(s.jitter_us)} {s.distribution}" if s.jitter_us else ""))
    for name, value in (("loss", s.loss), ("duplicate", s.duplicate), ("corrupt", s.corrupt), ("reorder", s.reorder)):
        if value:
            effects.append(f"{name} {value:g}%")
    if s.correlation:
        effects.append(f"correlation {s.correlation:g}%")
    sides = {"egress": "egress", "ingress": "ingress (ifb)", "both": "egress and ingress (ifb)"}[s.direction]
    peers = f", only traffic with {', '.join(s.peers)}" if s.peers else ""
    return (
        f"netem {' '.join(effects) or '(no effect)'} on {sides} of "
        f"{where(fault.target.netns, fault.target.interface)}{peers} for {fault.duration:g}s"
    )


def burst(fault: NetworkBandwidthFault) -> int:
    """The bucket: as asked, else 10 ms at the rate but at least 5000 B (three full frames)."""
    return fault.params.burst or max(5000, fault.params.rate // 8 // 100)


def describe(fault: NetworkFault) -> str:
    """One line for ``harness plan``: what the fault will do, and where. Touches nothing."""
    target = where(fault.target.netns, fault.target.interface)
    if isinstance(fault, NetworkNetemFault) or (isinstance(fault, NetworkLossFault) and fault.params.method == "netem"):
        return describe_netem(fault)
    if isinstance(fault, NetworkLinkDownFault):
        return f"set {target} down for {fault.duration:g}s, up again after"
    if isinstance(fault, NetworkBandwidthFault):
        p = fault.params
        return (
            f"tbf rate {p.rate / 1e6:g}mbit burst {burst(fault)}B latency {p.latency * 1000:g}ms "
            f"on egress of {target} for {fault.duration:g}s"
        )
    assert isinstance(fault, NetworkPartitionFault | NetworkLossFault)
    peers = ", ".join(fault.params.peers)
    ports = f" ports {','.join(str(p) for p in fault.params.ports)}" if fault.params.ports else ""
    if isinstance(fault, NetworkPartitionFault):
        if fault.params.method == "blackhole":
            ns = where(fault.target.netns, None)
            return f"blackhole routes to {peers} in {ns} for {fault.duration:g}s (metric {BLACKHOLE_METRIC})"
        return f"drop traffic with {peers}{ports}, both directions, in {target} for {fault.duration:g}s (nftables)"
    how = "netem where the kernel has it, else nftables numgen" if fault.params.method == "auto" else "nftables numgen"
    return (
        f"drop {fault.params.percent}% of {fault.params.direction} packets with {peers}{ports} "
        f"in {target} for {fault.duration:g}s ({how})"
    )
