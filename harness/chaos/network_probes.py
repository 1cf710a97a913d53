"""The network probes of ``harness doctor``: nftables, netem, tbf, ifb, namespaces and netlink,
each tried for real in a throwaway network namespace (see :mod:`harness.chaos.capabilities`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.chaos import netem_probe
from harness.chaos.probe_tools import first_line, run, throwaway_netns, which
from harness.errors import CapabilityMissing

__all__ = [
    "NETEM_HINT",
    "probe_ifb",
    "probe_iproute",
    "probe_netem",
    "probe_netns",
    "probe_nftables",
    "probe_tbf",
    "qdisc_probe",
]


def _netlink_error(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def qdisc_probe(kind: str, **options: Any) -> None:
    """Create a ``kind`` qdisc at the root of ``lo`` in a throwaway netns with pyroute2, as the
    fault code does; raises ``CapabilityMissing`` with the kernel's answer when refused."""
    from harness.chaos import netlink  # opens the socket without pyroute2's fork

    with throwaway_netns() as netns, netlink.ipr(netns) as ipr:
        index = int(ipr.link_lookup(ifname="lo")[0])
        ipr.link("set", index=index, state="up")
        try:
            ipr.tc("add", kind, index=index, handle=0x10000, **options)
        except Exception as exc:  # pyroute2's NetlinkError carries the kernel's errno and text
            raise CapabilityMissing(f"the kernel refused a {kind} qdisc: {_netlink_error(exc)}") from None


def probe_nftables() -> str:
    nft = which("nft", "nftables")
    ip = which("ip", "iproute2")
    version = first_line(run([nft, "--version"]))
    with throwaway_netns() as netns:
        run([ip, "netns", "exec", netns, nft, "add", "table", "inet", "harness_probe"])
        run([ip, "netns", "exec", netns, nft, "delete", "table", "inet", "harness_probe"])
    return f"{version}: created and deleted a table in a throwaway netns"


#: What to do when the kernel has no netem qdisc, said to the person running harness.
NETEM_HINT = (
    "load the kernel module sch_netem (modprobe sch_netem); Debian's kernels ship it in "
    "linux-image-*, Ubuntu's in linux-modules-extra-$(uname -r)"
)


def probe_netem() -> str:
    available: Callable[[], tuple[bool, str]] | None = getattr(netem_probe, "available", None)
    if available is not None:  # the probe netem faults use (a throwaway namespace of a child process)
        ok, why = available()
        if not ok:
            raise CapabilityMissing(f"{why}; {NETEM_HINT}")
        return why
    try:
        qdisc_probe("netem", delay=1000)
    except CapabilityMissing as exc:
        raise CapabilityMissing(f"{exc}; {NETEM_HINT}") from None
    return "created a netem qdisc on lo in a throwaway netns"


def probe_tbf() -> str:
    try:
        qdisc_probe("tbf", rate="1mbit", burst=5000, latency="50ms")
    except CapabilityMissing as exc:
        raise CapabilityMissing(f"{exc}; load the kernel module sch_tbf (modprobe sch_tbf)") from None
    return "created a tbf qdisc on lo in a throwaway netns"


def probe_ifb() -> str:
    from harness.chaos import netlink  # opens the socket without pyroute2's fork

    with throwaway_netns() as netns, netlink.ipr(netns) as ipr:
        try:
            ipr.link("add", ifname="hprobe-ifb", kind="ifb")
        except Exception as exc:
            raise CapabilityMissing(
                f"the kernel refused an ifb link: {_netlink_error(exc)}; load the kernel module ifb (modprobe ifb)"
            ) from None
    return "created an ifb link in a throwaway netns"


def probe_netns() -> str:
    ip = which("ip", "iproute2")
    version = first_line(run([ip, "-V"]))
    with throwaway_netns() as netns:
        if netns not in run([ip, "netns", "list"]).split():
            raise CapabilityMissing(f"ip netns add {netns} succeeded but ip netns list does not show it")
        run([ip, "netns", "exec", netns, ip, "link", "show", "lo"])
    return f"{version}: ip netns add, exec and delete work"


def probe_iproute() -> str:
    import pyroute2

    from harness.chaos import netlink  # opens the socket without pyroute2's fork

    with throwaway_netns() as netns, netlink.ipr(netns) as ipr:
        index = int(ipr.link_lookup(ifname="lo")[0])
        ipr.link("set", index=index, state="up")
        ipr.link("set", index=index, state="down")
        state = ipr.get_links(index)[0].get("state")
        if state != "down":
            raise CapabilityMissing(f"set lo down with pyroute2 but the kernel reports it {state}")
    version = getattr(pyroute2, "__version__", "?")
    return f"pyroute2 {version}: set a link up and down in a throwaway netns"
