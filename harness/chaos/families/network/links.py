"""Bandwidth, blackhole routes and link down, through pyroute2 netlink (no ``tc`` or ``ip`` binary).

* One tbf qdisc at the root of the target interface, handle ``4852:`` (:data:`TBF_HANDLE`,
  recorded in the journal too); revert deletes the root qdisc only if it still has that handle
  and is a tbf, so someone else's shaping is never removed. Inject refuses an interface whose
  root qdisc is somebody else's (a non-zero handle that is not ours) instead of replacing it.
* Blackhole routes to the peers, tagged by :data:`~.spec.BLACKHOLE_METRIC`.
* A link set down, and up again on revert only if it was up before.

Every revert of an object already gone, or of a namespace that no longer exists (which took
its objects with it), just says so. Imports pyroute2: the family imports it on first use.
"""

from __future__ import annotations

import ipaddress
import socket

from pyroute2 import IPRoute

from harness.chaos import netlink
from harness.chaos.families.network.params import (
    NetworkBandwidthFault,
    NetworkLinkDownFault,
    NetworkPartitionFault,
)
from harness.chaos.families.network.spec import BLACKHOLE_METRIC, burst, where
from harness.chaos.nft import NETNS_DIR
from harness.errors import FaultError

__all__ = [
    "TBF_HANDLE",
    "TC_H_ROOT",
    "blackhole_inject",
    "blackhole_revert",
    "link_down_inject",
    "link_up_revert",
    "link_was_up",
    "tbf_inject",
    "tbf_revert",
]

#: Root handle of every tbf harness adds ("4852:" — "HR"); recorded in the journal too.
TBF_HANDLE = 0x48520000
TC_H_ROOT = 0xFFFFFFFF
_RTN_BLACKHOLE = 6


def _root_qdisc(ipr: IPRoute, index: int) -> tuple[str, int] | None:
    """(kind, handle) of the root qdisc of link ``index``, or None when it has none listed."""
    for msg in ipr.get_qdiscs(index=index):
        if msg.get("parent") == TC_H_ROOT:
            return str(msg.get_attr("TCA_KIND")), int(msg.get("handle"))
    return None


def tbf_inject(fault: NetworkBandwidthFault, netns: str) -> int:
    """Set (or reset) our tbf at the root of the interface; returns the interface index."""
    interface = fault.target.interface
    with netlink.ipr(netns or None) as ipr:
        found = ipr.link_lookup(ifname=interface)
        if not found:
            raise FaultError(f"fault '{fault.name}': no interface '{interface}' in {where(netns or None, None)}")
        index = int(found[0])
        root = _root_qdisc(ipr, index)
        if root is not None and root[1] not in (0, TBF_HANDLE):
            raise FaultError(
                f"fault '{fault.name}': {interface} already has root qdisc {root[0]} handle {root[1] >> 16:x}:, "
                "not harness's; refusing to replace it"
            )
        command = "replace" if root is not None and root[1] == TBF_HANDLE else "add"
        ipr.tc(
            command,
            "tbf",
            index=index,
            handle=TBF_HANDLE,
            rate=f"{fault.params.rate}bit",
            burst=burst(fault),
            latency=f"{max(1, round(fault.params.latency * 1000))}ms",
        )
        return index


def tbf_revert(netns: str, interface: str, handle: int) -> str:
    if netns and not (NETNS_DIR / netns).exists():
        return f"netns {netns} is gone (its qdiscs with it)"
    with netlink.ipr(netns or None) as ipr:
        found = ipr.link_lookup(ifname=interface)
        if not found:
            return f"interface {interface} is gone"
        index = int(found[0])
        root = _root_qdisc(ipr, index)
        if root is None or root[0] != "tbf" or root[1] != handle:
            return f"no harness tbf on {interface}"
        ipr.tc("del", index=index, handle=handle, parent=TC_H_ROOT)
        return f"deleted tbf {handle >> 16:x}: on {interface}"


# ---------------------------------------------------------------- blackhole routes and link down


def blackhole_inject(fault: NetworkPartitionFault, netns: str) -> None:
    """Add (or keep) one blackhole route per peer, tagged by :data:`BLACKHOLE_METRIC`."""
    with netlink.ipr(netns or None) as ipr:
        for peer in fault.params.peers:
            net = ipaddress.ip_network(peer)
            ipr.route("replace", dst=str(net), type="blackhole", priority=BLACKHOLE_METRIC, family=_family(net))


def _family(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    return socket.AF_INET if net.version == 4 else socket.AF_INET6


def blackhole_revert(netns: str, peers: list[str]) -> str:
    """Delete our blackhole route to each peer that is still there; says how many went."""
    if netns and not (NETNS_DIR / netns).exists():
        return f"netns {netns} is gone (its routes with it)"
    deleted = 0
    with netlink.ipr(netns or None) as ipr:
        for peer in peers:
            net = ipaddress.ip_network(peer)
            family = _family(net)
            # A dump filtered here: a "route get" for a blackhole destination is EINVAL.
            ours = [
                r
                for r in ipr.get_routes(family=family)
                if r.get("type") == _RTN_BLACKHOLE
                and r.get_attr("RTA_PRIORITY") == BLACKHOLE_METRIC
                and r.get("dst_len") == net.prefixlen
                and r.get_attr("RTA_DST") == str(net.network_address)
            ]
            if ours:
                ipr.route("del", dst=str(net), type="blackhole", priority=BLACKHOLE_METRIC, family=family)
                deleted += 1
    return f"deleted {deleted} blackhole route(s)"


def _link_state(ipr: IPRoute, interface: str) -> tuple[int, bool] | None:
    found = ipr.link_lookup(ifname=interface)
    if not found:
        return None
    link = ipr.get_links(found[0])[0]
    return int(found[0]), bool(link["flags"] & 1)  # IFF_UP


def link_was_up(fault: NetworkLinkDownFault, netns: str) -> bool:
    """Whether the interface is up now; only a link that was up is set up again on revert."""
    with netlink.ipr(netns or None) as ipr:
        state = _link_state(ipr, fault.target.interface)
    if state is None:
        raise FaultError(
            f"fault '{fault.name}': no interface '{fault.target.interface}' in {where(netns or None, None)}"
        )
    return state[1]


def link_down_inject(fault: NetworkLinkDownFault, netns: str) -> int:
    """Set the interface down; returns its index."""
    with netlink.ipr(netns or None) as ipr:
        state = _link_state(ipr, fault.target.interface)
        if state is None:
            raise FaultError(
                f"fault '{fault.name}': no interface '{fault.target.interface}' in {where(netns or None, None)}"
            )
        ipr.link("set", index=state[0], state="down")
        return state[0]


def link_up_revert(netns: str, interface: str, was_up: bool) -> str:
    if not was_up:
        return f"{interface} was down before the fault; left down"
    if netns and not (NETNS_DIR / netns).exists():
        return f"netns {netns} is gone (its links with it)"
    with netlink.ipr(netns or None) as ipr:
        state = _link_state(ipr, interface)
        if state is None:
            return f"interface {interface} is gone"
        ipr.link("set", index=state[0], state="up")
    return f"set {interface} up"
