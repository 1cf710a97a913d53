"""The ``network.netem`` fault (and ``network.loss`` with method netem): a netem qdisc set
with pyroute2 netlink (no ``tc`` binary involved).

netem is missing from the host kernel of our machines (see TESTBED.md), so this module
never assumes it: :func:`available` creates one for real, in a private network namespace of
a short-lived child process, and :func:`check` refuses a fault the kernel cannot apply. The
tests run it for real inside a User-Mode Linux guest, which has netem.

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

This module and :mod:`harness.chaos.network` are the two that import pyroute2.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyroute2 import IPRoute

from harness.chaos.journal import FaultRecord, FaultState, Journal
from harness.errors import ConfigError, FaultError
from harness.scenario import NetworkLossFault, NetworkNetemFault

__all__ = [
    "FILTER_PREF",
    "KINDS",
    "NETEM",
    "NETEM_CHILD_HANDLE",
    "ROOT_HANDLE",
    "NetemFault",
    "available",
    "check",
    "describe",
    "ifb_name",
    "inject",
    "revert",
]

NetemFault = NetworkNetemFault | NetworkLossFault

NETEM = "network.netem"
#: The kind this module owns; it applies ``network.loss`` too when the caller chose netem for it
#: (journaled with ``method: netem`` so a revert finds its way back here).
KINDS = frozenset({NETEM})

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
#: Seconds the kernel probe may take (a fresh interpreter importing pyroute2).
PROBE_TIMEOUT = 20.0
NETNS_DIR = Path("/run/netns")


# ---------------------------------------------------------------- what a fault asks for


@dataclass(frozen=True)
class _Spec:
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


def _spec(fault: NetemFault) -> _Spec:
    if isinstance(fault, NetworkLossFault):
        p = fault.params
        return _Spec(0, 0, 0.0, "uniform", float(p.percent), 0.0, 0.0, 0.0, 10_000, p.direction, tuple(p.peers))
    q = fault.params
    return _Spec(
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


def _problem(fault: NetemFault) -> str | None:
    """Why the parameters cannot make a netem qdisc, or None."""
    if fault.target.interface is None:
        return "netem needs the target interface"
    s = _spec(fault)
    if s.reorder and not s.delay_us:
        return "reorder needs a delay (packets are sent ahead of delayed ones)"
    if s.jitter_us and s.distribution != "uniform":
        # pyroute2 0.9 cannot send the delay table (TCA_NETEM_DELAY_DIST) that tc reads from
        # /usr/lib/*/tc/<name>.dist, so only netem's built-in uniform jitter is offered.
        return f"jitter distribution '{s.distribution}' is not supported (only uniform)"
    if s.delay_us >= 2**32 // 16:
        return "delay too large for netem"
    return None


def _netem_options(s: _Spec) -> dict[str, Any]:
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


# ---------------------------------------------------------------- names


def ifb_name(run_id: str, fault_name: str) -> str:
    """``hb`` + 10 hex digits of the run and fault: the ifb of an ingress netem (IFNAMSIZ is 15)."""
    return "hb" + hashlib.sha1(f"{run_id}\0{fault_name}".encode()).hexdigest()[:10]


def _where(netns: str | None, interface: str | None) -> str:
    ns = f"netns {netns}" if netns else "the host netns"
    return f"{ns}, interface {interface}" if interface else ns


# ---------------------------------------------------------------- describe, check, available


def _ms(us: int) -> str:
    return f"{us / 1000:g}ms"


def describe(fault: NetemFault) -> str:
    """One line for ``harness plan``: what the netem will do, and where. Touches nothing."""
    s = _spec(fault)
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
        f"{_where(fault.target.netns, fault.target.interface)}{peers} for {fault.duration:g}s"
    )


# Runs in a fresh interpreter that first moves itself into a new, empty network namespace:
# whatever the probe creates (qdiscs on its own lo, an ifb) dies with the process, and no
# thread of the caller ever changes namespace.
_PROBE = r"""
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare(0x40000000) != 0:  # CLONE_NEWNET
    print(json.dumps({"unshare": os.strerror(ctypes.get_errno())}))
    sys.exit(0)
from pyroute2 import IPRoute
found = {}
def attempt(name, action):
    try:
        action()
        found[name] = ""
    except Exception as exc:
        code = getattr(exc, "code", None)
        found[name] = os.strerror(code) if isinstance(code, int) else (str(exc) or type(exc).__name__)
with IPRoute() as ipr:
    ipr.link("set", index=1, state="up")
    attempt("netem", lambda: ipr.tc("add", "netem", index=1, handle=0x10000, delay=1000))
    if not found["netem"]:
        ipr.tc("del", index=1, handle=0x10000, parent=0xFFFFFFFF)
    attempt("prio", lambda: ipr.tc("add", "prio", index=1, handle=0x10000, bands=4, priomap=[1] * 16))
    attempt("u32", lambda: ipr.tc("add-filter", "u32", index=1, parent=0x10000, prio=1, protocol=0x0800,
                                  target=0x10004, keys=["0x0/0x0+16"]))
    attempt("ifb", lambda: ipr.link("add", ifname="hbprobe", kind="ifb"))
    attempt("ingress", lambda: ipr.tc("add", "ingress", index=1))
    if not found["ifb"] and not found["ingress"]:
        ifb = ipr.link_lookup(ifname="hbprobe")[0]
        attempt("mirred", lambda: ipr.tc("add-filter", "u32", index=1, parent=0xFFFFFFF2, prio=1, protocol=3,
                target=1, keys=["0x0/0x0+0"],
                action=[{"kind": "mirred", "direction": "egress", "action": "redirect", "ifindex": ifb}]))
print(json.dumps(found))
"""

_probed: dict[str, str] | None = None
_refused: tuple[float, dict[str, str]] | None = None  # (monotonic time, answer) of the last refusal
#: Seconds a refused probe stands before the kernel is asked again.
REFUSAL_TTL = 600.0


def _probe() -> dict[str, str]:
    """What the kernel answered when asked for each object a netem fault may need ('' = created).

    Cached for the process once it succeeded: modules do not vanish from a running kernel. A
    refusal is cached for :data:`REFUSAL_TTL` seconds only (someone may load the module), long
    enough that the chaos agent's warm-up probe serves a run's ``network.loss`` faults, which
    choose between netem and nftables when they are injected.
    """
    global _probed, _refused
    if _probed is not None:
        return _probed
    if _refused is not None and time.monotonic() - _refused[0] < REFUSAL_TTL:
        return _refused[1]
    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=PROBE_TIMEOUT, check=False
        )
        found: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        return {"probe": f"the probe could not run: {exc}"}
    if not found:
        return {"probe": f"the probe failed: {done.stderr.strip()[-300:] or f'exit {done.returncode}'}"}
    if "unshare" in found:
        return {"probe": f"cannot create a network namespace to probe in ({found['unshare']}); needs root"}
    if not found.get("netem"):
        _probed = found
    else:
        _refused = (time.monotonic(), found)
    return found


def _kernel_hint(module: str) -> str:
    release = Path("/proc/sys/kernel/osrelease").read_text().strip()
    shipped = any(Path(f"/lib/modules/{release}/kernel/net/sched").glob(f"{module}.ko*"))
    return (
        f"kernel {release} has the module file but could not load it (modprobe {module})"
        if shipped
        else f"kernel {release} does not have {module}"
    )


def available(netns: str | None = None) -> tuple[bool, str]:
    """Whether this kernel can create a netem qdisc, and why not when it cannot.

    A real probe: a child process in a private, throwaway network namespace creates one on
    its own loopback (the kernel loads ``sch_netem`` on demand where it has the module).
    Namespaces share the kernel, so ``netns`` is only checked to exist; the probe never
    touches it.
    """
    if netns is not None and not (NETNS_DIR / netns).exists():
        return False, f"network namespace '{netns}' does not exist"
    found = _probe()
    if "probe" in found:
        return False, found["probe"]
    if found.get("netem"):
        # ENOENT is how the kernel says "unknown qdisc kind" (tc prints exactly that)
        return False, f"no netem qdisc: creating one failed with '{found['netem']}' ({_kernel_hint('sch_netem')})"
    return True, "netem qdisc created in a probe namespace"


def _missing_for(s: _Spec) -> list[str]:
    """The pieces ``s`` needs that the kernel refused, with its answers."""
    found = _probe()
    if "probe" in found:
        return [found["probe"]]
    need = ["netem"]
    if s.egress and s.peers:
        need += ["prio", "u32"]
    if s.ingress:
        need += ["ifb", "ingress", "u32", "mirred"]
    return [f"{name}: {found[name]}" for name in dict.fromkeys(need) if found.get(name, "not probed")]


def check(fault: NetemFault) -> None:
    """Raise ``ConfigError`` when the fault could never apply here: no such namespace or
    interface, parameters netem cannot take, or a kernel without netem (or without the
    prio/u32/ifb/mirred pieces peers and ingress need). Changes nothing."""
    netns = fault.target.netns
    problem = _problem(fault)
    if problem:
        raise ConfigError(f"fault '{fault.name}': {problem}")
    if netns is not None and not (NETNS_DIR / netns).exists():
        raise ConfigError(f"fault '{fault.name}': network namespace '{netns}' does not exist (ip netns list)")
    with _ipr(netns) as ipr:
        if not ipr.link_lookup(ifname=fault.target.interface):
            raise ConfigError(f"fault '{fault.name}': no interface '{fault.target.interface}' in {_where(netns, None)}")
    ok, why = available()
    if not ok:
        raise ConfigError(f"fault '{fault.name}': this kernel cannot run netem: {why}")
    missing = _missing_for(_spec(fault))
    if missing:
        raise ConfigError(f"fault '{fault.name}': this kernel lacks what the fault needs: {'; '.join(missing)}")


# ---------------------------------------------------------------- netlink


def _ipr(netns: str | None) -> IPRoute:
    """network's socket maker: no fork (the chaos agent is a threaded Ray worker), no netns created."""
    from harness.chaos.network import _ipr as ipr_in

    return ipr_in(netns)


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
    s = _spec(fault)
    options = _netem_options(s)
    with _ipr(netns or None) as ipr:
        index = _link_index(ipr, interface)
        if index is None:
            raise _Refused(f"fault '{fault.name}': no interface '{interface}' in {_where(netns or None, None)}")
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


# ---------------------------------------------------------------- journaled inject and revert


def inject(fault: NetemFault, run_id: str, journal: Journal, *, lease_until: float | None = None) -> FaultRecord:
    """Apply ``fault`` as netem and return its ``injected`` record; idempotent per fault name.

    ``injecting`` is journaled (fsynced) with every object a revert needs before anything is
    changed. A fault already injected or reverted in this run is not applied again; one left
    ``injecting`` by a crash has its objects deleted and built again, then completed.
    A ``network.loss`` fault becomes a netem with only ``loss=percent``, its peers and
    direction, whatever its ``method`` says (choosing netem is the caller's).
    """
    previous, settled = journal.previous_inject(run_id, fault.name, fault.kind)
    if settled:
        assert previous is not None
        return previous
    problem = _problem(fault)
    if problem:
        raise FaultError(f"fault '{fault.name}': {problem}")
    netns = fault.target.netns or ""
    if netns and not (NETNS_DIR / netns).exists():
        raise FaultError(f"fault '{fault.name}': network namespace '{netns}' does not exist")
    s = _spec(fault)
    interface = str(fault.target.interface)
    record = previous
    if record is None:
        ingress = ""
        if s.ingress:
            with _ipr(netns or None) as ipr:
                index = _link_index(ipr, interface)
                if index is None:
                    raise FaultError(
                        f"fault '{fault.name}': no interface '{interface}' in {_where(netns or None, None)}"
                    )
                ingress = "shared" if _ingress_qdisc(ipr, index) else "created"
        details: dict[str, str | int] = {
            "target": describe(fault),
            "method": "netem",
            "netns": netns,
            "interface": interface,
            "direction": s.direction,
            "handle": ROOT_HANDLE if s.egress else 0,
            "root_kind": ("prio" if s.peers else "netem") if s.egress else "",
            "netem_handle": (NETEM_CHILD_HANDLE if s.peers else ROOT_HANDLE) if s.egress else 0,
            "ifb": ifb_name(run_id, fault.name) if s.ingress else "",
            "ifb_handle": ROOT_HANDLE if s.ingress else 0,
            "ingress": ingress,
            "filter_prefs": f"{FILTER_PREF},{FILTER_PREF + 1}" if (s.peers or s.ingress) else "",
        }
        record = journal.begin(fault.name, fault.kind, details, lease_until)
    try:
        index = _apply(fault, record.details, resumed=previous is not None)
    except _Refused as exc:
        # Nothing was changed, and the objects the record names are somebody else's: settle
        # it now, so no revert or recover ever deletes them on this fault's behalf.
        journal.append(record.advance(FaultState.REVERTED, reverted=f"nothing applied: {exc}"))
        raise FaultError(str(exc)) from None
    except Exception as exc:  # a netlink error from pyroute2, part-way through
        error = f"fault '{fault.name}': netem could not be set: {type(exc).__name__}: {exc}"
        try:
            with _ipr(netns or None) as ipr:
                undone = _delete_ours(ipr, record.details)
        except Exception:  # still ``injecting`` in the journal: revert (recover) retries
            raise FaultError(error) from None
        journal.append(record.advance(FaultState.REVERTED, reverted=f"failed and undone ({', '.join(undone)})"))
        raise FaultError(error) from None
    injected = record.advance(FaultState.INJECTED, ifindex=index)
    journal.append(injected)
    return injected


def _revert_objects(d: Mapping[str, str | int]) -> str:
    netns = str(d.get("netns", ""))
    if netns and not (NETNS_DIR / netns).exists():
        return f"netns {netns} is gone (its qdiscs and ifb with it)"
    with _ipr(netns or None) as ipr:
        done = _delete_ours(ipr, d)
    return "deleted " + ", ".join(done) if done else "nothing of harness's left"


def revert(record: FaultRecord, journal: Journal) -> None:
    """Delete exactly the objects the journal recorded for this fault; journal the outcome.

    Safe to call any number of times, with no scenario at hand (``harness recover``, the
    watchdog). Raises ``FaultError`` after journaling ``revert_failed`` when an object could
    not be deleted, so the next recover retries.
    """
    latest = journal.latest(record.fault_name) or record
    if latest.state is FaultState.REVERTED:
        return
    try:
        what = _revert_objects(latest.details)
    except (FaultError, OSError, KeyError, ValueError) as exc:
        journal.append(latest.advance(FaultState.REVERT_FAILED, error=str(exc)))
        raise FaultError(f"fault '{latest.fault_name}': revert failed: {exc}") from None
    except Exception as exc:  # a netlink error from pyroute2
        journal.append(latest.advance(FaultState.REVERT_FAILED, error=f"{type(exc).__name__}: {exc}"))
        raise FaultError(f"fault '{latest.fault_name}': revert failed: {type(exc).__name__}: {exc}") from None
    journal.append(latest.advance(FaultState.REVERTED, reverted=what))
