"""``harness recover --sweep``: find and remove harness's kernel objects and processes that no
journal knows about any more.

The journal is how harness normally undoes a fault. When a journal is lost (a node's disk
wiped, a data directory deleted, a run started with another ``HARNESS_DATA_DIR``), its
faults' objects stay, and only their tags can find them. Every object a fault creates is
tagged (DESIGN.md, "Faults"):

* nftables tables named ``harness_*`` (network partition and loss, family inet) and
  ``harness_proxy_*`` (transparent proxy redirects, family ip or ip6);
* root qdiscs with handle ``4852:`` (tbf) or ``4853:`` (netem, or the prio in front of it);
  u32 filters with priority ``0x4853``/``0x4854`` on an ingress qdisc (netem's ingress
  redirect), and ``ifb`` links named ``hb`` + 10 hex digits;
* blackhole routes with metric 4852;
* processes whose environment carries ``HARNESS_STRESS_FAULT`` or ``HARNESS_PROXY_FAULT``.

The sweep looks in the host's network namespace and in every namespace under
``/run/netns``. It cannot find what carries no tag: a process left SIGSTOPped or a Kubernetes
deployment left at zero replicas are known only to the journal (``harness recover``). Like
``recover``, it does not ask whether a run is going on: during a run it removes that run's
faults too, which is what an operator pulling the emergency brake wants, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
from dataclasses import dataclass
from typing import Any

import psutil

from harness.chaos import netem, network, nft, proxy, stress
from harness.errors import FaultError

__all__ = ["Leftover", "find", "sweep"]

_TC_H_ROOT = 0xFFFFFFFF
_TC_H_INGRESS = 0xFFFFFFF1
_INGRESS_FILTERS = 0xFFFF0000  # "ffff:", the ingress qdisc's handle: its filters' parent
_QDISC_HANDLES = {network.TBF_HANDLE: "tbf", netem.ROOT_HANDLE: "netem"}
_FILTER_PREFS = (netem.FILTER_PREF, netem.FILTER_PREF + 1)
_RTN_BLACKHOLE = 6
_TAGS = (stress.TAG, proxy.TAG)


@dataclass(frozen=True)
class Leftover:
    """One tagged object: where it is, what it is, and what identifies it for removal."""

    netns: str  # '' = the host's namespace; for processes, ''
    kind: str  # nft table | qdisc | filter | ifb | route | process
    name: str
    key: tuple[Any, ...]

    def describe(self) -> str:
        where = f"netns {self.netns}" if self.netns else "host"
        return f"{self.kind} {self.name} ({where})"


def _namespaces() -> list[str]:
    found = [""]
    with contextlib.suppress(OSError):
        found += sorted(os.listdir(network.NETNS_DIR))
    return found


def _nft_tables(netns: str) -> list[Leftover]:
    return [
        Leftover(netns, "nft table", f"{family} {name}", (family, name))
        for family, name in nft.tables(netns)
        if name.startswith("harness_")
    ]


def _netlink_objects(netns: str) -> list[Leftover]:
    out: list[Leftover] = []
    with network._ipr(netns or None) as ipr:
        names = {int(link["index"]): str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}
        for link in ipr.get_links():
            info = link.get_attr("IFLA_LINKINFO")
            kind = info.get_attr("IFLA_INFO_KIND") if info is not None else None
            name = str(link.get_attr("IFLA_IFNAME"))
            if kind == "ifb" and name.startswith("hb") and len(name) == 12:
                out.append(Leftover(netns, "ifb", name, (int(link["index"]),)))
        for msg in ipr.get_qdiscs():
            index, parent, handle = int(msg["index"]), int(msg["parent"]), int(msg["handle"])
            if parent == _TC_H_ROOT and handle in _QDISC_HANDLES:
                kind = str(msg.get_attr("TCA_KIND"))
                label = f"{kind} {handle >> 16:x}: on {names.get(index, index)}"
                out.append(Leftover(netns, "qdisc", label, (index, handle)))
        for index, name in names.items():
            for msg in ipr.get_filters(index=index, parent=_TC_H_INGRESS):
                pref = int(msg["info"]) >> 16
                if pref in _FILTER_PREFS:
                    key = (index, pref, int(msg["info"]) & 0xFFFF)
                    leftover = Leftover(netns, "filter", f"u32 pref {pref:#x} on {name} ingress", key)
                    if leftover not in out:
                        out.append(leftover)
        for family in (2, 10):  # AF_INET, AF_INET6
            for route in ipr.get_routes(family=family):
                if route.get("type") == _RTN_BLACKHOLE and route.get_attr("RTA_PRIORITY") == network.BLACKHOLE_METRIC:
                    dst = f"{route.get_attr('RTA_DST') or ('0.0.0.0' if family == 2 else '::')}/{route['dst_len']}"
                    out.append(Leftover(netns, "route", f"blackhole {dst} metric 4852", (family, dst)))
    return out


def _processes() -> list[Leftover]:
    out = []
    for proc in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            env = proc.environ()
            tag = next((f"{k}={env[k]}" for k in _TAGS if k in env), None)
            if tag and proc.status() != psutil.STATUS_ZOMBIE and proc.pid != os.getpid():
                out.append(Leftover("", "process", f"pid {proc.pid} ({tag})", (proc.pid, proc.create_time())))
    return out


def find() -> list[Leftover]:
    """Every tagged object on this node, in every network namespace; changes nothing."""
    out: list[Leftover] = []
    for netns in _namespaces():
        with contextlib.suppress(FaultError):  # no nft here: no tables of ours either
            out += _nft_tables(netns)
        with contextlib.suppress(FaultError, OSError):  # a namespace deleted meanwhile
            out += _netlink_objects(netns)
    return out + _processes()


def _remove(leftover: Leftover) -> None:
    netns = leftover.netns
    if leftover.kind == "nft table":
        family, name = leftover.key
        nft.run(netns, ["delete", "table", family, name])
    elif leftover.kind == "process":
        pid, created = leftover.key
        proc = psutil.Process(pid)
        if proc.create_time() == created:  # the same process, not a reused PID
            proc.send_signal(signal.SIGCONT)
            proc.kill()
    else:
        with network._ipr(netns or None) as ipr:
            if leftover.kind == "ifb":
                ipr.link("del", index=leftover.key[0])
            elif leftover.kind == "qdisc":
                index, handle = leftover.key
                ipr.tc("del", index=index, handle=handle, parent=_TC_H_ROOT)
            elif leftover.kind == "filter":
                index, pref, _protocol = leftover.key
                # by priority alone (``info``), as netem's revert does: pyroute2 drops a ``prio``
                # keyword for a delete, and the kernel then deletes every filter on the parent
                ipr.tc("del-filter", index=index, parent=_INGRESS_FILTERS, info=pref << 16)
            elif leftover.kind == "route":
                family, dst = leftover.key
                ipr.route("del", dst=dst, type="blackhole", priority=network.BLACKHOLE_METRIC, family=family)


def sweep() -> tuple[list[str], list[str]]:
    """Remove every tagged object; returns (lines for what was removed, lines for what failed)."""
    done: list[str] = []
    failed: list[str] = []
    # filters and qdiscs before the ifb links they may sit on; processes last
    order = {"filter": 0, "qdisc": 1, "route": 2, "nft table": 3, "ifb": 4, "process": 5}
    for leftover in sorted(find(), key=lambda item: order[item.kind]):
        try:
            _remove(leftover)
        except psutil.NoSuchProcess:
            continue  # gone by itself meanwhile
        except Exception as exc:  # a netlink or nft error: say which object, go on with the rest
            failed.append(f"{leftover.describe()}: could not remove: {type(exc).__name__}: {exc}")
            continue
        done.append(f"removed {leftover.describe()}")
    return done, failed
