"""The transparent proxy of a ``proxy.*`` fault with ``target.service``: a proxy process started for
the fault window, and an nftables redirect of the service's port to it.

Inject starts a proxy for this fault (``python -m harness.chaos.proxy_server``, inside
``target.netns`` through ``ip netns exec`` when given, in its own session, at nice 0 whatever
the agent runs at) listening on a free port, loads the fault through its control API (a unix
socket in a private work directory, reachable from outside the namespace), and only then
redirects the service's port to it with nftables. The proxy's own upstream connections carry
``SO_MARK`` :data:`MARK`, which the redirect rule exempts, so they reach the service. Revert
deletes the nftables chains first (new connections go straight to the service again), then
stops the proxy (:mod:`harness.chaos.fault_servers`): SIGTERM, SIGKILL after a grace period,
only to a process whose start time matches the journal's, or that carries the fault's tag
``HARNESS_PROXY_FAULT=<run>/<fault>`` (so a crash between starting the proxy and journaling its
PID leaves nothing unfindable, and a recycled PID is never signalled).

nftables objects: one table per run, ``ip harness_proxy_<run id>`` (``ip6`` for an IPv6
service), holding for each fault two nat base chains ``p_<fault>_out`` (hook output: clients
on the service's own host or namespace) and ``p_<fault>_pre`` (hook prerouting: clients
elsewhere), each with the one rule ``ip daddr <service ip> tcp dport <port> meta mark !=
<MARK> redirect to :<proxy port>``. Revert deletes the fault's chains, then the table once
it holds no chain. nft is driven through :mod:`harness.chaos.nft`, as for network faults.

The proxy listens on every address of its namespace (``0.0.0.0``/``::``, a free port): a
redirect from prerouting delivers to the address of the interface the connection came in on,
so a loopback-only listener would miss clients from elsewhere. It forwards only to the
service, which those clients could reach anyway.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile

from harness.chaos import nft
from harness.chaos.families.proxy import control
from harness.chaos.families.proxy.control import split_address
from harness.chaos.fault_servers import FaultServer

__all__ = [
    "MARK",
    "SERVER",
    "TABLE_PREFIX",
    "TAG",
    "abort_established",
    "chain_names",
    "nft_inject",
    "start_proxy",
    "table_name",
    "undo",
    "workdir_of",
]

log = logging.getLogger(__name__)

#: SO_MARK of a transparent proxy's upstream connections ("HR"); recorded in the journal too.
MARK = 0x4852
#: nat base chain priority: where the kernel's own dstnat sits.
NAT_PRIORITY = -100
TAG = "HARNESS_PROXY_FAULT"
#: Every table of a transparent proxy is ``ip``/``ip6`` and starts with this: what a sweep looks for.
TABLE_PREFIX = "harness_proxy_"
NETNS_DIR = nft.NETNS_DIR
#: The transparent proxy process: started, found by its tag and stopped as every fault server is.
SERVER = FaultServer(module="harness.chaos.proxy_server", tag=TAG, noun="proxy", client=control.CLIENT)


def table_name(run_id: str) -> str:
    """``harness_proxy_<run id>``: the one nftables table (family ip or ip6) of a run's redirects."""
    return f"{TABLE_PREFIX}{nft.ident(run_id, 64)}"


def chain_names(fault_name: str) -> tuple[str, str]:
    base = f"p_{nft.ident(fault_name, 48)}"
    return f"{base}_out", f"{base}_pre"


def workdir_of(run_id: str, fault_name: str) -> str:
    # Short on purpose: a unix socket path must fit in 108 bytes whatever the run id's length.
    digest = hashlib.sha1(f"{run_id}/{fault_name}".encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"harness-proxy-{digest}")


def nft_inject(d: dict[str, str | int], proxy_port: int) -> None:
    """One atomic transaction: the table, the fault's two nat chains (flushed), one redirect rule each."""
    family, table, netns = str(d["family"]), str(d["table"]), str(d["netns"])
    host, port = split_address(str(d["service"]))
    rule = f"{family} daddr {host} tcp dport {port} meta mark != {int(d['mark'])} redirect to :{proxy_port}"
    lines = [f"add table {family} {table}"]
    for chain, hook in zip(str(d["chains"]).split(","), ("output", "prerouting"), strict=True):
        spec = f"{{ type nat hook {hook} priority {NAT_PRIORITY}; policy accept; }}"
        lines += [
            f"add chain {family} {table} {chain} {spec}",
            f"flush chain {family} {table} {chain}",
            f"add rule {family} {table} {chain} {rule}",
        ]
    nft.run(netns, ["-f", "-"], "\n".join(lines) + "\n")


def abort_established(d: dict[str, str | int]) -> int:
    """Abort established client connections to the service that bypass the proxy; how many went.

    Looked for in the service's namespace and in ours (``ss -K`` with a filter; the proxy's
    upstream connections carry :data:`MARK` and are spared). A kernel without sock destroy
    answers with an error, which leaves those connections alone: a warning, not a failure.
    """
    host, port = split_address(str(d["service"]))
    expression = f"dst {host} and dport = :{port} and fwmark != {int(d['mark']):#x}"
    aborted = 0
    for netns in dict.fromkeys([str(d["netns"]), ""]):
        cmd = (["ip", "netns", "exec", netns] if netns else []) + ["ss", "-K", "-H", "-tn", expression]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=nft.NFT_TIMEOUT, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("could not abort established connections to %s: %s", d["service"], exc)
            continue
        if done.returncode != 0:
            log.warning("could not abort established connections to %s: %s", d["service"], done.stderr.strip())
        aborted += sum(1 for line in done.stdout.splitlines() if line.strip())
    return aborted


def _nft_revert(d: dict[str, str | int]) -> str:
    """Delete the fault's chains that still exist, then the table if it is empty; says what it did."""
    family, table, netns = str(d["family"]), str(d["table"]), str(d["netns"])
    if netns and not (NETNS_DIR / netns).exists():
        return f"netns {netns} is gone (its nft tables with it)"
    return nft.remove_chains(netns, family, table, str(d["chains"]).split(","))


def start_proxy(d: dict[str, str | int]) -> tuple[int, int, int]:
    """Start the fault's proxy; (pid, start ticks, listen port) once its control API answers."""
    workdir, address, netns = str(d["workdir"]), str(d["control"]), str(d["netns"])
    listen = "[::]:0" if d["family"] == "ip6" else "0.0.0.0:0"
    cmd = [sys.executable, "-m", SERVER.module, "--listen", listen]
    cmd += ["--upstream", str(d["service"]), "--control", address, "--mark", str(d["mark"])]
    if d.get("workers"):  # else the proxy runs one process per core it may use
        cmd += ["--workers", str(d["workers"])]
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]  # ip execs the command: the PID is the proxy's
    log_path = os.path.join(workdir, "proxy.log")
    pid, ticks, answer = SERVER.start(cmd, log_path=log_path, tag_value=str(d["tag"]), control=address)
    return pid, ticks, split_address(str(answer["listen"]))[1]


def undo(d: dict[str, str | int]) -> str:
    """Redirect first (new connections go straight to the service), then the proxy, then its files."""
    what = [_nft_revert(d), SERVER.stop(d.get("proxy_pid"), d.get("proxy_start_ticks"), str(d.get("tag", "")))]
    workdir = str(d.get("workdir", ""))
    if workdir and os.path.isdir(workdir):
        shutil.rmtree(workdir)
        what.append(f"removed {workdir}")
    return "; ".join(what)
