"""Network faults without netem: ``network.partition``, ``network.loss`` (nftables) and
``network.bandwidth`` (a tbf qdisc through pyroute2 netlink).

The host kernel of our machines has no netem (see TESTBED.md), so loss is done the way the
design names as the fallback: an nftables rule ``numgen random mod 100 < N drop``. Partition
is an nftables ``drop`` of the peers' traffic in both directions. Bandwidth is tbf, set with
netlink (no ``tc`` binary involved).

nftables is driven through :mod:`harness.chaos.nft` (``nft -f -`` in the target namespace,
one atomic transaction per fault; why not a binding is said there).

Objects, all findable by a sweep and all recorded in the journal before they are created:

* one nftables table per run, ``inet harness_<run id>`` (run id sanitised to nft's identifier
  characters; a hash suffix keeps two different ids from colliding), holding for each fault
  its own base chains ``f_<fault>_out`` (hook output) and ``f_<fault>_in`` (hook input);
  revert deletes exactly the fault's chains and then the table once no chain is left in it;
* one tbf qdisc at the root of the target interface, handle ``4852:`` (the recorded
  :data:`TBF_HANDLE`); revert deletes the root qdisc only if it still has that handle and is
  a tbf, so someone else's shaping is never removed. Inject refuses an interface whose root
  qdisc is somebody else's (a non-zero handle that is not ours) instead of replacing it.

Both inject and revert are idempotent: nft chains are flushed and refilled (``add`` of an
existing table or chain is a no-op), the qdisc is ``replace``d when ours is already there,
and revert of objects already gone (or of a namespace that no longer exists, which took its
objects with it) just journals ``reverted``. So inject twice + revert once leaves nothing.

Partition and loss act on traffic the target itself sends and receives (output and input
hooks), not on traffic it forwards as a router.

This module and :mod:`harness.chaos.netem` (which opens its sockets with :func:`_ipr` here) import
pyroute2; :mod:`harness.chaos.capabilities` does too, inside its probes.
"""

from __future__ import annotations

import ipaddress
import shutil

from pyroute2 import IPRoute

from harness.chaos import nft
from harness.chaos.journal import FaultRecord, FaultState, Journal
from harness.errors import ConfigError, FaultError
from harness.scenario import (
    NetworkBandwidthFault,
    NetworkLinkDownFault,
    NetworkLossFault,
    NetworkNetemFault,
    NetworkPartitionFault,
)

__all__ = [
    "BANDWIDTH",
    "KINDS",
    "LOSS",
    "PARTITION",
    "TBF_HANDLE",
    "NetworkFault",
    "check",
    "describe",
    "inject",
    "is_network_kind",
    "netlink_socket",
    "revert",
    "table_name",
]

NetworkFault = (
    NetworkPartitionFault | NetworkLossFault | NetworkBandwidthFault | NetworkNetemFault | NetworkLinkDownFault
)

PARTITION = "network.partition"
LOSS = "network.loss"
BANDWIDTH = "network.bandwidth"
NETEM = "network.netem"
LINK_DOWN = "network.link_down"
KINDS = frozenset({PARTITION, LOSS, BANDWIDTH, NETEM, LINK_DOWN})

#: Root handle of every tbf harness adds ("4852:" — "HR"); recorded in the journal too.
TBF_HANDLE = 0x48520000
_TC_H_ROOT = 0xFFFFFFFF
#: Metric of every blackhole route harness adds: with the destination and the type it names
#: exactly our route, so revert never deletes an operator's blackhole to the same network.
BLACKHOLE_METRIC = 4852
#: Priority of our filter chains: before the usual filter chains (0), after conntrack (-200).
CHAIN_PRIORITY = -50
NETNS_DIR = nft.NETNS_DIR


def is_network_kind(kind: str) -> bool:
    return kind in KINDS


# ---------------------------------------------------------------- names


def table_name(run_id: str) -> str:
    """``harness_<run id>``: the one nftables table (family inet) of a run."""
    return f"harness_{nft.ident(run_id, 64)}"


def _chain_names(fault_name: str) -> tuple[str, str]:
    base = f"f_{nft.ident(fault_name, 48)}"
    return f"{base}_out", f"{base}_in"


# ---------------------------------------------------------------- describe and check


def _where(netns: str | None, interface: str | None) -> str:
    ns = f"netns {netns}" if netns else "the host netns"
    return f"{ns}, interface {interface}" if interface else ns


def uses_netem(fault: NetworkFault, netem_ok: bool | None = None) -> bool:
    """Whether ``fault`` is applied by :mod:`harness.chaos.netem`: a netem fault, or a loss whose
    method is netem, or auto where this kernel has netem and an interface is named.

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
        from harness.chaos import netem

        netem_ok = netem.available(fault.target.netns)[0]
    return netem_ok


def describe(fault: NetworkFault) -> str:
    """One line for ``harness plan``: what the fault will do, and where. Touches nothing."""
    where = _where(fault.target.netns, fault.target.interface)
    if isinstance(fault, NetworkNetemFault) or (isinstance(fault, NetworkLossFault) and fault.params.method == "netem"):
        from harness.chaos import netem

        return netem.describe(fault)
    if isinstance(fault, NetworkLinkDownFault):
        return f"set {where} down for {fault.duration:g}s, up again after"
    if isinstance(fault, NetworkBandwidthFault):
        p = fault.params
        return (
            f"tbf rate {p.rate / 1e6:g}mbit burst {_burst(fault)}B latency {p.latency * 1000:g}ms "
            f"on egress of {where} for {fault.duration:g}s"
        )
    peers = ", ".join(fault.params.peers)
    if isinstance(fault, NetworkPartitionFault):
        if fault.params.method == "blackhole":
            ns = _where(fault.target.netns, None)
            return f"blackhole routes to {peers} in {ns} for {fault.duration:g}s (metric {BLACKHOLE_METRIC})"
        ports = f" ports {','.join(str(p) for p in fault.params.ports)}" if fault.params.ports else ""
        return f"drop traffic with {peers}{ports}, both directions, in {where} for {fault.duration:g}s (nftables)"
    how = "netem where the kernel has it, else nftables numgen" if fault.params.method == "auto" else "nftables numgen"
    return (
        f"drop {fault.params.percent}% of {fault.params.direction} packets with {peers}"
        + (f" ports {','.join(str(p) for p in fault.params.ports)}" if fault.params.ports else "")
        + " "
        f"in {where} for {fault.duration:g}s ({how})"
    )


def check(fault: NetworkFault) -> None:
    """Raise ``ConfigError`` when the fault could never apply on this host: no ``nft``, no such
    namespace, no such interface. Called before a run starts; changes nothing."""
    netns = fault.target.netns
    if netns is not None and not (NETNS_DIR / netns).exists():
        raise ConfigError(f"fault '{fault.name}': network namespace '{netns}' does not exist (ip netns list)")
    if fault.target.interface:
        with _ipr(netns) as ipr:
            if not ipr.link_lookup(ifname=fault.target.interface):
                raise ConfigError(
                    f"fault '{fault.name}': no interface '{fault.target.interface}' in {_where(netns, None)}"
                )
    if isinstance(fault, NetworkNetemFault) or (isinstance(fault, NetworkLossFault) and fault.params.method == "netem"):
        from harness.chaos import netem

        netem.check(fault)
    elif _needs_nft(fault) and shutil.which("nft") is None:
        raise ConfigError(f"fault '{fault.name}': the nft command is missing (Debian package nftables)")


# ---------------------------------------------------------------- nftables


def _needs_nft(fault: NetworkFault) -> bool:
    if isinstance(fault, NetworkPartitionFault):
        return fault.params.method == "nftables"
    return isinstance(fault, NetworkLossFault)


def _rules(fault: NetworkPartitionFault | NetworkLossFault) -> tuple[list[str], list[str]]:
    """The rule bodies of the output and input chains."""
    out_if = f'oifname "{fault.target.interface}" ' if fault.target.interface else ""
    in_if = f'iifname "{fault.target.interface}" ' if fault.target.interface else ""
    by_family: dict[str, list[str]] = {"ip": [], "ip6": []}
    for peer in fault.params.peers:
        net = ipaddress.ip_network(peer)
        by_family["ip" if net.version == 4 else "ip6"].append(str(net))
    out_rules: list[str] = []
    in_rules: list[str] = []
    for family, nets in by_family.items():
        if not nets:
            continue
        peers = "{ " + ", ".join(nets) + " }"
        if isinstance(fault, NetworkPartitionFault):
            if fault.params.ports:
                ports_set = "{ " + ", ".join(str(p) for p in fault.params.ports) + " }"
                out_rules.append(
                    f"{out_if}{family} daddr {peers} meta l4proto {{ tcp, udp }} th dport {ports_set} drop"
                )
                in_rules.append(f"{in_if}{family} saddr {peers} meta l4proto {{ tcp, udp }} th sport {ports_set} drop")
            else:
                out_rules.append(f"{out_if}{family} daddr {peers} drop")
                in_rules.append(f"{in_if}{family} saddr {peers} drop")
        else:
            n = fault.params.percent
            verdict = "drop" if n >= 100 else f"numgen random mod 100 < {n} drop"
            out_ports = in_ports = ""
            if fault.params.ports:
                ports_set = "{ " + ", ".join(str(p) for p in fault.params.ports) + " }"
                out_ports = f" meta l4proto {{ tcp, udp }} th dport {ports_set}"
                in_ports = f" meta l4proto {{ tcp, udp }} th sport {ports_set}"
            if fault.params.direction in ("egress", "both"):
                out_rules.append(f"{out_if}{family} daddr {peers}{out_ports} {verdict}")
            if fault.params.direction in ("ingress", "both"):
                in_rules.append(f"{in_if}{family} saddr {peers}{in_ports} {verdict}")
    return out_rules, in_rules


def _chain_spec(hook: str) -> str:
    return f"{{ type filter hook {hook} priority {CHAIN_PRIORITY}; policy accept; }}"


def _nft_inject(fault: NetworkPartitionFault | NetworkLossFault, netns: str, table: str) -> None:
    """One atomic nft transaction: table, the fault's two chains (flushed), their rules."""
    out_chain, in_chain = _chain_names(fault.name)
    out_rules, in_rules = _rules(fault)
    lines = [f"add table inet {table}"]
    for chain, hook, rules in ((out_chain, "output", out_rules), (in_chain, "input", in_rules)):
        lines.append(f"add chain inet {table} {chain} {_chain_spec(hook)}")
        lines.append(f"flush chain inet {table} {chain}")
        lines.extend(f"add rule inet {table} {chain} {rule}" for rule in rules)
    nft.run(netns, ["-f", "-"], "\n".join(lines) + "\n")


# ---------------------------------------------------------------- tbf


def _ipr(netns: str | None) -> IPRoute:
    """A netlink route socket in ``netns`` (None: ours), without forking.

    ``IPRoute(netns=...)`` makes its socket in a forked child; in the chaos agent, a Ray
    worker with many threads, that fork hung (a lock held by another thread at fork time is
    never released in the child) and the fault's inject never answered. A short-lived thread
    that enters the namespace (``setns`` is per thread), opens the socket and ends does the
    same without a fork: the socket stays bound to the namespace it was made in.
    """
    return IPRoute(fileno=netlink_socket(netns)) if netns else IPRoute()


_CLONE_NEWNET = 0x40000000
_NETLINK_ROUTE = 0


def netlink_socket(netns: str) -> int:
    """The file descriptor of a NETLINK_ROUTE socket opened inside network namespace ``netns``."""
    import ctypes
    import os
    import socket
    import threading

    libc = ctypes.CDLL(None, use_errno=True)
    out: dict[str, int] = {}

    def enter_and_open() -> None:
        try:
            ns_fd = os.open(NETNS_DIR / netns, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            out["errno"] = exc.errno or 0
            return
        try:
            if libc.setns(ns_fd, _CLONE_NEWNET) != 0:
                out["errno"] = ctypes.get_errno()
                return
            out["fd"] = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, _NETLINK_ROUTE).detach()
        finally:
            os.close(ns_fd)

    thread = threading.Thread(target=enter_and_open, name=f"netns-{netns}", daemon=True)
    thread.start()
    thread.join()
    if "fd" not in out:
        import errno as errno_names

        code = out.get("errno", 0)
        raise FaultError(f"cannot open a netlink socket in netns {netns}: {errno_names.errorcode.get(code, code)}")
    return out["fd"]


def _burst(fault: NetworkBandwidthFault) -> int:
    """The bucket: as asked, else 10 ms at the rate but at least 5000 B (three full frames)."""
    return fault.params.burst or max(5000, fault.params.rate // 8 // 100)


def _root_qdisc(ipr: IPRoute, index: int) -> tuple[str, int] | None:
    """(kind, handle) of the root qdisc of link ``index``, or None when it has none listed."""
    for msg in ipr.get_qdiscs(index=index):
        if msg.get("parent") == _TC_H_ROOT:
            return str(msg.get_attr("TCA_KIND")), int(msg.get("handle"))
    return None


def _tbf_inject(fault: NetworkBandwidthFault, netns: str) -> int:
    """Set (or reset) our tbf at the root of the interface; returns the interface index."""
    interface = fault.target.interface
    with _ipr(netns or None) as ipr:
        found = ipr.link_lookup(ifname=interface)
        if not found:
            raise FaultError(f"fault '{fault.name}': no interface '{interface}' in {_where(netns or None, None)}")
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
            burst=_burst(fault),
            latency=f"{max(1, round(fault.params.latency * 1000))}ms",
        )
        return index


def _tbf_revert(netns: str, interface: str, handle: int) -> str:
    if netns and not (NETNS_DIR / netns).exists():
        return f"netns {netns} is gone (its qdiscs with it)"
    with _ipr(netns or None) as ipr:
        found = ipr.link_lookup(ifname=interface)
        if not found:
            return f"interface {interface} is gone"
        index = int(found[0])
        root = _root_qdisc(ipr, index)
        if root is None or root[0] != "tbf" or root[1] != handle:
            return f"no harness tbf on {interface}"
        ipr.tc("del", index=index, handle=handle, parent=_TC_H_ROOT)
        return f"deleted tbf {handle >> 16:x}: on {interface}"


# ---------------------------------------------------------------- blackhole routes and link down


def _blackhole_inject(fault: NetworkPartitionFault, netns: str) -> None:
    """Add (or keep) one blackhole route per peer, tagged by :data:`BLACKHOLE_METRIC`."""
    with _ipr(netns or None) as ipr:
        for peer in fault.params.peers:
            net = ipaddress.ip_network(peer)
            ipr.route("replace", dst=str(net), type="blackhole", priority=BLACKHOLE_METRIC, family=_family(net))


def _family(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    import socket

    return socket.AF_INET if net.version == 4 else socket.AF_INET6


def _blackhole_revert(netns: str, peers: list[str]) -> str:
    """Delete our blackhole route to each peer that is still there; says how many went."""
    if netns and not (NETNS_DIR / netns).exists():
        return f"netns {netns} is gone (its routes with it)"
    deleted = 0
    with _ipr(netns or None) as ipr:
        for peer in peers:
            net = ipaddress.ip_network(peer)
            family = _family(net)
            # A dump filtered here: a "route get" for a blackhole destination is EINVAL.
            ours = [
                r
                for r in ipr.get_routes(family=family)
                if r.get("type") == 6  # RTN_BLACKHOLE
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


def _link_was_up(fault: NetworkLinkDownFault, netns: str) -> bool:
    """Whether the interface is up now; only a link that was up is set up again on revert."""
    with _ipr(netns or None) as ipr:
        state = _link_state(ipr, fault.target.interface)
    if state is None:
        raise FaultError(
            f"fault '{fault.name}': no interface '{fault.target.interface}' in {_where(netns or None, None)}"
        )
    return state[1]


def _link_down_inject(fault: NetworkLinkDownFault, netns: str) -> int:
    """Set the interface down; returns its index."""
    with _ipr(netns or None) as ipr:
        state = _link_state(ipr, fault.target.interface)
        if state is None:
            raise FaultError(
                f"fault '{fault.name}': no interface '{fault.target.interface}' in {_where(netns or None, None)}"
            )
        ipr.link("set", index=state[0], state="down")
        return state[0]


def _link_up_revert(netns: str, interface: str, was_up: bool) -> str:
    if not was_up:
        return f"{interface} was down before the fault; left down"
    if netns and not (NETNS_DIR / netns).exists():
        return f"netns {netns} is gone (its links with it)"
    with _ipr(netns or None) as ipr:
        state = _link_state(ipr, interface)
        if state is None:
            return f"interface {interface} is gone"
        ipr.link("set", index=state[0], state="up")
    return f"set {interface} up"


# ---------------------------------------------------------------- journaled inject and revert


def inject(fault: NetworkFault, run_id: str, journal: Journal, *, lease_until: float | None = None) -> FaultRecord:
    """Apply ``fault`` and return its ``injected`` record; idempotent per fault name.

    ``injecting`` is journaled (fsynced) with every object a revert needs before anything is
    changed. A fault already injected or reverted in this run is not applied again; one left
    ``injecting`` by a crash is applied again (the operations are idempotent) and completed.
    """
    if isinstance(fault, NetworkNetemFault | NetworkLossFault) and uses_netem(fault):
        from harness.chaos import netem  # the same journal discipline, for netem qdiscs

        return netem.inject(fault, run_id, journal, lease_until=lease_until)
    previous, settled = journal.previous_inject(run_id, fault.name, fault.kind)
    if settled:
        assert previous is not None
        return previous
    netns = fault.target.netns or ""
    if netns and not (NETNS_DIR / netns).exists():
        raise FaultError(f"fault '{fault.name}': network namespace '{netns}' does not exist")
    details: dict[str, str | int] = {"target": describe(fault), "netns": netns}
    if isinstance(fault, NetworkBandwidthFault):
        details.update(interface=fault.target.interface, handle=TBF_HANDLE)
    elif isinstance(fault, NetworkLinkDownFault):
        # Read before anything changes, so the record says whether to set the link up again.
        details.update(interface=fault.target.interface, was_up=int(_link_was_up(fault, netns)))
    elif isinstance(fault, NetworkPartitionFault) and fault.params.method == "blackhole":
        details.update(method="blackhole", routes=",".join(fault.params.peers), metric=BLACKHOLE_METRIC)
    else:
        details.update(table=table_name(run_id), chains=",".join(_chain_names(fault.name)))
    record = previous or journal.begin(fault.name, fault.kind, details, lease_until)
    if isinstance(fault, NetworkBandwidthFault):
        index = _tbf_inject(fault, netns)
        injected = record.advance(FaultState.INJECTED, ifindex=index)
    elif isinstance(fault, NetworkLinkDownFault):
        index = _link_down_inject(fault, netns)
        injected = record.advance(FaultState.INJECTED, ifindex=index)
    elif isinstance(fault, NetworkPartitionFault) and fault.params.method == "blackhole":
        _blackhole_inject(fault, netns)
        injected = record.advance(FaultState.INJECTED)
    elif isinstance(fault, NetworkPartitionFault | NetworkLossFault):
        _nft_inject(fault, netns, str(record.details["table"]))
        injected = record.advance(FaultState.INJECTED)
    else:  # a netem fault returned above; anything else is a bug here
        raise FaultError(f"fault '{fault.name}': kind {fault.kind} is not a network fault this module applies")
    journal.append(injected)
    return injected


def revert(record: FaultRecord, journal: Journal) -> None:
    """Delete exactly the objects the journal recorded for this fault; journal the outcome.

    Safe to call any number of times, with no scenario at hand (``harness recover``, the
    watchdog). Raises ``FaultError`` after journaling ``revert_failed`` when an object could
    not be deleted, so the next recover retries.
    """
    latest = journal.latest(record.fault_name) or record
    if latest.state is FaultState.REVERTED:
        return
    d = latest.details
    if latest.kind == NETEM or d.get("method") == "netem":
        from harness.chaos import netem

        netem.revert(latest, journal)
        return
    netns = str(d.get("netns", ""))
    try:
        if latest.kind == BANDWIDTH:
            what = _tbf_revert(netns, str(d["interface"]), int(d.get("handle", TBF_HANDLE)))
        elif latest.kind == LINK_DOWN:
            what = _link_up_revert(netns, str(d["interface"]), bool(int(d.get("was_up", 1))))
        elif d.get("method") == "blackhole":
            what = _blackhole_revert(netns, [p for p in str(d.get("routes", "")).split(",") if p])
        elif netns and not (NETNS_DIR / netns).exists():
            what = f"netns {netns} is gone (its nft tables with it)"
        else:
            chains = [c for c in str(d.get("chains", "")).split(",") if c]
            what = nft.remove_chains(netns, "inet", str(d["table"]), chains)
    except (FaultError, OSError, KeyError, ValueError) as exc:
        journal.append(latest.advance(FaultState.REVERT_FAILED, error=str(exc)))
        raise FaultError(f"fault '{latest.fault_name}': revert failed: {exc}") from None
    except Exception as exc:  # a netlink error from pyroute2
        journal.append(latest.advance(FaultState.REVERT_FAILED, error=f"{type(exc).__name__}: {exc}"))
        raise FaultError(f"fault '{latest.fault_name}': revert failed: {type(exc).__name__}: {exc}") from None
    journal.append(latest.advance(FaultState.REVERTED, reverted=what))
