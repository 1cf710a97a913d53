"""The network family: ``network.partition``, ``network.loss``, ``network.bandwidth``,
``network.link_down`` and ``network.netem``.

The host kernel of our machines has no netem (see TESTBED.md), so loss is done the way the
design names as the fallback: an nftables rule ``numgen random mod 100 < N drop``
(:mod:`.nftables`), or a netem qdisc where the kernel has one (:mod:`.netem`; method ``auto``
chooses on the node that applies the fault, and the choice is journaled). Partition is an
nftables ``drop`` of the peers' traffic in both directions, or blackhole routes; bandwidth is
tbf and link down a link state, set with netlink (:mod:`.links`).

Every object is recorded in the journal before it is created and tagged so a sweep finds it
(:mod:`.leftovers`); inject and revert are idempotent, so inject twice + revert once leaves
nothing. This module imports no pyroute2: :mod:`.links`, :mod:`.netem` and :mod:`.leftovers`
do, and are imported when a hook first needs them.
"""

from __future__ import annotations

import shutil

from harness.chaos import capabilities, netem_probe, nft
from harness.chaos.families.network import nftables
from harness.chaos.families.network.params import (
    NetworkBandwidthFault,
    NetworkFault,
    NetworkLinkDownFault,
    NetworkLossFault,
    NetworkNetemFault,
    NetworkPartitionFault,
)
from harness.chaos.families.network.spec import BLACKHOLE_METRIC, describe, uses_netem, where
from harness.chaos.family import FaultFamily, HostContext, Leftover
from harness.chaos.journal import FaultRecord, Journal
from harness.chaos.kubelet import PodSite
from harness.chaos.nft import NETNS_DIR
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import ConfigError, FaultError

__all__ = ["FAMILY", "NetworkFamily", "check", "describe", "inject", "revert", "table_name"]

table_name = nftables.table_name


def _netem_requested(fault: NetworkFault) -> bool:
    return isinstance(fault, NetworkNetemFault) or (
        isinstance(fault, NetworkLossFault) and fault.params.method == "netem"
    )


def _require_netns(fault: NetworkFault) -> str:
    netns = fault.target.netns or ""
    if netns and not (NETNS_DIR / netns).exists():
        raise FaultError(f"fault '{fault.name}': network namespace '{netns}' does not exist")
    return netns


class NetworkFamily(FaultFamily):
    """Traffic cut, dropped, slowed or shaped between a namespace's interface and its peers."""

    name = "network"
    models = (NetworkPartitionFault, NetworkLossFault, NetworkBandwidthFault, NetworkNetemFault, NetworkLinkDownFault)

    def describe(self, fault: NetworkFault) -> str:
        return describe(fault)

    def in_pod(self, fault: NetworkFault, site: PodSite) -> NetworkFault:
        """The same fault in the pod's network namespace (its interface, e.g. eth0, as written)."""
        target = fault.target.model_copy(update={"netns": site.network_namespace(fault.name)})
        return fault.model_copy(update={"target": target})

    def requirements(self, fault: NetworkFault) -> list[str]:
        """``network.loss`` with method ``auto`` needs only nftables: it falls back to nftables
        where netem is missing."""
        if isinstance(fault, NetworkPartitionFault):
            needs = [capabilities.NFTABLES if fault.params.method == "nftables" else capabilities.IPROUTE]
        elif isinstance(fault, NetworkLossFault):
            needs = [capabilities.NETEM if fault.params.method == "netem" else capabilities.NFTABLES]
        elif isinstance(fault, NetworkNetemFault):
            needs = [capabilities.NETEM]
        elif isinstance(fault, NetworkBandwidthFault):
            needs = [capabilities.TBF]
        else:
            needs = [capabilities.IPROUTE]
        return needs + ([capabilities.NETNS] if fault.target.netns else [])

    def resolve(self, fault: NetworkFault, context: HostContext) -> str:
        return ""  # the plan line names the namespace and interface; check says whether they exist

    def refusal(self, fault: NetworkFault, context: HostContext) -> str | None:
        return None  # nothing about the target is decided locally beyond the allow-lists

    def check(self, fault: NetworkFault, context: HostContext) -> None:
        """No ``nft``, no such namespace, no such interface, no netem in this kernel."""
        from harness.chaos import netlink

        netns = fault.target.netns
        if netns is not None and not (NETNS_DIR / netns).exists():
            raise ConfigError(f"fault '{fault.name}': network namespace '{netns}' does not exist (ip netns list)")
        if fault.target.interface:
            with netlink.ipr(netns) as ipr:
                if not ipr.link_lookup(ifname=fault.target.interface):
                    raise ConfigError(
                        f"fault '{fault.name}': no interface '{fault.target.interface}' in {where(netns, None)}"
                    )
        if _netem_requested(fault):
            from harness.chaos.families.network import netem

            assert isinstance(fault, NetworkNetemFault | NetworkLossFault)
            netem.check(fault)
        elif self._needs_nft(fault) and shutil.which("nft") is None:
            raise ConfigError(f"fault '{fault.name}': the nft command is missing (Debian package nftables)")

    @staticmethod
    def _needs_nft(fault: NetworkFault) -> bool:
        if isinstance(fault, NetworkPartitionFault):
            return fault.params.method == "nftables"
        return isinstance(fault, NetworkLossFault)

    def warm_up(self, kinds: frozenset[str]) -> None:
        """pyroute2 costs tens of ms to import; a loss with method auto picks netem or nftables
        at inject, so the kernel is probed now."""
        from harness.chaos.families.network import links, netem  # noqa: F401 - imported for their cost

        if kinds & {NetworkLossFault.KIND, NetworkNetemFault.KIND}:
            netem_probe.available()

    def prepare(self, fault: NetworkFault, ctx: InjectContext) -> Prepared:
        if isinstance(fault, NetworkNetemFault | NetworkLossFault) and uses_netem(fault):
            from harness.chaos.families.network import netem

            return netem.NETEM.prepare(fault, ctx)
        netns = _require_netns(fault)
        details: Details = {"target": describe(fault), "netns": netns}
        if isinstance(fault, NetworkBandwidthFault):
            from harness.chaos.families.network.links import TBF_HANDLE

            details.update(interface=fault.target.interface, handle=TBF_HANDLE)
        elif isinstance(fault, NetworkLinkDownFault):
            from harness.chaos.families.network import links

            # Read before anything changes, so the record says whether to set the link up again.
            details.update(interface=fault.target.interface, was_up=int(links.link_was_up(fault, netns)))
        elif isinstance(fault, NetworkPartitionFault) and fault.params.method == "blackhole":
            details.update(method="blackhole", routes=",".join(fault.params.peers), metric=BLACKHOLE_METRIC)
        else:
            chains = ",".join(nftables.chain_names(fault.name))
            details.update(table=nftables.table_name(ctx.run_id), chains=chains)
        return Prepared(details)

    def apply(self, fault: NetworkFault, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:
        if record.details.get("method") == "netem":
            from harness.chaos.families.network import netem

            assert isinstance(fault, NetworkNetemFault | NetworkLossFault)
            return netem.NETEM.apply(fault, record, ctx, resumed=resumed)
        netns = str(record.details.get("netns", ""))
        if isinstance(fault, NetworkPartitionFault | NetworkLossFault) and "table" in record.details:
            nftables.inject(fault, netns, str(record.details["table"]))
            return {}
        from harness.chaos.families.network import links

        if isinstance(fault, NetworkBandwidthFault):
            return {"ifindex": links.tbf_inject(fault, netns)}
        if isinstance(fault, NetworkLinkDownFault):
            return {"ifindex": links.link_down_inject(fault, netns)}
        if isinstance(fault, NetworkPartitionFault):
            links.blackhole_inject(fault, netns)
            return {}
        raise FaultError(f"fault '{fault.name}': kind {fault.kind} is not a network fault this family applies")

    def undo(self, record: FaultRecord) -> Details:
        """Delete exactly the objects the journal recorded; objects already gone, or a namespace
        that no longer exists (which took its objects with it), are nothing to do."""
        d = record.details
        if record.kind == NetworkNetemFault.KIND or d.get("method") == "netem":
            from harness.chaos.families.network import netem

            return netem.NETEM.undo(record)
        from harness.chaos.families.network import links

        netns = str(d.get("netns", ""))
        if record.kind == NetworkBandwidthFault.KIND:
            what = links.tbf_revert(netns, str(d["interface"]), int(d.get("handle", links.TBF_HANDLE)))
        elif record.kind == NetworkLinkDownFault.KIND:
            what = links.link_up_revert(netns, str(d["interface"]), bool(int(d.get("was_up", 1))))
        elif d.get("method") == "blackhole":
            what = links.blackhole_revert(netns, [p for p in str(d.get("routes", "")).split(",") if p])
        elif netns and not (NETNS_DIR / netns).exists():
            what = f"netns {netns} is gone (its nft tables with it)"
        else:
            chains = [c for c in str(d.get("chains", "")).split(",") if c]
            what = nft.remove_chains(netns, "inet", str(d["table"]), chains)
        return {"reverted": what}

    def reverted_text(self, before: FaultRecord, after: FaultRecord) -> str:
        return str(after.details.get("reverted") or f"marked {after.state.value}")

    def leftovers(self) -> list[Leftover]:
        from harness.chaos.families.network import leftovers

        return leftovers.find()

    def remove(self, leftover: Leftover) -> None:
        from harness.chaos.families.network import leftovers

        leftovers.remove(leftover)


FAMILY = NetworkFamily()


def check(fault: NetworkFault) -> None:
    """Raise ``ConfigError`` when the fault could never apply on this host; changes nothing."""
    from harness.scenario.model import Safety

    FAMILY.check(fault, HostContext(Safety()))


def inject(fault: NetworkFault, run_id: str, journal: Journal, *, lease_until: float | None = None) -> FaultRecord:
    """Apply ``fault`` through the journal steps and return its ``injected`` record; idempotent per name."""
    return FAMILY.inject(fault, InjectContext(run_id, journal, lease_until))


def revert(record: FaultRecord, journal: Journal) -> None:
    """Delete exactly the objects the journal recorded for this fault; journal the outcome."""
    FAMILY.revert(record, journal)
