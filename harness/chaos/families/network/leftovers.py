"""The network family's objects that a lost journal left behind, found by their tags, and removed.

Every object a network fault creates is tagged: nftables tables ``inet harness_*``; root
qdiscs with handle ``4852:`` (tbf) or ``4853:`` (netem, or the prio in front of it); u32
filters with priority ``0x4853``/``0x4854`` on an ingress qdisc (netem's ingress redirect),
and ``ifb`` links named ``hb`` + 10 hex digits; blackhole routes with metric 4852. Found in the
host's network namespace and in every namespace under ``/run/netns``. Imports pyroute2.
"""

from __future__ import annotations

import contextlib

from harness.chaos import netlink, nft
from harness.chaos.families.network import netem
from harness.chaos.families.network.links import TBF_HANDLE, TC_H_ROOT
from harness.chaos.families.network.nftables import TABLE_PREFIX
from harness.chaos.families.network.spec import BLACKHOLE_METRIC
from harness.chaos.family import Leftover
from harness.errors import FaultError

__all__ = ["find", "remove"]

_TC_H_INGRESS = 0xFFFFFFF1
_INGRESS_FILTERS = 0xFFFF0000  # "ffff:", the ingress qdisc's handle: its filters' parent
_QDISC_HANDLES = {TBF_HANDLE: "tbf", netem.ROOT_HANDLE: "netem"}
_FILTER_PREFS = (netem.FILTER_PREF, netem.FILTER_PREF + 1)
_RTN_BLACKHOLE = 6
#: Removal order: filters and qdiscs before the ifb links they may sit on.
_ORDER = {"filter": 0, "qdisc": 1, "route": 2, "nft table": 3, "ifb": 4}


def _leftover(netns: str, kind: str, name: str, key: tuple[object, ...]) -> Leftover:
    return Leftover(netns, kind, name, key, "network", _ORDER[kind])


def _nft_tables(netns: str) -> list[Leftover]:
    return [
        _leftover(netns, "nft table", f"{family} {name}", (family, name))
        for family, name in nft.tables(netns)
        if family == "inet" and name.startswith(TABLE_PREFIX)
    ]


def _netlink_objects(netns: str) -> list[Leftover]:
    out: list[Leftover] = []
    with netlink.ipr(netns or None) as ipr:
        names = {int(link["index"]): str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            name = str(link.get_attr("IFLA_IFNAME"))
            if kind == "ifb" and name.startswith("hb") and len(name) == 12:
                out.append(_leftover(netns, "ifb", name, (int(link["index"]),)))
        for msg in ipr.get_qdiscs():
            index, parent, handle = int(msg["index"]), int(msg["parent"]), int(msg["handle"])
            if parent == TC_H_ROOT and handle in _QDISC_HANDLES:
                kind = str(msg.get_attr("TCA_KIND"))
                label = f"{kind} {handle >> 16:x}: on {names.get(index, index)}"
                out.append(_leftover(netns, "qdisc", label, (index, handle)))
        for index, name in names.items():
            for msg in ipr.get_filters(index=index, parent=_TC_H_INGRESS):
                pref = int(msg["info"]) >> 16
                if pref in _FILTER_PREFS:
                    key = (index, pref, int(msg["info"]) & 0xFFFF)
                    leftover = _leftover(netns, "filter", f"u32 pref {pref:#x} on {name} ingress", key)
                    if leftover not in out:
                        out.append(leftover)
        for family in (2, 10):  # AF_INET, AF_INET6
            for route in ipr.get_routes(family=family):
                if route.get("type") == _RTN_BLACKHOLE and route.get_attr("RTA_PRIORITY") == BLACKHOLE_METRIC:
                    dst = f"{route.get_attr('RTA_DST') or ('0.0.0.0' if family == 2 else '::')}/{route['dst_len']}"
                    out.append(_leftover(netns, "route", f"blackhole {dst} metric {BLACKHOLE_METRIC}", (family, dst)))
    return out


def find() -> list[Leftover]:
    """Every tagged network object on this node, in every network namespace; changes nothing."""
    out: list[Leftover] = []
    for netns in nft.namespaces():
        with contextlib.suppress(FaultError):  # no nft here: no tables of ours either
            out += _nft_tables(netns)
        with contextlib.suppress(FaultError, OSError):  # a namespace deleted meanwhile
            out += _netlink_objects(netns)
    return out


def remove(leftover: Leftover) -> None:
    """Delete one object :func:`find` found; raises (nft or netlink error) when it cannot."""
    netns = leftover.netns
    if leftover.kind == "nft table":
        family, name = leftover.key
        nft.run(netns, ["delete", "table", family, name])
        return
    with netlink.ipr(netns or None) as ipr:
        if leftover.kind == "ifb":
            ipr.link("del", index=leftover.key[0])
        elif leftover.kind == "qdisc":
            index, handle = leftover.key
            ipr.tc("del", index=index, handle=handle, parent=TC_H_ROOT)
        elif leftover.kind == "filter":
            index, pref, _protocol = leftover.key
            # by priority alone (``info``), as netem's revert does: pyroute2 drops a ``prio``
            # keyword for a delete, and the kernel then deletes every filter on the parent
            ipr.tc("del-filter", index=index, parent=_INGRESS_FILTERS, info=pref << 16)
        elif leftover.kind == "route":
            family, dst = leftover.key
            ipr.route("del", dst=dst, type="blackhole", priority=BLACKHOLE_METRIC, family=family)
