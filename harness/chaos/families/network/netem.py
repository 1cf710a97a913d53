"""The ``network.netem`` fault (and ``network.loss`` with method netem): a netem qdisc set with
pyroute2 netlink (no ``tc`` binary involved).

netem is missing from the host kernel of our machines (see TESTBED.md), so nothing assumes it:
:func:`check` refuses a fault the kernel cannot apply (:mod:`harness.chaos.netem_probe` tries
for real). The tests run it for real inside a User-Mode Linux guest, which has netem.

Objects, all recorded in the journal's ``injecting`` line before the first one is created,
and each owned by a handle, a filter priority or a name harness chose:

* **egress, no peers**: a netem qdisc at the root of the interface, handle ``4853:``
  (:data:`ROOT_HANDLE`);
* **egress with peers**: a prio qdisc ``4853:`` at the root with one band more than the
  usual three; the usual priomap keeps every packet in bands 1-3 (pfifo, as before), and
  u32 filters (priority :data:`FILTER_PREF`, one per address family) steer packets *to* the
  peers into band 4, class ``4853:4``, whose child is the netem ``4854:``
  (:data:`NETEM_CHILD_HANDLE`). Only that traffic is shaped;
* **ingress** (direction ``ingress`` or ``both``): netem cannot sit on a device's ingress,
  so, as ``tc`` users do, an ifb device named ``hb<hash of run and fault>`` is created in
  the namespace with the netem at its root ``4853:``, and the interface's ingress qdisc
  (``ffff:``, created unless one is already there) gets u32 filters (priority
  :data:`FILTER_PREF`) that redirect every packet, or only those *from* the peers, to the
  ifb, which hands them back to the interface's receive path after netem.

Ownership, so someone else's traffic control is never removed: inject refuses an interface
whose root qdisc is not the default one (handle 0) nor ours; a root ``4853:`` not left by
this very fault (no ``injecting`` line of it in the journal) belongs to another harness
fault or an unrecovered run, and is refused too. A refused inject journals ``reverted``
(``nothing applied: ...``) at once and raises ``FaultError``, so no later revert or recover
acts on objects the record names but someone else owns. An ingress qdisc that was already there is
shared, recorded as such, and only our filters are removed from it. Revert deletes the root
qdisc only if it still has the recorded kind and handle, our ingress filters only if they
are u32 at our priority, the ifb only if it is still an ifb, and the ingress qdisc only if
we created it and no filter is left on it.

Both inject and revert are idempotent: a fault already injected is not applied again, one
left ``injecting`` by a crash is rebuilt from scratch (our objects are deleted first), and
revert of objects already gone, or of a namespace that no longer exists (which took every
object with it), just journals ``reverted``. So inject twice + revert once leaves nothing.

Percentages are per direction the netem is on: with ``both``, a request and its reply each
cross one netem, so a request/reply exchange is lost with probability 1-(1-p)^2.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from pyroute2 import IPRoute

from harness.chaos import netem_probe, netlink, steps
from harness.chaos.families.network.spec import (
    NetemFault,
    describe_netem,
    ifb_name,
    netem_options,
    problem,
    spec,
    where,
)
from harness.chaos.journal import FaultRecord, Journal
from harness.chaos.netem_probe import available
from harness.chaos.nft import NETNS_DIR
from harness.chaos.steps import Details, InjectContext, Prepared
from harness.errors import ConfigError, FaultError, FaultNotApplied

__all__ = [
    "FILTER_PREF",
    "NETEM",
    "NETEM_CHILD_HANDLE",
    "ROOT_HANDLE",
    "Netem",
    "available",
    "check",
    "inject",
    "revert",
]

#: Root qdisc handle of every netem/prio harness adds ("4853:"), next to network.py's tbf "4852:".
ROOT_HANDLE = 0x48530000
#: The netem under band 4 of our prio qdisc, when only traffic with peers is shaped.
NETEM_CHILD_HANDLE = 0x48540000
PEER_BAND = 4
#: Filter priorities of our u32 filters: IPv4 at FILTER_PREF, IPv6 at FILTER_PREF + 1
#: (the kernel keeps one protocol per priority).
FILTER_PREF = 0x4853
#: Same as ``tc``'s default priomap: bands 1-3 by TOS, band 4 reached only through our filters.
PRIOMAP = (1, 2, 2, 2, 1, 2, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)

_TC_H_ROOT = 0xFFFFFFFF
_INGRESS_HANDLE = 0xFFFF0000
#: Filters of an ingress (or clsact) qdisc hang off its ingress hook, ffff:fff2.
_INGRESS_PARENT = 0xFFFFFFF2
_ETH_P_ALL = 0x0003
_ETH_P_IP = 0x0800
_ETH_P_IPV6 = 0x86DD


def check(fault: NetemFault) -> None:
    """Raise ``ConfigError`` when the fault could never apply here: no such namespace or
    interface, parameters netem cannot take, or a kernel without netem (or without the
    prio/u32/ifb/mirred pieces peers and ingress need). Changes nothing."""
    netns = fault.target.netns
    bad = problem(fault)
    if bad:
        raise ConfigError(f"fault '{fault.name}': {bad}")
    if netns is not None and not (NETNS_DIR / netns).exists():
        raise ConfigError(f"fault '{fault.name}': network namespace '{netns}' does not exist (ip netns list)")
    with netlink.ipr(netns) as ipr:
        if not ipr.link_lookup(ifname=fault.target.interface):
            raise ConfigError(f"fault '{fault.name}': no interface '{fault.target.interface}' in {where(netns, None)}")
    ok, why = available()
    if not ok:
        raise ConfigError(f"fault '{fault.name}': this kernel cannot run netem: {why}")
    missing = netem_probe.missing(spec(fault).pieces())
    if missing:
        raise ConfigError(f"fault '{fault.name}': this kernel lacks what the fault needs: {'; '.join(missing)}")


# ---------------------------------------------------------------- netlink


def _link_index(ipr: IPRoute, name: str) -> int | None:
    found = ipr.link_lookup(ifname=name)
    return int(found[0]) if found else None


def _link_kind(ipr: IPRoute, index: int) -> str | None:
    for msg in ipr.get_links(index):
        info = msg.get_attr("IFLA_LINKINFO")
        return str(info.get_attr("IFLA_INFO_KIND")) if info is not None else None
    return None


def _qdiscs(ipr: IPRoute, index: int) -> list[tuple[str, int, int]]:
    """(kind, handle, parent) of every qdisc of link ``index``."""
    return [
        (str(m.get_attr("TCA_KIND")), int(m.get("handle")), int(m.get("parent"))) for m in ipr.get_qdiscs(index=index)
    ]


def _root(ipr: IPRoute, index: int) -> tuple[str, int] | None:
    for kind, handle, parent in _qdiscs(ipr, index):
        if parent == _TC_H_ROOT:
            return kind, handle
    return None


def _ingress_qdisc(ipr: IPRoute, index: int) -> str | None:
    """Kind of the link's ingress-side qdisc (``ingress`` or ``clsact``), or None."""
    for kind, handle, _parent in _qdiscs(ipr, index):
        if handle == _INGRESS_HANDLE and kind in ("ingress", "clsact"):
            return kind
    return None


def _ingress_prefs(ipr: IPRoute, index: int) -> dict[int, str]:
    """Priority -> classifier kind of the filters on the link's ingress hook."""
    prefs: dict[int, str] = {}
    for msg in ipr.get_filters(index=index, parent=_INGRESS_PARENT):
        prefs[int(msg.get("info")) >> 16] = str(msg.get_attr("TCA_KIND"))
    return prefs


def _u32_keys(net: ipaddress.IPv4Network | ipaddress.IPv6Network, offset: int) -> list[str]:
    """u32 keys matching ``net`` at byte ``offset`` of the IP header (one per 32-bit word)."""
    address = int(net.network_address)
    mask = int(net.netmask)
    words = net.max_prefixlen // 32
    keys = []
    for i in range(words):
        shift = 32 * (words - 1 - i)
        word_mask = (mask >> shift) & 0xFFFFFFFF
        if word_mask:
            keys.append(f"0x{(address >> shift) & 0xFFFFFFFF:08x}/0x{word_mask:08x}+{offset + 4 * i}")
    return keys or [f"0x0/0x0+{offset}"]


def _peer_filters(peers: tuple[str, ...], *, dst: bool) -> list[tuple[int, int, list[str]]]:
    """(priority, protocol, keys) of one u32 filter per peer network."""
    out = []
    for peer in peers:
        net = ipaddress.ip_network(peer, strict=False)
        if net.version == 4:
            out.append((FILTER_PREF, _ETH_P_IP, _u32_keys(net, 16 if dst else 12)))
        else:
            out.append((FILTER_PREF + 1, _ETH_P_IPV6, _u32_keys(net, 24 if dst else 8)))
    return out


class _Refused(FaultError):
    """Nothing was changed: the interface is somebody else's to shape."""


def _prefs(d: Mapping[str, str | int]) -> list[int]:
    return [int(p) for p in str(d.get("filter_prefs", "")).split(",") if p]


def _delete_ours(ipr: IPRoute, d: Mapping[str, str | int]) -> list[str]:
    """Delete whatever of the recorded objects still exists and is still ours; says what it did."""
    done: list[str] = []
    interface = str(d["interface"])
    ifb = str(d.get("ifb", ""))
    handle = int(d.get("handle", 0))
    index = _link_index(ipr, interface)
    if index is not None:
        if ifb and _ingress_qdisc(ipr, index):
            present = _ingress_prefs(ipr, index)
            for pref in _prefs(d):
                if present.get(pref) == "u32":
                    # by priority alone (protocol 0): every u32 filter we put there, IP or IPv6
                    ipr.tc("del-filter", index=index, parent=_INGRESS_PARENT, info=pref << 16)
                    done.append(f"ingress filters {pref:x}")
            if (
                d.get("ingress") == "created"
                and _ingress_qdisc(ipr, index) == "ingress"
                and not _ingress_prefs(ipr, index)
            ):
                ipr.tc("del", "ingress", index=index)
                done.append("ingress qdisc")
        root = _root(ipr, index)
        if handle and root == (str(d.get("root_kind", "")), handle):
            ipr.tc("del", index=index, handle=handle, parent=_TC_H_ROOT)
            done.append(f"{root[0]} {handle >> 16:x}: on {interface}")
    if ifb:
        ifb_index = _link_index(ipr, ifb)
        if ifb_index is not None and _link_kind(ipr, ifb_index) == "ifb":
            ipr.link("del", index=ifb_index)  # its netem goes with it
            done.append(f"ifb {ifb}")
    return done


def _apply(fault: NetemFault, d: Mapping[str, str | int], resumed: bool) -> int:
    """Create the recorded objects; returns the interface index. Deletes ours first when resuming.

    Raises ``_Refused`` (nothing changed) when the interface is shaped by someone else.
    """
    netns = str(d["netns"])
    interface = str(d["interface"])
    ifb = str(d.get("ifb", ""))
    s = spec(fault)
    options = netem_options(s)
    with netlink.ipr(netns or None) as ipr:
        index = _link_index(ipr, interface)
        if index is None:
            raise _Refused(f"fault '{fault.name}': no interface '{interface}' in {where(netns or None, None)}")
        if resumed:
            _delete_ours(ipr, d)
        root = _root(ipr, index)
        if s.egress and root is not None and root[1] != 0:
            whose = "another harness fault's (or a run not recovered)" if root[1] == ROOT_HANDLE else "not harness's"
            raise _Refused(
                f"fault '{fault.name}': {interface} already has root qdisc {root[0]} handle {root[1] >> 16:x}:, "
                f"{whose}; refusing to replace it"
            )
        if s.ingress and _ingress_qdisc(ipr, index):
            taken = set(_ingress_prefs(ipr, index)) & set(_prefs(d))
            if taken:
                raise _Refused(
                    f"fault '{fault.name}': the ingress of {interface} already has filters at priority "
                    f"{min(taken):x}, another harness fault's; refusing to add a second"
                )
        if s.egress:
            if s.peers:
                ipr.tc("add", "prio", index=index, handle=ROOT_HANDLE, bands=PEER_BAND, priomap=list(PRIOMAP))
                band = ROOT_HANDLE | PEER_BAND
                ipr.tc("add", "netem", index=index, handle=NETEM_CHILD_HANDLE, parent=band, **options)
                for pref, protocol, keys in _peer_filters(s.peers, dst=True):
                    ipr.tc("add-filter", "u32", index=index, parent=ROOT_HANDLE, prio=pref, protocol=protocol,
                           target=band, keys=keys)  # fmt: skip
            else:
                ipr.tc("add", "netem", index=index, handle=ROOT_HANDLE, parent=_TC_H_ROOT, **options)
        if s.ingress:
            # the ifb and its netem first: the redirect must never point at a device not ready for it
            ifb_index = _link_index(ipr, ifb)
            if ifb_index is None:
                ipr.link("add", ifname=ifb, kind="ifb")
                ifb_index = _link_index(ipr, ifb)
            assert ifb_index is not None
            ipr.link("set", index=ifb_index, state="up")
            ipr.tc("add", "netem", index=ifb_index, handle=ROOT_HANDLE, parent=_TC_H_ROOT, **options)
            if _ingress_qdisc(ipr, index) is None:
                ipr.tc("add", "ingress", index=index)
            redirect = [{"kind": "mirred", "direction": "egress", "action": "redirect", "ifindex": ifb_index}]
            filters = _peer_filters(s.peers, dst=False) if s.peers else [(FILTER_PREF, _ETH_P_ALL, ["0x0/0x0+0"])]
            for pref, protocol, keys in filters:
                ipr.tc("add-filter", "u32", index=index, parent=_INGRESS_PARENT, prio=pref, protocol=protocol,
                       target=1, keys=keys, action=redirect)  # fmt: skip
        return index


def _revert_objects(d: Mapping[str, str | int]) -> str:
    netns = str(d.get("netns", ""))
    if netns and not (NETNS_DIR / netns).exists():
        return f"netns {netns} is gone (its qdiscs and ifb with it)"
    with netlink.ipr(netns or None) as ipr:
        done = _delete_ours(ipr, d)
    return "deleted " + ", ".join(done) if done else "nothing of harness's left"


# ---------------------------------------------------------------- the journal steps' three parts


def _usable(fault: NetemFault) -> None:
    bad = problem(fault)
    if bad:
        raise FaultError(f"fault '{fault.name}': {bad}")
    netns = fault.target.netns or ""
    if netns and not (NETNS_DIR / netns).exists():
        raise FaultError(f"fault '{fault.name}': network namespace '{netns}' does not exist")


class Netem:
    """Prepare, apply and undo a netem for :mod:`harness.chaos.steps` (the network family uses it
    for ``network.netem`` and for a loss it applies as netem)."""

    undo_failed_inject = False  # apply undoes its own part-way failures (below)

    def prepare(self, fault: NetemFault, ctx: InjectContext) -> Prepared:
        """A ``network.loss`` fault becomes a netem with only ``loss=percent``, its peers and
        direction, whatever its ``method`` says (choosing netem is the caller's)."""
        _usable(fault)
        netns = fault.target.netns or ""
        s = spec(fault)
        interface = str(fault.target.interface)
        ingress = ""
        if s.ingress:
            with netlink.ipr(netns or None) as ipr:
                index = _link_index(ipr, interface)
                if index is None:
                    where_ = where(netns or None, None)
                    raise FaultError(f"fault '{fault.name}': no interface '{interface}' in {where_}")
                ingress = "shared" if _ingress_qdisc(ipr, index) else "created"
        details: Details = {
            "target": describe_netem(fault),
            "method": "netem",
            "netns": netns,
            "interface": interface,
            "direction": s.direction,
            "handle": ROOT_HANDLE if s.egress else 0,
            "root_kind": ("prio" if s.peers else "netem") if s.egress else "",
            "netem_handle": (NETEM_CHILD_HANDLE if s.peers else ROOT_HANDLE) if s.egress else 0,
            "ifb": ifb_name(ctx.run_id, fault.name) if s.ingress else "",
            "ifb_handle": ROOT_HANDLE if s.ingress else 0,
            "ingress": ingress,
            "filter_prefs": f"{FILTER_PREF},{FILTER_PREF + 1}" if (s.peers or s.ingress) else "",
        }
        return Prepared(details)

    def apply(self, fault: NetemFault, record: FaultRecord, ctx: InjectContext, *, resumed: bool) -> Details:
        """Build the recorded objects (ours deleted first when resumed). A refusal, or a failure
        whose part-way objects were deleted again, changed nothing: ``FaultNotApplied``; a failure
        that could not be undone stays ``injecting`` for the next revert."""
        if resumed:
            _usable(fault)
        try:
            index = _apply(fault, record.details, resumed=resumed)
        except _Refused as exc:
            # Nothing was changed, and the objects the record names are somebody else's: settle
            # it now, so no revert or recover ever deletes them on this fault's behalf.
            raise FaultNotApplied(str(exc), reverted=f"nothing applied: {exc}") from None
        except Exception as exc:  # a netlink error from pyroute2, part-way through
            error = f"fault '{fault.name}': netem could not be set: {type(exc).__name__}: {exc}"
            netns = str(record.details.get("netns", ""))
            try:
                with netlink.ipr(netns or None) as ipr:
                    undone = _delete_ours(ipr, record.details)
            except Exception:  # still ``injecting`` in the journal: revert (recover) retries
                raise FaultError(error) from None
            raise FaultNotApplied(error, reverted=f"failed and undone ({', '.join(undone)})") from None
        return {"ifindex": index}

    def undo(self, record: FaultRecord) -> Details:
        return {"reverted": _revert_objects(record.details)}


NETEM = Netem()


def inject(fault: NetemFault, run_id: str, journal: Journal, *, lease_until: float | None = None) -> FaultRecord:
    """Apply ``fault`` as netem through the journal steps and return its ``injected`` record."""
    return steps.inject(NETEM, fault, InjectContext(run_id, journal, lease_until))


def revert(record: FaultRecord, journal: Journal) -> None:
    """Delete exactly the objects the journal recorded for this fault; journal the outcome."""
    steps.revert(NETEM, record, journal)
