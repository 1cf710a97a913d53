"""``harness recover --sweep``: find and remove harness's kernel objects and processes that no
journal knows about any more.

The journal is how harness normally undoes a fault. When a journal is lost (a node's disk
wiped, a data directory deleted, a run started with another ``HARNESS_DATA_DIR``), its
faults' objects stay, and only their tags can find them. Every object a fault creates is
tagged, and each fault family finds its own (:meth:`~harness.chaos.family.FaultFamily.leftovers`):
nftables tables, qdiscs, filters, ifb links and blackhole routes of the network family in the
host's namespace and every namespace under ``/run/netns``; the transparent proxies' redirect
tables; stress-ng and proxy processes by their environment tags.

The sweep cannot find what carries no tag: a process left SIGSTOPped or a Kubernetes
deployment left at zero replicas are known only to the journal (``harness recover``). Like
``recover``, it does not ask whether a run is going on: during a run it removes that run's
faults too, which is what an operator pulling the emergency brake wants, and nothing else.
"""

from __future__ import annotations

import psutil

from harness.chaos.family import Leftover, families

__all__ = ["Leftover", "find", "sweep"]


def _look() -> tuple[list[Leftover], list[str]]:
    found: list[Leftover] = []
    failed: list[str] = []
    for family in families():
        try:
            found += family.leftovers()
        except Exception as exc:  # one family's tools broken here: the others are still swept
            failed.append(f"{family.name} faults: could not look for leftovers: {type(exc).__name__}: {exc}")
    return found, failed


def find() -> list[Leftover]:
    """Every tagged object of every registered family on this node; changes nothing."""
    return _look()[0]


def sweep() -> tuple[list[str], list[str]]:
    """Remove every tagged object; returns (lines for what was removed, lines for what failed).

    Objects go in their families' order (what sits on a link before the link; processes last).
    """
    owners = {family.name: family for family in families()}
    found, failed = _look()
    done: list[str] = []
    for leftover in sorted(found, key=lambda item: item.order):
        try:
            owners[leftover.family].remove(leftover)
        except psutil.NoSuchProcess:
            continue  # gone by itself meanwhile
        except Exception as exc:  # a netlink or nft error: say which object, go on with the rest
            failed.append(f"{leftover.describe()}: could not remove: {type(exc).__name__}: {exc}")
            continue
        done.append(f"removed {leftover.describe()}")
    return done, failed
