"""The ``target.netns`` mode of a dns fault: a responder started in the namespace for the fault
window, and an nftables redirect of the namespace's DNS to it.

Inject reads the namespace's resolver the way its processes see it (``ip netns exec`` bind-mounts
``/etc/netns/<ns>/resolv.conf`` over ``/etc/resolv.conf``; without that file they read the
host's), starts ``python -m harness.chaos.dns_server`` inside the namespace (``ip netns exec``;
its own session, nice 0 and the environment tag ``HARNESS_DNS_FAULT=<run>/<fault>``, as
:mod:`harness.chaos.fault_servers` starts every fault server) on a free port with that
nameserver as its upstream and its control API on a unix socket in a private work directory,
puts the fault in, and only then redirects port 53: table ``ip harness_dns_<run>``,
for each fault one nat chain ``d_<fault>`` (hook output: the namespace's own processes) with
``udp dport 53 meta mark != MARK redirect to :PORT`` and the same for tcp. The responder's
own upstream queries carry ``SO_MARK`` :data:`MARK` and are not redirected. Revert deletes the
chain (and the table once empty) first, then stops the responder (SIGTERM, then SIGKILL, only to
the recorded PID whose start time matches, or a process carrying the fault's tag); then
removes the work directory.

Limits: IPv4 DNS only (a nameserver written as an IPv6 address is refused at inject); a
process that caches answers itself (nscd, a JVM) keeps what it cached before the fault;
clients elsewhere that use this namespace as their resolver are not intercepted (no
prerouting chain).
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import shutil
import sys
import tempfile
from pathlib import Path

from harness.chaos import nft
from harness.chaos.families.dns import control
from harness.chaos.fault_servers import FaultServer
from harness.errors import FaultError

__all__ = [
    "MARK",
    "SERVER",
    "TABLE_PREFIX",
    "TAG",
    "chain_name",
    "nameserver",
    "nameserver_in",
    "nft_inject",
    "remove_workdir",
    "start_responder",
    "stop_responder",
    "table_name",
    "tagged",
    "undo",
    "workdir_of",
]

#: SO_MARK of the responder's upstream queries ("HD"); recorded in the journal too.
MARK = 0x4844
NAT_PRIORITY = -100
TAG = "HARNESS_DNS_FAULT"
#: Every table of a dns fault is ``ip`` and starts with this: what a sweep looks for.
TABLE_PREFIX = "harness_dns_"
#: The responder process: started, found by its tag and stopped as every fault server is.
SERVER = FaultServer(module="harness.chaos.dns_server", tag=TAG, noun="DNS responder", client=control.CLIENT)


def table_name(run_id: str) -> str:
    return f"{TABLE_PREFIX}{nft.ident(run_id, 64)}"


def chain_name(fault_name: str) -> str:
    return f"d_{nft.ident(fault_name, 48)}"


def workdir_of(run_id: str, fault_name: str) -> str:
    # Short on purpose: a unix socket path must fit in 108 bytes whatever the run id's length.
    digest = hashlib.sha1(f"{run_id}/{fault_name}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"harness-dns-{digest}")


def resolv_conf(netns: str) -> Path:
    """The resolv.conf the namespace's processes read (``ip netns exec``'s bind mount, or the host's)."""
    private = Path("/etc/netns") / netns / "resolv.conf"
    return private if private.exists() else Path("/etc/resolv.conf")


def nameserver(netns: str) -> str:
    """``address:53`` of the first nameserver the namespace's processes use; ``FaultError`` if none."""
    return nameserver_in(resolv_conf(netns))


def nameserver_in(path: Path) -> str:
    """``address:53`` of the first nameserver ``path`` (a resolv.conf) names; ``FaultError`` if none."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise FaultError(f"cannot read {path}: {exc.strerror or exc}") from None
    for line in lines:
        words = line.split()
        if len(words) >= 2 and words[0] == "nameserver":
            address = ipaddress.ip_address(words[1].split("%")[0])
            if address.version != 4:
                raise FaultError(f"{path}: nameserver {address} is IPv6; dns faults intercept IPv4 DNS only")
            return f"{address}:53"
    raise FaultError(f"{path} names no nameserver")


def nft_inject(d: dict[str, str | int], port: int) -> None:
    """One atomic transaction: the table, the fault's nat chain (flushed), the udp and tcp redirects."""
    table, chain, netns, mark = str(d["table"]), str(d["chain"]), str(d["netns"]), int(d["mark"])
    lines = [
        f"add table ip {table}",
        f"add chain ip {table} {chain} {{ type nat hook output priority {NAT_PRIORITY}; policy accept; }}",
        f"flush chain ip {table} {chain}",
    ]
    lines += [
        f"add rule ip {table} {chain} {p} dport 53 meta mark != {mark} redirect to :{port}" for p in ("udp", "tcp")
    ]
    nft.run(netns, ["-f", "-"], "\n".join(lines) + "\n")


def start_responder(d: dict[str, str | int]) -> tuple[int, int, int]:
    """Start the fault's responder in the namespace; (pid, start ticks, port) once its control API answers."""
    workdir, address, netns = str(d["workdir"]), str(d["control"]), str(d["netns"])
    cmd = (["ip", "netns", "exec", netns] if netns else []) + [
        sys.executable,
        "-m",
        SERVER.module,
        "--listen",
        "0.0.0.0:0",
    ]
    cmd += ["--control", address, "--upstream", str(d["upstream"]), "--mark", str(d["mark"])]
    log_path = os.path.join(workdir, "dns.log")
    pid, ticks, answer = SERVER.start(cmd, log_path=log_path, tag_value=str(d["tag"]), control=address)
    return pid, ticks, control.split_address(str(answer["listen"]))[1]


def tagged(tag: str | None = None) -> dict[int, int]:
    """Live responders carrying the tag (``tag``'s value, or any), as {pid: start ticks}."""
    return SERVER.tagged(tag)


def stop_responder(d: dict[str, str | int]) -> str:
    """Stop the fault's responder (the journaled PID if it is still that process, and any with its tag)."""
    return SERVER.stop(d.get("responder_pid"), d.get("responder_start_ticks"), str(d.get("tag", "")))


def undo(d: dict[str, str | int]) -> str:
    """The redirect first (queries go to the nameserver again), then the responder, then its files."""
    netns = str(d["netns"])
    if not (nft.NETNS_DIR / netns).exists():
        what = [f"netns {netns} is gone (its nft tables with it)"]
    else:
        what = [nft.remove_chains(netns, "ip", str(d["table"]), [str(d["chain"])])]
    what.append(stop_responder(d))
    what += remove_workdir(d)
    return "; ".join(what)


def remove_workdir(d: dict[str, str | int]) -> list[str]:
    """Remove the responder's private work directory; what was done, as a list of 0 or 1 lines."""
    workdir = str(d.get("workdir", ""))
    if workdir and os.path.isdir(workdir):
        shutil.rmtree(workdir)
        return [f"removed {workdir}"]
    return []
