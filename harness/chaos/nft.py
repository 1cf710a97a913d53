"""nftables for the fault families that use it (network partition and loss, transparent proxy
redirects, the sweep): one way to run ``nft``, name tables, and take a fault's chains away.

``nft -f -`` is fed a generated ruleset on stdin, through ``ip netns exec NS`` when the
target is a namespace; nft applies a file as one atomic transaction (all of a fault's chains
and rules appear together or not at all). Reads use ``nft -j`` (JSON). pyroute2's nftables
support does not cover ``numgen``, nat ``redirect`` or anonymous sets as a stable API, and
Debian's ``python3-nftables`` binding serves only the system interpreter, not our venv. ``ip
netns exec ... nft`` is also what an operator types to inspect the same objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

from harness.errors import FaultError

__all__ = [
    "NETNS_DIR",
    "NFT_TIMEOUT",
    "ident",
    "namespace_id",
    "namespace_named",
    "namespaces",
    "remove_chains",
    "run",
    "run_with_cgroup2",
    "tables",
]

#: Seconds any one ``nft`` call may take; it is a local netlink transaction.
NFT_TIMEOUT = 10.0
NETNS_DIR = Path("/run/netns")


def namespaces() -> list[str]:
    """'' (the host's namespace), then every named namespace under /run/netns, sorted: where a
    sweep looks for harness's objects."""
    found = [""]
    with contextlib.suppress(OSError):
        found += sorted(os.listdir(NETNS_DIR))
    return found


def namespace_id(path: str) -> tuple[int, int]:
    """``(device, inode)`` of a network namespace file (``/proc/<pid>/ns/net``, ``/run/netns/NAME``):
    two paths are the same namespace exactly when these are equal. Raises ``OSError``."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def namespace_named(ns_id: tuple[int, int]) -> str | None:
    """'' when ``ns_id`` is this process's namespace (the host's), its name under /run/netns when
    it has one, else None."""
    if ns_id == namespace_id("/proc/self/ns/net"):
        return ""
    for name in namespaces()[1:]:
        with contextlib.suppress(OSError):
            if namespace_id(str(NETNS_DIR / name)) == ns_id:
                return name
    return None


def ident(text: str, limit: int) -> str:
    """``text`` in nft identifier characters; a short hash is added when anything was changed or
    cut, so two different run ids or fault names never give the same table or chain."""
    clean = re.sub(r"[^A-Za-z0-9_]", "_", text)
    if clean == text and len(clean) <= limit:
        return clean
    digest = hashlib.sha1(text.encode()).hexdigest()[:8]
    return f"{clean[: limit - 9]}_{digest}"


def run(netns: str, args: list[str], stdin: str | None = None) -> str:
    """Run ``nft ARGS`` in ``netns`` ('' = the host's); stdout, or ``FaultError`` with nft's message."""
    cmd = (["ip", "netns", "exec", netns] if netns else []) + ["nft", *args]
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=NFT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FaultError(f"{' '.join(cmd)}: {exc}") from None
    if done.returncode != 0:
        raise FaultError(f"{' '.join(cmd)}: {done.stderr.strip() or f'exit {done.returncode}'}")
    return done.stdout


def run_with_cgroup2(netns: str, args: list[str], stdin: str | None = None) -> str:
    """:func:`run`, where ``/sys/fs/cgroup`` is the unified (cgroup v2) hierarchy.

    nft (1.0.6) turns ``socket cgroupv2 level N "path"`` into the cgroup's id when it loads the
    rule, looking the path up under ``/sys/fs/cgroup``: a hybrid host mounts v1 there (cgroup2
    at ``/sys/fs/cgroup/unified``), and ``ip netns exec`` remounts /sys. So nft runs in a
    private mount namespace with cgroup2 mounted at ``/sys/fs/cgroup`` (``unshare --mount``),
    which changes no other process's view. nft's JSON input takes no cgroupv2 key at all.
    """
    script = 'mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec nft "$@"'
    cmd = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "nft", *args]
    cmd = (["ip", "netns", "exec", netns] if netns else []) + cmd
    try:
        done = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=NFT_TIMEOUT, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise FaultError(f"nft {' '.join(args)} (cgroup2 at /sys/fs/cgroup): {exc}") from None
    if done.returncode != 0:
        why = done.stderr.strip() or f"exit {done.returncode}"
        raise FaultError(f"nft {' '.join(args)} (cgroup2 at /sys/fs/cgroup): {why}")
    return done.stdout


def tables(netns: str) -> list[tuple[str, str]]:
    """``(family, name)`` of every table in ``netns``."""
    data: Any = json.loads(run(netns, ["-j", "list", "tables"]) or "{}")
    return [
        (str(item["table"]["family"]), str(item["table"]["name"]))
        for item in data.get("nftables", [])
        if "table" in item
    ]


def remove_chains(netns: str, family: str, table: str, chains: list[str]) -> str:
    """Delete those of ``chains`` that still exist, then the table once no chain is left in it.

    Says what it did. Other faults' chains in the same table are left alone, so faults of one
    run come and go independently; a table that is already gone is nothing to do.
    """
    if (family, table) not in tables(netns):
        return "table already gone"
    data: Any = json.loads(run(netns, ["-j", "list", "table", family, table]) or "{}")
    present = [item["chain"]["name"] for item in data.get("nftables", []) if "chain" in item]
    mine = [c for c in chains if c in present]
    lines: list[str] = []
    for chain in mine:
        lines += [f"flush chain {family} {table} {chain}", f"delete chain {family} {table} {chain}"]
    left = [c for c in present if c not in mine]
    if not left:
        lines.append(f"delete table {family} {table}")
    if lines:
        run(netns, ["-f", "-"], "\n".join(lines) + "\n")
    return f"deleted chains {','.join(mine) or '(none left)'}" + ("" if left else f" and table {table}")
