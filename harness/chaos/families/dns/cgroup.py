"""The process mode of a dns fault (``target.pid_file``, ``pattern`` or ``systemd_unit``): only
the chosen processes' DNS is redirected, by their cgroup v2.

nftables tells one process's packets from its neighbours' by the cgroup v2 of the socket
(``socket cgroupv2 level L "path"``; the socket takes its creator's cgroup when it is made).
Cgroup v2 membership needs no controller, so a hybrid host (v1 controllers, the unified
hierarchy mounted at ``/sys/fs/cgroup/unified`` with none enabled) serves as well as a pure
v2 one. Inject (after the journal holds every target's original v2 cgroup, the ``0::`` line
of ``/proc/PID/cgroup``): create ``harness-dns-<hash>`` at the top of the unified hierarchy,
write every target PID into its ``cgroup.procs`` (threads follow; children started during the
fault are born in it), start a responder in the targets' network namespace (as the netns
mode does: :mod:`.intercept`), and add table ``ip harness_dns_<run>`` there with a nat output
chain ``d_<fault>``: ``socket cgroupv2 level 1 "harness-dns-<hash>" udp dport 53 meta mark !=
MARK redirect to :PORT``, and the same for tcp.

nft (1.0.6 here) turns the path into the cgroup's id when the rule is loaded, looking it up
under ``/sys/fs/cgroup``, where a hybrid host has a tmpfs of v1 mounts: so the rule is loaded
by :func:`harness.chaos.nft.run_with_cgroup2` (a private mount namespace with cgroup2 there).

Revert: the chain first (queries go to the nameserver again), then every process still in the
fault's cgroup back to its journaled cgroup (a child born during the fault goes where its
nearest journaled ancestor was; the v2 root when that cgroup is gone), the cgroup removed, the
responder stopped. Limits: a socket opened before the inject keeps its old cgroup (a
long-lived TCP connection to the nameserver is not redirected; glibc opens a new UDP socket
per lookup); IPv4 DNS only; the targets must share one network namespace, the host's or a
named one (``ip netns``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
from pathlib import Path

import psutil

from harness.chaos import cgroups, nft
from harness.chaos.families.dns import intercept
from harness.chaos.processes import ResolvedProcess, start_ticks
from harness.errors import FaultError

__all__ = [
    "CGROUP_PREFIX",
    "cgroup_name",
    "empty_and_remove",
    "inject",
    "leftover_cgroups",
    "netns_of",
    "original_cgroup",
    "prepare",
    "undo",
    "upstream_of",
    "v2_mount",
]

#: Every cgroup of a dns fault sits at the top of the unified hierarchy and starts with this.
CGROUP_PREFIX = "harness-dns-"
_REMOVE_TRIES = 50


def v2_mount() -> str:
    """Where the unified (cgroup v2) hierarchy is mounted; ``FaultError`` when nowhere."""
    mount = cgroups.cgroup_mounts()[1]
    if mount is None:
        raise FaultError("no cgroup2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified)")
    return mount[1]


def cgroup_name(run_id: str, fault_name: str) -> str:
    return CGROUP_PREFIX + hashlib.sha1(f"{run_id}/{fault_name}".encode()).hexdigest()[:16]


def original_cgroup(pid: int) -> str:
    """The process's cgroup v2 path (the ``0::`` line of ``/proc/PID/cgroup``)."""
    try:
        lines = Path(f"/proc/{pid}/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise FaultError(f"cannot read the cgroups of process {pid}: {exc.strerror or exc}") from None
    for line in lines:
        if line.startswith("0::"):
            return line[3:] or "/"
    raise FaultError(f"process {pid} is in no cgroup v2 (no 0:: line in /proc/{pid}/cgroup)")


def netns_of(targets: list[ResolvedProcess]) -> str:
    """The one network namespace of ``targets``: '' (this process's, the host's) or its ``ip netns`` name."""
    seen: dict[tuple[int, int], list[int]] = {}
    for proc in targets:
        try:
            seen.setdefault(nft.namespace_id(f"/proc/{proc.pid}/ns/net"), []).append(proc.pid)
        except OSError as exc:
            raise FaultError(f"cannot read the network namespace of process {proc.pid}: {exc.strerror}") from None
    if len(seen) != 1:
        groups = "; ".join(f"pids {','.join(map(str, pids))}" for pids in seen.values())
        raise FaultError(f"the target processes are in {len(seen)} network namespaces ({groups}): one at a time")
    [ident] = seen
    name = nft.namespace_named(ident)
    if name is not None:
        return name
    raise FaultError(
        f"process {targets[0].pid} is in a network namespace with no name under {nft.NETNS_DIR} "
        "(give it one: ip netns attach NAME PID)"
    )


def upstream_of(pid: int) -> str:
    """The first nameserver of the resolv.conf process ``pid`` reads (through its mount namespace)."""
    return intercept.nameserver_in(Path(f"/proc/{pid}/root/etc/resolv.conf"))


def prepare(targets: list[ResolvedProcess], run_id: str, fault_name: str) -> dict[str, str | int]:
    """What the journal holds before anything moves: the cgroup, and each target's original one."""
    name = cgroup_name(run_id, fault_name)
    details: dict[str, str | int] = {
        "cgroup": name,
        "cgroup_dir": os.path.join(v2_mount(), name),
        "pids": ",".join(str(p.pid) for p in targets),
    }
    for proc in targets:
        details[f"cgroup.{proc.pid}"] = original_cgroup(proc.pid)
        if proc.start_ticks is not None:
            details[f"start_ticks.{proc.pid}"] = proc.start_ticks
    return details


def _write_pid(directory: str, pid: int) -> bool:
    """Move ``pid`` (all its threads) into the cgroup at ``directory``; False when it has exited."""
    try:
        with open(os.path.join(directory, "cgroup.procs"), "w", encoding="ascii") as f:
            f.write(str(pid))
    except ProcessLookupError:
        return False
    except OSError as exc:
        raise FaultError(f"cannot move process {pid} into {directory}: {exc.strerror or exc}") from None
    return True


def inject(d: dict[str, str | int], port: int) -> None:
    """Create the cgroup, move the targets in (each only while it is the journaled process), redirect."""
    directory, name = str(d["cgroup_dir"]), str(d["cgroup"])
    os.makedirs(directory, exist_ok=True)
    moved = 0
    for pid in (int(p) for p in str(d["pids"]).split(",")):
        ticks = d.get(f"start_ticks.{pid}")
        if ticks is not None and start_ticks(pid) != ticks:
            continue  # exited (and maybe its PID reused) since it was resolved
        moved += _write_pid(directory, pid)
    if not moved:
        raise FaultError("every target process exited before it could be moved into the fault's cgroup")
    table, chain, mark = str(d["table"]), str(d["chain"]), int(d["mark"])
    lines = [
        f"add table ip {table}",
        f"add chain ip {table} {chain} {{ type nat hook output priority {intercept.NAT_PRIORITY}; policy accept; }}",
        f"flush chain ip {table} {chain}",
    ]
    lines += [
        f'add rule ip {table} {chain} socket cgroupv2 level 1 "{name}" {p} dport 53 meta mark != {mark} '
        f"redirect to :{port}"
        for p in ("udp", "tcp")
    ]
    nft.run_with_cgroup2(str(d["netns"]), ["-f", "-"], "\n".join(lines) + "\n")


def _home(pid: int, d: dict[str, str | int], root: str) -> str:
    """Where ``pid`` goes back to: its journaled cgroup, else its nearest journaled ancestor's, else the root."""
    with contextlib.suppress(psutil.Error):
        for proc in [psutil.Process(pid), *psutil.Process(pid).parents()]:
            path = d.get(f"cgroup.{proc.pid}")
            if isinstance(path, str):
                directory = os.path.join(root, path.lstrip("/"))
                return directory if os.path.isfile(os.path.join(directory, "cgroup.procs")) else root
    return root


def empty_and_remove(directory: str, d: dict[str, str | int] | None = None) -> str:
    """Move every process out of the cgroup at ``directory`` (home as journaled in ``d``, else the
    v2 root) and remove it; says what was done. A process forking meanwhile is moved too."""
    if not os.path.isdir(directory):
        return f"cgroup {os.path.basename(directory)} already gone"
    root = str(Path(directory).parent)
    moved: set[int] = set()
    for _ in range(_REMOVE_TRIES):
        for pid in cgroups.cgroup_pids(directory):
            if _write_pid(_home(pid, d or {}, root), pid):
                moved.add(pid)
        try:
            os.rmdir(directory)
        except FileNotFoundError:
            break
        except OSError:  # EBUSY: a process (or a sub-group) appeared in between
            time.sleep(0.02)
            continue
        break
    else:
        raise FaultError(f"cannot remove cgroup {directory}: still busy after {_REMOVE_TRIES} tries")
    shown = ",".join(map(str, sorted(moved))) or "none"
    return f"moved pids {shown} back and removed cgroup {os.path.basename(directory)}"


def undo(d: dict[str, str | int]) -> str:
    """The redirect first, then the processes back and the cgroup away, then the responder."""
    netns = str(d["netns"])
    if netns and not (nft.NETNS_DIR / netns).exists():
        what = [f"netns {netns} is gone (its nft tables with it)"]
    else:
        what = [nft.remove_chains(netns, "ip", str(d["table"]), [str(d["chain"])])]
    what.append(empty_and_remove(str(d["cgroup_dir"]), d))
    what.append(intercept.stop_responder(d))
    what += intercept.remove_workdir(d)
    return "; ".join(what)


def leftover_cgroups() -> list[str]:
    """Directories of ``harness-dns-*`` cgroups at the top of the unified hierarchy."""
    try:
        root = v2_mount()
    except FaultError:
        return []
    with contextlib.suppress(OSError):
        return sorted(str(p) for p in Path(root).iterdir() if p.is_dir() and p.name.startswith(CGROUP_PREFIX))
    return []
